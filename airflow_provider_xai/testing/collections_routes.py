"""Routes of collections on the local server's Management API (``/management/v1/collections``:
its own base URL, reached with the management key; the API key is refused there) and of
document search (``POST /v1/documents/search``, with the API key). See ``collections.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_xai.endpoints import collections as collection_endpoints
from airflow_provider_xai.endpoints.routes import route
from airflow_provider_xai.testing.bodies import json_body, query_int
from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.files import paged
from airflow_provider_xai.testing.state import ServerState


def _fields(body: Any) -> dict[str, str]:
    fields = body.get("fields") if isinstance(body, dict) else None
    if fields is None:
        return {}
    if not isinstance(fields, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise ServedError(400, "fields must be an object of text values.")
    return fields


def create_management_router(state: ServerState) -> APIRouter:
    """The collection routes (under the management mount)."""
    r = APIRouter()

    @r.post(route(collection_endpoints.CREATE))
    async def create(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise ServedError(400, "The body must be a JSON object.")
        collection = state.collections.create(body.get("collection_name"), body.get("collection_description"),
                                              body.get("field_definitions"))
        return JSONResponse(collection.to_json())

    @r.get(route(collection_endpoints.LIST))
    async def list_collections(request: Request) -> Response:
        page, token = state.collections.page(query_int(request, "limit", 100, 1, 100),
                                             request.query_params.get("pagination_token"))
        return JSONResponse({"collections": [c.to_json() for c in page], "pagination_token": token})

    @r.get(route(collection_endpoints.GET))
    async def get(collection_id: str) -> Response:
        return JSONResponse(state.collections.get(collection_id).to_json())

    @r.delete(route(collection_endpoints.DELETE))
    async def delete(collection_id: str) -> Response:
        state.collections.delete(collection_id)
        return JSONResponse({})

    @r.post(route(collection_endpoints.ADD_DOCUMENT))
    async def add_document(request: Request, collection_id: str, file_id: str) -> Response:
        fields = _fields(await json_body(request, optional=True))
        state.collections.attach(collection_id, state.files.get(file_id), fields, state.documents_pending_polls)
        return JSONResponse({})

    @r.get(route(collection_endpoints.LIST_DOCUMENTS))
    async def list_documents(request: Request, collection_id: str) -> Response:
        page, token = paged(state.collections.documents(collection_id), query_int(request, "limit", 100, 1, 100),
                            request.query_params.get("pagination_token"))
        return JSONResponse({"documents": [d.to_json() for d in page], "pagination_token": token})

    @r.get(route(collection_endpoints.GET_DOCUMENT))
    async def get_document(collection_id: str, file_id: str) -> Response:
        return JSONResponse(state.collections.document(collection_id, file_id).to_json())

    @r.delete(route(collection_endpoints.REMOVE_DOCUMENT))
    async def remove_document(collection_id: str, file_id: str) -> Response:
        state.collections.remove(collection_id, file_id)
        return JSONResponse({})

    return r


def create_search_router(state: ServerState) -> APIRouter:
    """``POST /documents/search`` (under ``/v1``)."""
    r = APIRouter()

    @r.post(route(collection_endpoints.SEARCH))
    async def search(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
            raise ServedError(400, "query must be a non-empty string.")
        ids = (body.get("source") or {}).get("collection_ids") if isinstance(body.get("source"), dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ServedError(400, "source.collection_ids must be a non-empty list of collection ids.")
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise ServedError(400, f"limit must be an integer from 1 to 100, got {limit!r}.")
        return JSONResponse({"matches": state.collections.search(body["query"], ids, limit)})

    return r


__all__ = ["create_management_router", "create_search_router"]
