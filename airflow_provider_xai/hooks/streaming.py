"""Streaming chat: xAI's server-sent events as typed chunks and one assembled completion.

The sync and async paths of :class:`XAIStreamMixin` (mixed into XAIHook) both feed raw SSE
``data`` strings to :class:`StreamAssembler`, which validates each chunk, tracks completeness
and builds the final :class:`ChatCompletion` (with the usage chunk xAI sends before ``[DONE]``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource, SSEError
from tenacity import AsyncRetrying, Retrying

from airflow_provider_xai.exceptions import (
    XAIError,
    XAIResponseError,
    XAITimeoutError,
    XAITruncatedStreamError,
)
from airflow_provider_xai.hooks.policy import (
    body_arguments,
    error_from_transport,
    is_retryable,
    scrub,
)
from airflow_provider_xai.hooks.stream_assembler import StreamAssembler
from airflow_provider_xai.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
)

if TYPE_CHECKING:
    from airflow_provider_xai.hooks.policy import ClientSettings

RequestLike = ChatRequest | Mapping[str, Any]


def _stream_retryable(exc: BaseException) -> bool:
    return is_retryable(exc) or isinstance(exc, XAITruncatedStreamError)


class XAIStreamMixin:
    """Streaming chat methods of XAIHook (sync and async share the assembler and policy)."""

    if TYPE_CHECKING:  # provided by XAIHook

        @property
        def settings(self) -> ClientSettings: ...

        @property
        def _client(self) -> httpx.Client: ...

        def build_request(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatRequest: ...

        def _retrying(self, retryable: Callable[[BaseException], bool] = ...) -> dict[str, Any]: ...

        def _check(self, response: httpx.Response) -> httpx.Response: ...

        async def get_async_conn(self) -> httpx.AsyncClient: ...

        async def aget_settings(self) -> ClientSettings: ...

    def _stream_body(self, request: RequestLike | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        body = self.build_request(request, **kwargs).to_body()
        body["stream"] = True
        body.setdefault("stream_options", {"include_usage": True})
        return body

    def _assembler(self, body: Mapping[str, Any]) -> StreamAssembler:
        expect = bool(body.get("stream_options", {}).get("include_usage"))
        return StreamAssembler(expect_usage=expect, secret=self.settings.api_key)

    def stream_chat(
        self, request: RequestLike | None = None, /, **kwargs: Any
    ) -> Iterator[ChatCompletionChunk]:
        """Stream a chat completion as typed chunks; the last one carries the usage.

        Opening the stream is retried; once chunks flow, a broken or truncated stream raises
        :class:`XAITruncatedStreamError` rather than returning half an answer.
        """
        body = self._stream_body(request, kwargs)
        yield from self._iter_stream(body, self._assembler(body))

    def _open_stream_once(self, body: Mapping[str, Any]) -> httpx.Response:
        request = self._client.build_request("POST", "chat/completions", **body_arguments(body))
        try:
            response = self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, str(request.url), self.settings.api_key) from None
        if response.status_code >= 400 or not _is_event_stream(response):
            # Read the whole answer: an error body, or whatever came instead of a stream. A
            # connection dropped while reading it is a (retryable) connection error.
            try:
                response.read()
            except httpx.TransportError as exc:
                raise error_from_transport(exc, str(request.url), self.settings.api_key) from None
            finally:
                response.close()
            self._check(response)
            raise _not_a_stream(response, self.settings.api_key)
        return response

    def _iter_stream(
        self, body: Mapping[str, Any], assembler: StreamAssembler, *, retry_open: bool = True
    ) -> Iterator[ChatCompletionChunk]:
        response: httpx.Response = (
            Retrying(**self._retrying())(self._open_stream_once, body)
            if retry_open
            else self._open_stream_once(body)
        )
        try:
            for event in EventSource(response).iter_sse():
                chunk = assembler.feed(event.data)
                if chunk is not None:
                    yield chunk
        except (httpx.TransportError, SSEError) as exc:
            raise _broken_stream(exc) from None
        finally:
            response.close()
        assembler.check_complete()

    def stream_chat_completion(
        self,
        request: RequestLike | None = None,
        /,
        *,
        on_text: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> ChatCompletion:
        """Stream an answer, calling ``on_text`` with each text delta; return the full completion.

        A stream that breaks is requested again within the retry budget (``on_text`` then
        sees the restarted answer from its beginning).
        """
        body = self._stream_body(request, kwargs)

        def attempt() -> ChatCompletion:
            assembler = self._assembler(body)
            # retry_open=False: this loop owns the whole retry budget (no nested retries)
            for chunk in self._iter_stream(body, assembler, retry_open=False):
                if on_text is not None and (text := _first_text(chunk)):
                    on_text(text)
            return assembler.completion()

        return Retrying(**self._retrying(_stream_retryable))(attempt)

    async def _aopen_stream_once(self, body: Mapping[str, Any]) -> httpx.Response:
        client = await self.get_async_conn()
        request = client.build_request("POST", "chat/completions", **body_arguments(body, asynchronous=True))
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, str(request.url), self.settings.api_key) from None
        if response.status_code >= 400 or not _is_event_stream(response):
            try:
                await response.aread()
            except httpx.TransportError as exc:
                raise error_from_transport(exc, str(request.url), self.settings.api_key) from None
            finally:
                await response.aclose()
            self._check(response)
            raise _not_a_stream(response, self.settings.api_key)
        return response

    async def _aiter_stream(
        self, body: Mapping[str, Any], assembler: StreamAssembler, *, retry_open: bool = True
    ) -> AsyncIterator[ChatCompletionChunk]:
        response: httpx.Response = (
            await AsyncRetrying(**self._retrying())(self._aopen_stream_once, body)
            if retry_open
            else await self._aopen_stream_once(body)
        )
        try:
            async for event in EventSource(response).aiter_sse():
                chunk = assembler.feed(event.data)
                if chunk is not None:
                    yield chunk
        except (httpx.TransportError, SSEError) as exc:
            raise _broken_stream(exc) from None
        finally:
            await response.aclose()
        assembler.check_complete()

    async def astream_chat(
        self, request: RequestLike | None = None, /, **kwargs: Any
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Async :meth:`stream_chat`."""
        await self.aget_settings()
        body = self._stream_body(request, kwargs)
        async for chunk in self._aiter_stream(body, self._assembler(body)):
            yield chunk

    async def astream_chat_completion(
        self,
        request: RequestLike | None = None,
        /,
        *,
        on_text: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> ChatCompletion:
        """Async :meth:`stream_chat_completion`."""
        await self.aget_settings()
        body = self._stream_body(request, kwargs)

        async def attempt() -> ChatCompletion:
            assembler = self._assembler(body)
            async for chunk in self._aiter_stream(body, assembler, retry_open=False):
                if on_text is not None and (text := _first_text(chunk)):
                    on_text(text)
            return assembler.completion()

        return await AsyncRetrying(**self._retrying(_stream_retryable))(attempt)


def _first_text(chunk: ChatCompletionChunk) -> str | None:
    """The first choice's text delta of a chunk (what ``on_text`` callbacks receive)."""
    return chunk.choices[0].delta.content if chunk.choices else None


def _is_event_stream(response: httpx.Response) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


def _not_a_stream(response: httpx.Response, secret: str) -> XAIResponseError:
    content_type = response.headers.get("content-type", "no content type")
    text = scrub(response.content[:200].decode("utf-8", "replace"), secret)
    return XAIResponseError(
        f"xAI did not answer with an event stream ({content_type}): {text!r}",
        request_id=response.headers.get("x-request-id"),
    )


def _broken_stream(exc: Exception) -> XAIError:
    if isinstance(exc, SSEError):
        return XAIResponseError(f"xAI did not answer with an event stream: {exc}")
    if isinstance(exc, httpx.TimeoutException):  # the stream stalled past the read timeout
        return XAITimeoutError(f"xAI stream stalled past the read timeout ({type(exc).__name__})")
    return XAITruncatedStreamError(f"xAI stream broke off: {type(exc).__name__}")
