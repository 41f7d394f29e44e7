"""Batch API of the local xAI server (``/v1/batches...``), mounted by ``create_app``.

Behaviour (deterministic, documented for tests):

* ``POST /v1/batches`` ``{"name"}`` creates an empty batch (expires 24 h later);
  ``{"name", "input_file_id"}`` one made from an uploaded JSONL file (the Files API's store: 404 for an
  unknown file, 400 for a bad line): it shows ``num_requests: 0`` until its lines are loaded,
  ``state.batch_file_load_polls`` polls later, and takes no added requests (400).
  ``GET /v1/batches`` lists newest first; ``GET /v1/batches/{id}`` returns one batch and counts
  as a *poll*; ``POST /v1/batches/{id}:cancel`` cancels every pending request.
* ``POST /v1/batches/{id}/requests`` ``{"batch_requests": [...]}``: bodies over
  ``state.batch_max_body_bytes`` -> 413; each ``batch_request`` holds exactly one kind
  (``batch_run.KINDS``), of which ``chat_get_completion`` and ``responses`` are served (400 for
  the others); a ``batch_request_id`` already in the batch is ignored (adding is idempotent); a
  missing id gets a UUID. Answers ``{}``.
* Requests finish over time: request ``k`` of a batch (in add order) needs
  ``1 + k % state.batch_pending_polls`` polls after it was added (so all are done after
  ``batch_pending_polls`` polls; 0 = at once) and ``state.batch_request_delay`` seconds.
* Each request is answered as ``batch_run`` says (failures, the chat or Responses shape, the
  batch discount).
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
from airflow_provider_xai.testing.batch_files import read_lines
from airflow_provider_xai.testing.batch_run import KINDS, RUNS, run
from airflow_provider_xai.testing.errors import ServedError, invalid_type, missing_field
from airflow_provider_xai.testing.media import server_root
from airflow_provider_xai.testing.state import ServerState

EXPIRE_SECONDS = 24 * 3600
DEFAULT_PAGE = 100
MAX_PAGE = 1000


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
    input_file_id: str | None = None
    #: This server's address as the batch's creator reached it (the URLs of image and video results).
    root: str = ""
    #: An input file's (id, kind, body) lines, until they are loaded (``batch_file_load_polls``).
    unloaded: list[tuple[str, str, dict[str, Any]]] | None = None
    load_poll: int = 0

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
            "input_file_id": self.input_file_id,
            "state": self.counts(),
        }

    def add(self, state: ServerState, items: list[tuple[str, str, dict[str, Any]]], now: float) -> None:
        """Add (id, kind, body) requests, each finishing over polls as the module says."""
        polls = max(state.batch_pending_polls, 0)
        for rid, kind, body in items:
            k = len(self.requests)
            self.requests[rid] = BatchRequestRecord(
                id=rid, body=body, model=str(body.get("model", "")), created=now, kind=kind,
                ready_poll=self.polls + (1 + k % polls if polls else 0), ready_at=now + state.batch_request_delay,
            )  # fmt: skip


def advance(state: ServerState, batch: BatchRecord, now: float | None = None) -> None:
    """Load an input file's lines once due; finish every pending request whose poll count and
    delay have been reached."""
    now = time.time() if now is None else now
    if batch.unloaded is not None and batch.polls >= batch.load_poll and batch.cancelled is None:
        lines, batch.unloaded = batch.unloaded, None
        batch.add(state, [line for line in lines if line[0] not in batch.requests], now)
    for req in batch.requests.values():
        if req.state == "pending" and batch.polls >= req.ready_poll and now >= req.ready_at:
            req.state, req.result = run(state, req.kind, req.body, batch.root)
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
        if kinds[0] not in RUNS:
            raise ServedError(
                400, f"The local xAI server serves {' and '.join(RUNS)} batch requests, not {kinds[0]}."
            )
        request = item["batch_request"][kinds[0]]
        if not isinstance(request, dict):
            raise invalid_type(kinds[0], request, "a map")
        rid = item.get("batch_request_id") or str(uuid.uuid4())
        if not isinstance(rid, str):
            raise invalid_type("batch_request_id", rid, "a string")
        if rid not in batch.requests:
            out.setdefault(rid, (kinds[0], request))
    return [(rid, kind, request) for rid, (kind, request) in out.items()]


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
        key_id = hashlib.sha256(state.api_key.encode()).hexdigest()[:16]
        batch = BatchRecord(f"batch_{uuid.uuid4()}", name, time.time(), key_id, root=server_root(request))
        if (file_id := body.get("input_file_id")) is not None:
            if not isinstance(file_id, str):
                raise invalid_type("input_file_id", file_id, "a file id")
            stored = state.files.get(file_id)  # 404 when missing or expired
            batch.input_file_id, batch.unloaded = file_id, read_lines(stored)
            batch.load_poll = state.batch_file_load_polls
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
            if batch.input_file_id is not None:
                raise ServedError(400, f"Batch {batch_id} was made from an input file; no requests can be added.")
            now = time.time()
            batch.add(state, items, now)
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
