"""XAITransport: the one road every xAI call takes, plain or streamed, sync or async.

A :class:`~airflow_provider_xai.pipeline.call.Call` says what to send and how to read the
answer. The transport resolves the connection's settings once, builds the call's body once,
runs the retry loop around one attempt (send, read within bounds, map failures to the typed
exception tree, parse or fold the event stream), then turns the billed answer into its usage
record through the endpoint's declaration. Layers (tracing, the shared rate limit) wrap the
call and each attempt (:mod:`airflow_provider_xai.pipeline.layers`); the transport imports
none of them. Sync and async differ only in the I/O: opening, reading, sleeping.

- :meth:`XAITransport.send` / :meth:`~XAITransport.asend`: the answer (a streamed call is read
  to its end, ``on_event`` seeing each event);
- :meth:`XAITransport.iterate` / :meth:`~XAITransport.aiterate`: a streamed call's events,
  handed to the caller as they come (only opening the stream is retried).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_xai.connection.settings import ClientSettings, settings_from_connection
from airflow_provider_xai.exceptions import XAIAPIError, XAIConfigurationError, XAIError, XAIRateLimitError
from airflow_provider_xai.pipeline.body import body_arguments, close_files
from airflow_provider_xai.pipeline.call import Assembler, Call, Sink
from airflow_provider_xai.pipeline.errors import HTTPX_FAILURES, error_from_httpx, is_retryable
from airflow_provider_xai.pipeline.layers import Exchange, Layer, Scope, scopes_of
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
from airflow_provider_xai.pipeline.sse import aiter_sse_data, iter_sse_data, stream_retryable
from airflow_provider_xai.pricing import DEFAULT_PRICES, Price

T = TypeVar("T")
log = logging.getLogger(__name__)
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=32)
#: Connections per client in a wide fan-out. httpcore's pool bookkeeping runs over all its
#: connections on every request and response, so one client with 64 connections spends
#: milliseconds per request on it; :meth:`XAITransport.fanout_clients` spreads wider fan-outs
#: over several clients of at most this many connections.
FANOUT_POOL_SIZE = 16


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for every client of the process.

    httpx builds a new context (loading the whole CA bundle, ~20-50 ms of CPU) for each client;
    a triggerer starting hundreds of deferred-completion triggers on one event loop would be
    blocked for seconds. An ``SSLContext`` is safe to share. Honours ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` as httpx does, as set when it is first built.
    """
    return httpx.create_ssl_context(verify=True, trust_env=True)


