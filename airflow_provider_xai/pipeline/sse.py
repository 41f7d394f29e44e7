"""Reading xAI's server-sent events: the ``data`` of each event, bounded, failures typed.

httpx-sse parses the events. It reads only the response's headers and text, so it is handed a
:class:`BoundedText` view that counts every character against the stream's bounds (total size
and line length) before the parser buffers it. Sync and async readers differ only in iteration.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import cast

import httpx
from httpx_sse import EventSource, SSEError

from airflow_provider_xai.exceptions import (
    XAIError,
    XAIResponseError,
    XAITimeoutError,
    XAITruncatedStreamError,
)
from airflow_provider_xai.pipeline.replies import BodyLimit


class BoundedText:
    """The parts of a streamed ``httpx.Response`` that httpx-sse reads, with bounds enforced."""

    def __init__(self, response: httpx.Response, limit: BodyLimit) -> None:
        self.response = response
        self.headers = response.headers
        self.limit = limit

    def iter_text(self) -> Iterator[str]:
        for text in self.response.iter_text():
            self.limit.add(text)
            yield text

    async def aiter_text(self) -> AsyncIterator[str]:
        async for text in self.response.aiter_text():
            self.limit.add(text)
            yield text


def iter_sse_data(response: httpx.Response, limit: BodyLimit) -> Generator[str, None, None]:
    """Each event's ``data`` until the stream ends; the response is closed afterwards."""
    events = EventSource(cast(httpx.Response, BoundedText(response, limit)))
    try:
        for event in events.iter_sse():
            yield event.data
    except (httpx.HTTPError, SSEError) as exc:
        raise broken_stream(exc) from None
    finally:
        response.close()


async def aiter_sse_data(response: httpx.Response, limit: BodyLimit) -> AsyncGenerator[str, None]:
    """Async :func:`iter_sse_data`."""
    events = EventSource(cast(httpx.Response, BoundedText(response, limit)))
    try:
        async for event in events.aiter_sse():
            yield event.data
    except (httpx.HTTPError, SSEError) as exc:
        raise broken_stream(exc) from None
    finally:
        await response.aclose()


def broken_stream(exc: Exception) -> XAIError:
    """The typed error for a stream that failed after it opened."""
    if isinstance(exc, SSEError):
        return XAIResponseError(f"xAI did not answer with an event stream: {exc}")
    if isinstance(exc, httpx.TimeoutException):  # the stream stalled past the read timeout
        return XAITimeoutError(f"xAI stream stalled past the read timeout ({type(exc).__name__})")
    if isinstance(exc, httpx.DecodingError):
        return XAIResponseError(f"xAI stream could not be decoded ({type(exc).__name__})")
    return XAITruncatedStreamError(f"xAI stream broke off: {type(exc).__name__}")


def stream_retryable(exc: BaseException) -> bool:
    """Whether a whole streamed answer may be requested again (see ``RetryPolicy``)."""
    from airflow_provider_xai.pipeline.errors import is_retryable

    return is_retryable(exc) or isinstance(exc, XAITruncatedStreamError)
