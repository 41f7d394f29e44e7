"""Image sources -> validated ``image_url`` content parts for xAI vision requests.

A source is an ``http(s)://`` URL (passed through: xAI fetches it), a ``data:image/...;base64,``
URI (checked, kept as is), a local path or ``file://`` URL, an Airflow ``ObjectStoragePath``
(``s3://``, ``gs://``, ``file://`` ...), or raw bytes. Files, object storage and bytes are sent
as base64 data URIs. The format comes from the content (magic numbers), never the file name:
xAI accepts JPEG and PNG only, up to :data:`MAX_IMAGE_BYTES` each.

Large images are read once and encoded once, chunk by chunk, into one preallocated buffer, so
the whole raw file is never held next to its encoding. Every refusal is an
:class:`XAIValidationError` naming ``images[i]`` and the source, never the image data.

This module is a leaf: it imports nothing from the operators or the hook.
"""

from __future__ import annotations

import binascii
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_xai.arguments import parse_rendered_list
from airflow_provider_xai.exceptions import XAIValidationError

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""xAI's limit per image (20 MiB), checked on the decoded bytes."""
DETAILS = ("auto", "low", "high")
SUPPORTED_MIME_TYPES = ("image/jpeg", "image/png")
CHUNK_BYTES = 384 * 1024  # a multiple of 3 (no inner padding); small, so peak memory stays ~2.7x the file
_HEAD_BYTES = 24  # enough for every signature below; a multiple of 3 as well
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_NON_B64 = re.compile(r"[^A-Za-z0-9+/=]")
_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_DICT_KEYS = {"source", "detail"}
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF-", "PDF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
)
_REFUSED_AS = {  # how a refusal names what the data is instead
    "PDF": "a PDF document",
    "MP4/QuickTime": "an MP4/QuickTime file",
    "SVG/XML": "SVG/XML markup",
    "text": "text",
    "unrecognised binary data": "not a recognised image format",
}


@dataclass(frozen=True)
class ResolvedImage:
    """One checked image: its content part plus a short, data-free description for logs."""

    url: str
    detail: str
    source: str
    mime: str | None = None  # None for URLs xAI fetches itself
    size: int | None = None  # decoded bytes for inline images

    @property
    def part(self) -> dict[str, Any]:
        """The chat content part: ``{"type": "image_url", "image_url": {"url", "detail"}}``."""
        return {"type": "image_url", "image_url": {"url": self.url, "detail": self.detail}}

    @property
    def summary(self) -> str:
        if self.mime is None:
            return f"{self.source} (URL, detail={self.detail})"
        return f"{self.source} ({self.mime}, {_human(self.size or 0)}, detail={self.detail})"


# --- format detection -------------------------------------------------------------------------
def sniff_format(head: bytes) -> str:
    """Name the format of data starting with ``head``: ``JPEG``, ``PNG``, or what it is instead."""
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
        return "MP4/QuickTime"
    if any(b < 0x20 and b not in b"\t\n\r\f" for b in head):
        return "unrecognised binary data"
    if head.decode("utf-8", "ignore").lstrip("\ufeff \t\r\n").lower().startswith(("<svg", "<?xml")):
        return "SVG/XML"
    return "text"


def _mime_for(head: bytes, source: str, field: str) -> str:
    kind = sniff_format(head)
    if kind == "JPEG":
        return "image/jpeg"
    if kind == "PNG":
        return "image/png"
    what = _REFUSED_AS.get(kind, f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind} image")
    raise XAIValidationError(
        field, f"{source} is {what} (detected from its content); xAI accepts only JPEG and PNG"
    )


