"""Object storage at both ends of a call, with bounded memory.

An upload is read from where it is: sized before anything is sent (a file over the limit is
refused, naming the argument), then handed to the multipart form as a file opened afresh for
each attempt, which httpx reads in chunks. A download (a file's content, spoken audio) is
written where it goes as it arrives: a :class:`StorageSink` per attempt, its partial file
removed when the attempt fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Generic, TypeVar

from airflow_provider_xai.exceptions import XAIError, XAIValidationError
from airflow_provider_xai.pipeline.body import FormFile

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

T = TypeVar("T")
#: Bytes read at a time when hashing a file.
CHUNK = 1 << 20


def storage_path(value: Any, field: str) -> ObjectStoragePath:
    """``value`` (an ``ObjectStoragePath``, a URI such as ``s3://bucket/key``, or a local
    path) as an ``ObjectStoragePath``; anything else is refused, naming ``field``."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, ObjectStoragePath):
        return value
    if isinstance(value, str | os.PathLike) and str(value).strip():
        text = os.fspath(value).strip()
        return ObjectStoragePath(text if "://" in text else f"file://{os.path.abspath(text)}")
    raise XAIValidationError(field, f"expected an ObjectStoragePath or a path/URI, got {value!r}")


def content_type_of(name: str) -> str:
    """The media type a file name suggests (``application/octet-stream`` when it says none)."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class StoredFile:
    """A file in object storage, sized, to be uploaded."""

    path: ObjectStoragePath
    size: int

    @property
    def filename(self) -> str:
        return self.path.name

    def form_file(self, name: str = "file", filename: str | None = None) -> FormFile:
        """The multipart part that streams this file (reopened for each attempt)."""
        filename = filename or self.filename
        return FormFile(name, filename, self.open, content_type_of(filename))

    def open(self) -> IO[bytes]:
        handle: IO[bytes] = self.path.open("rb")
        return handle


def stored_file(value: Any, field: str, max_bytes: int) -> StoredFile:
    """The file ``value`` names, checked to exist and to hold at most ``max_bytes`` (before
    anything is sent), naming ``field`` when it does not."""
    path = storage_path(value, field)
    try:
        if not path.is_file():
            raise XAIValidationError(field, f"{path} is not a file (or does not exist)")
        size = int(path.stat().st_size)
    except OSError as exc:
        raise XAIValidationError(field, f"{path} cannot be read: {exc}") from None
    if size > max_bytes:
        raise XAIValidationError(field, f"{path} is {size:,} bytes; xAI accepts at most {max_bytes:,} bytes")
    return StoredFile(path, size)


def sha256_of(path: ObjectStoragePath) -> str:
    """The SHA-256 of a file's content, read a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class WrittenFile:
    """A body written to object storage: where, how many bytes, their SHA-256."""

    path: str
    size: int
    sha256: str


class StorageSink(Generic[T]):
    """A download written to ``path`` chunk by chunk (see :class:`~airflow_provider_xai.pipeline.call.Sink`);
    ``finish`` turns the written file into the call's answer.

    Storage that fails raises :class:`XAIError` whose ``billed`` is the answer as far as it got
    (a billed one keeps its usage: spoken audio was paid for even if it could not be kept)."""

    def __init__(self, path: ObjectStoragePath, finish: Callable[[WrittenFile], T]) -> None:
        self.path, self.finish = path, finish
        self.handle: IO[bytes] | None = None
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        try:
            if self.handle is None:
                with contextlib.suppress(OSError, NotImplementedError):  # object stores have no folders
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self.handle = self.path.open("wb")
            self.handle.write(chunk)
        except OSError as exc:
            raise self._failed(exc) from None
        self.size += len(chunk)
        self.digest.update(chunk)

    def result(self) -> T:
        if self.handle is None:  # an empty body: an empty file
            self.write(b"")
        assert self.handle is not None
        try:
            self.handle.close()  # the last bytes reach an object store on close
        except OSError as exc:
            raise self._failed(exc) from None
        return self.finish(WrittenFile(str(self.path), self.size, self.digest.hexdigest()))

    def discard(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
                self.path.unlink()
            self.handle = None

    def _failed(self, exc: OSError) -> XAIError:
        self.discard()
        error = XAIError(f"Could not write {self.path}: {exc}")
        error.billed = self.finish(WrittenFile(str(self.path), self.size, ""))
        return error


def written(file: WrittenFile) -> WrittenFile:
    """A ``finish`` that keeps the written file as the answer."""
    return file


__all__ = [
    "StorageSink",
    "StoredFile",
    "WrittenFile",
    "content_type_of",
    "sha256_of",
    "storage_path",
    "stored_file",
    "written",
]
