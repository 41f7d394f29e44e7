"""The local server's file storage (``/v1/files``), without web-framework imports.

Files live in memory (the server is a test double): their content, name, expiry and public
URL. An expired or deleted file is 404 everywhere; lists are token-paged newest first, a page
shorter than its limit being the last (xAI returns a token on every page); a public URL is a
random token under ``/files-cdn/``, read without credentials until it expires or is revoked.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_provider_xai.testing.errors import ServedError

T = TypeVar("T")
#: xAI's upload limit (413 above it); ``files_max_bytes`` in the server config lowers it.
MAX_FILE_BYTES = 50_000_000
MIN_EXPIRES_AFTER, MAX_EXPIRES_AFTER = 3600, 2_592_000
#: Active public URLs a team may hold (429 beyond).
MAX_PUBLIC_URLS = 1000
SORT_KEYS = ("created_at", "filename", "size")


@dataclass
class ServedFile:
    id: str
    filename: str
    content: bytes
    created_at: int
    expires_at: int | None = None
    public_token: str | None = None
    public_expires_at: int | None = None

    @property
    def suffix(self) -> str:
        name = self.filename.rsplit("/", 1)[-1]
        return "." + name.rsplit(".", 1)[1] if "." in name else ""


def lifetime(value: Any, field: str = "expires_after") -> int | None:
    """``expires_after`` as xAI checks it: whole seconds, an hour to 30 days (400 otherwise)."""
    if value is None or value == "":
        return None
    try:
        seconds = int(str(value))
    except ValueError:
        raise ServedError(400, f"{field} must be a whole number of seconds, got {value!r}") from None
    if not MIN_EXPIRES_AFTER <= seconds <= MAX_EXPIRES_AFTER:
        raise ServedError(400, f"{field} must be between {MIN_EXPIRES_AFTER} and {MAX_EXPIRES_AFTER} seconds, "
                               f"got {seconds}")
    return seconds


def not_found(file_id: str) -> ServedError:
    return ServedError(404, f"File {file_id} was not found.")


class FileStore:
    """Every file the server holds; safe to use from any thread."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, ServedFile] = {}

    def clear(self) -> None:
        with self._lock:
            self._files.clear()

    def _live(self, file: ServedFile | None) -> bool:
        return file is not None and (file.expires_at is None or file.expires_at > self.clock())

    def add(self, filename: str, content: bytes, expires_after: int | None = None) -> ServedFile:
        now = int(self.clock())
        file = ServedFile(f"file_{uuid.uuid4()}", filename, content, now,
                          now + expires_after if expires_after is not None else None)
        with self._lock:
            self._files[file.id] = file
        return file

    def get(self, file_id: str) -> ServedFile:
        with self._lock:
            file = self._files.get(file_id)
        if file is None or not self._live(file):
            raise not_found(file_id)
        return file

    def delete(self, file_id: str) -> None:
        self.get(file_id)
        with self._lock:
            self._files.pop(file_id, None)

    def page(self, limit: int, token: str | None, order: str, sort_by: str | None) -> tuple[list[ServedFile], str]:
        """One page of live files and the token of the next (always given, as xAI does)."""
        with self._lock:
            files = [f for f in self._files.values() if self._live(f)]
        if sort_by is not None:
            files.sort(key=lambda f: (getattr(f, sort_by) if sort_by != "size" else len(f.content)))
        if order == "desc":
            files.reverse()
        return paged(files, limit, token)

    # -- public URLs -----------------------------------------------------------------------------
    def publish(self, file_id: str, expires_after: int | None) -> ServedFile:
        file = self.get(file_id)
        with self._lock:
            active = sum(1 for f in self._files.values() if f.public_token and self._public(f))
            if not (file.public_token and self._public(file)) and active >= MAX_PUBLIC_URLS:
                raise ServedError(429, f"At most {MAX_PUBLIC_URLS} public URLs may be active at once.")
            file.public_token = file.public_token if self._public(file) else secrets.token_urlsafe(16)
            file.public_expires_at = int(self.clock()) + expires_after if expires_after is not None else None
        return file

    def revoke(self, file_id: str) -> ServedFile:
        file = self.get(file_id)
        with self._lock:
            file.public_token, file.public_expires_at = None, None
        return file

    def _public(self, file: ServedFile) -> bool:
        return file.public_token is not None and (
            file.public_expires_at is None or file.public_expires_at > self.clock())

    def by_token(self, token: str) -> ServedFile | None:
        with self._lock:
            found = [f for f in self._files.values() if f.public_token == token]
        return found[0] if found and self._live(found[0]) and self._public(found[0]) else None


def paged(items: list[T], limit: int, token: str | None) -> tuple[list[T], str]:
    """One page of ``items`` from the offset ``token`` names, and the next page's token (always
    given: a page shorter than ``limit`` is the last)."""
    try:
        start = int(token) if token else 0
    except ValueError:
        start = -1
    if start < 0:
        raise ServedError(400, f"Invalid pagination_token {token!r}.")
    return items[start:start + limit], str(start + limit)


def file_json(file: ServedFile, public_url: str | None = None) -> dict[str, Any]:
    return {"id": file.id, "object": "file", "bytes": len(file.content), "created_at": file.created_at,
            "expires_at": file.expires_at, "filename": file.filename, "purpose": "",
            **({"public_url": public_url, "public_url_expires_at": file.public_expires_at}
               if public_url else {})}


__all__ = ["MAX_FILE_BYTES", "MAX_PUBLIC_URLS", "SORT_KEYS", "FileStore", "ServedFile", "file_json",
           "lifetime", "not_found", "paged"]
