"""Where generated images and videos land: an ``ObjectStoragePath`` folder (any Airflow object
storage), one file per image or video, named the same on every try of the same task instance
(``<folder>/<dag_id>/<run_id>/<task_id>[_<map_index>]/<stem>.<ext>``, the extension that of the
file's real format, detected from its first bytes).

:class:`StorageSink` writes a download as it is read (the pipeline's ``sink``: a new one per
attempt, a failed attempt's partial file deleted); :func:`write_base64` decodes a ``b64_json``
image slice by slice into one. Neither ever holds a whole file in memory.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import XAIResponseError, XAIValidationError
from airflow_provider_xai.images import sniff_format

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Formats by what :func:`sniff_format` calls them: (media type, file extension).
FORMATS = {"JPEG": ("image/jpeg", "jpeg"), "PNG": ("image/png", "png"), "WebP": ("image/webp", "webp"),
           "MP4/QuickTime": ("video/mp4", "mp4")}  # fmt: skip
IMAGE_FORMATS = ("JPEG", "PNG", "WebP")
VIDEO_FORMATS = ("MP4/QuickTime",)
_HEAD = 24
#: Base64 characters decoded at a time (a multiple of 4): 256 KiB of image per slice.
B64_SLICE = 4 * 65536
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def safe(part: str) -> str:
    """A path segment any object store takes (run ids hold ``:`` and ``+``)."""
    return _UNSAFE.sub("_", part).strip("._") or "_"


def output_folder(value: Any, field: str = "output_folder") -> ObjectStoragePath:
    """The folder as an ``ObjectStoragePath`` (given one, or a path/URI string)."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, ObjectStoragePath):
        return value
    if isinstance(value, str) and value.strip():
        return ObjectStoragePath(value.strip())
    raise XAIValidationError(field, f"expected an ObjectStoragePath or a path/URI, got {value!r:.80}")


def task_folder(folder: ObjectStoragePath, context: Any) -> ObjectStoragePath:
    """This task instance's own folder under ``folder`` (the same on every try)."""
    ti = context["ti"]
    index = ti.map_index if ti.map_index is not None else -1
    task = safe(ti.task_id) + ("" if index < 0 else f"_{index}")
    path: ObjectStoragePath = folder / safe(ti.dag_id) / safe(ti.run_id) / task
    return path


@dataclass(frozen=True)
class Written:
    """A file written to object storage."""

    path: str
    bytes: int
    mime_type: str


class StorageSink:
    """One generated file written to ``folder / stem.<ext>`` as it is read.

    The first bytes decide the format (and the extension); a format not in ``accept`` is
    refused before anything is stored. :meth:`discard` deletes what a failed attempt wrote.
    """

    def __init__(self, folder: ObjectStoragePath, stem: str, accept: tuple[str, ...] = IMAGE_FORMATS) -> None:
        self.folder, self.stem, self.accept = folder, stem, accept
        self.head = b""
        self.path: ObjectStoragePath | None = None
        self.handle: Any = None
        self.size = 0
        self.mime = ""

    def write(self, chunk: bytes) -> None:
        if self.handle is None:
            self.head += chunk
            if len(self.head) >= _HEAD:
                self._open()
            return
        self.handle.write(chunk)
        self.size += len(chunk)

    def _open(self) -> None:
        kind = sniff_format(self.head[:_HEAD])
        if kind not in self.accept:
            raise XAIResponseError(f"xAI's file for {self.stem} is {kind} data, not {' or '.join(self.accept)}")
        self.mime, ext = FORMATS[kind]
        with contextlib.suppress(OSError, NotImplementedError):  # object stores have no directories
            self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{self.stem}.{ext}"
        self.handle = self.path.open("wb")
        self.handle.write(self.head)
        self.size, self.head = len(self.head), b""

    def result(self) -> Written:
        if self.handle is None:
            if not self.head:
                raise XAIResponseError(f"xAI's file for {self.stem} is empty")
            self._open()
        assert self.path is not None
        self.handle.close()
        return Written(str(self.path), self.size, self.mime)

    def discard(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(Exception):
                self.handle.close()
            with contextlib.suppress(Exception):
                assert self.path is not None
                self.path.unlink()
        self.handle, self.head = None, b""


def write_base64(text: str, sink: StorageSink) -> Written:
    """Decode a ``b64_json`` image into ``sink`` a slice at a time."""
    try:
        for start in range(0, len(text), B64_SLICE):
            try:
                sink.write(binascii.a2b_base64(text[start : start + B64_SLICE]))
            except (binascii.Error, ValueError) as exc:
                raise XAIResponseError(f"xAI's b64_json for {sink.stem} is not valid base64 ({exc})") from None
        return sink.result()
    except BaseException:
        sink.discard()
        raise


#: Downloads one image: (its number, its URL, a factory of the sink it goes into) -> the file.
Download = Callable[[int, str, Callable[[], StorageSink]], Written]


def write_images(items: Sequence[Any], folder: ObjectStoragePath, download: Download) -> list[tuple[int, Written]]:
    """Every image of an answer (``ImageData``) into ``folder/image_NN.<ext>``: ``b64_json``
    decoded, URLs handed to ``download``; the ones moderation withheld are skipped."""
    written = []
    for index, item in enumerate(items):
        if item.refused:
            continue
        sink = functools.partial(StorageSink, folder, f"image_{index:02d}")
        out = write_base64(item.b64_json, sink()) if item.b64_json else download(index, item.url, sink)
        written.append((index, out))
    return written


__all__ = ["FORMATS", "IMAGE_FORMATS", "VIDEO_FORMATS", "Download", "StorageSink", "Written", "output_folder",
           "safe", "task_folder", "write_base64", "write_images"]
