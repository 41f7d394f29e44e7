"""xAI Files API methods of :class:`XAIHook` (``/v1/files``): upload from object storage,
list, get, delete, download to object storage, and public URLs. The calls are described in
:mod:`airflow_provider_xai.endpoints.files`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from airflow_provider_xai.endpoints import files as api
from airflow_provider_xai.endpoints.storage import WrittenFile
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.hooks.paging import pages
from airflow_provider_xai.pipeline.transport import XAITransport
from airflow_provider_xai.schemas.files import DeletedFile, FileObject, PublicURL, RevokedURL

ORDERS = ("asc", "desc")
SORT_KEYS = ("created_at", "filename", "size")


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> Any:
    if value is not None and value not in allowed:
        raise XAIValidationError(field, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


class XAIFilesMixin:
    """Files API methods of :class:`XAIHook`; they need only its ``transport``."""

    transport: XAITransport

    def upload_file(self, path: Any, *, filename: str | None = None, expires_after: int | None = None) -> FileObject:
        """``POST /v1/files``: upload the file ``path`` names (``ObjectStoragePath``, URI or
        local path), streamed with bounded memory. It is refused before anything is sent when it
        is missing or over xAI's 50 MB limit. ``expires_after``: seconds it is kept (3600 to
        2,592,000; default: until deleted)."""
        return self.transport.send(api.upload(path, filename=filename, expires_after_seconds=expires_after))

    def list_files(
        self, *, limit: int = 100, order: str | None = None, sort_by: str | None = None
    ) -> Iterator[FileObject]:
        """``GET /v1/files``: every file of the team, ``limit`` (1 to 100) a page, fetched lazily."""
        size = api.page_size(limit)
        order, sort_by = _one_of("order", order, ORDERS), _one_of("sort_by", sort_by, SORT_KEYS)
        yield from pages(
            self.transport.send, lambda n, token: api.files_page(n, token, order, sort_by), lambda p: p.data, size
        )

    def get_file(self, file_id: str) -> FileObject:
        """``GET /v1/files/{id}`` (404, :class:`XAINotFoundError`, once deleted or expired)."""
        return self.transport.send(api.get(file_id))

    def delete_file(self, file_id: str) -> DeletedFile:
        """``DELETE /v1/files/{id}``."""
        return self.transport.send(api.delete(file_id))

    def download_file(
        self, file_id: str, destination: Any, *, text: bool = False, max_bytes: int | None = None
    ) -> WrittenFile:
        """``GET /v1/files/{id}/content``: write the file (``text``: its extracted text) to
        ``destination`` as it arrives; a failed attempt leaves no partial file behind."""
        return self.transport.send(api.download(file_id, destination, text=text, max_bytes=max_bytes))

    def create_public_url(self, file_id: str, *, expires_after: int | None = None) -> PublicURL:
        """``POST /v1/files/{id}/public-url``: a URL anyone can read the file at (until it
        expires or is revoked)."""
        return self.transport.send(api.public_url(file_id, expires_after))

    def revoke_public_url(self, file_id: str) -> RevokedURL:
        """``POST /v1/files/{id}/public-url/revoke`` (idempotent)."""
        return self.transport.send(api.revoke_url(file_id))


__all__ = ["XAIFilesMixin"]