class ClientCookies(httpx.Cookies):
    """The cookies of a client, read from a response only when it sets one.

    httpx hands every response to its client's cookies, which build a urllib request and an
    email ``Message`` of all the headers to look for ``Set-Cookie`` (~20 us a call); API answers
    seldom carry one. A response with ``Set-Cookie`` (or ``Set-Cookie2``) is read as before.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


C = TypeVar("C", httpx.Client, httpx.AsyncClient)


def new_client(kind: type[C], options: Mapping[str, Any]) -> C:
    """A ``kind`` client made with ``options``, its cookies kept in :class:`ClientCookies` (the
    same jar: httpx has no argument for the cookies object itself)."""
    client = kind(**options)
    client._cookies = ClientCookies(client.cookies.jar)
    return client


class XAITransport:
    """Settings, pooled clients and the one send of one connection.

    :param conn_id: the Airflow connection id.
    :param get_connection: blocking connection lookup (``BaseHook.get_connection``).
    :param aget_connection: async connection lookup (``BaseHook.aget_connection``).
    :param get_log: the logger retries are written to, fetched on the first retry (creating
        one costs ~0.2 ms: hundreds of triggers starting in one loop iteration would pay it).
    :param layers: what wraps every call (tracing, the shared rate limit), outermost first.
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
        layers: tuple[Layer, ...] = (),
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        client_kwargs: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.conn_id = conn_id
        self._get_connection = get_connection
        self._aget_connection = aget_connection
        self._get_log = get_log
        self.layers = layers
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.client_kwargs = dict(client_kwargs or {})
        self.overrides = overrides
        self._settings: ClientSettings | None = None
        self._prices: dict[str, Price] | None = None
        self._policies: dict[Callable[[BaseException], bool], RetryPolicy] = {}
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        #: Clients of the other hosts (``"management"``, ``"media"``), made on first use.
        self._host_clients: dict[str, httpx.Client] = {}
        self._host_aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
            weakref.WeakKeyDictionary()
        )
        #: The URL of each declared endpoint path, merged once with each client's base URL.
        self._urls: weakref.WeakKeyDictionary[httpx.Client | httpx.AsyncClient, dict[str, httpx.URL]] = (
            weakref.WeakKeyDictionary()
        )

    # --- settings ------------------------------------------------------------------------------
    def _resolve(self, conn: Any) -> ClientSettings:
        self._settings = settings_from_connection(conn, self.conn_id, **self.overrides)
        return self._settings

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
        """The checked settings, read without blocking the event loop (triggers, fan-out).

        Under ``airflow dags test`` the async lookup may not see a connection that the blocking
        one finds (it only asks the API server); then the blocking lookup runs in a thread, so
        a connection stored in the metadata DB is found either way."""
        if self._settings is None:
            try:
                conn = await self._aget_connection(self.conn_id)
            except AirflowNotFoundException:
                conn = None
            try:
                return self._resolve(conn)
            except XAIConfigurationError:
                if conn is not None and conn.password:
                    raise
                return await asyncio.to_thread(lambda: self.settings)
        return self._settings

    def connection(self, conn_id: str) -> Any:
        """Another Airflow connection (for secrets a request needs, e.g. an MCP server's)."""
        return self._get_connection(conn_id)

    async def aconnection(self, conn_id: str) -> Any:
        """Async :meth:`connection`."""
        return await self._aget_connection(conn_id)

    @property
    def prices(self) -> dict[str, Price]:
        """The price table usage records are estimated with when xAI sends no cost: the
        built-in prices with the connection's ``prices`` extra on top (see ``XAIHook.get_prices``)."""
        if self._prices is None:
            self._prices = {**DEFAULT_PRICES, **self.settings.prices}
        return self._prices

    @prices.setter
    def prices(self, table: dict[str, Price]) -> None:
        self._prices = table

    def policy(self, retryable: Callable[[BaseException], bool] = is_retryable) -> RetryPolicy:
        """The retry policy for ``retryable`` failures (built once per predicate)."""
        policy = self._policies.get(retryable)
        if policy is None:
            policy = RetryPolicy(self.settings.max_retries, self.backoff_base, self.backoff_cap, retryable)
            self._policies[retryable] = policy
        return policy

    def backoff(self, attempt: int) -> float:
        """The jittered backoff before retry ``attempt`` (for layers that need one, e.g. a 429
        that came without ``retry-after``)."""
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

    def host_options(self, s: ClientSettings, host: str) -> dict[str, Any]:
        """Client arguments for another host: the Management API with the management key, or
        xAI's media URLs (absolute, and sent no credentials at all)."""
        options = self.client_options(s)
        if host == "management":
            options.update(base_url=s.management_base_url, headers=s.management_headers(self.conn_id))
        else:
            options.pop("base_url")
            options["headers"] = {"User-Agent": s.headers()["User-Agent"]}
        return options

    def host_client(self, host: str) -> httpx.Client:
        """The sync client of ``host`` (``"api"``: :attr:`client`)."""
        if host == "api":
            return self.client
        with self._lock:
            client = self._host_clients.get(host)
            if client is None or client.is_closed:
                client = self._host_clients[host] = new_client(httpx.Client, self.host_options(self.settings, host))
            return client

    async def ahost_client(self, host: str, default: httpx.AsyncClient | None = None) -> httpx.AsyncClient:
        """The running loop's async client of ``host`` (``"api"``: ``default`` or :meth:`aclient`)."""
        if host == "api":
            return default or await self.aclient()
        settings = await self.asettings()
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._host_aclients.setdefault(loop, {})
            client = clients.get(host)
            if client is None or client.is_closed:
                client = clients[host] = new_client(httpx.AsyncClient, self.host_options(settings, host))
            return client

    @property
    def client(self) -> httpx.Client:
        """The pooled sync client (created on first use)."""
        client = self._client
        if client is not None and not client.is_closed:  # the usual case: no lock taken
            return client
        with self._lock:
            if self._client is None or self._client.is_closed:
                self._client = new_client(httpx.Client, self.client_options(self.settings))
            return self._client

    async def aclient(self) -> httpx.AsyncClient:
        """The pooled async client of the running event loop (each loop gets its own)."""
        settings = await self.asettings()
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None or client.is_closed:
                client = self._aclients[loop] = new_client(httpx.AsyncClient, self.client_options(settings))
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
        clients = [new_client(httpx.AsyncClient, self.client_options(settings, limits)) for _ in range(count)]
        try:
            yield clients
        finally:
            for client in clients:
                await client.aclose()

    def close(self) -> None:
        """Close the sync clients' pooled connections."""
        with self._lock:
            clients = [self._client, *self._host_clients.values()]
            self._client, self._host_clients = None, {}
        for client in clients:
            if client is not None:
                client.close()

    async def aclose(self) -> None:
        """Close the running event loop's async clients."""
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = [self._aclients.pop(loop, None), *self._host_aclients.pop(loop, {}).values()]
        for client in clients:
            if client is not None:
                await client.aclose()

    # --- the one send ------------------------------------------------------------------------
    def send(self, call: Call[T]) -> T:
        """Send ``call`` with the retry policy; return its answer or raise a typed error."""
        ex = _exchange(call, self.settings, self.prices)
        scopes = scopes_of(self.layers, ex)
        with _scoped(scopes) as finish:
            try:
                self.host_client(call.endpoint.host)  # made now, not after a rate-limit slot (as asend)
                result: T = self._retrying(ex, scopes, lambda: _through(scopes, ex, lambda: self._attempt(ex)))
            except XAIError as exc:
                self._billed_failure(ex, exc, scopes)
                raise _final(call, exc) from None
            for scope in scopes:
                scope.answered()
            finish()
        return result

    async def asend(self, call: Call[T], client: httpx.AsyncClient | None = None) -> T:
        """Async :meth:`send`, on ``client`` (a fan-out's) or the event loop's own client."""
        s = await self.asettings()
        ex = _exchange(call, s, self.prices)
        scopes = scopes_of(self.layers, ex)
        http = await self.ahost_client(call.endpoint.host, client)
        with _scoped(scopes) as finish:
            try:
                attempt = functools.partial(_athrough, scopes, ex, lambda: self._aattempt(ex, http))
                result: T = await self._aretrying(ex, scopes, attempt)
            except XAIError as exc:
                await self._abilled_failure(ex, exc, scopes)
                raise _final(call, exc) from None
            for scope in scopes:
                await scope.aanswered()
            finish()
        return result

    def iterate(self, call: Call[T]) -> Generator[Any, None, T]:
        """A streamed call's typed events as they come; returns the answer. Opening the stream
        is retried; once events flow, a stream that breaks raises typed (never half an answer)."""
        ex = _exchange(call, self.settings, self.prices)
        scopes = scopes_of(self.layers, ex)
        with _scoped(scopes, current=False) as finish:
            try:
                self.host_client(call.endpoint.host)
                with _active(scopes):
                    response = self._retrying(ex, scopes, lambda: _through(scopes, ex, lambda: self._open(ex)))
                assembler = _assembler(ex)
                yield from self._fold(ex, response, assembler)
                result: T = self._answer(ex, assembler.result())
            except XAIError as exc:
                self._billed_failure(ex, exc, scopes)
                raise _final(call, exc) from None
            for scope in scopes:
                scope.answered()
            finish()
        return result

    async def aiterate(self, call: Call[T], sink: list[T] | None = None) -> AsyncGenerator[Any, None]:
        """Async :meth:`iterate`; an async generator cannot return, so the answer is appended to
        ``sink`` when given."""
        s = await self.asettings()
        ex = _exchange(call, s, self.prices)
        scopes = scopes_of(self.layers, ex)
        http = await self.ahost_client(call.endpoint.host)
        with _scoped(scopes, current=False) as finish:
            try:
                with _active(scopes):
                    opening = functools.partial(_athrough, scopes, ex, lambda: self._aopen(ex, http))
                    response = await self._aretrying(ex, scopes, opening)
                assembler = _assembler(ex)
                async for event in self._afold(ex, response, assembler):
                    yield event
                result = self._answer(ex, assembler.result())
            except XAIError as exc:
                await self._abilled_failure(ex, exc, scopes)
                raise _final(call, exc) from None
            for scope in scopes:
                await scope.aanswered()
            finish()
        if sink is not None:
            sink.append(result)

    # --- retries ---------------------------------------------------------------------------------
    def _retrying(self, ex: Exchange, scopes: list[Scope], attempt: Callable[[], T]) -> T:
        failures = 0
        while True:
            try:
                return attempt()
            except XAIError as exc:
                failures += 1
                if (wait := self._delay(ex, failures, exc)) is None:
                    raise
                self._retried(scopes, exc, failures, wait)
                time.sleep(wait)

    async def _aretrying(self, ex: Exchange, scopes: list[Scope], attempt: Callable[[], Awaitable[T]]) -> T:
        failures = 0
        while True:
            try:
                return await attempt()
            except XAIError as exc:
                failures += 1
                if (wait := self._delay(ex, failures, exc)) is None:
                    raise
                self._retried(scopes, exc, failures, wait)
                await asyncio.sleep(wait)

    def _delay(self, ex: Exchange, failures: int, exc: XAIError) -> float | None:
        """Seconds before the next attempt, or None to give up: a stream that began is sent
        again only when its call is restartable. A 429 is counted on the exchange."""
        ex.rate_limited += isinstance(exc, XAIRateLimitError)
        if ex.started and not ex.call.restartable:
            return None
        return self.policy(stream_retryable if ex.call.restartable else is_retryable).delay(failures, exc)

    def _retried(self, scopes: list[Scope], exc: XAIError, attempt: int, wait: float) -> None:
        self._get_log().warning(
            "xAI request failed (%s); retry %d of %d in %.2fs", exc, attempt, self.settings.max_retries, wait
        )
        for scope in scopes:
            scope.retried(exc, attempt, wait)

    # --- one attempt (the I/O leaves) --------------------------------------------------------------
    def _attempt(self, ex: Exchange) -> Any:
        if (supplied := _supplied(ex)) is not None:  # answered in the triggerer: read, not sent
            return self._whole(ex, supplied)
        response = self._open(ex)
        if ex.call.sink is not None:
            sink, ex.request_id = ex.call.sink(), response.headers.get("x-request-id")
            with _typed_failures(ex), _discarded_on_failure(sink):
                read_body(response, self._limit(ex), sink.write)
            return self._answer(ex, sink.result())
        if ex.call.stream is None:
            with _typed_failures(ex):
                content = read_body(response, self._limit(ex))
            return self._whole(ex, Reply(response.status_code, response.headers, content))
        assembler = _assembler(ex)
        for _ in self._fold(ex, response, assembler):
            pass
        return self._answer(ex, assembler.result())

    async def _aattempt(self, ex: Exchange, client: httpx.AsyncClient) -> Any:
        if (supplied := _supplied(ex)) is not None:
            return self._whole(ex, supplied)
        response = await self._aopen(ex, client)
        if ex.call.sink is not None:
            sink, ex.request_id = ex.call.sink(), response.headers.get("x-request-id")
            with _typed_failures(ex), _discarded_on_failure(sink):
                await aread_body(response, self._limit(ex), sink.write)
            return self._answer(ex, sink.result())
        if ex.call.stream is None:
            with _typed_failures(ex):
                content = await aread_body(response, self._limit(ex))
            return self._whole(ex, Reply(response.status_code, response.headers, content))
        assembler = _assembler(ex)
        async for _ in self._afold(ex, response, assembler):
            pass
        return self._answer(ex, assembler.result())

    def _open(self, ex: Exchange) -> httpx.Response:
        """Send the request; an error status (or a stream that is none) is read and raised typed."""
        call = ex.call
        with _typed_failures(ex):
            client = self.host_client(call.endpoint.host)
            arguments = body_arguments(ex.body)
            try:
                url = self._url(call, client)
                request = client.build_request(call.endpoint.method, url, **_with_headers(call, arguments))
                response = client.send(request, stream=True)
            finally:
                close_files(arguments)
            if not _is_error(ex, response):
                return response
            content = read_body(response, self._limit(ex))
        raise _refusal(Reply(response.status_code, response.headers, content))

    async def _aopen(self, ex: Exchange, client: httpx.AsyncClient) -> httpx.Response:
        call = ex.call
        with _typed_failures(ex):
            arguments = body_arguments(ex.body, asynchronous=True)
            try:
                url = self._url(call, client)
                request = client.build_request(call.endpoint.method, url, **_with_headers(call, arguments))
                response = await client.send(request, stream=True)
            finally:
                close_files(arguments)
            if not _is_error(ex, response):
                return response
            content = await aread_body(response, self._limit(ex))
        raise _refusal(Reply(response.status_code, response.headers, content))

    def _url(self, call: Call[Any], client: httpx.Client | httpx.AsyncClient) -> httpx.URL | str:
        """Where ``call`` is sent. An endpoint's declared path (no ids in it) is merged with the
        client's base URL once per client, since httpx parses both URLs on every request (~20 us);
        a path with ids, or an absolute URL, is merged by httpx as it comes."""
        if call.url or call.path:
            return call.target
        urls = self._urls.get(client)
        if urls is None:
            urls = self._urls.setdefault(client, {})
        url = urls.get(call.endpoint.path)
        if url is None:
            url = urls[call.endpoint.path] = client.build_request(call.endpoint.method, call.endpoint.path).url
        return url

    def _whole(self, ex: Exchange, reply: Reply) -> Any:
        assert ex.call.read is not None
        reply = check_reply(reply)
        ex.request_id = reply.headers.get("x-request-id")
        return self._answer(ex, ex.call.read(reply))

    def _fold(self, ex: Exchange, response: httpx.Response, assembler: Assembler[Any]) -> Iterator[Any]:
        """Feed an open event stream to ``assembler``, yielding each typed event."""
        ex.request_id, ex.started = response.headers.get("x-request-id"), True
        data = iter_sse_data(response, self._limit(ex, stream=True))
        try:
            # The terminal event ends the answer, [DONE] or not (the assembler ignores what
            # follows); the rest of the body is still read so the connection returns to the pool.
            for payload in data:
                if (event := _feed(assembler, payload)) is not None:
                    _tell(ex, event, assembler)
                    yield event
        finally:
            data.close()

    async def _afold(
        self, ex: Exchange, response: httpx.Response, assembler: Assembler[Any]
    ) -> AsyncGenerator[Any, None]:
        ex.request_id, ex.started = response.headers.get("x-request-id"), True
        data = aiter_sse_data(response, self._limit(ex, stream=True))
        try:
            async for payload in data:
                if (event := _feed(assembler, payload)) is not None:
                    _tell(ex, event, assembler)
                    yield event
        finally:
            await data.aclose()

    def _limit(self, ex: Exchange, *, stream: bool = False) -> BodyLimit:
        s = ex.settings
        max_bytes = ex.call.max_bytes or s.max_response_bytes
        return BodyLimit(max_bytes, s.max_sse_line_length if stream else None, s.deadline)

    # --- answers and their usage ---------------------------------------------------------------
    def _answer(self, ex: Exchange, result: Any) -> Any:
        """Keep the answer on the exchange; a billed answer gets the exchange's usage record
        (read once, when first asked for) for whoever records it."""
        ex.answer = result
        if ex.call.endpoint.record is not None and hasattr(result, "attach_usage"):
            result.attach_usage(ex.usage_reader())
        return result

    def _billed_failure(self, ex: Exchange, exc: XAIError, scopes: list[Scope]) -> None:
        """A failure that came with a billed answer (a stream that failed after xAI billed it):
        its usage is read and handed to the layers like any answer's."""
        if self._billed(ex, exc):
            for scope in scopes:
                scope.answered()

    async def _abilled_failure(self, ex: Exchange, exc: XAIError, scopes: list[Scope]) -> None:
        if self._billed(ex, exc):
            for scope in scopes:
                await scope.aanswered()

    def _billed(self, ex: Exchange, exc: XAIError) -> bool:
        if exc.billed is None or getattr(exc.billed, "usage", None) is None:
            return False
        try:
            self._answer(ex, exc.billed)
        except Exception:  # the usage of a failed answer is best effort: the error is what counts
            log.debug("xAI usage of a failed answer could not be read", exc_info=True)
            return False
        return ex.record is not None


