"""XAITransport: the one place where the provider does HTTP, for the sync and the async path.

The hook owns one transport. It resolves the connection settings once (blocking or not), holds
the pooled clients (one sync client, one async client per event loop, and the extra pools a
fan-out asks for, by name, never switched behind the caller's back), runs the retry loop, bounds
what it reads and maps every failure to the typed exception tree. What to send and how to read
the answer is described without I/O by a :class:`Call`, so each sync/async pair of hook methods
is two short shells around the same call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_xai.connection.settings import ClientSettings, settings_from_connection
from airflow_provider_xai.exceptions import XAIAPIError, XAIError
from airflow_provider_xai.pipeline.body import body_arguments
from airflow_provider_xai.pipeline.errors import (
    HTTPX_FAILURES,
    error_from_httpx,
    is_retryable,
)
from airflow_provider_xai.pipeline.replies import (
    BodyLimit,
    Reply,
    aread_body,
    check_reply,
    is_event_stream,
    not_an_event_stream,
    read_body,
)
from airflow_provider_xai.pipeline.retry import RetryPolicy, backoff
from airflow_provider_xai.tracing import spans as tracing

if TYPE_CHECKING:
    from airflow_provider_xai.ratelimit.limiter import SharedRateLimiter

T = TypeVar("T")
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=32)
#: Connections per client in a wide fan-out. httpcore's pool bookkeeping runs over all its
#: connections on every request and response, so one client with 64 connections spends
#: milliseconds per request on it; :meth:`XAITransport.fanout_clients` spreads wider fan-outs
#: over several clients of at most this many connections.
FANOUT_POOL_SIZE = 16


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call described without I/O: what to send and how to read the answer.

    ``body`` builds (and validates) the JSON body once the settings are known, before anything
    is sent; ``parse`` reads a successful :class:`Reply`; ``on_error`` may turn the final API
    error (after retries) into a more precise one.
    """

    method: str
    path: str
    parse: Callable[[Reply], T]
    body: Callable[[ClientSettings], Any] | None = None
    on_error: Callable[[XAIAPIError], XAIError] | None = None


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for every client of the process.

    httpx builds a new context (loading the whole CA bundle, ~20-50 ms of CPU) for each client;
    a triggerer starting hundreds of deferred-completion triggers on one event loop would be
    blocked for seconds. An ``SSLContext`` is safe to share. Honours ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` as httpx does, as set when it is first built.
    """
    return httpx.create_ssl_context(verify=True, trust_env=True)


class XAITransport:
    """Settings, pooled clients, retries, bounded reads and error mapping for one connection.

    :param conn_id: the Airflow connection id.
    :param get_connection: blocking connection lookup (``BaseHook.get_connection``).
    :param aget_connection: async connection lookup (``BaseHook.aget_connection``).
    :param get_log: the logger retries are written to, fetched on the first retry (creating
        one costs ~0.2 ms: hundreds of triggers starting in one loop iteration would pay it).
    :param client_kwargs: extra ``httpx.Client``/``AsyncClient`` arguments.
    :param overrides: hook arguments that win over the connection (timeout, max_retries...).
    """

    def __init__(
        self,
        conn_id: str,
        *,
        get_connection: Callable[[str], Any],
        aget_connection: Callable[[str], Awaitable[Any]],
        get_log: Callable[[], logging.Logger | Any],
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        client_kwargs: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.conn_id = conn_id
        self._get_connection = get_connection
        self._aget_connection = aget_connection
        self._get_log = get_log
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.client_kwargs = dict(client_kwargs or {})
        self.overrides = overrides
        self._settings: ClientSettings | None = None
        self._policies: dict[Callable[[BaseException], bool], RetryPolicy] = {}
        self._limiter: SharedRateLimiter | None = None
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    # --- settings ------------------------------------------------------------------------------
    def _resolve(self, conn: Any) -> ClientSettings:
        settings = settings_from_connection(conn, self.conn_id, **self.overrides)
        self._settings = settings
        return settings

    @property
    def settings(self) -> ClientSettings:
        """The checked settings, read from the connection on first use (blocking)."""
        if self._settings is None:
            try:
                conn = self._get_connection(self.conn_id)
            except AirflowNotFoundException:
                conn = None
            return self._resolve(conn)
        return self._settings

    async def asettings(self) -> ClientSettings:
        """The checked settings, read without blocking the event loop (triggers, fan-out)."""
        if self._settings is None:
            try:
                conn = await self._aget_connection(self.conn_id)
            except AirflowNotFoundException:
                conn = None
            return self._resolve(conn)
        return self._settings

    def connection(self, conn_id: str) -> Any:
        """Another Airflow connection (for secrets a request needs, e.g. an MCP server's)."""
        return self._get_connection(conn_id)

    async def aconnection(self, conn_id: str) -> Any:
        """Async :meth:`connection`."""
        return await self._aget_connection(conn_id)

    def policy(self, retryable: Callable[[BaseException], bool] = is_retryable) -> RetryPolicy:
        """The retry policy for ``retryable`` failures (built once per predicate)."""
        policy = self._policies.get(retryable)
        if policy is None:
            policy = RetryPolicy(self.settings.max_retries, self.backoff_base, self.backoff_cap, retryable)
            self._policies[retryable] = policy
        return policy

    # --- the shared rate limit (ratelimit/limiter.py) -------------------------------------------
    def rate_limiter(self) -> SharedRateLimiter | None:
        """The connection's shared rate limiter (None without a client-side limit; blocking)."""
        config = self.settings.rate_limit
        if config is not None and self._limiter is None:
            from airflow_provider_xai.ratelimit.limiter import build_limiter

            redis = self._get_connection(config.redis_conn_id) if config.redis_conn_id else None
            self._limiter = build_limiter(self.settings, redis)
        return self._limiter

    async def arate_limiter(self) -> SharedRateLimiter | None:
        """Async :meth:`rate_limiter` (the store is opened in a worker thread)."""
        config = (await self.asettings()).rate_limit
        if config is not None and self._limiter is None:
            from airflow_provider_xai.ratelimit.limiter import build_limiter

            redis = await self._aget_connection(config.redis_conn_id) if config.redis_conn_id else None
            self._limiter = await asyncio.to_thread(build_limiter, self.settings, redis)
        return self._limiter

    def limited(self, s: ClientSettings, body: Any, attempt: Callable[[], T]) -> Callable[[], T]:
        """One request attempt behind the shared rate limit (``attempt`` itself without one)."""
        limiter = self.rate_limiter() if s.rate_limit is not None else None
        return attempt if limiter is None else limiter.guard(body, attempt, self._backoff)

    async def alimited(
        self, s: ClientSettings, body: Any, attempt: Callable[[], Awaitable[T]]
    ) -> Callable[[], Awaitable[T]]:
        """Async :meth:`limited`."""
        limiter = await self.arate_limiter() if s.rate_limit is not None else None
        return attempt if limiter is None else limiter.aguard(body, attempt, self._backoff)

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.backoff_base, self.backoff_cap)

    # --- clients -------------------------------------------------------------------------------
    def client_options(self, s: ClientSettings, limits: httpx.Limits = POOL_LIMITS) -> dict[str, Any]:
        """``httpx.Client``/``AsyncClient`` arguments: one builder for both kinds of client."""
        options: dict[str, Any] = {"timeout": s.httpx_timeout(), "limits": limits}
        if "verify" not in self.client_kwargs:  # see shared_ssl_context: one CA load per process
            options["verify"] = shared_ssl_context()
        options.update(self.client_kwargs)
        options.update(base_url=s.base_url, headers={**options.get("headers", {}), **s.headers()})
        return options

    @property
    def client(self) -> httpx.Client:
        """The pooled sync client (created on first use)."""
        with self._lock:
            if self._client is None or self._client.is_closed:
                self._client = httpx.Client(**self.client_options(self.settings))
            return self._client

    async def aclient(self) -> httpx.AsyncClient:
        """The pooled async client of the running event loop (each loop gets its own)."""
        settings = await self.asettings()
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None or client.is_closed:
                client = self._aclients[loop] = httpx.AsyncClient(**self.client_options(settings))
            return client

    @asynccontextmanager
    async def fanout_clients(self, width: int) -> AsyncIterator[list[httpx.AsyncClient]]:
        """Clients for ``width`` requests in flight, owned by the caller's fan-out and closed
        when it ends (so two fan-outs, even from two threads, never share or close each other's
        pools). A ``transport=`` or ``limits=`` given in ``client_kwargs`` is the user's choice:
        then the loop's own client serves the fan-out."""
        settings = await self.asettings()
        if {"transport", "limits"} & set(self.client_kwargs):
            yield [await self.aclient()]
            return
        count = -(-max(width, 1) // FANOUT_POOL_SIZE)
        per = -(-max(width, 1) // count)
        limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        clients = [httpx.AsyncClient(**self.client_options(settings, limits)) for _ in range(count)]
        try:
            yield clients
        finally:
            for client in clients:
                await client.aclose()

    def close(self) -> None:
        """Close the sync client's pooled connections."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the running event loop's async client."""
        with self._lock:
            client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # --- the retry loops -----------------------------------------------------------------------
    def _log_retry(self, exc: BaseException, attempt: int, policy: RetryPolicy, wait: float) -> None:
        self._get_log().warning(
            "xAI request failed (%s); retry %d of %d in %.2fs", exc, attempt, policy.max_retries, wait
        )
        tracing.retried(exc, attempt, wait)

    def retrying(self, attempt: Callable[[], T], policy: RetryPolicy) -> T:
        """Run ``attempt`` until it succeeds or ``policy`` gives up (then its error is raised)."""
        failures = 0
        while True:
            try:
                return attempt()
            except XAIError as exc:
                failures += 1
                if (wait := policy.delay(failures, exc)) is None:
                    raise
                self._log_retry(exc, failures, policy, wait)
                time.sleep(wait)

    async def aretrying(self, attempt: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
        """Async :meth:`retrying`: the same policy, awaiting instead of sleeping."""
        failures = 0
        while True:
            try:
                return await attempt()
            except XAIError as exc:
                failures += 1
                if (wait := policy.delay(failures, exc)) is None:
                    raise
                self._log_retry(exc, failures, policy, wait)
                await asyncio.sleep(wait)

    # --- one request -----------------------------------------------------------------------
    def send(self, call: Call[T]) -> T:
        """Send ``call`` with the retry policy; return its parsed answer or raise a typed error."""
        s = self.settings
        body = call.body(s) if call.body is not None else None
        with tracing.start(call.method, call.path, body, s) as span:
            try:
                attempt = self.limited(s, body, lambda: self._send_once(s, call.method, call.path, body))
                reply = self.retrying(attempt, self.policy())
            except XAIAPIError as exc:
                raise (call.on_error(exc) if call.on_error else exc) from None
            result = call.parse(reply)
            span.answered(result)
        return result

    async def asend(self, call: Call[T], client: httpx.AsyncClient | None = None) -> T:
        """Async :meth:`send`, on ``client`` (a fan-out's) or the event loop's own client."""
        s = await self.asettings()
        body = call.body(s) if call.body is not None else None
        client = client or await self.aclient()
        with tracing.start(call.method, call.path, body, s) as span:
            try:
                send_once = functools.partial(self._asend_once, client, s, call.method, call.path, body)
                attempt = await self.alimited(s, body, send_once)
                reply = await self.aretrying(attempt, self.policy())
            except XAIAPIError as exc:
                raise (call.on_error(exc) if call.on_error else exc) from None
            result = call.parse(reply)
            span.answered(result)
        return result

    def _send_once(self, s: ClientSettings, method: str, path: str, body: Any) -> Reply:
        try:
            client = self.client
            response = client.send(client.build_request(method, path, **body_arguments(body)), stream=True)
            content = read_body(response, BodyLimit(s.max_response_bytes))
        except HTTPX_FAILURES as exc:
            raise error_from_httpx(exc, s.url(path)) from None
        return check_reply(Reply(response.status_code, response.headers, content))

    async def _asend_once(
        self, client: httpx.AsyncClient, s: ClientSettings, method: str, path: str, body: Any
    ) -> Reply:
        try:
            request = client.build_request(method, path, **body_arguments(body, asynchronous=True))
            response = await client.send(request, stream=True)
            content = await aread_body(response, BodyLimit(s.max_response_bytes))
        except HTTPX_FAILURES as exc:
            raise error_from_httpx(exc, s.url(path)) from None
        return check_reply(Reply(response.status_code, response.headers, content))

    # --- event streams -------------------------------------------------------------------------
    def open_stream(self, path: str, body: Any) -> httpx.Response:
        """One attempt to open an event stream (an error answer is read and raised typed)."""
        s = self.settings
        return self.limited(s, body, lambda: self._open_stream(s, path, body))()

    def _open_stream(self, s: ClientSettings, path: str, body: Any) -> httpx.Response:
        try:
            client = self.client
            response = client.send(client.build_request("POST", path, **body_arguments(body)), stream=True)
            if response.status_code < 400 and is_event_stream(response):
                return response
            content = read_body(response, BodyLimit(s.max_response_bytes))
        except HTTPX_FAILURES as exc:
            raise error_from_httpx(exc, s.url(path)) from None
        reply = check_reply(Reply(response.status_code, response.headers, content))
        raise not_an_event_stream(reply)

    async def aopen_stream(self, path: str, body: Any, client: httpx.AsyncClient | None = None) -> httpx.Response:
        """Async :meth:`open_stream`."""
        s = await self.asettings()
        client = client or await self.aclient()
        return await (await self.alimited(s, body, lambda: self._aopen_stream(s, client, path, body)))()

    async def _aopen_stream(self, s: ClientSettings, client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
        try:
            request = client.build_request("POST", path, **body_arguments(body, asynchronous=True))
            response = await client.send(request, stream=True)
            if response.status_code < 400 and is_event_stream(response):
                return response
            content = await aread_body(response, BodyLimit(s.max_response_bytes))
        except HTTPX_FAILURES as exc:
            raise error_from_httpx(exc, s.url(path)) from None
        reply = check_reply(Reply(response.status_code, response.headers, content))
        raise not_an_event_stream(reply)

    def stream_limit(self) -> BodyLimit:
        """The bound on one event stream: total size and line length."""
        s = self.settings
        return BodyLimit(s.max_response_bytes, s.max_sse_line_length)


__all__ = ["Call", "XAITransport", "shared_ssl_context"]
