"""Batch API of the local xAI server (``/v1/batches...``), mounted by ``create_app``.

Behaviour (deterministic, documented for tests):

* ``POST /v1/batches`` ``{"name"}`` creates an empty batch (expires 24 h later).
  ``GET /v1/batches`` lists newest first; ``GET /v1/batches/{id}`` returns one batch and counts
  as a *poll*; ``POST /v1/batches/{id}:cancel`` cancels every pending request.
* ``POST /v1/batches/{id}/requests`` ``{"batch_requests": [...]}``: bodies over
  ``state.batch_max_body_bytes`` -> 413; ``chat_get_completion``, ``image_generation``,
  ``image_edit``, ``video_generation`` and ``video_extension`` requests are served (an image or
  video result is what ``testing/media.py`` answers, its files at this server's URLs); a
  ``batch_request_id`` already in the batch is ignored (adding is idempotent); a missing id
  gets a UUID. Answers ``{}``.
* Requests finish over time: request ``k`` of a batch (in add order) needs
  ``1 + k % state.batch_pending_polls`` polls after it was added (so all are done after
  ``batch_pending_polls`` polls; 0 = at once) and ``state.batch_request_delay`` seconds.
* A request whose messages contain ``[fail]``, or whose chat body the chat route would refuse,
  fails with ``batch_result: {"error": "..."}``. Successes carry a normal ``chat.completion``
  whose ``usage.cost_in_usd_ticks`` is discounted by ``BATCH_DISCOUNT``.
* Lists page with ``limit`` (default 100, at most 1000) and an opaque ``pagination_token``
  (``null`` on the last page). Results are in completion order; cancelled requests have none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_xai.endpoints import batches
from airflow_provider_xai.endpoints.routes import route
from airflow_provider_xai.testing.chat import build_completion, parse_chat_request
from airflow_provider_xai.testing.errors import ServedError, invalid_type, missing_field
from airflow_provider_xai.testing.media import MediaRoutes, server_root
from airflow_provider_xai.testing.state import ServerState

BATCH_DISCOUNT = 0.5
FAIL_MARKER = "[fail]"
EXPIRE_SECONDS = 24 * 3600
DEFAULT_PAGE = 100
MAX_PAGE = 1000
KINDS = ("chat_get_completion", "responses", "image_generation", "image_edit", "video_generation", "video_extension")
#: The kinds served besides chat, and the key their result comes under.
MEDIA_RESULTS = {"image_generation": "image_generation", "image_edit": "image_generation",
                 "video_generation": "video_generation", "video_extension": "video_generation"}  # fmt: skip


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class BatchRequestRecord:
    """One request of a batch, pending until ``ready_poll`` and ``ready_at`` are reached."""

    id: str
    body: dict[str, Any]
    model: str
    created: float
    ready_poll: int
    ready_at: float
    kind: str = "chat_get_completion"
    root: str = ""  # the server's address, for the URLs of an image or video result
    state: str = "pending"
    finished: float | None = None
    result: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        return {
            "batch_request_id": self.id,
            "endpoint": self.kind,
            "model": self.model,
            "state": self.state,
            "create_time": _iso(self.created),
            "finish_time": _iso(self.finished),
        }


@dataclass
class BatchRecord:
    """A batch and its requests (insertion-ordered), kept in ``ServerState.batches``."""

    batch_id: str
    name: str
    created: float
    api_key_id: str
    cancelled: float | None = None
    polls: int = 0
    requests: dict[str, BatchRequestRecord] = field(default_factory=dict)
    finished_order: list[str] = field(default_factory=list)
    add_calls: list[float] = field(default_factory=list)  # monotonic time of each add call

    def counts(self) -> dict[str, int]:
        states = [r.state for r in self.requests.values()]
        return {
            "num_requests": len(states),
            "num_pending": states.count("pending"),
            "num_success": states.count("succeeded"),
            "num_error": states.count("failed"),
            "num_cancelled": states.count("cancelled"),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "name": self.name,
            "create_time": _iso(self.created),
            "expire_time": _iso(self.created + EXPIRE_SECONDS),
            "create_api_key_id": self.api_key_id,
            "cancel_time": _iso(self.cancelled),
            "cancel_by_xai_message": None,
            "state": self.counts(),
        }


def _message_has_marker(body: dict[str, Any]) -> bool:
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            text = part.get("text") if isinstance(part, dict) else part
            if isinstance(text, str) and FAIL_MARKER in text:
                return True
    return False


def _run(state: ServerState, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Answer one chat body: ("succeeded", {"response": ...}) or ("failed", {"error": ...})."""
    if _message_has_marker(body):
        return "failed", {"error": f"Request failed: simulated failure ({FAIL_MARKER} in the prompt)."}
    try:
        req = parse_chat_request(body, state.models)
        if req.stream:
            raise ServedError(400, "Invalid request: batch requests cannot be streamed.")
        completion = build_completion(req, state.cached_prefix, None, state.omit_cost)
    except ServedError as exc:
        return "failed", {"error": exc.message}
    usage = completion.get("usage") or {}
    if "cost_in_usd_ticks" in usage:
        usage["cost_in_usd_ticks"] = round(usage["cost_in_usd_ticks"] * BATCH_DISCOUNT)
    return "succeeded", {"response": {"chat_get_completion": completion}}


