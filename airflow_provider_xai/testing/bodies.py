"""Request bodies as the local server's routes read them: JSON (415 when it is not JSON, 400
when it does not parse) and multipart forms (their parts in the order they were sent)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from fastapi import Request
from starlette.datastructures import UploadFile

from airflow_provider_xai.testing.errors import ServedError


async def json_body(request: Request, *, optional: bool = False) -> Any:
    """The JSON body (``optional``: None when there is none)."""
    body = await request.body()
    if optional and not body.strip():
        return None
    if not body or "json" not in request.headers.get("content-type", "").split(";")[0].lower():
        raise ServedError(415, "Expected request with `Content-Type: application/json`")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ServedError(400, f"Failed to parse the request body as JSON: {exc}") from None


class UploadedPart(NamedTuple):
    filename: str
    content: bytes


Parts = list[tuple[str, "str | UploadedPart"]]


async def form_parts(request: Request) -> Parts:
    """A multipart form's parts in order: text fields as text, files as :class:`UploadedPart`."""
    if request.headers.get("content-type", "").split(";")[0].lower() != "multipart/form-data":
        raise ServedError(415, "Expected request with `Content-Type: multipart/form-data`")
    form = await request.form()
    parts: Parts = []
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                parts.append((name, UploadedPart(value.filename or name, await value.read())))
            else:
                parts.append((name, value))
    finally:
        await form.close()
    return parts


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``[low, high]`` (400 naming it otherwise)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ServedError(400, f"{name} must be an integer from {low} to {high}, got {raw!r}.")
    return value


__all__ = ["Parts", "UploadedPart", "form_parts", "json_body", "query_int"]
