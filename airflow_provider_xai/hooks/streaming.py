"""Streaming chat: xAI's server-sent events as typed chunks and one assembled completion.

The sync and async paths of :class:`XAIStreamMixin` (mixed into XAIHook) both feed raw SSE
``data`` strings to :class:`StreamAssembler`, which validates each chunk, tracks completeness
and builds the final :class:`ChatCompletion` (with the usage chunk xAI sends before ``[DONE]``).
"""

from __future__ import annotations

import json
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
    error_from_response,
    error_from_transport,
    is_retryable,
    scrub,
)
from airflow_provider_xai.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Usage,
    parse_response,
)

if TYPE_CHECKING:
    from airflow_provider_xai.hooks.policy import ClientSettings

RequestLike = ChatRequest | Mapping[str, Any]

DONE = "[DONE]"


class StreamAssembler:
    """Accumulates chunks of one streamed answer; raises on malformed or truncated streams."""

    def __init__(self, *, expect_usage: bool = True, secret: str | None = None) -> None:
        self.expect_usage = expect_usage
        self.secret = secret
        self.done = False
        self.id = ""
        self.model = ""
        self.created = 0
        self.system_fingerprint: str | None = None
        self.usage: Usage | None = None
        self._texts: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._finish: dict[int, str | None] = {}

    def feed(self, data: str) -> ChatCompletionChunk | None:
        """Take one SSE ``data`` payload; return its chunk (None for ``[DONE]``)."""
        if data.strip() == DONE:
            self.done = True
            return None
        if '"error"' in data[:200]:
            self._raise_if_error_event(data)
        chunk: ChatCompletionChunk = parse_response(ChatCompletionChunk, data, "stream chunk")
        self.id = self.id or chunk.id
        self.model = self.model or chunk.model
        self.created = self.created or chunk.created
        self.system_fingerprint = self.system_fingerprint or chunk.system_fingerprint
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                self._texts.setdefault(choice.index, []).append(choice.delta.content)
            if choice.delta.reasoning_content:
                self._reasoning.setdefault(choice.index, []).append(choice.delta.reasoning_content)
            if choice.finish_reason is not None or choice.index not in self._finish:
                self._finish[choice.index] = choice.finish_reason or self._finish.get(choice.index)
        return chunk

    def _raise_if_error_event(self, data: str) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            return  # parse_response reports it as malformed
        if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
            status = payload["status"] if isinstance(payload.get("status"), int) else 500
            raise error_from_response(status, {}, data.encode(), self.secret)

    @property
    def finished(self) -> bool:
        """True once every choice has a finish reason (and usage arrived, if asked for)."""
        has_reasons = bool(self._finish) and all(self._finish.values())
        return self.done or (has_reasons and (self.usage is not None or not self.expect_usage))

    def check_complete(self) -> None:
        if not self.finished:
            received = sum(len("".join(t)) for t in self._texts.values())
            raise XAITruncatedStreamError(
                f"xAI stream ended before [DONE] or a finish reason after {received} characters; "
                "the answer is incomplete"
            )

    def completion(self) -> ChatCompletion:
        """The assembled answer, as if it had been requested without streaming."""
        self.check_complete()
        if not self.id:
            raise XAIResponseError("xAI stream carried no chunks")
        choices: list[dict[str, Any]] = []
        for index in sorted(set(self._texts) | set(self._finish)):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(self._texts.get(index, []))}
            if index in self._reasoning:
                message["reasoning_content"] = "".join(self._reasoning[index])
            choices.append({"index": index, "message": message, "finish_reason": self._finish.get(index)})
        return ChatCompletion.model_validate(
            {
                "id": self.id,
                "model": self.model,
                "created": self.created,
                "choices": choices,
                "usage": self.usage,
                "system_fingerprint": self.system_fingerprint,
            }
        )


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
