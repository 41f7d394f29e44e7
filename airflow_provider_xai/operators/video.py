"""XAIVideoOperator: make, edit or extend a video with Grok and write it to object storage.

``action="generate"`` makes a video from a prompt (and, with ``image=``, from a first frame:
image-to-video); ``"edit"`` and ``"extend"`` take ``video=`` (a URL, a file, an
``ObjectStoragePath`` or bytes). Video jobs take minutes, so the task waits in the triggerer by
default; the request id goes to XCom and the task state store the moment it exists, so a retry
re-attaches instead of paying twice. The MP4 is streamed into ``output_folder`` with bounded
memory as soon as the job is done, before its URL expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.media_options import (
    EXTENSION_SECONDS,
    GENERATION_SECONDS,
    VIDEO_ACTIONS,
    VIDEO_ASPECT_RATIOS,
    VIDEO_RESOLUTIONS,
)
from airflow_provider_xai.operators.images import check_choice
from airflow_provider_xai.operators.media import XAIMediaOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.pipeline.call import Endpoint
    from airflow_provider_xai.schemas.media import VideoJob


class XAIVideoOperator(XAIMediaOperator):
    """Generate, edit or extend a video and write the MP4 to ``output_folder``.

    :param prompt: what to make, or how to change the video (templated).
    :param action: ``generate`` (default), ``edit`` or ``extend``.
    :param image: the first frame of a generation (image-to-video), as the image operator's
        sources. (templated)
    :param reference_images: style references of a generation (up to 7). (templated)
    :param video: the video to edit or extend: an ``https://`` URL, a path or ``file://`` URL,
        an ``ObjectStoragePath``, bytes (MP4), or ``{"file_id": ...}``. (templated)
    :param duration: seconds: 1-15 for a generation, 2-10 for an extension; not for an edit.
    :param aspect_ratio: ``16:9`` (xAI's default), ``9:16``, ``1:1``, ``4:3``...
    :param resolution: ``480p`` (xAI's default), ``720p`` or ``1080p``.
    :param model: the video model (templated); default ``grok-imagine-video``.
    :param deferrable: wait in the triggerer (default) or on the worker.
    :param request_kwargs: other API fields. (templated)

    And :class:`~airflow_provider_xai.operators.media.XAIMediaOperator`'s ``output_folder``,
    ``on_moderated``, ``poll_interval`` (default 5 s), ``timeout`` (default 1 h), and
    ``xai_conn_id``, ``retry_policy``.

    Returns ``{"path", "paths", "bytes", "duration", "refused", "model", "cost_usd",
    "cost_source", "request_id"}``.
    """

    template_fields: Sequence[str] = (
        "prompt", "image", "reference_images", "video", "output_folder", "model", "request_kwargs",
    )  # fmt: skip
    template_fields_renderers: ClassVar[dict[str, str]] = {"request_kwargs": "json"}
    ui_color = "#f5d0fe"
    kind = "videos"

    def __init__(
        self,
        *,
        prompt: str | None = None,
        action: str = "generate",
        image: Any = None,
        reference_images: Any = None,
        video: Any = None,
        duration: int | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        model: str | None = None,
        deferrable: bool = True,
        request_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.action = action
        self.image = image
        self.reference_images = reference_images
        self.video = video
        self.duration = duration
        self.aspect_ratio = aspect_ratio
        self.resolution = resolution
        self.model = model
        self.deferrable = deferrable
        self.request_kwargs = request_kwargs or {}
        check_choice("action", action, VIDEO_ACTIONS)
        low, high = EXTENSION_SECONDS if action == "extend" else GENERATION_SECONDS
        check_number("duration", duration, low, high, integer=True)
        check_choice("aspect_ratio", aspect_ratio, VIDEO_ASPECT_RATIOS)
        check_choice("resolution", resolution, VIDEO_RESOLUTIONS)
        if action == "generate" and video is not None:
            raise XAIValidationError("video", "a generation takes no video: use action='edit' or 'extend'")

    def endpoint(self) -> Endpoint:
        from airflow_provider_xai.endpoints.videos import JOB

        return JOB

    def fields(self) -> dict[str, Any]:
        """The rendered task as checked API fields (input image and video read and checked)."""
        from airflow_provider_xai.hooks.media import video_fields
        from airflow_provider_xai.schemas.media import video_request

        if not isinstance(self.request_kwargs, dict):
            raise XAIValidationError("request_kwargs", f"expected a dict, got {type(self.request_kwargs).__name__}")
        names = ("prompt", "image", "reference_images", "video", "duration", "aspect_ratio", "resolution", "model")
        fields = {**self.request_kwargs, **{n: getattr(self, n) for n in names if getattr(self, n) is not None}}
        fields = video_fields(None, fields)
        video_request(fields, self.action)  # type: ignore[arg-type]  # checked at parse
        return fields

    def start(self, context: Context) -> Any:
        fields = self.fields()
        start = {"generate": self.hook.generate_video, "edit": self.hook.edit_video,
                 "extend": self.hook.extend_video}[self.action]  # fmt: skip
        request_id, found = self.attach(
            context, fields, self.hook.get_video, lambda job: job.finished, lambda: start(fields)
        )
        if found is not None:
            return self.complete(context, found)
        if not self.deferrable:
            job = self.hook.wait_for_video(request_id, poll_interval=self.poll_interval, timeout=self.timeout)
            return self.complete(context, job)
        self.defer_on(request_id)

    def job_from(self, data: Any) -> VideoJob:
        from airflow_provider_xai.schemas.media import VideoJob

        return VideoJob.model_validate(data)

    def complete(self, context: Context, job: VideoJob) -> Any:
        """Usage first, then the MP4 to object storage, then the XComs and the outcome."""
        from airflow_provider_xai.operators.media_output import VIDEO_FORMATS, StorageSink, task_folder

        if job.status != "done":
            self.failed(context, job)
        ledger = self.ledger(context)
        self.record_once(ledger, job)
        result: dict[str, Any] = {"path": None, "paths": [], "bytes": 0, "refused": job.refused}
        if not job.refused:
            folder = task_folder(self.folder(), context)
            assert job.video is not None and job.video.url is not None
            out = self.fetch(job.video.url, lambda: StorageSink(folder, "video", VIDEO_FORMATS),
                             lambda: _video_url(self.hook.get_video(job.request_id)))  # fmt: skip
            self.log.info("Video: %s (%d bytes)", out.path, out.bytes)
            result.update(path=out.path, paths=[out.path], bytes=out.bytes)
        duration = job.video.duration if job.video is not None else None
        result.update(duration=duration, **self.cost_fields(job), request_id=job.request_id)
        return self.outcome(context, result, int(job.refused))


def _video_url(job: VideoJob) -> str | None:
    return job.video.url if job.video is not None else None


__all__ = ["XAIVideoOperator"]
