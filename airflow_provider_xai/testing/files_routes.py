"""Routes of ``/v1/files`` on the local server, and the public-URL CDN (``/files-cdn``).

* ``POST /v1/files``: multipart; ``expires_after`` (3600 to 2,592,000 s) must come before
  ``file`` (400 otherwise, as xAI answers), a missing file is 400, a file over
  ``files_max_bytes`` (50 MB) 413.
* ``GET /v1/files``: ``limit`` (1 to 100), ``order`` (asc/desc), ``sort_by``,
  ``pagination_token``; every page carries a token, the last one is shorter than ``limit``.
* ``GET``/``DELETE /v1/files/{id}``, ``GET /v1/files/{id}/content`` (``?format=text``: the text):
  404 once deleted or expired.
* ``POST /v1/files/{id}/public-url`` (``{"expires_after"?}``) and ``.../public-url/revoke``
  (idempotent); the URL is served under ``/files-cdn/`` with no credentials.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_xai.endpoints import files as file_endpoints
from airflow_provider_xai.endpoints.routes import route
from airflow_provider_xai.testing.bodies import Parts, UploadedPart, form_parts, json_body, query_int
from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.files import SORT_KEYS, ServedFile, file_json, lifetime, not_found
from airflow_provider_xai.testing.state import ServerState

CDN = "/files-cdn"


def _lifetime_of(parts: Parts) -> int | None:
    """``expires_after``, or ``expires_after[seconds]`` with ``expires_after[anchor]=created_at``."""
    fields = {name: value for name, value in parts if isinstance(value, str)}
    if "expires_after" in fields:
        return lifetime(fields["expires_after"])
    if "expires_after[seconds]" in fields:
        if fields.get("expires_after[anchor]", "created_at") != "created_at":
            raise ServedError(400, "expires_after[anchor] must be created_at.")
        return lifetime(fields["expires_after[seconds]"], "expires_after[seconds]")
    return None


def public_url(request: Request, file: ServedFile) -> str:
    """The file's public URL on this server (under its path prefix)."""
    path = request.url.path
    prefix = path[: path.index("/v1/files/")]
    return f"{str(request.base_url).rstrip('/')}{prefix}{CDN}/{file.public_token}/{file.id}{file.suffix}"


def create_files_router(state: ServerState) -> APIRouter:
    """The ``/files`` routes (under ``/v1``)."""
    r = APIRouter()

    @r.post(route(file_endpoints.UPLOAD))
    async def upload(request: Request) -> Response:
        parts = await form_parts(request)
        names = [name for name, _ in parts]
        at = names.index("file") if "file" in names else -1
        file = parts[at][1] if at >= 0 else None
        if not isinstance(file, UploadedPart):
            raise ServedError(400, "The form has no file: send the file as the `file` part.")
        if any(name.startswith("expires_after") for name in names[at + 1:]):
            raise ServedError(400, "expires_after must come before file in the form.")
        expires = _lifetime_of(parts[:at])
        filename, content = file
        if len(content) > state.files_max_bytes:
            raise ServedError(413, f"The file is {len(content)} bytes; at most {state.files_max_bytes} "
                                   "bytes are accepted.")
        return JSONResponse(file_json(state.files.add(filename, content, expires)))

    @r.get(route(file_endpoints.LIST))
    async def list_files(request: Request) -> Response:
        limit = query_int(request, "limit", 100, 1, 100)
        order = request.query_params.get("order", "desc")
        sort_by = request.query_params.get("sort_by")
        if order not in ("asc", "desc"):
            raise ServedError(400, f"order must be asc or desc, got {order!r}.")
        if sort_by is not None and sort_by not in SORT_KEYS:
            raise ServedError(400, f"sort_by must be one of {', '.join(SORT_KEYS)}, got {sort_by!r}.")
        page, token = state.files.page(limit, request.query_params.get("pagination_token"), order, sort_by)
        return JSONResponse({"data": [file_json(f) for f in page], "pagination_token": token})

    @r.get(route(file_endpoints.GET))
    async def get_file(file_id: str) -> Response:
        return JSONResponse(file_json(state.files.get(file_id)))

    @r.delete(route(file_endpoints.DELETE))
    async def delete_file(file_id: str) -> Response:
        state.files.delete(file_id)
        return JSONResponse({"id": file_id, "deleted": True, "object": "file"})

    @r.get(route(file_endpoints.CONTENT))
    async def content(request: Request, file_id: str) -> Response:
        file = state.files.get(file_id)
        if request.query_params.get("format", "original") == "text":
            try:
                return Response(file.content.decode("utf-8"), media_type="text/plain")
            except UnicodeDecodeError:
                raise ServedError(400, f"File {file_id} has no text to extract.") from None
        return Response(file.content, media_type="application/octet-stream")

    @r.post(route(file_endpoints.PUBLIC_URL))
    async def publish(request: Request, file_id: str) -> Response:
        body = await json_body(request, optional=True) or {}
        file = state.files.publish(file_id, lifetime(body.get("expires_after") if isinstance(body, dict) else None))
        return JSONResponse({"public_url": public_url(request, file), "expires_at": file.public_expires_at})

    @r.post(route(file_endpoints.REVOKE_URL))
    async def revoke(file_id: str) -> Response:
        state.files.revoke(file_id)
        return JSONResponse({"id": file_id, "revoked": True, "public_url": None})

    return r


def create_cdn_router(state: ServerState) -> APIRouter:
    """``GET /files-cdn/{token}/{name}``: a published file, no credentials."""
    r = APIRouter()

    @r.get(CDN + "/{token}/{name}")
    async def published(token: str, name: str) -> Response:
        file = state.files.by_token(token)
        if file is None or not name.startswith(file.id):
            raise not_found(name)
        return Response(file.content, media_type="application/octet-stream")

    return r


__all__ = ["CDN", "create_cdn_router", "create_files_router", "public_url"]
