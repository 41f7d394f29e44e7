"""Image generation and editing (``/v1/images/generations``, ``/v1/images/edits``) and deferred
image results (``GET /v1/images/{request_id}``): the declarations, and the calls the hook sends.

A request is checked when its call is built into a body, before anything is sent. An answer is
billed per image (``cost_in_usd_ticks``, else the media price table); a deferred request is
answered with its id and billed when its result is collected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.endpoints.common import segment, unknown_is_expired
from airflow_provider_xai.endpoints.media import media_record
from airflow_provider_xai.forecast import forecast_images
from airflow_provider_xai.media_options import DEFAULT_IMAGE_MODEL
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.pricing import Price
from airflow_provider_xai.schemas import parse_response
from airflow_provider_xai.schemas.media import (
    ImageRequest,
    ImageResult,
    Submitted,
    image_request,
)
from airflow_provider_xai.usage import UsageRecord

#: The GenAI operation of image and video spans (OpenTelemetry's name for multimodal output).
GENERATE_CONTENT = "generate_content"


def image_record(answer: ImageResult, prices: Mapping[str, Price], *, discount: float = 1.0) -> UsageRecord | None:
    """One record per answer: ``units`` = the images xAI made or refused (each is billed);
    ``discount`` (a batch's) applies to an estimate."""
    if answer.status != "done":
        return None
    return media_record("images", answer.model, len(answer.data), "image", answer.usage, answer.request_id,
                        discount=discount)  # fmt: skip


def _declared(path: str, response: type, record: Any) -> Endpoint:
    return Endpoint("images", "POST", path, request=ImageRequest, response=response, record=record,
                    operation=GENERATE_CONTENT, bucket="images", forecast=forecast_images)  # fmt: skip


GENERATE = _declared("images/generations", ImageResult, image_record)
EDIT = _declared("images/edits", ImageResult, image_record)
#: The same paths with ``deferred: true``: answered with a request id, billed when collected.
SUBMIT_GENERATE = _declared("images/generations", Submitted, None)
SUBMIT_EDIT = _declared("images/edits", Submitted, None)
RESULT = Endpoint(
    "images", "GET", "images/{request_id}", response=ImageResult, record=image_record,
    operation=GENERATE_CONTENT, polled=True,
)  # fmt: skip
ENDPOINTS = (GENERATE, EDIT, SUBMIT_GENERATE, SUBMIT_EDIT, RESULT)


def _checked(fields: Mapping[str, Any], **extra: Any) -> ImageRequest:
    return image_request({**fields, **extra})


def body(fields: Mapping[str, Any], **extra: Any) -> Any:
    """A body builder: the checked request (its default model filled in), dumped once."""

    def build(_settings: ClientSettings) -> dict[str, Any]:
        return _checked(fields, **extra).model_dump(exclude_none=True)

    return build


def _read(model: str, request_id: str | None = None) -> Any:
    def parse(reply: Reply) -> ImageResult:
        if reply.status_code == 202:
            return ImageResult(model=model, request_id=request_id, status="pending")
        result: ImageResult = parse_response(ImageResult, reply.content or b"{}", "image answer")
        result.model = result.model or model
        result.request_id = result.request_id or request_id
        return result

    return parse


def _model(fields: Mapping[str, Any]) -> str:
    model = fields.get("model")
    return model if isinstance(model, str) and model else DEFAULT_IMAGE_MODEL


def _edit(fields: Mapping[str, Any]) -> bool:
    return fields.get("image") is not None or fields.get("images") is not None


def create(fields: Mapping[str, Any]) -> Call[ImageResult]:
    """Generate (or, with ``image``/``images``, edit) images and answer them at once."""
    endpoint = EDIT if _edit(fields) else GENERATE
    return Call(endpoint, _read(_model(fields)), body=body(fields, deferred=None))


def submit(fields: Mapping[str, Any]) -> Call[str]:
    """Ask for images to be made in the background (URLs only); the answer is the request id."""

    def parse(reply: Reply) -> str:
        submitted: Submitted = parse_response(Submitted, reply.content, "deferred image request")
        return submitted.request_id

    endpoint = SUBMIT_EDIT if _edit(fields) else SUBMIT_GENERATE
    return Call(endpoint, parse, body=body(fields, deferred=True, response_format="url"))


def result(request_id: str, model: str = DEFAULT_IMAGE_MODEL) -> Call[ImageResult]:
    """A deferred request's images (``status`` pending while xAI answers 202); 404: expired."""

    expired = unknown_is_expired(f"Deferred image request {request_id} is unknown to xAI (expired or never made)")

    path = f"images/{segment(request_id)}"
    return Call(RESULT, _read(model, request_id), path=path, on_error=expired)


__all__ = ["EDIT", "ENDPOINTS", "GENERATE", "GENERATE_CONTENT", "RESULT", "SUBMIT_EDIT", "SUBMIT_GENERATE",
           "body", "create", "image_record", "result", "submit"]
