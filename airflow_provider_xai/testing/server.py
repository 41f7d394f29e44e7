"""FastAPI app of the local xAI-compatible server.

Request pipeline for ``{prefix}/v1/...`` (the ``_Gateway`` middleware, in order):

1. every response gets an ``x-request-id`` header; every non-control request is journaled
   (Authorization shown as ``Bearer ***``; the key, and the token the request sent, masked in
   the path, the query, the other headers and the body);
2. auth: missing/malformed ``Authorization`` -> 401, wrong key -> 400 (masked key);
3. faults: the first queued ``Fault`` whose ``path`` matches is consumed (so each faulted
   request is counted in the journal); with no queued match, ``Chaos`` may draw one for
   ``POST /chat/completions``. ``delay`` sleeps, ``drop`` aborts the connection mid-body,
   a non-200 ``status`` answers with the xAI error body (+ retry headers), ``body`` answers
   a raw 200; ``content``/``truncate_stream``/``malformed_chunk``/``fail_stream`` are handed
   to the chat and responses routes (no-ops for other routes; the stream flags also for
   non-streaming requests);
4. blocked/disabled key or team -> 403 (except ``GET /v1/api-key``);
5. rate limits (``rate_limit_rps``/``rate_limit_tpm``, see ``rate_limit.py``) for
   ``POST /chat/completions`` (plain, streamed, deferred) and ``POST /responses``, per API key
   and model: past a limit -> 429 (``retry-after``/``retry-after-ms`` when
   ``rate_limit_retry_after``), journaled with the limit's name; an admitted request's route
   charges the tokens its answer billed (the batch API and deferred polls are not limited);
6. the route: content type (415), JSON (400), body validation (422/400/404), then logic.

Control endpoints under ``{prefix}/_control`` need no auth and are not journaled.

The Management API (collections) is mounted at ``{prefix}/management/v1/...``, its own base
URL: the same pipeline, but its key is the management key (the API key is refused with 403),
and no key flags or rate limits. Public file URLs (``{prefix}/files-cdn/...``) need no key.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_xai.endpoints import ENDPOINTS, chat
from airflow_provider_xai.endpoints import models as model_endpoints
from airflow_provider_xai.endpoints.routes import MOUNTS, route
from airflow_provider_xai.testing.batch import create_batch_router
from airflow_provider_xai.testing.billing import (
    create_billing_control_router,
    create_billing_router,
    create_price_list_router,
)
from airflow_provider_xai.testing.billing_ledger import bill
from airflow_provider_xai.testing.bodies import json_body
from airflow_provider_xai.testing.catalog import api_key_json, language_model_json, model_json
from airflow_provider_xai.testing.chat import (
    build_completion,
    parse_chat_request,
    tokenize,
    unknown_model,
)
from airflow_provider_xai.testing.collections_routes import create_management_router, create_search_router
from airflow_provider_xai.testing.control import create_control_router
from airflow_provider_xai.testing.errors import (
    ServedError,
    error_body,
    invalid_type,
    mask_key,
    redact_key,
)
from airflow_provider_xai.testing.files_routes import create_cdn_router, create_files_router
from airflow_provider_xai.testing.media import create_media_files_router, create_media_router
from airflow_provider_xai.testing.models import ModelSpec, resolve_model
from airflow_provider_xai.testing.responses_routes import create_responses_router
from airflow_provider_xai.testing.state import (
    FAULT_SCOPE_KEY,
    RATE_KEY_SCOPE_KEY,
    Fault,
    JournalEntry,
    ServerState,
)
from airflow_provider_xai.testing.streaming import paced_event_stream, stream_events
from airflow_provider_xai.testing.voice_routes import create_voice_router

_FAULT_KEY = FAULT_SCOPE_KEY
_DROP_DECLARED_LENGTH = 4096
#: Endpoints xAI rate-limits by model (``POST``, relative to ``/v1``): those declared so.
RATE_LIMITED_PATHS = frozenset(route(e) for e in ENDPOINTS if e.bucket == "model" and e.method == "POST")


class ConnectionDropped(Exception):
    """Raised after a partial response so uvicorn closes the socket (a ``drop`` fault)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _err(exc: ServedError) -> JSONResponse:
    return _json(exc.status, exc.body(), exc.headers)


