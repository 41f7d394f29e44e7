"""What spend control asks xAI: the image and video model lists (live prices, with the API
key) and the Management API's billing (prepaid balance, invoice preview and spending limit, the
usage query; with the management key). None of them is billed.

Billing paths start with ``v1/`` (the management root has none) and name the team, which the
free ``GET /v1/api-key`` tells (``team_id``).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from airflow_provider_xai.endpoints.common import fixed_body, read, segment
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.schemas.billing import (
    ImageGenerationModelList,
    InvoicePreview,
    PrepaidBalance,
    UsageAnalytics,
    VideoGenerationModelList,
)

IMAGE_MODELS = Endpoint("models", "GET", "image-generation-models", response=ImageGenerationModelList)
VIDEO_MODELS = Endpoint("models", "GET", "video-generation-models", response=VideoGenerationModelList)
BALANCE = Endpoint(
    "billing", "GET", "v1/billing/teams/{team_id}/prepaid/balance", response=PrepaidBalance, host="management"
)
INVOICE_PREVIEW = Endpoint(
    "billing", "GET", "v1/billing/teams/{team_id}/postpaid/invoice/preview", response=InvoicePreview,
    host="management",
)  # fmt: skip
USAGE = Endpoint(
    "billing", "POST", "v1/billing/teams/{team_id}/usage", response=UsageAnalytics, host="management"
)
ENDPOINTS = (IMAGE_MODELS, VIDEO_MODELS, BALANCE, INVOICE_PREVIEW, USAGE)
#: The longest window one usage query may ask for (xAI cuts longer answers: ``limitReached``).
MAX_USAGE_DAYS = 31


def image_models() -> Call[ImageGenerationModelList]:
    return Call(IMAGE_MODELS, read(ImageGenerationModelList, "image generation models"))


def video_models() -> Call[VideoGenerationModelList]:
    return Call(VIDEO_MODELS, read(VideoGenerationModelList, "video generation models"))


def _team(team_id: Any) -> str:
    if not isinstance(team_id, str) or not team_id.strip():
        raise XAIValidationError(
            "team_id", f"expected xAI's team id (GET /v1/api-key tells it), got {team_id!r}"
        )
    return segment(team_id.strip())


def balance(team_id: str) -> Call[PrepaidBalance]:
    path = f"v1/billing/teams/{_team(team_id)}/prepaid/balance"
    return Call(BALANCE, read(PrepaidBalance, "prepaid balance"), path=path)


def invoice_preview(team_id: str) -> Call[InvoicePreview]:
    path = f"v1/billing/teams/{_team(team_id)}/postpaid/invoice/preview"
    return Call(INVOICE_PREVIEW, read(InvoicePreview, "invoice preview"), path=path)


def usage_query(
    team_id: str, first: date, last: date, filters: list[str] | None = None
) -> Call[UsageAnalytics]:
    """USD per day and ``description`` (``"<kind> <model>"``) from ``first`` to ``last``
    (UTC, both included, at most :data:`MAX_USAGE_DAYS` days); ``filters`` such as
    ``api_key_id:<id>``."""
    if not isinstance(first, date) or not isinstance(last, date) or first > last:
        raise XAIValidationError("first", f"expected two dates in order, got {first!r} and {last!r}")
    if (last - first).days >= MAX_USAGE_DAYS:
        raise XAIValidationError("last", f"one usage query covers at most {MAX_USAGE_DAYS} days")
    body = {
        "analyticsRequest": {
            "timeRange": {
                "startTime": f"{first.isoformat()} 00:00:00",
                "endTime": f"{(last + timedelta(days=1)).isoformat()} 00:00:00",
                "timezone": "Etc/GMT",
            },
            "timeUnit": "TIME_UNIT_DAY",
            "values": [{"name": "usd", "aggregation": "AGGREGATION_SUM"}],
            "groupBy": ["description"],
            "filters": list(filters or []),
        }
    }
    path = f"v1/billing/teams/{_team(team_id)}/usage"
    return Call(USAGE, read(UsageAnalytics, "usage"), path=path, body=fixed_body(body))


__all__ = [
    "BALANCE",
    "ENDPOINTS",
    "IMAGE_MODELS",
    "INVOICE_PREVIEW",
    "MAX_USAGE_DAYS",
    "USAGE",
    "VIDEO_MODELS",
    "balance",
    "image_models",
    "invoice_preview",
    "usage_query",
    "video_models",
]
