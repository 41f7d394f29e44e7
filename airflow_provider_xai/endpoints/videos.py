"""Video generation, editing and extension (``POST /v1/videos/generations | edits |
extensions``, answered with a request id) and the job they start (``GET /v1/videos/{id}``:
202 pending with progress, then done, failed or expired): the declarations and the calls.

A job is billed per second of video once it is done (``cost_in_usd_ticks``, else the media
price table); the submissions themselves carry no usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.endpoints.common import segment, unknown_is_expired
from airflow_provider_xai.endpoints.images import GENERATE_CONTENT
from airflow_provider_xai.endpoints.media import media_record
from airflow_provider_xai.forecast import forecast_video
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.pricing import Price
from airflow_provider_xai.schemas import parse_response
from airflow_provider_xai.schemas.media import Submitted, VideoAction, VideoJob, VideoRequest, video_request
from airflow_provider_xai.usage import UsageRecord


def video_record(job: VideoJob, prices: Mapping[str, Price], *, discount: float = 1.0) -> UsageRecord | None:
    """The record of a finished job: ``units`` = seconds of video (unpriced without them);
    ``discount`` (a batch's) applies to an estimate."""
    if job.status != "done":
        return None
    seconds = job.video.duration if job.video is not None and job.video.duration is not None else 0.0
    return media_record("videos", job.model, seconds, "second", job.usage, job.request_id, discount=discount)


def _submit(path: str) -> Endpoint:
    return Endpoint("videos", "POST", path, request=VideoRequest, response=Submitted,
                    operation=GENERATE_CONTENT, bucket="videos", forecast=forecast_video)  # fmt: skip


GENERATE = _submit("videos/generations")
EDIT = _submit("videos/edits")
EXTEND = _submit("videos/extensions")
JOB = Endpoint(
    "videos", "GET", "videos/{request_id}", response=VideoJob, record=video_record,
    operation=GENERATE_CONTENT, polled=True,
)  # fmt: skip
ENDPOINTS = (GENERATE, EDIT, EXTEND, JOB)
SUBMISSIONS: dict[str, Endpoint] = {"generate": GENERATE, "edit": EDIT, "extend": EXTEND}


def body(fields: Mapping[str, Any], action: VideoAction) -> Any:
    """A body builder: the request checked for ``action``, dumped once."""

    def build(_settings: ClientSettings) -> dict[str, Any]:
        return video_request(fields, action).model_dump(exclude_none=True)

    return build


def submit(fields: Mapping[str, Any], action: VideoAction = "generate") -> Call[str]:
    """Start a video job; the answer is its request id."""

    def parse(reply: Reply) -> str:
        submitted: Submitted = parse_response(Submitted, reply.content, "video request")
        return submitted.request_id

    endpoint = SUBMISSIONS.get(action, GENERATE)
    return Call(endpoint, parse, body=body(fields, action))


def job(request_id: str) -> Call[VideoJob]:
    """The job's state: ``pending`` (202, maybe with progress), ``done``, ``failed``,
    ``expired``; an id xAI no longer knows (404) is expired too."""

    def parse(reply: Reply) -> VideoJob:
        if reply.status_code == 202 and not reply.content.strip():
            return VideoJob(request_id=request_id)
        found: VideoJob = parse_response(VideoJob, reply.content, "video job")
        found.request_id = found.request_id or request_id
        if reply.status_code == 202:
            found.status = "pending"
        return found

    expired = unknown_is_expired(f"Video request {request_id} is unknown to xAI (expired or never made)")

    return Call(JOB, parse, path=f"videos/{segment(request_id)}", on_error=expired)


__all__ = ["EDIT", "ENDPOINTS", "EXTEND", "GENERATE", "JOB", "SUBMISSIONS", "body", "job", "submit",
           "video_record"]
