"""Input images and videos of xAI's image and video requests, as the API takes them:
``{"url": ...}`` (an ``https://`` URL xAI fetches, or a ``data:`` URI) or ``{"file_id": ...}``.

Images come from any source the vision operator takes (a URL, a file, an ``ObjectStoragePath``,
bytes), read and checked by :mod:`airflow_provider_xai.images` (JPEG or PNG, detected from the
content). A video is an ``https://`` URL or a file id passed through, or a file, object or bytes
checked to be MP4/QuickTime (from its content) and sent inline as a ``data:video/mp4`` URI.
Every refusal names the field, before any request. A leaf: imports nothing above it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.images import (
    BufferReader,
    coerce_images,
    describe_source,
    encode_stream,
    resolve_image,
    sniff_format,
)

#: The largest video sent inline (larger ones: give xAI a URL or an uploaded file's id).
MAX_VIDEO_BYTES = 50 * 1024 * 1024
_REF_KEYS = frozenset({"url", "file_id"})


def is_ref(value: Any) -> bool:
    """``value`` is already the API's shape: ``{"url": ...}`` or ``{"file_id": ...}``."""
    return isinstance(value, Mapping) and bool(value) and set(value) <= _REF_KEYS


def image_refs(sources: Any, field: str = "images") -> list[dict[str, Any]]:
    """Every image of ``sources`` (one or a list) checked and read, as API references."""
    refs = []
    for i, item in enumerate(coerce_images(sources, field)):
        refs.append(dict(item) if is_ref(item) else {"url": resolve_image(item, index=i, field=field).url})
    return refs


def image_ref(source: Any, field: str = "image") -> dict[str, Any]:
    """One image, checked and read, as an API reference."""
    if is_ref(source):
        return dict(source)
    return {"url": resolve_image(source, field=field.rsplit("[", 1)[0]).url}


def _video_mime(head: bytes, source: str, field: str) -> str:
    kind = sniff_format(head)
    if kind != "MP4/QuickTime":
        raise XAIValidationError(field, f"{source} is {kind} data (detected from its content); xAI takes MP4 video")
    return "video/mp4"


def _inline(read: Any, size: int | None, source: str, field: str) -> dict[str, Any]:
    url, _mime, _size = encode_stream(read, size, source, field, mime_of=_video_mime, limit=MAX_VIDEO_BYTES,
                                      what="inline video")  # fmt: skip
    return {"url": url}


def _from_file(path: Path, source: str, field: str) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_VIDEO_BYTES:
            raise XAIValidationError(field, f"{source} is larger than {MAX_VIDEO_BYTES} bytes: give xAI a URL")
        with path.open("rb") as stream:
            return _inline(stream.read, size, source, field)
    except (FileNotFoundError, NotADirectoryError):
        raise XAIValidationError(field, f"{source}: file not found") from None
    except IsADirectoryError:
        raise XAIValidationError(field, f"{source} is a directory, not a video") from None
    except OSError as exc:
        raise XAIValidationError(field, f"{source}: cannot read ({exc.strerror or exc})") from None


def _from_object(path: Any, source: str, field: str) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return _inline(stream.read, None, source, field)
    except FileNotFoundError:
        raise XAIValidationError(field, f"{source}: object not found") from None
    except IsADirectoryError:
        raise XAIValidationError(field, f"{source} is a directory, not a video") from None


def _from_text(value: str, source: str, field: str) -> dict[str, Any]:
    if not value.strip():
        raise XAIValidationError(field, "is an empty string; expected a URL or a path")
    if value[:11].lower() == "data:video/":
        return {"url": value}
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise XAIValidationError(field, f"{source} has no host")
        return {"url": value}
    if parts.scheme == "file":
        return _from_file(Path(unquote(parts.path)), source, field)
    if parts.scheme and "://" in value:
        raise XAIValidationError(
            field, f"{source}: give an https URL, a local path, or ObjectStoragePath('{parts.scheme}://...')"
        )
    return _from_file(Path(value).expanduser(), source, field)


def video_ref(source: Any, field: str = "video") -> dict[str, Any]:
    """A video as an API reference: a URL or file id as it is, else read and sent inline."""
    from airflow.sdk import ObjectStoragePath  # lazily: not needed at DAG parse

    if is_ref(source):
        return dict(source)
    described = describe_source(source)
    if isinstance(source, bytes | bytearray | memoryview):
        reader = BufferReader(source)
        return _inline(reader.read, len(reader.data), described, field)
    if isinstance(source, str):
        return _from_text(source, described, field)
    if isinstance(source, ObjectStoragePath):
        return _from_object(source, described, field)
    if isinstance(source, os.PathLike):
        return _from_file(Path(os.fspath(source)).expanduser(), described, field)
    raise XAIValidationError(
        field, f"unsupported video source of type {type(source).__name__}: give a URL, a path, an "
        "ObjectStoragePath, bytes or {'file_id': ...}",
    )  # fmt: skip


__all__ = ["MAX_VIDEO_BYTES", "image_ref", "image_refs", "is_ref", "video_ref"]
