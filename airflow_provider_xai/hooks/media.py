"""Image and video methods of :class:`XAIHook` (mixed in as :class:`XAIMediaMixin`): make and
edit images, start video jobs and poll them, and download what xAI made from the short-lived
URL it handed out, chunk by chunk into a sink (object storage), before the URL expires.

Each method is one call described in :mod:`airflow_provider_xai.endpoints.images`,
``endpoints/videos.py`` or ``endpoints/media.py``; input images and videos given as files,
objects or bytes are read and checked first (:mod:`airflow_provider_xai.media_inputs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from airflow_provider_xai.endpoints import images as images_api
from airflow_provider_xai.endpoints import media as media_api
from airflow_provider_xai.endpoints import videos as videos_api
from airflow_provider_xai.exceptions import XAIDeferredTimeoutError, XAIValidationError
from airflow_provider_xai.media_inputs import image_ref, image_refs, video_ref
from airflow_provider_xai.pipeline.call import Sink
from airflow_provider_xai.pipeline.transport import XAITransport
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Action, Poller, ProgressLog, poll
from airflow_provider_xai.schemas.media import ImageResult, VideoAction, VideoJob

T = TypeVar("T")
log = logging.getLogger(__name__)
J = TypeVar("J", ImageResult, VideoJob)


def image_fields(request: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """API fields of an image request; ``image``/``images`` given as any image source (URL, path,
    ``ObjectStoragePath``, bytes) are read and checked here."""
    merged = {**(request or {}), **fields}
    if merged.get("image") is not None:
        merged["image"] = image_ref(merged["image"])
    if merged.get("images") is not None:
        merged["images"] = image_refs(merged["images"])
    return merged


def video_fields(request: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """API fields of a video request, its input image, reference images and video read here."""
    merged = {**(request or {}), **fields}
    if merged.get("image") is not None:
        merged["image"] = image_ref(merged["image"])
    if merged.get("reference_images") is not None:
        merged["reference_images"] = image_refs(merged["reference_images"], "reference_images")
    if merged.get("video") is not None:
        merged["video"] = video_ref(merged["video"])
    return merged


def progress_of(job: ImageResult | VideoJob) -> str:
    """A job's state for the task log, in steps of 10 % (hundreds of waits log little)."""
    progress = getattr(job, "progress", None)
    return job.status if progress is None else f"{job.status}, {progress // 10 * 10}%"