def _run_media(state: ServerState, req: BatchRequestRecord) -> tuple[str, dict[str, Any]]:
    """Answer one image or video request as its endpoint would, at the batch discount."""
    media = MediaRoutes(state)
    try:
        if req.kind.startswith("image"):
            answer = media.image_answer(req.root, dict(req.body), edit=req.kind == "image_edit")
        else:
            action = "extend" if req.kind == "video_extension" else "generate"
            answer = media.video_answer(req.root, dict(req.body), action)
    except ServedError as exc:
        return "failed", {"error": exc.message}
    if answer.get("status") == "failed":
        return "failed", {"error": answer["error"]["message"]}
    usage = answer.get("usage") or {}
    if "cost_in_usd_ticks" in usage:
        usage["cost_in_usd_ticks"] = round(usage["cost_in_usd_ticks"] * BATCH_DISCOUNT)
    return "succeeded", {"response": {MEDIA_RESULTS[req.kind]: answer}}


def advance(state: ServerState, batch: BatchRecord, now: float | None = None) -> None:
    """Finish every pending request whose poll count and delay have been reached."""
    now = time.time() if now is None else now
    for req in batch.requests.values():
        if req.state == "pending" and batch.polls >= req.ready_poll and now >= req.ready_at:
            chat = req.kind == "chat_get_completion"
            req.state, req.result = _run(state, req.body) if chat else _run_media(state, req)
            req.finished = now
            batch.finished_order.append(req.id)


def _encode_token(kind: str, key: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}:{offset}".encode()).decode().rstrip("=")


def _decode_token(token: str | None, kind: str, key: str) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        got_kind, got_key, offset = raw.rsplit(":", 2)
        if (got_kind, got_key) != (kind, key) or int(offset) < 0:
            raise ValueError(raw)
        return int(offset)
    except (ValueError, UnicodeDecodeError):
        raise ServedError(400, f"Invalid pagination_token {token!r}.") from None


def _page(request: Request, items: list[Any], kind: str, key: str) -> tuple[list[Any], str | None]:
    raw_limit = request.query_params.get("limit")
    try:
        limit = DEFAULT_PAGE if raw_limit is None else int(raw_limit)
    except ValueError:
        raise invalid_type("limit", raw_limit, "an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise ServedError(400, f"Invalid request: limit must be in [1, {MAX_PAGE}], got {limit}.")
    start = _decode_token(request.query_params.get("pagination_token"), kind, key)
    page = items[start : start + limit]
    token = _encode_token(kind, key, start + limit) if start + limit < len(items) else None
    return page, token


def _parse_items(body: Any, batch: BatchRecord) -> list[tuple[str, str, dict[str, Any]]]:
    """Validate an add-requests body; return new (id, kind, body) triples (known ids skipped)."""
    if not isinstance(body, dict):
        raise invalid_type("body", body, "a map")
    if "batch_requests" not in body:
        raise missing_field("batch_requests")
    items = body["batch_requests"]
    if not isinstance(items, list):
        raise invalid_type("batch_requests", items, "a sequence")
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("batch_request"), dict):
            raise ServedError(
                422,
                "Failed to deserialize the JSON body into the target type: "
                "batch_requests: expected {batch_request_id?, batch_request}",
            )
        kinds = [k for k in item["batch_request"] if k in KINDS]
        if len(kinds) != 1:
            raise ServedError(
                422,
                "Failed to deserialize the JSON body into the target type: "
                f"batch_request: expected exactly one of {', '.join(KINDS)}",
            )
        kind = kinds[0]
        if kind == "responses":
            raise ServedError(400, "The local xAI server does not serve responses batch requests.")
        chat = item["batch_request"][kind]
        if not isinstance(chat, dict):
            raise invalid_type(kind, chat, "a map")
        rid = item.get("batch_request_id") or str(uuid.uuid4())
        if not isinstance(rid, str):
            raise invalid_type("batch_request_id", rid, "a string")
        if rid not in batch.requests:
            out.setdefault(rid, (kind, chat))
    return [(rid, kind, chat) for rid, (kind, chat) in out.items()]