def _mask(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` (text, or parsed JSON: keys and values) with every secret replaced by ``***``."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, list):
        return [_mask(item, secrets) for item in value]
    if isinstance(value, dict):
        return {_mask(k, secrets): _mask(v, secrets) for k, v in value.items()}
    return value


def _secrets(headers: list[tuple[bytes, bytes]], key: str) -> tuple[str, ...]:
    """What the journal masks: the server's key and the token the request carried (a wrong
    or rotated key is a secret too), longest first so that neither leaves a part showing."""
    sent = dict(headers).get(b"authorization", b"").decode("latin-1").partition(" ")[2].strip()
    return tuple(sorted({s for s in (key, sent) if len(s) >= 4}, key=len, reverse=True))


def _redact_headers(headers: list[tuple[bytes, bytes]], secrets: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "authorization":
            value = "Bearer ***" if value.lower().startswith("bearer") else "***"
        out[name] = _mask(value, secrets)
    return out


class _Gateway:
    """Pure ASGI middleware: request ids, journal, auth, faults, key flags."""

    def __init__(self, app: ASGIApp, state: ServerState, prefix: str) -> None:
        self.app, self.state, self.prefix = app, state, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        path: str = scope["path"]
        control = path.startswith(f"{self.prefix}/_control")
        entry: JournalEntry | None = None

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
                if entry is not None:
                    entry.status = message["status"]
            await send(message)

        if control:
            await self.app(scope, receive, send_wrapped)
            return
        body = await _read_body(receive)
        entry = self._journal(scope, body, request_id)
        replay = _replay(body, receive)
        rel, management = self._api_path(path)
        if rel is None:
            await self.app(scope, replay, send_wrapped)
            return
        auth_error = self._auth(scope, management)
        if auth_error is not None:
            await _err(auth_error)(scope, replay, send_wrapped)
            return
        is_chat = scope["method"] == "POST" and rel == "/chat/completions"
        taken = self.state.take_fault(rel, is_chat)
        if taken is not None:
            entry.fault, fault = taken
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop:
                await _drop(fault, send_wrapped)
            if fault.is_error:
                err = _json(fault.status, fault.error_body(), fault.response_headers())
                await err(scope, replay, send_wrapped)
                return
            if fault.body is not None:
                resp = Response(fault.body, 200, fault.response_headers(), "application/json")
                await resp(scope, replay, send_wrapped)
                return
            scope[_FAULT_KEY] = fault
        if rel != "/api-key" and not management:
            blocked = self._blocked()
            if blocked is not None:
                await _err(blocked)(scope, replay, send_wrapped)
                return
        if scope["method"] == "POST" and rel in RATE_LIMITED_PATHS and not management:
            refused = self._rate_limit(scope, entry)
            if refused is not None:
                await _err(refused)(scope, replay, send_wrapped)
                return
        await self.app(scope, replay, send_wrapped)

    def _journal(self, scope: Scope, body: bytes, request_id: str) -> JournalEntry:
        """The request as the journal keeps it: the key masked wherever it appears (path,
        query, headers, body; also where JSON escapes or percent-encoding hid it)."""
        headers = scope.get("headers", [])
        secrets = _secrets(headers, self.state.api_key)
        try:
            parsed = json.loads(body.decode("utf-8", "replace")) if body else None
        except (ValueError, RecursionError):
            parsed = None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        entry = JournalEntry(
            method=scope["method"], path=_mask(scope["path"], secrets),
            headers=_redact_headers(headers, secrets), query=_mask(query, secrets),
            body=_mask(parsed, secrets), request_id=request_id,
        )
        self.state.record(entry)
        return entry

    def _rate_limit(self, scope: Scope, entry: JournalEntry) -> ServedError | None:
        """Admit the request in its (key, model) window, or the 429 that refuses it."""
        model = entry.body.get("model") if isinstance(entry.body, dict) else None
        if not isinstance(model, str):
            return None  # the route answers the missing or bad model
        key = self.state.rate_limit_key(model)
        entry.key_fingerprint, entry.model = key
        refusal = self.state.admit(key)
        if refusal is None:
            scope[RATE_KEY_SCOPE_KEY] = key
            return None
        entry.rate_limited = refusal.limit
        headers = refusal.headers() if self.state.rate_limit_retry_after else None
        return ServedError(429, refusal.message, headers=headers)

    def _api_path(self, path: str) -> tuple[str | None, bool]:
        """The path under ``/v1`` of an API request (None for any other path), and whether it
        is the Management API's (its own mount, its own key)."""
        for mount, management in ((f"{MOUNTS['management']}/v1", True), (MOUNTS["api"], False)):
            root = f"{self.prefix}{mount}"
            if path == root or path.startswith(root + "/"):
                return path[len(root):], management
        return None, False

    def _auth(self, scope: Scope, management: bool = False) -> ServedError | None:
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return ServedError(401, "Missing or malformed Authorization header. Expected "
                                 "'Authorization: Bearer <your xAI API key>'.")
        if management and token == self.state.api_key:
            return ServedError(403, "This is the Management API: it takes a management key, not an API key.")
        if management and token != self.state.management_key:
            return ServedError(401, f"Incorrect management key provided: {mask_key(token)}.")
        if management:
            return None
        if token != self.state.api_key:
            return ServedError(400, f"Incorrect API key provided: {mask_key(token)}. "
                                 "You can obtain an API key from https://console.x.ai.")
        return None

    def _blocked(self) -> ServedError | None:
        st = self.state
        if st.team_blocked:
            return ServedError(403, "Your team is blocked. Please contact xAI support.")
        if st.api_key_blocked:
            return ServedError(403, f"The API key {redact_key(st.api_key)} is blocked.")
        if st.api_key_disabled:
            return ServedError(403, f"The API key {redact_key(st.api_key)} is disabled.")
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _drop(fault: Fault, send: Send) -> None:
    """Start a response declaring a long body, send a few bytes, then abort the socket."""
    await send({"type": "http.response.start", "status": fault.status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(_DROP_DECLARED_LENGTH).encode()),
    ]})
    await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})
    raise ConnectionDropped("drop fault: connection aborted mid-response")


def _v1_router(state: ServerState) -> APIRouter:
    r = APIRouter()

    def model_or_404(name: str) -> ModelSpec:
        m = resolve_model(state.models, name)
        if m is None:
            raise unknown_model(name)
        return m

    @r.post(route(chat.CHAT))
    async def chat_completions(request: Request) -> Response:
        fault: Fault | None = request.scope.get(_FAULT_KEY)
        req = parse_chat_request(await json_body(request), state.models)
        if state.latency:
            await asyncio.sleep(state.latency)
        route = request.headers.get(chat.CONVERSATION_HEADER)
        completion = build_completion(req, functools.partial(state.cached_prefix, route=route),
                                      fault.content if fault else None, state.omit_cost)
        state.charge_tokens(request.scope.get(RATE_KEY_SCOPE_KEY), completion.get("usage"))
        bill(state, "chat", completion)
        if req.deferred:
            return _json(200, {"request_id": state.store_deferred(completion)})
        if not req.stream:
            return _json(200, completion)
        events = stream_events(completion, req.include_usage,
                               truncate=bool(fault and fault.truncate_stream),
                               malformed=bool(fault and fault.malformed_chunk),
                               error=fault.error_body(500) if fault and fault.fail_stream else None)
        return paced_event_stream(events, state.stream_interval)

    @r.get(route(chat.DEFERRED_COMPLETION))
    async def deferred(request_id: str) -> Response:
        status, completion = state.poll_deferred(request_id)
        if status == 202:
            return Response(status_code=202)
        if status == 404:
            raise ServedError(404, f"Deferred completion {request_id} was not found or was "
                                "already retrieved.")
        return _json(200, completion)

    @r.get(route(model_endpoints.MODELS))
    async def models() -> Response:
        return _json(200, {"object": "list",
                           "data": [model_json(m) for m in state.models.values()]})

    @r.get("/models/{model_id}")
    async def model(model_id: str) -> Response:
        return _json(200, model_json(model_or_404(model_id)))

    @r.get(route(model_endpoints.LANGUAGE_MODELS))
    async def language_models() -> Response:
        return _json(200, {"models": [language_model_json(m) for m in state.models.values()]})

    @r.get(route(model_endpoints.LANGUAGE_MODEL))
    async def language_model(model_id: str) -> Response:
        return _json(200, language_model_json(model_or_404(model_id)))

    @r.get(route(model_endpoints.API_KEY))
    async def api_key() -> Response:
        return _json(200, api_key_json(state))

    @r.post(route(model_endpoints.TOKENIZE))
    async def tokenize_text(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid_type("body", body, "a map")
        for name in ("text", "model"):
            if not isinstance(body.get(name), str):
                raise invalid_type(name, body.get(name), "a string")
        model_or_404(body["model"])
        return _json(200, {"token_ids": tokenize(body["text"])})

    r.include_router(create_batch_router(state))
    r.include_router(create_responses_router(state))
    r.include_router(create_files_router(state))
    r.include_router(create_search_router(state))
    r.include_router(create_voice_router(state))
    r.include_router(create_media_router(state))
    r.include_router(create_price_list_router(state))
    return r


def create_app(state: ServerState, path_prefix: str = "") -> FastAPI:
    """Build the app; API under ``{path_prefix}/v1``, control under ``{path_prefix}/_control``."""
    prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
    _install_log_filter()
    app = FastAPI(title="Local xAI server", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.xai = state
    app.include_router(_v1_router(state), prefix=f"{prefix}/v1")
    app.include_router(create_management_router(state), prefix=f"{prefix}{MOUNTS['management']}")
    app.include_router(create_billing_router(state), prefix=f"{prefix}{MOUNTS['management']}")
    app.include_router(create_cdn_router(state), prefix=prefix)
    app.include_router(create_control_router(state), prefix=f"{prefix}/_control")
    app.include_router(create_billing_control_router(state), prefix=f"{prefix}/_control")
    app.include_router(create_media_files_router(state), prefix=prefix)

    async def on_served_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServedError)
        return _err(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        not_found = f"No handler found on route. Path: {request.url.path}"
        msg = not_found if exc.status_code == 404 else str(exc.detail)
        return _json(exc.status_code, error_body(exc.status_code, msg), exc.headers)

    app.add_exception_handler(ServedError, on_served_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_middleware(_Gateway, state=state, prefix=prefix)
    return app