class XAIMediaMixin:
    """Image and video methods of :class:`XAIHook`; they need only its ``transport``."""

    transport: XAITransport

    # --- images ----------------------------------------------------------------------------------
    def generate_images(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> ImageResult:
        """``POST /v1/images/generations``: ``prompt``, ``n`` (1-10), ``aspect_ratio``,
        ``resolution``, ``response_format`` (``url`` or ``b64_json``), ``model``..."""
        return self.transport.send(images_api.create(image_fields(request, fields)))

    async def agenerate_images(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> ImageResult:
        """Async :meth:`generate_images`."""
        return await self.transport.asend(images_api.create(image_fields(request, fields)))

    def edit_images(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> ImageResult:
        """``POST /v1/images/edits``: ``image`` (one) or ``images`` (several), each a URL, a
        path, an ``ObjectStoragePath`` or bytes (JPEG or PNG), plus the generation fields."""
        merged = image_fields(request, fields)
        _require_input(merged)
        return self.transport.send(images_api.create(merged))

    async def aedit_images(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> ImageResult:
        """Async :meth:`edit_images`."""
        merged = image_fields(request, fields)
        _require_input(merged)
        return await self.transport.asend(images_api.create(merged))

    def submit_images(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """Ask for images (generated, or edited with ``image``/``images``) in the background;
        returns the request id to poll with :meth:`get_images` (URLs only)."""
        return self.transport.send(images_api.submit(image_fields(request, fields)))

    async def asubmit_images(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """Async :meth:`submit_images`."""
        return await self.transport.asend(images_api.submit(image_fields(request, fields)))

    def get_images(self, request_id: str, model: str | None = None) -> ImageResult:
        """``GET /v1/images/{request_id}``: ``status`` ``pending`` while xAI answers 202, then
        ``done`` (or ``failed``); an id xAI no longer knows raises ``XAIDeferredExpiredError``."""
        return self.transport.send(images_api.result(request_id, *_given(model)))

    async def aget_images(self, request_id: str, model: str | None = None) -> ImageResult:
        """Async :meth:`get_images`."""
        return await self.transport.asend(images_api.result(request_id, *_given(model)))

    def wait_for_images(self, request_id: str, *, poll_interval: float = 1.0, timeout: float = 600.0) -> ImageResult:
        """Poll :meth:`get_images` (blocking) until it is no longer pending."""
        return _wait(lambda: self.get_images(request_id), f"xAI images {request_id}", poll_interval, timeout)

    # --- videos ----------------------------------------------------------------------------------
    def generate_video(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """``POST /v1/videos/generations``: ``prompt``, ``duration`` (1-15 s), ``aspect_ratio``,
        ``resolution``, ``image`` (the first frame), ``reference_images``...; returns the
        request id to poll with :meth:`get_video`."""
        return self._start_video("generate", request, fields)

    async def agenerate_video(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """Async :meth:`generate_video`."""
        return await self._astart_video("generate", request, fields)

    def edit_video(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """``POST /v1/videos/edits``: ``prompt`` and ``video`` (a URL, path, object or bytes)."""
        return self._start_video("edit", request, fields)

    async def aedit_video(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """Async :meth:`edit_video`."""
        return await self._astart_video("edit", request, fields)

    def extend_video(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """``POST /v1/videos/extensions``: ``prompt``, ``video`` and ``duration`` (2-10 s)."""
        return self._start_video("extend", request, fields)

    async def aextend_video(self, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """Async :meth:`extend_video`."""
        return await self._astart_video("extend", request, fields)

    def _start_video(self, action: VideoAction, request: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> str:
        return self.transport.send(videos_api.submit(video_fields(request, fields), action))

    async def _astart_video(
        self, action: VideoAction, request: Mapping[str, Any] | None, fields: Mapping[str, Any]
    ) -> str:
        return await self.transport.asend(videos_api.submit(video_fields(request, fields), action))

    def get_video(self, request_id: str) -> VideoJob:
        """``GET /v1/videos/{request_id}``: the job (``pending`` with ``progress``, ``done``,
        ``failed``, ``expired``); an id xAI no longer knows raises ``XAIDeferredExpiredError``."""
        return self.transport.send(videos_api.job(request_id))

    async def aget_video(self, request_id: str) -> VideoJob:
        """Async :meth:`get_video`."""
        return await self.transport.asend(videos_api.job(request_id))

    def wait_for_video(self, request_id: str, *, poll_interval: float = 5.0, timeout: float = 3600.0) -> VideoJob:
        """Poll :meth:`get_video` (blocking) until the job is no longer pending."""
        return _wait(lambda: self.get_video(request_id), f"xAI video {request_id}", poll_interval, timeout)

    # --- downloads -------------------------------------------------------------------------------
    def download_media(self, url: str, sink: Callable[[], Sink[T]], *, max_bytes: int | None = None) -> T:
        """Stream a generated file from ``url`` into ``sink()`` (a new sink per attempt, so a
        retried download starts clean), with bounded memory; returns the sink's result."""
        return self.transport.send(media_api.download(url, sink, max_bytes))

    async def adownload_media(self, url: str, sink: Callable[[], Sink[T]], *, max_bytes: int | None = None) -> T:
        """Async :meth:`download_media` (the sink's writes run on the event loop)."""
        return await self.transport.asend(media_api.download(url, sink, max_bytes))


def _require_input(fields: Mapping[str, Any]) -> None:
    if fields.get("image") is None and fields.get("images") is None:
        raise XAIValidationError("images", "an edit needs the image(s) to edit")


def _given(model: str | None) -> tuple[str, ...]:
    return (model,) if model else ()


def _wait(fetch: Callable[[], J], what: str, poll_interval: float, timeout: float) -> J:
    """The one poll decision around ``fetch`` until the job is no longer pending."""
    poller = Poller(poll_interval, time.time() + timeout, DEFAULT_MAX_POLL_FAILURES)
    progress = ProgressLog(lambda: log, what)
    outcome = poll(
        poller,
        fetch,
        lambda job: job.status != "pending",
        on_value=lambda job: progress.update(progress_of(job)),
        on_failure=progress.failure,
    )
    if outcome.action is Action.FINISH and outcome.value is not None:
        return outcome.value
    if outcome.action is Action.GIVE_UP and outcome.error is not None:
        raise outcome.error
    raise XAIDeferredTimeoutError(f"{what} was not ready within {timeout:g}s; it may still finish and be billed")


__all__ = ["XAIMediaMixin", "image_fields", "progress_of", "video_fields"]