def create_batch_router(state: ServerState) -> APIRouter:
    """Return the Batch API routes (relative to ``/v1``) backed by ``state``."""
    r = APIRouter()
    lock = state._lock

    async def json_body(request: Request) -> Any:
        if "json" not in request.headers.get("content-type", "").split(";")[0].lower():
            raise ServedError(415, "Expected request with `Content-Type: application/json`")
        try:
            return json.loads(await request.body())
        except ValueError as exc:
            raise ServedError(400, f"Failed to parse the request body as JSON: {exc}") from None

    def get(batch_id: str) -> BatchRecord:
        batch = state.batches.get(batch_id)
        if batch is None:
            raise ServedError(404, f"Batch {batch_id} was not found.")
        return batch

    @r.post(route(batches.CREATE))
    async def create(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid_type("body", body, "a map")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ServedError(400, "Invalid request: name must be a non-empty string.")
        if body.get("input_file_id") is not None:
            raise ServedError(400, "The local xAI server does not support input_file_id batches.")
        key_id = hashlib.sha256(state.api_key.encode()).hexdigest()[:16]
        batch = BatchRecord(f"batch_{uuid.uuid4()}", name, time.time(), key_id)
        with lock:
            state.batches[batch.batch_id] = batch
            return JSONResponse(batch.to_json())

    @r.get(route(batches.LIST))
    async def list_batches(request: Request) -> Response:
        with lock:
            batches = sorted(state.batches.values(), key=lambda b: b.created, reverse=True)
            for batch in batches:
                advance(state, batch)
            page, token = _page(request, batches, "batches", "all")
            return JSONResponse({"batches": [b.to_json() for b in page], "pagination_token": token})

    @r.post(route(batches.CANCEL))
    async def cancel(batch_id: str) -> Response:
        with lock:
            batch = get(batch_id)
            advance(state, batch)
            now = time.time()
            if batch.cancelled is None:
                batch.cancelled = now
            for req in batch.requests.values():
                if req.state == "pending":
                    req.state, req.finished = "cancelled", now
            return JSONResponse(batch.to_json())

    @r.get(route(batches.GET))
    async def get_batch(batch_id: str) -> Response:
        with lock:
            batch = get(batch_id)
            batch.polls += 1
            advance(state, batch)
            return JSONResponse(batch.to_json())

    @r.post(route(batches.ADD_REQUESTS))
    async def add_requests(batch_id: str, request: Request) -> Response:
        raw = await request.body()
        with lock:
            batch = get(batch_id)
            batch.add_calls.append(time.monotonic())
            limit = state.batch_max_body_bytes
        if len(raw) > limit:
            raise ServedError(
                413,
                f"Request body of {len(raw)} bytes exceeds the {limit} byte limit for adding batch requests.",
            )
        items = _parse_items(await json_body(request), batch)
        with lock:
            if batch.cancelled is not None:
                raise ServedError(400, f"Batch {batch_id} is cancelled; no requests can be added.")
            now, polls = time.time(), max(state.batch_pending_polls, 0)
            for rid, kind, chat in items:
                k = len(batch.requests)
                batch.requests[rid] = BatchRequestRecord(
                    id=rid,
                    body=chat,
                    model=str(chat.get("model", "")),
                    created=now,
                    ready_poll=batch.polls + (1 + k % polls if polls else 0),
                    ready_at=now + state.batch_request_delay,
                    kind=kind,
                    root=server_root(request),
                )
            advance(state, batch, now)
        return JSONResponse({})

    @r.get(route(batches.LIST_REQUESTS))
    async def list_requests(batch_id: str, request: Request) -> Response:
        with lock:
            batch = get(batch_id)
            advance(state, batch)
            page, token = _page(request, list(batch.requests.values()), "requests", batch_id)
            return JSONResponse(
                {"batch_request_metadata": [q.metadata() for q in page], "pagination_token": token}
            )

    @r.get(route(batches.RESULTS))
    async def results(batch_id: str, request: Request) -> Response:
        with lock:
            batch = get(batch_id)
            advance(state, batch)
            done = [batch.requests[i] for i in batch.finished_order if batch.requests[i].result is not None]
            page, token = _page(request, done, "results", batch_id)
            return JSONResponse(
                {
                    "results": [{"batch_request_id": q.id, "batch_result": q.result} for q in page],
                    "pagination_token": token,
                }
            )

    return r
