"""Control endpoints of the local xAI server, for tests that run clients in subprocesses.

Every ``POST`` needs ``Content-Type: application/json`` (else 415), even ``reset`` (send
``{}``): a cross-site page cannot send that without a CORS preflight, which is never granted.
``POST /_control/reset``; ``POST /_control/faults`` ``{"faults": [{Fault fields}], "times": n}``
(each fault queued ``n`` times, in order: ``[A, B]`` x2 -> A, A, B, B); ``POST /_control/chaos``
(``Chaos`` fields; empty body or ``{}`` disables); ``POST /_control/config`` (see
``state.CONFIG_FIELDS``; answers the config); ``GET /_control/state`` (config, pending
faults, chaos counts, ``rate_limited``: requests refused by the rate limits, and
``rate_limited_by`` limit name); ``GET /_control/journal``.
Neither the config nor the state shows the API key (``state.SECRET_FIELDS``); the journal masks it
(and the token each request sent) in paths, queries, headers and bodies.
Bad input -> 400 ``{"code": ..., "error": "invalid control request: ..."}``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.state import Chaos, Fault, ServerState


async def json_posts_only(request: Request) -> None:
    """A ``POST`` must say ``Content-Type: application/json``: a web page can send a plain-text
    or form POST to loopback without asking, but a JSON one only after a CORS preflight, which
    this server never grants. So no page a developer visits can reset or fault the server."""
    if request.method == "POST":
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise ServedError(415, "invalid control request: POST /_control/* needs `Content-Type: application/json`")


def create_control_router(state: ServerState) -> APIRouter:
    """Routes for ``{prefix}/_control`` (no auth; POSTs only as JSON): reset, faults, chaos,
    config, journal."""
    r = APIRouter(dependencies=[Depends(json_posts_only)])

    async def obj(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ServedError(400, f"invalid control request: {exc}") from None
        if data is not None and not isinstance(data, dict):
            raise ServedError(400, "invalid control request: expected a JSON object")
        return data or {}

    def apply(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (ValueError, TypeError) as exc:
            raise ServedError(400, f"invalid control request: {exc}") from None

    @r.post("/reset")
    async def reset() -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    @r.post("/faults")
    async def faults(request: Request) -> Response:
        data = await obj(request)
        items = [apply(Fault.from_dict, f) for f in data.get("faults", [])]
        times = apply(int, data.get("times", 1))
        for fault in items:
            state.enqueue(fault, times)
        return JSONResponse({"queued": len(items) * times, "pending": state.pending_faults})

    @r.post("/chaos")
    async def chaos(request: Request) -> Response:
        data = await obj(request)
        state.set_chaos(apply(lambda: Chaos(**data)) if data else None)
        return JSONResponse({"chaos": data or None})

    @r.post("/config")
    async def config(request: Request) -> Response:
        data = await obj(request)
        apply(lambda: state.configure(**data))
        return JSONResponse(state.public_config())

    @r.get("/state")
    async def get_state() -> Response:
        return JSONResponse({"config": state.public_config(), "pending_faults": state.pending_faults,
                           "chaos_counts": dict(state.chaos_counts),
                             "rate_limited": sum(state.rate_limited.values()),
                             "rate_limited_by": state.rate_limited})

    @r.get("/journal")
    async def journal() -> Response:
        return JSONResponse([e.to_dict() for e in state.journal])

    return r
