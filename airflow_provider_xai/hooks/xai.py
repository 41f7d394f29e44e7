"""XAIHook: the xAI REST API over pooled httpx clients, sync and async, with retries.

Both paths share one policy (``hooks/policy.py``): the same settings, error mapping,
retry rules and stream assembly. Request bodies are validated before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import httpx
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from pydantic import BaseModel
from tenacity import AsyncRetrying, Retrying

from airflow_provider_xai.exceptions import (
    XAIConfigurationError,
    XAIDeferredExpiredError,
    XAIError,
    XAINotFoundError,
    XAIStructuredOutputError,
)
from airflow_provider_xai.hooks.batch import XAIBatchMixin
from airflow_provider_xai.hooks.fanout import XAIFanOutMixin, current_lane
from airflow_provider_xai.hooks.policy import (
    ClientSettings,
    areplay_first,
    body_arguments,
    error_from_response,
    error_from_transport,
    is_retryable,
    replay_first,
    retry_policy,
    settings_from_connection,
    shared_ssl_context,
)
from airflow_provider_xai.hooks.streaming import XAIStreamMixin
from airflow_provider_xai.schemas import (
    ApiKeyInfo,
    ChatCompletion,
    ChatRequest,
    DeferredRequest,
    LanguageModel,
    LanguageModelList,
    Model,
    ModelList,
    TokenizeResponse,
    build_chat_request,
    parse_response,
)
from airflow_provider_xai.structured import OutputSpec
from airflow_provider_xai.usage import DEFAULT_PRICES, Price, parse_prices, prices_from_language_models

M = TypeVar("M", bound=BaseModel)
RequestLike = ChatRequest | Mapping[str, Any]
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=32)


@dataclass(frozen=True)
class StructuredResult:
    """A validated structured answer (JSON-safe ``value``) and the completion it came from."""

    value: Any
    completion: ChatCompletion


class XAIHook(XAIStreamMixin, XAIFanOutMixin, XAIBatchMixin, BaseHook):
    """Interact with xAI's Grok API (``https://api.x.ai/v1``).

    :param xai_conn_id: connection id; its password is the API key (else ``XAI_API_KEY``).
    :param timeout: per-request read timeout in seconds (default: connection extra, then 600).
    :param max_retries: retries of retryable failures (default: connection extra, then 2).
    :param backoff_base: first backoff in seconds when the server sends no ``retry-after``.
    :param backoff_cap: longest backoff in seconds.
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
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        client_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.xai_conn_id = xai_conn_id
        self._timeout = timeout
        self._max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.client_kwargs = dict(client_kwargs or {})
        self._settings: ClientSettings | None = None
        self._prices: dict[str, Price] | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(xai_conn_id={self.xai_conn_id!r})"

    # --- connection and clients ----------------------------------------------------------------
    def _settings_from(self, conn: Any) -> ClientSettings:
        settings = settings_from_connection(
            conn, self.xai_conn_id, timeout=self._timeout, max_retries=self._max_retries
        )
        _mask(settings.api_key)
        self._settings = settings
        return settings

    @property
    def settings(self) -> ClientSettings:
        """Connection settings (looked up once; blocking, so async code uses :meth:`aget_settings`)."""
        if self._settings is None:
            try:
                conn = self.get_connection(self.xai_conn_id)
            except AirflowNotFoundException:
                conn = None
            self._settings_from(conn)
        assert self._settings is not None
        return self._settings

    async def aget_settings(self) -> ClientSettings:
        """Settings looked up without blocking the event loop (for triggers)."""
        if self._settings is None:
            try:
                conn = await self.aget_connection(self.xai_conn_id)
            except AirflowNotFoundException:
                conn = None
            self._settings_from(conn)
        assert self._settings is not None
        return self._settings

    @property
    def default_model(self) -> str:
        return self.settings.default_model

    def _client_options(self, s: ClientSettings) -> dict[str, Any]:
        options: dict[str, Any] = {"timeout": s.httpx_timeout(), "limits": POOL_LIMITS}
        if "verify" not in self.client_kwargs:  # see shared_ssl_context: one CA load per process
            options["verify"] = shared_ssl_context()
        options.update(self.client_kwargs)
        options.update(base_url=s.base_url, headers={**options.get("headers", {}), **s.headers()})
        return options

    def get_conn(self) -> httpx.Client:
        """The pooled sync client (created on first use, reused afterwards)."""
        return self._client

    @cached_property
    def _client(self) -> httpx.Client:
        s = self.settings
        return httpx.Client(**self._client_options(s))

    async def get_async_conn(self) -> httpx.AsyncClient:
        """The pooled async client of the running event loop (or of this fan-out lane)."""
        lane = current_lane.get()
        if lane is not None:
            return lane
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop or self._aclient.is_closed:
            s = await self.aget_settings()
            self._aclient = httpx.AsyncClient(**self._client_options(s))
            self._aclient_loop = loop
        return self._aclient

    def close(self) -> None:
        """Close the sync client's pooled connections."""
        if "_client" in self.__dict__:
            self.__dict__.pop("_client").close()

    async def aclose(self) -> None:
        """Close the async client's pooled connections."""
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    def _retrying(self, retryable: Callable[[BaseException], bool] = is_retryable) -> dict[str, Any]:
        return retry_policy(
            self.settings.max_retries,
            self.log,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
            retryable=retryable,
        )

    # --- raw requests ------------------------------------------------------------------------
    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.headers, response.content, self.settings.api_key
            )
        return response

    def _request_once(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            response = self._client.request(method, path, **body_arguments(body))
        except httpx.TransportError as exc:
            raise error_from_transport(
                exc, f"{self.settings.base_url}/{path}", self.settings.api_key
            ) from None
        return self._check(response)

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """Send one API request with the retry policy; raise a typed error on failure."""
        try:  # first attempt without tenacity's set-up cost (see policy.replay_first)
            return self._request_once(method, path, body)
        except XAIError as exc:
            if not is_retryable(exc):
                raise
            failure = exc
        retry = Retrying(**self._retrying())
        return retry(replay_first(failure, self._request_once), method, path, body)

    async def _arequest_once(self, method: str, path: str, body: Any = None) -> httpx.Response:
        client = await self.get_async_conn()
        try:
            response = await client.request(method, path, **body_arguments(body, asynchronous=True))
        except httpx.TransportError as exc:
            raise error_from_transport(
                exc, f"{self.settings.base_url}/{path}", self.settings.api_key
            ) from None
        return self._check(response)

    async def arequest(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """Async :meth:`request`."""
        await self.aget_settings()
        try:  # first attempt without tenacity's set-up cost (see policy.replay_first)
            return await self._arequest_once(method, path, body)
        except XAIError as exc:
            if not is_retryable(exc):
                raise
            failure = exc
        retry = AsyncRetrying(**self._retrying())
        return await retry(areplay_first(failure, self._arequest_once), method, path, body)

    # --- chat ------------------------------------------------------------------------------------
    def build_request(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatRequest:
        """Validate a chat request, filling in the connection's default model."""
        if (
            not isinstance(request, ChatRequest)
            and "model" not in kwargs
            and not (request.get("model") if isinstance(request, Mapping) else None)
        ):
            kwargs["model"] = self.default_model
        return build_chat_request(request, **kwargs)

    def chat(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatCompletion:
        """Create a chat completion. Accepts a :class:`ChatRequest`, a dict, or fields as kwargs."""
        body = self.build_request(request, **kwargs).to_body()
        return parse_response(
            ChatCompletion, self.request("POST", "chat/completions", body).content, "completion"
        )

    async def achat(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatCompletion:
        """Async :meth:`chat`."""
        await self.aget_settings()
        body = self.build_request(request, **kwargs).to_body()
        response = await self.arequest("POST", "chat/completions", body)
        return parse_response(ChatCompletion, response.content, "completion")

    # --- structured output -----------------------------------------------------------------------
    def _structured_request(
        self, request: RequestLike | None, kwargs: dict[str, Any], output: Any
    ) -> tuple[ChatRequest, OutputSpec]:
        spec = output if isinstance(output, OutputSpec) else OutputSpec.from_user(output)
        if spec is None:
            raise XAIError("structured output needs a pydantic model, a JSON schema or 'json_object'")
        return self.build_request(request, response_format=spec.response_format, **kwargs), spec

    def chat_structured(
        self, request: RequestLike | None = None, /, *, output: Any, **kwargs: Any
    ) -> StructuredResult:
        """Ask for an answer matching ``output`` (pydantic model class, JSON schema or
        ``"json_object"``); return the validated value and the completion.

        Raises :class:`XAIStructuredOutputError` (carrying the billed completion) if the
        answer does not validate.
        """
        req, spec = self._structured_request(request, kwargs, output)
        completion = self.chat(req)
        return StructuredResult(spec.parse(completion.text, completion), completion)

    async def achat_structured(
        self, request: RequestLike | None = None, /, *, output: Any, **kwargs: Any
    ) -> StructuredResult:
        """Async :meth:`chat_structured`."""
        await self.aget_settings()
        req, spec = self._structured_request(request, kwargs, output)
        completion = await self.achat(req)
        return StructuredResult(spec.parse(completion.text, completion), completion)

    # --- deferred completions ----------------------------------------------------------------
    def start_deferred(self, request: RequestLike | None = None, /, **kwargs: Any) -> str:
        """Submit a deferred completion; return its ``request_id`` (poll with :meth:`get_deferred`)."""
        body = self.build_request(request, **kwargs).to_body()
        body["deferred"] = True
        response = self.request("POST", "chat/completions", body)
        return parse_response(DeferredRequest, response.content, "deferred submission").request_id

    async def astart_deferred(self, request: RequestLike | None = None, /, **kwargs: Any) -> str:
        """Async :meth:`start_deferred`."""
        await self.aget_settings()
        body = self.build_request(request, **kwargs).to_body()
        body["deferred"] = True
        response = await self.arequest("POST", "chat/completions", body)
        return parse_response(DeferredRequest, response.content, "deferred submission").request_id

    @staticmethod
    def _deferred_result(response: httpx.Response) -> ChatCompletion | None:
        if response.status_code == 202:
            return None
        return parse_response(ChatCompletion, response.content, "deferred completion")

    def get_deferred(self, request_id: str) -> ChatCompletion | None:
        """The finished completion, or None while xAI still answers 202 (pending).

        xAI hands a result out once; afterwards (or after 24 h) it answers 404, raised as
        :class:`XAIDeferredExpiredError`.
        """
        try:
            return self._deferred_result(self.request("GET", f"chat/deferred-completion/{request_id}"))
        except XAINotFoundError as exc:
            raise _expired(request_id, exc) from None

    async def aget_deferred(self, request_id: str) -> ChatCompletion | None:
        """Async :meth:`get_deferred`."""
        try:
            response = await self.arequest("GET", f"chat/deferred-completion/{request_id}")
        except XAINotFoundError as exc:
            raise _expired(request_id, exc) from None
        return self._deferred_result(response)

    # --- models, key, tokens --------------------------------------------------------------------
    def _get(self, path: str, model: type[M]) -> M:
        result: M = parse_response(model, self.request("GET", path).content, path)
        return result

    def list_models(self) -> list[Model]:
        """``GET /v1/models``."""
        return self._get("models", ModelList).data

    def list_language_models(self) -> list[LanguageModel]:
        """``GET /v1/language-models``: models with prices (US cents per 100 million tokens)."""
        return self._get("language-models", LanguageModelList).models

    def get_language_model(self, model: str) -> LanguageModel:
        """``GET /v1/language-models/{model}``."""
        return self._get(f"language-models/{model}", LanguageModel)

    def get_api_key_info(self) -> ApiKeyInfo:
        """``GET /v1/api-key``: free; tells whether the key or team is blocked."""
        return self._get("api-key", ApiKeyInfo)

    async def aget_api_key_info(self) -> ApiKeyInfo:
        """Async :meth:`get_api_key_info`."""
        return parse_response(ApiKeyInfo, (await self.arequest("GET", "api-key")).content, "api-key")

    def tokenize(self, text: str, model: str | None = None) -> TokenizeResponse:
        """``POST /v1/tokenize-text``: how ``model`` splits ``text`` into tokens (not billed)."""
        body = {"text": text, "model": model or self.default_model}
        return parse_response(TokenizeResponse, self.request("POST", "tokenize-text", body).content, "tokens")

    def get_prices(self, *, refresh: bool = False) -> dict[str, Price]:
        """Price table for cost estimates: built-in prices, then (with ``refresh``) xAI's
        ``/v1/language-models``, then the connection's ``prices`` extra on top."""
        if refresh or self._prices is None:
            table = dict(DEFAULT_PRICES)
            if refresh:
                table.update(prices_from_language_models(self.list_language_models()))
            try:
                table.update(parse_prices(self.settings.prices))
            except (TypeError, ValueError) as exc:
                raise XAIConfigurationError(
                    f"Connection {self.xai_conn_id!r}: bad 'prices' extra: {exc}"
                ) from None
            self._prices = table
        return self._prices

    def test_connection(self) -> tuple[bool, str]:
        """Check the key with the free ``GET /v1/api-key`` (never a billed call)."""
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
        return True, f"Connected to {self.settings.base_url} with key {info.redacted_api_key}"


def _expired(request_id: str, exc: XAINotFoundError) -> XAIDeferredExpiredError:
    return XAIDeferredExpiredError(
        f"Deferred completion {request_id} is unknown to xAI: already collected, expired "
        f"(results are kept 24 h) or never created. xAI said: {exc.xai_message}",
        status=exc.status,
        code=exc.code,
        request_id=exc.request_id,
    )


def _mask(secret: str) -> None:
    """Register the key with Airflow's secrets masker as soon as it is read."""
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # masking must never stop a task; the key is still kept out of messages
        pass


__all__ = ["StructuredResult", "XAIHook", "XAIStructuredOutputError"]
