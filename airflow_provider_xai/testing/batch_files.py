"""The JSONL input files of batches on the local server: ``POST /v1/files`` (the smallest upload,
until the Files API has its own routes) and reading a file's lines into batch requests.

* ``POST /v1/files`` (multipart): ``file`` required and last (a field after it -> 400, as xAI's
  ``expires_after`` must come before ``file``); ``expires_after`` 3600 to 2592000 seconds (else
  400); more than :data:`MAX_FILE_BYTES` -> 413. Answers xAI's file object.
* A file's lines are ``{"custom_id", "method": "POST", "url", "body"}``, ``url`` one of
  ``batch_run.URLS``; a line that is not such an object refuses the batch's creation (400,
  naming the line). Blank lines are skipped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_xai.endpoints import batches
from airflow_provider_xai.endpoints.routes import route
from airflow_provider_xai.testing.batch_run import URLS
from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.state import ServerState

MAX_FILE_BYTES = 50_000_000
EXPIRES_AFTER = (3600, 2_592_000)


@dataclass
class StoredFile:
    id: str
    filename: str
    content: bytes
    created: int
    expires: int | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created,
                "expires_at": self.expires, "filename": self.filename, "purpose": ""}  # fmt: skip


def read_lines(stored: StoredFile) -> list[tuple[str, str, dict[str, Any]]]:
    """(custom_id, kind, body) of every line of an input file; 400 naming a bad line."""
    out = []
    for n, raw in enumerate(stored.content.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise ServedError(400, f"Invalid input file {stored.id}: line {n} is not JSON ({exc}).") from None
        if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
            raise ServedError(400, f"Invalid input file {stored.id}: line {n} needs a 'body' object.")
        if line.get("url") not in URLS or line.get("method", "POST") != "POST":
            raise ServedError(
                400, f"Invalid input file {stored.id}: line {n}: expected method POST and a url in {sorted(URLS)}."
            )
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise ServedError(400, f"Invalid input file {stored.id}: line {n} needs a custom_id.")
        out.append((custom_id, URLS[line["url"]], line["body"]))
    return out


def create_files_router(state: ServerState) -> APIRouter:
    """``POST /files`` (under ``/v1``) backed by ``state.batch_files``."""
    r = APIRouter()

    @r.post(route(batches.UPLOAD_INPUT_FILE))
    async def upload(request: Request) -> Response:
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            raise ServedError(400, "Expected a multipart/form-data body with a 'file' part.")
        form = await request.form(max_part_size=MAX_FILE_BYTES + 1)
        items = form.multi_items()
        names = [name for name, _ in items]
        if "file" not in names:
            raise ServedError(400, "Invalid request: the 'file' part is missing.")
        if names[-1] != "file":
            raise ServedError(400, "Invalid request: 'file' must be the last part (send expires_after before it).")
        upload = form["file"]
        content = await upload.read() if hasattr(upload, "read") else str(upload).encode()
        if len(content) > MAX_FILE_BYTES:
            raise ServedError(413, f"File of {len(content)} bytes exceeds the {MAX_FILE_BYTES} byte limit.")
        expires = None
        if (ttl := form.get("expires_after")) is not None:
            if not str(ttl).isdigit() or not EXPIRES_AFTER[0] <= int(str(ttl)) <= EXPIRES_AFTER[1]:
                raise ServedError(400, f"Invalid expires_after {ttl!r}: expected seconds in {list(EXPIRES_AFTER)}.")
            expires = int(time.time()) + int(str(ttl))
        filename = getattr(upload, "filename", None) or "upload"
        stored = StoredFile(f"file_{uuid.uuid4()}", filename, content, int(time.time()), expires)
        with state._lock:
            state.batch_files[stored.id] = stored
        return JSONResponse(stored.to_json())

    return r
