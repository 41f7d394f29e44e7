"""Request bodies: JSON as httpx sends it, with large strings (base64 images) sent in slices,
or a multipart form whose files are streamed from where they are (files, object storage)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

#: Strings at least this long (base64 images) are streamed into the request body in slices.
LARGE_STRING = 1 << 20
_SLICE = 1 << 20


def _has_large_string(value: Any) -> bool:
    """Whether any string in ``value`` is :data:`LARGE_STRING` or longer (runs on every request)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if len(item) >= LARGE_STRING:
                return True
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def close_files(arguments: dict[str, Any]) -> None:
    """Close the files :func:`body_arguments` opened for a form, once it was sent."""
    for _name, (_filename, handle, _type) in arguments.get("files") or ():
        handle.close()


class JSONBody:
    """A JSON request body sent in slices, so a 27 MB base64 image is not copied three times.

    ``httpx.request(json=...)`` holds the body as a ``str`` and then ``bytes`` (and h11 joins
    the bytes into one more copy when sending), on top of the caller's data URI: four copies of
    a large image at once. Here the large strings are encoded 1 MiB at a time while sending,
    with an exact ``Content-Length`` (the JSON text is what httpx 0.28's ``json=`` sends).
    """

    def __init__(self, body: Any) -> None:
        token = f"xai-large-{uuid.uuid4().hex}-"
        self.large: list[str] = []

        def swap(value: Any) -> Any:
            if isinstance(value, str) and len(value) >= LARGE_STRING:
                self.large.append(value)
                return f"{token}{len(self.large) - 1}"
            if isinstance(value, dict):
                return {k: swap(v) for k, v in value.items()}
            if isinstance(value, list):
                return [swap(v) for v in value]
            return value

        skeleton = json.dumps(swap(body), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self.pieces: list[bytes | int] = []  # encoded JSON text, or the index of a large string
        rest = skeleton
        for i in range(len(self.large)):
            marker = json.dumps(f"{token}{i}")
            head, _, rest = rest.partition(marker)
            self.pieces += [head.encode("utf-8"), i]
        self.pieces.append(rest.encode("utf-8"))
        self.length = sum(
            len(p) if isinstance(p, bytes) else sum(map(len, self._slices(p))) for p in self.pieces
        )

    def _slices(self, index: int) -> Iterator[bytes]:
        text = self.large[index]
        yield b'"'
        for start in range(0, len(text), _SLICE):
            yield json.dumps(text[start : start + _SLICE], ensure_ascii=False)[1:-1].encode("utf-8")
        yield b'"'

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            if isinstance(piece, bytes):
                yield piece
            else:
                yield from self._slices(piece)

    async def aiter(self) -> AsyncIterator[bytes]:
        """The same chunks for ``httpx.AsyncClient`` (which needs an async iterable)."""
        for chunk in self:
            yield chunk


@dataclass(frozen=True)
class FormFile:
    """One file of a multipart form, opened afresh for each attempt (so a retry re-sends it)."""

    name: str
    filename: str
    open: Callable[[], IO[bytes]]
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Form:
    """A multipart form: its fields in order, then its files (httpx sends fields first, which
    is the order xAI wants: ``expires_after`` before ``file``, ``file`` last)."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[FormFile] = field(default_factory=list)


def body_arguments(body: Any, *, asynchronous: bool = False) -> dict[str, Any]:
    """``httpx`` request arguments for a body: a :class:`Form` as multipart (its files opened
    now, streamed by httpx in chunks); JSON as ``json=``, or a sliced :class:`JSONBody` (build a
    fresh one per attempt) when it holds a large string."""
    if isinstance(body, Form):
        data: dict[str, list[str]] = {}
        for name, value in body.fields:  # a name given twice is sent twice, in order
            data.setdefault(name, []).append(value)
        files = [(f.name, (f.filename, f.open(), f.content_type)) for f in body.files]
        return {"data": data, "files": files}
    if body is None or not _has_large_string(body):
        return {"json": body}
    content = JSONBody(body)
    return {
        "content": content.aiter() if asynchronous else content,
        "headers": {"Content-Type": "application/json", "Content-Length": str(content.length)},
    }
