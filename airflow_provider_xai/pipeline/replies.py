"""Reading answers within bounds: the size of a body, the length of an event-stream line,
and turning an error status into the typed error. Shared by the sync and async paths."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from airflow_provider_xai.exceptions import XAIResponseError, XAITimeoutError
from airflow_provider_xai.pipeline.errors import error_from_response
from airflow_provider_xai.secrets import scrub


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer, read within the size bound."""

    status_code: int
    headers: httpx.Headers
    content: bytes


class BodyLimit:
    """Counts what is read of one answer; raises once it passes the size or line bound, or the
    attempt's deadline (``deadline`` seconds from now: each wait for bytes is bounded by the
    read timeout, the whole attempt by this)."""

    def __init__(self, max_bytes: int, max_line: int | None = None, deadline: float | None = None) -> None:
        self.max_bytes, self.max_line = max_bytes, max_line
        self.total = 0
        self.line = 0
        self.seconds = deadline
        self.ends = None if deadline is None else time.monotonic() + deadline

    def check_declared(self, headers: Mapping[str, str]) -> None:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(f"announces {declared} bytes")

    def add(self, chunk: bytes | str) -> None:
        if self.ends is not None and time.monotonic() > self.ends:
            raise XAITimeoutError(
                f"xAI request passed its deadline of {self.seconds:g}s (the connection's deadline) "
                f"after {self.total + len(chunk)} bytes"
            )
        self.total += len(chunk)
        if self.total > self.max_bytes:
            raise self._too_large(f"passed {self.total} bytes")
        if self.max_line is not None:
            lines = chunk.split("\n") if isinstance(chunk, str) else [chunk]
            longest = self.line + len(lines[0])  # the first piece continues the current line
            if len(lines) > 1:
                longest = max(longest, *(len(line) for line in lines[1:]))
                self.line = len(lines[-1])
            else:
                self.line = longest
            if longest > self.max_line:
                raise XAIResponseError(
                    f"xAI event stream line passed {self.max_line} characters (max_sse_line_length)"
                )

    def _too_large(self, what: str) -> XAIResponseError:
        return XAIResponseError(
            f"xAI answer {what}, more than the {self.max_bytes}-byte limit (max_response_bytes)"
        )


def check_reply(reply: Reply) -> Reply:
    """The reply itself, or the typed error an error status stands for."""
    if reply.status_code >= 400:
        raise error_from_response(reply.status_code, reply.headers, reply.content)
    return reply


def not_an_event_stream(reply: Reply) -> XAIResponseError:
    content_type = reply.headers.get("content-type", "no content type")
    text = scrub(reply.content[:200].decode("utf-8", "replace"))
    return XAIResponseError(
        f"xAI did not answer with an event stream ({content_type}): {text!r}",
        request_id=reply.headers.get("x-request-id"),
    )


def read_body(
    response: httpx.Response, limit: BodyLimit, write: Callable[[bytes], None] | None = None
) -> bytes:
    """The whole body of a streamed response within ``limit`` (or, with ``write``, each chunk
    handed to it as it comes, and nothing kept); the response is closed."""
    try:
        limit.check_declared(response.headers)
        chunks: list[bytes] = []
        keep = write or chunks.append
        for chunk in response.iter_bytes():
            limit.add(chunk)
            keep(chunk)
        return b"".join(chunks)
    finally:
        response.close()


async def aread_body(
    response: httpx.Response, limit: BodyLimit, write: Callable[[bytes], None] | None = None
) -> bytes:
    """Async :func:`read_body`."""
    try:
        limit.check_declared(response.headers)
        chunks: list[bytes] = []
        keep = write or chunks.append
        async for chunk in response.aiter_bytes():
            limit.add(chunk)
            keep(chunk)
        return b"".join(chunks)
    finally:
        await response.aclose()


def is_event_stream(response: httpx.Response) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")
