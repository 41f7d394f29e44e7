"""The Files API (``/v1/files``): the declarations, and the calls the hook sends.

Files cost nothing themselves (no usage record). An upload is a multipart form whose
``expires_after`` goes before ``file`` (xAI refuses the other order); its file is sized before
anything is sent and streamed from object storage. A download is written to object storage as
it arrives, bounded by its own size limit rather than the connection's answer limit.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlencode

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.endpoints.common import fixed_body, read, segment
from airflow_provider_xai.endpoints.storage import (
    StorageSink,
    WrittenFile,
    content_type_of,
    storage_path,
    stored_file,
    written,
)
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.pipeline.body import Form, FormFile
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.schemas.files import (
    MAX_EXPIRES_AFTER,
    MAX_FILE_BYTES,
    MAX_PAGE_SIZE,
    MIN_EXPIRES_AFTER,
    DeletedFile,
    FileList,
    FileObject,
    PublicURL,
    RevokedURL,
)

UPLOAD = Endpoint("files", "POST", "files", response=FileObject)
LIST = Endpoint("files", "GET", "files", response=FileList)
GET = Endpoint("files", "GET", "files/{file_id}", response=FileObject)
DELETE = Endpoint("files", "DELETE", "files/{file_id}", response=DeletedFile)
CONTENT = Endpoint("files", "GET", "files/{file_id}/content")
PUBLIC_URL = Endpoint("files", "POST", "files/{file_id}/public-url", response=PublicURL)
REVOKE_URL = Endpoint("files", "POST", "files/{file_id}/public-url/revoke", response=RevokedURL)
ENDPOINTS = (UPLOAD, LIST, GET, DELETE, CONTENT, PUBLIC_URL, REVOKE_URL)
#: A download may be this large (a file is at most 50 MB; its text form is smaller).
MAX_DOWNLOAD_BYTES = 2 * MAX_FILE_BYTES


def _path(file_id: str, suffix: str = "") -> str:
    if not isinstance(file_id, str) or not file_id.strip():
        raise XAIValidationError("file_id", f"must be a non-empty string, got {file_id!r}")
    return f"files/{segment(file_id)}{suffix}"


def expires_after(seconds: Any, field: str = "expires_after") -> int | None:
    """A file's (or public URL's) lifetime in whole seconds, an hour to 30 days; None: none."""
    if seconds is None:
        return None
    check_number(field, seconds, MIN_EXPIRES_AFTER, MAX_EXPIRES_AFTER, integer=True)
    return int(seconds)


def upload(
    source: Any, *, filename: str | None = None, expires_after_seconds: int | None = None, field: str = "path"
) -> Call[FileObject]:
    """Upload the file ``source`` names (an ``ObjectStoragePath`` or URI), checked first."""
    if filename is not None and (not isinstance(filename, str) or not filename.strip() or "\n" in filename):
        raise XAIValidationError("filename", f"must be a non-empty one-line name, got {filename!r}")
    lifetime = expires_after(expires_after_seconds)
    return _upload(stored_file(source, field, MAX_FILE_BYTES).form_file("file", filename), lifetime)


def upload_content(content: bytes, filename: str, expires_after_seconds: int | None = None) -> Call[FileObject]:
    """Upload ``content`` held in memory (a batch's JSONL input file) as ``filename``."""
    part = FormFile("file", filename, lambda: io.BytesIO(content), content_type_of(filename))
    return _upload(part, expires_after(expires_after_seconds))


def _upload(part: FormFile, lifetime: int | None) -> Call[FileObject]:
    fields = [] if lifetime is None else [("expires_after", str(lifetime))]
    form = Form(fields, [part])  # the fields go before the file, as xAI requires
    return Call(UPLOAD, read(FileObject, "file"), body=fixed_body(form))


def files_page(limit: int, token: str | None, order: str | None, sort_by: str | None) -> Call[FileList]:
    query = {"limit": limit, "order": order, "sort_by": sort_by, "pagination_token": token}
    return Call(LIST, read(FileList, "file list"), path=f"files?{urlencode(_given(query))}")


def get(file_id: str) -> Call[FileObject]:
    return Call(GET, read(FileObject, "file"), path=_path(file_id))


def delete(file_id: str) -> Call[DeletedFile]:
    return Call(DELETE, read(DeletedFile, "deletion"), path=_path(file_id))


def download(file_id: str, destination: Any, *, text: bool = False, max_bytes: int | None = None) -> Call[WrittenFile]:
    """Write the file's content (or its extracted text) to ``destination`` as it arrives."""
    path = storage_path(destination, "destination")
    check_number("max_bytes", max_bytes, 1, integer=True)
    query = "?format=text" if text else ""
    return Call(
        CONTENT,
        sink=lambda: StorageSink(path, written),
        path=_path(file_id, "/content") + query,
        max_bytes=max_bytes or MAX_DOWNLOAD_BYTES,
    )


def public_url(file_id: str, expires_after_seconds: int | None = None) -> Call[PublicURL]:
    lifetime = expires_after(expires_after_seconds)
    body = fixed_body({} if lifetime is None else {"expires_after": lifetime})
    return Call(PUBLIC_URL, read(PublicURL, "public URL"), path=_path(file_id, "/public-url"), body=body)


def revoke_url(file_id: str) -> Call[RevokedURL]:
    return Call(REVOKE_URL, read(RevokedURL, "revocation"), path=_path(file_id, "/public-url/revoke"))


def _given(query: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in query.items() if v is not None}


def page_size(limit: Any) -> int:
    """The ``limit`` of list calls, 1 to 100."""
    check_number("limit", limit, 1, MAX_PAGE_SIZE, integer=True)
    return int(limit)


__all__ = [
    "CONTENT",
    "DELETE",
    "ENDPOINTS",
    "GET",
    "LIST",
    "MAX_DOWNLOAD_BYTES",
    "PUBLIC_URL",
    "REVOKE_URL",
    "UPLOAD",
    "delete",
    "download",
    "expires_after",
    "files_page",
    "get",
    "page_size",
    "public_url",
    "revoke_url",
    "upload",
    "upload_content",
]