def _supplied(ex: Exchange) -> Reply | None:
    """The answer a layer supplied for this attempt, taken once (an answer that cannot be read
    is not read again: a retry sends the request)."""
    supplied, ex.supplied = ex.supplied, None
    return supplied


def _exchange(call: Call[Any], settings: ClientSettings, prices: Mapping[str, Price]) -> Exchange:
    return Exchange(call, settings, call.body(settings) if call.body is not None else None, prices)


# --- pure helpers ----------------------------------------------------------------------------------
class _typed_failures:
    """Transport failures (refused, dropped, timed out, undecodable) as the typed errors (a
    class rather than a generator: it wraps every send and every read)."""

    __slots__ = ("ex",)

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, HTTPX_FAILURES):
            raise error_from_httpx(exc, self.ex.settings.url(self.ex.call.target)) from None


@contextmanager
def _discarded_on_failure(sink: Sink[Any]) -> Iterator[None]:
    """A sink whose attempt failed drops what it took (the next attempt gets a new one)."""
    try:
        yield
    except BaseException:
        sink.discard()
        raise


def _with_headers(call: Call[Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """The request arguments with the call's own headers added (a body's headers kept)."""
    if not call.headers:
        return arguments
    return {**arguments, "headers": {**arguments.get("headers", {}), **call.headers}}


def _is_error(ex: Exchange, response: httpx.Response) -> bool:
    """Whether an open response is an error answer (or, for a streamed call, not a stream)."""
    if response.status_code >= 400:
        return True
    return ex.call.stream is not None and not is_event_stream(response)


def _refusal(reply: Reply) -> XAIError:
    """The typed error of an error answer, or of a success that should have been a stream."""
    try:
        check_reply(reply)
    except XAIError as exc:
        return exc
    return not_an_event_stream(reply)


def _final(call: Call[Any], exc: XAIError) -> XAIError:
    return call.on_error(exc) if call.on_error is not None and isinstance(exc, XAIAPIError) else exc


def _assembler(ex: Exchange) -> Assembler[Any]:
    assert ex.call.stream is not None
    return ex.call.stream(ex.body)


def _feed(assembler: Assembler[Any], payload: str) -> Any:
    """Feed one event; a failure carries what the stream said so far (``response.failed`` and
    ``.incomplete`` carry the billed usage) as ``error.billed``."""
    try:
        return assembler.feed(payload)
    except XAIError as exc:
        exc.billed = assembler.snapshot()
        raise


def _tell(ex: Exchange, event: Any, assembler: Assembler[Any]) -> None:
    if ex.call.on_event is not None:
        ex.call.on_event(event, assembler)


def _through(scopes: list[Scope], ex: Exchange, attempt: Callable[[], T]) -> T:
    """One attempt inside every scope's ``attempt`` (the outermost layer first)."""
    for scope in reversed(scopes):
        attempt = functools.partial(scope.attempt, attempt)
    return attempt()


async def _athrough(scopes: list[Scope], ex: Exchange, attempt: Callable[[], Awaitable[T]]) -> T:
    for scope in reversed(scopes):
        attempt = functools.partial(scope.aattempt, attempt)
    return await attempt()


def _active(scopes: list[Scope]) -> ExitStack:
    stack = ExitStack()
    for scope in scopes:
        if type(scope).active is not Scope.active:  # the default is current without doing anything
            stack.enter_context(scope.active())
    return stack


class _scoped:
    """The scopes of one call: current for its whole length (unless ``current=False``, for a
    stream that yields to its caller), then finished with the call's error, if any. The body
    calls the ``finish`` it is given once the call succeeded; an exception finishes with it."""

    def __init__(self, scopes: list[Scope], *, current: bool = True) -> None:
        self.scopes = scopes
        self.stack = _active(scopes) if current and scopes else ExitStack()
        self.done = False

    def __enter__(self) -> Callable[[], None]:
        self.stack.__enter__()
        return self._finish

    def _finish(self, exc: BaseException | None = None) -> None:
        if not self.done:
            self.done = True
            for scope in self.scopes:
                scope.finish(exc)

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self.stack.__exit__(kind, exc, tb)
        finally:
            if isinstance(exc, GeneratorExit):  # the caller stopped reading a stream: no error
                exc = None
            self._finish(exc)


__all__ = ["FANOUT_POOL_SIZE", "POOL_LIMITS", "XAITransport", "shared_ssl_context"]
