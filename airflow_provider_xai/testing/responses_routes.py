"""Routes of ``/v1/responses`` on the local server, mounted by ``server.create_app``.

* ``POST /v1/responses``: validated by ``responses.parse_responses_request``, answered by
  ``responses.build_response``; ``stream: true`` answers SSE (``responses_stream``), paced by
  ``stream_interval``, ending with ``data: [DONE]`` only when ``responses_done_marker`` is set.
  A ``Fault`` with ``content`` forces the answer text; ``truncate_stream``/``malformed_chunk``
  damage the stream; ``fail_stream`` ends it with ``response.failed`` (``message`` is the
  error message; the stored response is the failed one). ``store: true`` (the default) keeps
  the response.
* ``GET /v1/responses/{id}``: the stored response; ``DELETE`` answers
  ``{"id", "object": "response", "deleted": true}``; both 404 for an unknown, deleted or
  ``store: false`` id.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_xai.endpoints import responses as response_endpoints
from airflow_provider_xai.endpoints.routes import route
from airflow_provider_xai.testing.billing_ledger import bill
from airflow_provider_xai.testing.bodies import json_body
from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.responses import build_response
from airflow_provider_xai.testing.responses_request import parse_responses_request
from airflow_provider_xai.testing.responses_stream import failed_response, stream_frames
from airflow_provider_xai.testing.state import (
    FAULT_SCOPE_KEY,
    RATE_KEY_SCOPE_KEY,
    Fault,
    ServerState,
)
from airflow_provider_xai.testing.streaming import paced_event_stream


def _not_found(response_id: str) -> ServedError:
    return ServedError(404, f"Response with id {response_id!r} was not found.")


def create_responses_router(state: ServerState) -> APIRouter:
    """``POST /responses``, ``GET``/``DELETE /responses/{id}`` (under ``/v1``)."""
    r = APIRouter()

    @r.post(route(response_endpoints.CREATE))
    async def create(request: Request) -> Response:
        fault: Fault | None = request.scope.get(FAULT_SCOPE_KEY)
        req = parse_responses_request(await json_body(request), state.models,
                                      state.get_response)
        if state.latency:
            await asyncio.sleep(state.latency)
        response, stored = build_response(req, state, fault.content if fault else None)
        tools_run = state.tool_latency if req.tools else 0.0
        stored.ready_at = state.clock() + tools_run
        state.charge_tokens(request.scope.get(RATE_KEY_SCOPE_KEY), response.get("usage"))
        bill(state, "responses", response)
        failed = None
        if fault and fault.fail_stream and req.stream:
            failed = stored.response = failed_response(response, fault.message)
        if req.store:
            state.store_response(response["id"], stored)
        if not req.stream:
            await asyncio.sleep(tools_run)
            return JSONResponse(response)
        frames = stream_frames(response, truncate=bool(fault and fault.truncate_stream),
                               malformed=bool(fault and fault.malformed_chunk),
                               done_marker=state.responses_done_marker, failed=failed)
        # The tools run after response.created and .in_progress (frames 0 and 1).
        return paced_event_stream(frames, state.stream_interval, pause=(2, tools_run))

    @r.get(route(response_endpoints.GET))
    async def get(response_id: str) -> Response:
        stored = state.get_response(response_id)
        if stored is None:
            raise _not_found(response_id)
        return JSONResponse(stored.seen_at(state.clock()))

    @r.delete(route(response_endpoints.DELETE))
    async def delete(response_id: str) -> Response:
        if not state.delete_response(response_id):
            raise _not_found(response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})

    return r
