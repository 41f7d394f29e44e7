"""XAIHook: the xAI REST API, sync and async, over one :class:`XAITransport`.

Each API call is described once, without I/O, in its endpoint family's module
(``endpoints/``); the sync method hands it to ``transport.send`` and the async one to
``transport.asend``. The transport resolves the connection, holds the pooled clients, retries,
bounds reads, maps failures to typed errors and reads the usage; tracing and the shared rate
limit wrap it as layers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from airflow.sdk import BaseHook

from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, check_number
from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.endpoints import chat as chat_api
from airflow_provider_xai.endpoints import collections as collection_api
from airflow_provider_xai.endpoints import declaration_of
from airflow_provider_xai.endpoints import models as models_api
from airflow_provider_xai.endpoints.chat import RequestLike
from airflow_provider_xai.exceptions import XAIError, XAIStructuredOutputError
from airflow_provider_xai.forecast import conversation_tokens
from airflow_provider_xai.hooks.batch import XAIBatchMixin
from airflow_provider_xai.hooks.billing import XAIBillingMixin
from airflow_provider_xai.hooks.collections import XAICollectionsMixin
from airflow_provider_xai.hooks.files import XAIFilesMixin
from airflow_provider_xai.hooks.media import XAIMediaMixin
from airflow_provider_xai.hooks.responses import XAIResponsesMixin
from airflow_provider_xai.hooks.voice import XAIVoiceMixin
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.pipeline.transport import XAITransport
from airflow_provider_xai.pricing import DEFAULT_PRICES, Price, prices_from_language_models
from airflow_provider_xai.ratelimit.layer import RateLimitLayer
from airflow_provider_xai.schemas import (
    ApiKeyInfo,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    LanguageModel,
    Model,
    TokenizeResponse,
)
from airflow_provider_xai.spend.layer import SpendLayer
from airflow_provider_xai.structured import OutputSpec
from airflow_provider_xai.tracing.layer import TracingLayer


@dataclass(frozen=True)
class StructuredResult:
    """A validated structured answer (JSON-safe ``value``) and the completion it came from."""

    value: Any
    completion: ChatCompletion


class XAIHook(
    XAIResponsesMixin,
    XAIBatchMixin,
    XAIFilesMixin,
    XAICollectionsMixin,
    XAIVoiceMixin,
    XAIMediaMixin,
    XAIBillingMixin,
    BaseHook,
):
    """Interact with xAI's Grok API (``https://api.x.ai/v1``).

    :param xai_conn_id: connection id; its password is the API key (else ``XAI_API_KEY``).
    :param timeout: per-request read timeout in seconds (default: connection extra, then 600).
    :param max_retries: retries of retryable failures (default: connection extra, then 2).
    :param backoff_base: first backoff in seconds when the server sends no usable ``retry-after``.
    :param backoff_cap: longest backoff in seconds.
    :param max_response_bytes: largest answer read (default: connection extra, then 64 MiB).
    :param max_sse_line_length: longest event-stream line (default: extra, then 4 Mi characters).
    :param client_kwargs: extra ``httpx.Client``/``AsyncClient`` arguments (proxy, verify,
        transport, limits...).
    """

    conn_name_attr = "xai_conn_id"
    default_conn_name = "xai_default"
    conn_type = "xai"
    hook_name = "xAI"

    def __init__(
        self,
        xai_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        max_response_bytes: int | None = None,
        max_sse_line_length: int | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_number("backoff_base", backoff_base, 0, MAX_WAIT_SECONDS, positive=True)
        check_number("backoff_cap", backoff_cap, 0, MAX_WAIT_SECONDS, positive=True)
        self.xai_conn_id = xai_conn_id
        self.rate_limit = RateLimitLayer(self.get_connection, self.aget_connection, backoff_base, backoff_cap)
        #: Spend control: forecasts, the task's cost cap, budgets (see :mod:`airflow_provider_xai.spend`).
        self.spend = SpendLayer(
            lambda: self.settings, self.get_connection, self.count_tokens, self._price_lists, self._stored_tokens
        )
        self.transport = XAITransport(
            xai_conn_id,
            get_connection=self.get_connection,
            aget_connection=self.aget_connection,
            get_log=lambda: self.log,
            layers=(TracingLayer(), self.spend, self.rate_limit),
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            client_kwargs=client_kwargs,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
            max_sse_line_length=max_sse_line_length,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(xai_conn_id={self.xai_conn_id!r})"

    # --- connection and clients ----------------------------------------------------------------
    @property
    def settings(self) -> ClientSettings:
        """Connection settings (read once; blocking: async code uses :meth:`aget_settings`)."""
        return self.transport.settings

    async def aget_settings(self) -> ClientSettings:
        """Connection settings read without blocking the event loop."""
        return await self.transport.asettings()

    @property
    def default_model(self) -> str:
        return self.settings.default_model

    def get_conn(self) -> httpx.Client:
        """The pooled sync client (created on first use, reused afterwards)."""
        return self.transport.client

    async def get_async_conn(self) -> httpx.AsyncClient:
        """The pooled async client of the running event loop."""
        return await self.transport.aclient()

    def close(self) -> None:
        """Close the sync client's pooled connections."""
        self.transport.close()

    async def aclose(self) -> None:
        """Close the running event loop's async client."""
        await self.transport.aclose()

    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Reply:
        """Send one API request with the retry policy; raise a typed error on failure. A path
        that matches an endpoint declaration is traced, limited and its usage read as such."""
        return self.transport.send(_raw(method, path, body, headers))

    async def arequest(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """Async :meth:`request`."""
        return await self.transport.asend(_raw(method, path, body, headers))

    # --- chat ------------------------------------------------------------------------------------
    def chat_request(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatRequest:
        """Validate a chat request, filling in the connection's default model (no I/O but the
        connection look-up)."""
        return chat_api.chat_request(self.settings, request, **kwargs)

    def chat(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatCompletion:
        """Create a chat completion. Accepts a :class:`ChatRequest`, a dict, or fields as kwargs."""
        return self.transport.send(chat_api.chat(request, kwargs))

    async def achat(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatCompletion:
        """Async :meth:`chat`."""
        return await self.transport.asend(chat_api.chat(request, kwargs))

    def chat_structured(
        self, request: RequestLike | None = None, /, *, output: Any, **kwargs: Any
    ) -> StructuredResult:
        """Ask for an answer matching ``output`` (pydantic model class, JSON schema or
        ``"json_object"``); return the validated value and the completion.

        Raises :class:`XAIStructuredOutputError` (carrying the billed completion) if the
        answer does not validate.
        """
        spec = OutputSpec.required(output)
        completion = self.chat(request, response_format=spec.response_format, **kwargs)
        return StructuredResult(spec.parse(completion.text, completion), completion)

    async def achat_structured(
        self, request: RequestLike | None = None, /, *, output: Any, **kwargs: Any
    ) -> StructuredResult:
        """Async :meth:`chat_structured`."""
        spec = OutputSpec.required(output)
        completion = await self.achat(request, response_format=spec.response_format, **kwargs)
        return StructuredResult(spec.parse(completion.text, completion), completion)

    # --- streaming -------------------------------------------------------------------------------
    def stream_chat(self, request: RequestLike | None = None, /, **kwargs: Any) -> Iterator[ChatCompletionChunk]:
        """Stream a chat completion as typed chunks; the last one carries the usage.

        Opening the stream is retried; once chunks flow, a broken or truncated stream raises
        :class:`XAITruncatedStreamError` rather than returning half an answer.
        """
        yield from self.transport.iterate(chat_api.stream(request, kwargs))

    async def astream_chat(
        self, request: RequestLike | None = None, /, **kwargs: Any
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Async :meth:`stream_chat`."""
        async for chunk in self.transport.aiterate(chat_api.stream(request, kwargs)):
            yield chunk

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
        return self.transport.send(chat_api.stream(request, kwargs, on_event=_on_text(on_text), restartable=True))

    async def astream_chat_completion(
        self,
        request: RequestLike | None = None,
        /,
        *,
        on_text: Callable[[str], None] | None = None,
        client: httpx.AsyncClient | None = None,
        **kwargs: Any,
    ) -> ChatCompletion:
        """Async :meth:`stream_chat_completion` (on ``client``, a fan-out's, if given)."""
        call = chat_api.stream(request, kwargs, on_event=_on_text(on_text), restartable=True)
        return await self.transport.asend(call, client)

    # --- fan-out ---------------------------------------------------------------------------------
    async def achat_many(
        self, requests: Sequence[RequestLike], *, max_concurrency: int = 8, stream: bool = False
    ) -> list[ChatCompletion | XAIError]:
        """Send many chat requests with at most ``max_concurrency`` in flight.

        Every request is validated first (one bad request sends nothing). Results come back
        in input order; an item that fails after its retries holds its typed error instead.
        The fan-out runs on pools of its own, closed when it ends.
        """
        check_number("max_concurrency", max_concurrency, 1, integer=True)
        settings = await self.aget_settings()
        checked = [chat_api.chat_request(settings, r) for r in requests]
        async with self.transport.fanout_clients(min(max_concurrency, len(checked))) as clients:
            free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
            for i in range(max_concurrency):
                free.put_nowait(clients[i % len(clients)])

            async def one(request: ChatRequest) -> ChatCompletion | XAIError:
                client = await free.get()
                try:
                    call = chat_api.stream(request, {}, restartable=True) if stream else chat_api.chat(request, {})
                    return await self.transport.asend(call, client)
                except XAIError as exc:
                    return exc
                finally:
                    free.put_nowait(client)

            return list(await asyncio.gather(*(one(r) for r in checked)))

    def chat_many(
        self, requests: Sequence[RequestLike], *, max_concurrency: int = 8, stream: bool = False
    ) -> list[ChatCompletion | XAIError]:
        """Blocking :meth:`achat_many` (runs its own event loop; not for use inside one)."""
        return _run_loop(self.achat_many(requests, max_concurrency=max_concurrency, stream=stream))

    # --- deferred completions ----------------------------------------------------------------
    def start_deferred(self, request: RequestLike | None = None, /, **kwargs: Any) -> str:
        """Submit a deferred completion; return its ``request_id`` (poll with :meth:`get_deferred`)."""
        return self.transport.send(chat_api.start_deferred(request, kwargs))

    async def astart_deferred(self, request: RequestLike | None = None, /, **kwargs: Any) -> str:
        """Async :meth:`start_deferred`."""
        return await self.transport.asend(chat_api.start_deferred(request, kwargs))

    def get_deferred(self, request_id: str) -> ChatCompletion | None:
        """The finished completion, or None while xAI still answers 202 (pending).

        xAI hands a result out once; afterwards (or after 24 h) it answers 404, raised as
        :class:`XAIDeferredExpiredError`.
        """
        return self.transport.send(chat_api.get_deferred(request_id))

    async def aget_deferred(self, request_id: str) -> ChatCompletion | None:
        """Async :meth:`get_deferred`."""
        return await self.transport.asend(chat_api.get_deferred(request_id))

    # --- models, key, tokens --------------------------------------------------------------------
    def list_models(self) -> list[Model]:
        """``GET /v1/models``."""
        return self.transport.send(models_api.models()).data

    def list_language_models(self) -> list[LanguageModel]:
        """``GET /v1/language-models``: models with prices (US cents per 100 million tokens)."""
        return self.transport.send(models_api.language_models()).models

    def get_language_model(self, model: str) -> LanguageModel:
        """``GET /v1/language-models/{model}``."""
        return self.transport.send(models_api.language_model(model))

    def get_api_key_info(self) -> ApiKeyInfo:
        """``GET /v1/api-key``: free; tells whether the key or team is blocked."""
        return self.transport.send(models_api.api_key())

    async def aget_api_key_info(self) -> ApiKeyInfo:
        """Async :meth:`get_api_key_info`."""
        return await self.transport.asend(models_api.api_key())

    def tokenize(self, text: str, model: str | None = None) -> TokenizeResponse:
        """``POST /v1/tokenize-text``: how ``model`` splits ``text`` into tokens (not billed)."""
        return self.transport.send(models_api.tokenize(text, model))

    def count_tokens(self, text: str, model: str | None = None) -> int:
        """How many tokens ``model`` makes of ``text`` (:meth:`tokenize`, free)."""
        return len(self.tokenize(text, model).token_ids)

    def _price_lists(self) -> tuple[list[LanguageModel], list[Any]]:
        return self.list_language_models(), self.list_image_generation_models()

    def _stored_tokens(self, response_id: str) -> int | None:
        """The tokens a stored response's conversation holds (a bound: see ``conversation_tokens``)."""
        return conversation_tokens(self.get_response(response_id))

    def get_prices(self, *, refresh: bool = False) -> dict[str, Price]:
        """Price table for cost estimates: built-in prices, then (with ``refresh``) xAI's
        ``/v1/language-models``, then the connection's ``prices`` extra on top (checked when
        the connection was read, so this never fails after a billed call). The usage records
        of this hook's answers are estimated with the same table."""
        if refresh:
            table = dict(DEFAULT_PRICES)
            table.update(prices_from_language_models(self.list_language_models()))
            table.update(self.settings.prices)
            self.transport.prices = table
        return self.transport.prices

    def test_connection(self) -> tuple[bool, str]:
        """Check the key with the free ``GET /v1/api-key``, and the management key, when the
        connection has one, by listing one collection (never a billed call)."""
        try:
            info = self.get_api_key_info()
        except XAIError as exc:
            return False, str(exc)
        problems = [
            text
            for flag, text in (
                (info.api_key_blocked, "the API key is blocked"),
                (info.api_key_disabled, "the API key is disabled"),
                (info.team_blocked, "the team is blocked"),
            )
            if flag
        ]
        if problems:
            return False, f"xAI key {info.redacted_api_key}: {'; '.join(problems)}"
        message = f"Connected to {self.settings.base_url} with key {info.redacted_api_key}"
        if self.settings.management_key:  # checked for free too: one collection listed
            try:
                self.transport.send(collection_api.collections_page(1, None))
            except XAIError as exc:
                return False, f"{message}, but the management key was refused: {exc}"
            message += f"; management key accepted by {self.settings.management_base_url}"
        return True, message


def _raw(method: str, path: str, body: Any, headers: Mapping[str, str] | None = None) -> Call[Reply]:
    """A call read as the raw reply, under its declaration when the path has one."""
    endpoint = declaration_of(method, path) or Endpoint("request", method, path)
    built = None if body is None else (lambda _settings: body)
    return Call(endpoint, _as_is, path=path, body=built, headers=dict(headers) if headers else None)


def _as_is(reply: Reply) -> Reply:
    return reply


def _on_text(on_text: Callable[[str], None] | None) -> Callable[[Any, Any], None] | None:
    """An ``on_event`` handing the first choice's text delta of each chunk to ``on_text``."""
    if on_text is None:
        return None

    def on_event(chunk: ChatCompletionChunk, _assembler: Any) -> None:
        if chunk.choices and (text := chunk.choices[0].delta.content):
            on_text(text)

    return on_event


def _run_loop(coro: Any) -> Any:
    """Run ``coro`` on a new event loop: uvloop's when it is installed (it comes with uvicorn,
    which Airflow's api-server needs; its I/O path is lighter), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


__all__ = ["StructuredResult", "XAIHook", "XAIStructuredOutputError"]