# --- describing sources without leaking data --------------------------------------------------
def _human(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _short(text: str, limit: int = 160) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def describe_source(source: Any) -> str:
    """A short description of a source for messages: no query strings, base64 or bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{memoryview(source).nbytes} bytes>"
    if isinstance(source, str):
        if source[:5].lower() == "data:":
            head, _, _ = source[:200].partition(",")
            return f"'{head[:80]},...' ({len(source)} chars)"
        if _SCHEME.match(source):
            parts = urlsplit(source[:2000])  # no user:password@, no query (signed URLs)
            host = parts.netloc.rpartition("@")[2]
            return _short(f"{parts.scheme}://{host}{parts.path}{'?...' if parts.query else ''}")
        return _short(source)
    if isinstance(source, os.PathLike) and not _is_object_storage(source):
        return _short(os.fspath(source))
    if _is_object_storage(source):
        return _short(str(source))
    return f"<{type(source).__name__}>"


def _check_size(source: str, size: int, field: str, limit: int = MAX_IMAGE_BYTES, what: str = "image") -> None:
    if size == 0:
        raise XAIValidationError(field, f"{source} is empty (0 bytes)")
    if size > limit:
        problem = f"{source} is {_human(size)}; xAI accepts at most {_human(limit)} per {what}"
        raise XAIValidationError(field, problem)


# --- encoding -----------------------------------------------------------------------------------
class BufferReader:
    """Reads slices of an in-memory buffer without copying it."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data).cast("B")
        self.pos = 0

    def read(self, n: int = -1, /) -> memoryview:
        end = len(self.data) if n < 0 else self.pos + n
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk


def _read_exact(read: Callable[[int], bytes | memoryview], n: int) -> bytes | memoryview:
    """Up to ``n`` bytes (fewer only at end of stream), however the stream chunks its reads."""
    first = read(n)
    if len(first) >= n or not first:
        return first
    parts, got = [first], len(first)
    while got < n:
        more = read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


Reader = Callable[[int], "bytes | memoryview"]


def encode_stream(
    read: Reader,
    size: int | None,
    source: str,
    field: str,
    *,
    mime_of: Callable[[bytes, str, str], str] | None = None,
    limit: int = MAX_IMAGE_BYTES,
    what: str = "image",
) -> tuple[str, str, int]:
    """Read a stream (its ``read`` method) once and return ``(data_uri, mime, size)``.

    With ``size`` known (stat), base64 chunks go straight into one preallocated buffer that is
    decoded to ``str`` once. Without it, reading stops just past ``limit`` bytes. ``mime_of``
    names the media type from the first bytes or refuses them (default: JPEG and PNG images).
    """
    head = bytes(_read_exact(read, _HEAD_BYTES))
    if not head:
        raise XAIValidationError(field, f"{source} is empty (0 bytes)")
    mime = (mime_of or _mime_for)(head, source, field)
    known = size is not None
    if size is None:  # unknown length: a bounded read, then encode what we hold
        rest = _read_exact(read, limit + 1 - len(head))
        size = len(head) + len(rest)
        _check_size(source, size, field, limit, what)
    prefix = f"data:{mime};base64,".encode("ascii")
    out = bytearray(len(prefix) + 4 * ((size + 2) // 3))
    out[: len(prefix)] = prefix
    pos, seen = len(prefix), 0

    def put(data: bytes | memoryview) -> None:
        nonlocal pos, seen
        encoded = binascii.b2a_base64(data, newline=False)
        if pos + len(encoded) > len(out):
            raise XAIValidationError(field, f"{source} grew while it was being read")
        out[pos : pos + len(encoded)] = encoded
        pos += len(encoded)
        seen += len(data)

    put(head)  # 24 bytes (a multiple of 3) unless it is the whole image: no inner padding
    if not known:
        put(rest)
        del rest
    else:
        while seen < size and (chunk := _read_exact(read, min(CHUNK_BYTES, size - seen))):
            put(chunk)
        if read(1):
            raise XAIValidationError(field, f"{source} grew while it was being read")
    if seen != size:
        raise XAIValidationError(field, f"{source} changed while it was being read ({seen} of {size} bytes)")
    return out.decode("ascii"), mime, size


def _inline(read: Reader, size: int | None, source: str, field: str, detail: str) -> ResolvedImage:
    if size is not None:
        _check_size(source, size, field)
    url, mime, size = encode_stream(read, size, source, field)
    return ResolvedImage(url=url, detail=detail, source=source, mime=mime, size=size)


# --- the source kinds ---------------------------------------------------------------------------
def _is_object_storage(value: Any) -> bool:
    from airflow.sdk import ObjectStoragePath  # lazily: the SDK's io stack is not needed at parse

    return isinstance(value, ObjectStoragePath)


def _from_data_uri(url: str, source: str, field: str, detail: str) -> ResolvedImage:
    comma = url.find(",", 0, 512)
    if comma == -1:
        raise XAIValidationError(field, f"{source} is not a data URI (no ',' after the media type)")
    params = url[5:comma].split(";")
    mime = params[0].strip().lower()
    if params[-1].strip().lower() != "base64":
        raise XAIValidationError(field, f"{source} is not base64-encoded; use data:image/...;base64,")
    if not mime.startswith("image/"):
        raise XAIValidationError(field, f"{source} has media type {mime!r}; xAI accepts only JPEG and PNG")
    start, end = comma + 1, len(url)
    bad = _NON_B64.search(url, start)
    if bad:
        raise XAIValidationError(
            field,
            f"{source} has corrupt base64: invalid character {bad.group()!r} at offset {bad.start() - start}",
        )
    pad = url.find("=", start)
    if pad != -1 and (end - pad > 2 or url.count("=", pad) != end - pad):
        raise XAIValidationError(field, f"{source} has corrupt base64: '=' padding before the end")
    if (end - start) % 4:
        raise XAIValidationError(
            field, f"{source} has corrupt base64: length is not a multiple of 4 (truncated?)"
        )
    size = (end - start) // 4 * 3 - (end - pad if pad != -1 else 0)
    _check_size(source, size, field)
    try:
        head = binascii.a2b_base64(url[start : start + 32])
    except binascii.Error:
        raise XAIValidationError(field, f"{source} has corrupt base64") from None
    real = _mime_for(head, source, field)
    if _MIME_ALIASES.get(mime, mime) != real:  # the content decides, as for file names
        url = f"data:{real};base64,{url[start:]}"
    return ResolvedImage(url=url, detail=detail, source=source, mime=real, size=size)


def _from_local(path: Path, source: str, field: str, detail: str) -> ResolvedImage:
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise XAIValidationError(field, f"{source} is a directory, not an image file")
        _check_size(source, st.st_size, field)
        with path.open("rb") as stream:
            return _inline(stream.read, st.st_size, source, field, detail)
    except XAIValidationError:  # a ValueError too: already names the image, never wrap it again
        raise
    except FileNotFoundError:
        raise XAIValidationError(field, f"{source}: file not found") from None
    except ValueError as exc:  # a NUL byte or a lone surrogate: no file can have that name
        raise XAIValidationError(field, f"{source} is not a usable file path ({exc})") from None
    except OSError as exc:
        raise XAIValidationError(field, f"{source}: cannot read ({exc.strerror or exc})") from None


def _from_object_storage(path: Any, source: str, field: str, detail: str) -> ResolvedImage:
    size: int | None = None
    try:
        st = path.stat()
    except FileNotFoundError:
        raise XAIValidationError(field, f"{source}: object not found") from None
    except Exception:  # some stores cannot stat; the bounded read still enforces the limit
        st = None
    if st is not None:
        if st.get("type") == "directory":
            raise XAIValidationError(field, f"{source} is a directory, not an image object")
        raw_size = st.get("size")
        size = int(raw_size) if isinstance(raw_size, int) else None
    try:
        with path.open("rb") as stream:
            return _inline(stream.read, size, source, field, detail)
    except FileNotFoundError:
        raise XAIValidationError(field, f"{source}: object not found") from None
    except IsADirectoryError:
        raise XAIValidationError(field, f"{source} is a directory, not an image object") from None


def _from_string(value: str, source: str, field: str, detail: str) -> ResolvedImage:
    if not value.strip():
        raise XAIValidationError(field, "is an empty string; expected a URL, data URI or path")
    if value[:5].lower() == "data:":
        return _from_data_uri(value, source, field, detail)
    scheme = _SCHEME.match(value)
    if scheme is None:
        return _from_local(Path(value).expanduser(), source, field, detail)
    name = scheme.group(1).lower()
    if name in ("http", "https"):
        if not urlsplit(value).netloc:
            raise XAIValidationError(field, f"{source} has no host")
        return ResolvedImage(url=value, detail=detail, source=source)
    if name == "file":
        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            raise XAIValidationError(field, f"{source}: file:// URLs must be local (file:///path)")
        return _from_local(Path(unquote(parts.path)), source, field, detail)
    raise XAIValidationError(
        field,
        f"{source} has unsupported scheme {name!r}: give an http(s) URL, a data URI, a local path, "
        f"or ObjectStoragePath('{name}://...', conn_id=...) for object storage",
    )


def check_detail(detail: Any, field: str = "detail") -> str:
    """``detail`` must be ``auto``, ``low`` or ``high``."""
    if detail not in DETAILS:
        raise XAIValidationError(field, f"must be one of {', '.join(DETAILS)}; got {detail!r}")
    return str(detail)


def resolve_image(item: Any, *, index: int = 0, detail: str = "auto", field: str = "images") -> ResolvedImage:
    """Check one image source and build its content part (reads files, never the network)."""
    name = f"{field}[{index}]"
    if isinstance(item, Mapping):
        if item.get("type") == "image_url" and isinstance(item.get("image_url"), Mapping):
            inner = item["image_url"]  # an already-built content part
            item = {"source": inner.get("url"), **({"detail": inner["detail"]} if "detail" in inner else {})}
        unknown = set(item) - _DICT_KEYS
        if "source" not in item or unknown:
            raise XAIValidationError(
                name,
                f"a dict image needs 'source' and optionally 'detail'; got keys {sorted(map(str, item))}",
            )
        detail = check_detail(item.get("detail", detail), f"{name}.detail")
        item = item["source"]
    source = describe_source(item)
    if isinstance(item, bytes | bytearray | memoryview):
        view = BufferReader(item)
        return _inline(view.read, len(view.data), source, name, detail)
    if isinstance(item, str):
        return _from_string(item, source, name, detail)
    if _is_object_storage(item):
        return _from_object_storage(item, source, name, detail)
    if isinstance(item, os.PathLike):
        return _from_local(Path(os.fspath(item)).expanduser(), source, name, detail)
    raise XAIValidationError(
        name,
        f"unsupported image source of type {type(item).__name__}; expected a URL, data URI, path, "
        "ObjectStoragePath, bytes, or {'source': ..., 'detail': ...}",
    )


def coerce_images(images: Any, field: str = "images") -> list[Any]:
    """Normalise ``images`` to a list: one source becomes ``[source]``; a string that looks like
    a list (JSON, or the Python repr a Jinja template renders) is parsed."""
    if images is None:
        raise XAIValidationError(field, "is required: give one image or a list of images")
    if isinstance(images, str) and images.lstrip().startswith("["):
        images = parse_rendered_list(images, field)
        if images is None:
            raise XAIValidationError(field, "looks like a list but is neither JSON nor a Python literal")
    single = isinstance(images, str | bytes | bytearray | memoryview | Mapping)
    items = list(images) if isinstance(images, Sequence) and not single else [images]
    if not items:
        raise XAIValidationError(field, "is empty: give at least one image")
    return items


def resolve_images(images: Any, *, detail: str = "auto", field: str = "images") -> list[ResolvedImage]:
    """Check every image (one source or a list) in order; the first bad one raises."""
    detail = check_detail(detail, "detail")
    return [
        resolve_image(item, index=i, detail=detail, field=field)
        for i, item in enumerate(coerce_images(images, field))
    ]


def image_parts(images: Any, *, detail: str = "auto", field: str = "images") -> list[dict[str, Any]]:
    """Content parts for ``images`` (see :func:`resolve_images`)."""
    return [image.part for image in resolve_images(images, detail=detail, field=field)]
