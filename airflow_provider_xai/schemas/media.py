"""Wire models of xAI's image and video endpoints (``/v1/images/...``, ``/v1/videos/...``):
requests strict (every field checked before anything is sent), answers tolerant (fields xAI
adds later are kept), numbers from the server bounded before use.

An image answer carries its images (a short-lived URL or base64 each, or a moderation refusal)
and its usage; a video is a job: submitted (a request id), then polled until ``done``,
``failed`` or ``expired``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.media_options import (
    DEFAULT_IMAGE_MODEL,
    DEFAULT_VIDEO_MODEL,
    EXTENSION_SECONDS,
    GENERATION_SECONDS,
    IMAGE_ASPECT_RATIOS,
    IMAGE_RESOLUTIONS,
    MAX_IMAGES,
    MAX_REFERENCE_IMAGES,
    VIDEO_ACTIONS,
    VIDEO_ASPECT_RATIOS,
    VIDEO_RESOLUTIONS,
)
from airflow_provider_xai.schemas.billed import Billed
from airflow_provider_xai.schemas.chat import RequestModel, describe_validation_error, unsendable_value

VideoAction = Literal["generate", "edit", "extend"]
#: Bounds of what a server's answer may say (a longer "video" is read as unknown).
MAX_VIDEO_SECONDS = 3600.0


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- requests ---------------------------------------------------------------------------------------
class MediaRef(RequestModel):
    """An input image or video: a URL (``https://`` or ``data:``) or an uploaded file's id."""

    url: str | None = Field(default=None, min_length=1)
    file_id: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> MediaRef:
        if (self.url is None) == (self.file_id is None):
            raise ValueError("give exactly one of 'url' or 'file_id'")
        return self


def _one_of(allowed: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank")
    return value


Prompt = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]


class ImageRequest(RequestModel):
    """Body of ``POST /v1/images/generations`` and ``/v1/images/edits`` (``image``/``images``)."""

    prompt: Prompt
    model: str = Field(default=DEFAULT_IMAGE_MODEL, min_length=1)
    n: int | None = Field(default=None, ge=1, le=MAX_IMAGES, strict=True)
    response_format: Literal["url", "b64_json"] | None = None
    aspect_ratio: Annotated[str, _one_of(IMAGE_ASPECT_RATIOS)] | None = None
    resolution: Annotated[str, _one_of(IMAGE_RESOLUTIONS)] | None = None
    quality: str | None = None
    deferred: bool | None = None
    image: MediaRef | None = None
    images: list[MediaRef] | None = Field(default=None, min_length=1)
    user: str | None = None

    @model_validator(mode="after")
    def _rules(self) -> ImageRequest:
        if self.image is not None and self.images is not None:
            raise ValueError("give 'image' or 'images', not both")
        if self.deferred and self.response_format == "b64_json":
            raise ValueError("deferred images are delivered as URLs: response_format must be 'url'")
        if self.image is not None and self.aspect_ratio is not None:
            raise ValueError("an edit takes aspect_ratio only with 'images'")
        return self

    @property
    def is_edit(self) -> bool:
        return self.image is not None or self.images is not None


class VideoRequest(RequestModel):
    """Body of ``POST /v1/videos/generations``, ``/edits`` and ``/extensions``."""

    prompt: Prompt | None = None
    model: str = Field(default=DEFAULT_VIDEO_MODEL, min_length=1)
    duration: int | None = Field(default=None, strict=True)
    aspect_ratio: Annotated[str, _one_of(VIDEO_ASPECT_RATIOS)] | None = None
    resolution: Annotated[str, _one_of(VIDEO_RESOLUTIONS)] | None = None
    image: MediaRef | None = None
    reference_images: list[MediaRef] | None = Field(default=None, min_length=1, max_length=MAX_REFERENCE_IMAGES)
    video: MediaRef | None = None
    user: str | None = None

    def check(self, action: VideoAction) -> None:
        """The rules of ``action`` (which fields it takes, how long a video it makes)."""
        if action == "generate":
            if self.video is not None:
                raise XAIValidationError("video", "a generation takes no video: use action='edit' or 'extend'")
            if self.prompt is None and self.image is None:
                raise XAIValidationError("prompt", "is required (or give an image to animate)")
            _seconds(self.duration, GENERATION_SECONDS)
            return
        if self.video is None:
            raise XAIValidationError("video", f"is required to {action} a video")
        if self.prompt is None:
            raise XAIValidationError("prompt", f"is required to {action} a video")
        for name in ("image", "reference_images", "aspect_ratio", "resolution"):
            if getattr(self, name) is not None:
                raise XAIValidationError(name, f"is not taken when you {action} a video")
        if action == "edit" and self.duration is not None:
            raise XAIValidationError("duration", "an edit keeps the video's length")
        if action == "extend":
            _seconds(self.duration, EXTENSION_SECONDS)


def _seconds(duration: int | None, bounds: tuple[int, int]) -> None:
    if duration is not None and not bounds[0] <= duration <= bounds[1]:
        raise XAIValidationError("duration", f"must be {bounds[0]} to {bounds[1]} seconds, got {duration!r}")


def validated(model: type[RequestModel], fields: Mapping[str, Any]) -> Any:
    """``fields`` as a validated ``model``, refused with the field's name; the body is sendable
    as JSON (no NaN, bytes or lone surrogates)."""
    try:
        request = model.model_validate(dict(fields))
    except ValidationError as exc:
        raise XAIValidationError(*describe_validation_error(exc)) from None
    body = request.model_dump(exclude_none=True)
    if problem := unsendable_value(body, ""):
        raise XAIValidationError(problem[0] or "request", problem[1])
    return request


def image_request(fields: Mapping[str, Any]) -> ImageRequest:
    """A checked image generation or edit request."""
    request: ImageRequest = validated(ImageRequest, fields)
    return request


def video_request(fields: Mapping[str, Any], action: VideoAction) -> VideoRequest:
    """A checked video request for ``action``."""
    if action not in VIDEO_ACTIONS:
        raise XAIValidationError("action", f"must be one of {', '.join(VIDEO_ACTIONS)}, got {action!r}")
    request: VideoRequest = validated(VideoRequest, fields)
    request.check(action)
    return request


# --- answers ----------------------------------------------------------------------------------------
class MediaUsage(_Answer):
    """What xAI says an image or video request cost (``cost_in_usd_ticks``: 1e10 per USD)."""

    cost_in_usd_ticks: int | None = None

    @field_validator("cost_in_usd_ticks", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**16 else None


class JobError(_Answer):
    code: str | None = None
    message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"message": value} if isinstance(value, str) else value

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else str(self.message or "no reason given")


class ImageData(_Answer):
    """One image of an answer: its URL or base64, or a moderation refusal (no image)."""

    url: str | None = None
    b64_json: str | None = None
    mime_type: str | None = None
    revised_prompt: str | None = None
    respect_moderation: bool | None = None

    @property
    def refused(self) -> bool:
        """xAI's moderation withheld this image (``respect_moderation: false``, or no image at all)."""
        return self.respect_moderation is False or not (self.url or self.b64_json)


class ImageResult(Billed, _Answer):
    """An image answer: ``POST /v1/images/...``, or a deferred one from ``GET /v1/images/{id}``
    (then with ``request_id`` and ``status``; ``pending`` while xAI answers 202)."""

    data: list[ImageData] = Field(default_factory=list)
    usage: MediaUsage | None = None
    model: str = ""
    request_id: str | None = None
    status: str = "done"
    error: JobError | None = None

    @property
    def refused(self) -> list[int]:
        """The positions of the images moderation withheld."""
        return [i for i, item in enumerate(self.data) if item.refused]


class Submitted(_Answer):
    """A deferred image or video request, accepted: poll it with its id."""

    request_id: str = Field(min_length=1)


class VideoOut(_Answer):
    url: str | None = None
    duration: float | None = None
    respect_moderation: bool | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok and 0 <= value <= MAX_VIDEO_SECONDS else None


class VideoJob(Billed, _Answer):
    """``GET /v1/videos/{request_id}``: ``pending`` (with ``progress`` in percent), ``done``
    (the video), ``failed`` (why) or ``expired``."""

    request_id: str = ""
    status: str = "pending"
    progress: int | None = None
    video: VideoOut | None = None
    model: str = ""
    usage: MediaUsage | None = None
    error: JobError | None = None

    @field_validator("progress", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return int(min(max(value, 0), 100)) if ok else None

    @property
    def finished(self) -> bool:
        return self.status != "pending"

    @property
    def refused(self) -> bool:
        """Moderation withheld the video of a finished job."""
        return self.status == "done" and (self.video is None or self.video.respect_moderation is False
                                          or not self.video.url)  # fmt: skip


class FinishedVideo(VideoJob):
    """A video as a batch result carries it: finished (xAI sends no status there)."""

    status: str = "done"


__all__ = [
    "FinishedVideo",
    "ImageData",
    "ImageRequest",
    "ImageResult",
    "JobError",
    "MediaRef",
    "MediaUsage",
    "Submitted",
    "VideoAction",
    "VideoJob",
    "VideoOut",
    "VideoRequest",
    "image_request",
    "video_request",
]
