"""Wire models of what spend control reads from xAI: the image and video model lists (prices),
and the Management API's billing answers (prepaid balance, invoice preview with the spending
limit, the usage query).

Answers are tolerant (unknown fields kept) and every number is bounded before it is used: xAI
writes amounts as cents in ``{"val": "123"}`` (int64 as text); :func:`cents` reads any of its
forms and refuses what is no sane amount. The prepaid ``total`` is negated (``"-1000"`` is a
$10.00 credit), as every client of it reads it.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The largest amount read from a billing answer: ten billion dollars, in cents.
MAX_CENTS = 10**12
#: The largest USD figure of a usage data point.
MAX_USD = 1e10
#: The most a price read from a model list may be: $100,000 per unit or per million tokens.
MAX_PRICE_TICKS = 10**15


def cents(value: Any) -> int | None:
    """An amount in cents from ``{"val": "123"}``, ``"123"`` or ``123``; None when absent or no
    sane amount (not an integer, or beyond :data:`MAX_CENTS`)."""
    if isinstance(value, dict):
        value = value.get("val")
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.lstrip("-").isdigit() and len(text) <= 20 else None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_CENTS:
        return None
    return value


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


def _bounded_ticks(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRICE_TICKS:
        return None
    return value


class ImagePricing(_Answer):
    quality: str | None = None
    resolution: str | None = None
    price_per_image: int | None = None

    _bounded = field_validator("price_per_image", mode="before")(lambda v: _bounded_ticks(v))


class ImageGenerationModel(_Answer):
    """An entry of ``/v1/image-generation-models``: ``image_price`` in ticks per image (xAI
    calls it cents; its examples give 200000000 for $0.02), ``pricing`` by quality/resolution."""

    id: str
    aliases: list[str] = Field(default_factory=list)
    image_price: int | None = None
    pricing: list[ImagePricing] = Field(default_factory=list)

    _bounded = field_validator("image_price", mode="before")(lambda v: _bounded_ticks(v))


class ImageGenerationModelList(_Answer):
    models: list[ImageGenerationModel]


class VideoGenerationModel(_Answer):
    """An entry of ``/v1/video-generation-models`` (no prices: video is priced from the table)."""

    id: str
    aliases: list[str] = Field(default_factory=list)


class VideoGenerationModelList(_Answer):
    models: list[VideoGenerationModel]


class PrepaidBalance(_Answer):
    """``GET /v1/billing/teams/{team_id}/prepaid/balance``: the prepaid credit and its changes."""

    total: Any = None
    changes: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def credit_usd(self) -> float | None:
        """The credit left in USD (None when xAI sent no readable total)."""
        total = cents(self.total)
        return None if total is None else -total / 100


class InvoicePreview(_Answer):
    """``GET /v1/billing/teams/{team_id}/postpaid/invoice/preview``: this month's invoice so far
    and the spending limit in force."""

    coreInvoice: dict[str, Any] = Field(default_factory=dict)
    effectiveSpendingLimit: Any = None
    billingCycle: dict[str, Any] = Field(default_factory=dict)

    @property
    def spending_limit_usd(self) -> float | None:
        limit = cents(self.effectiveSpendingLimit)
        return None if limit is None or limit < 0 else limit / 100

    @property
    def spent_usd(self) -> float:
        """The month's invoice lines added up (a line that is no amount is left out)."""
        lines = self.coreInvoice.get("lines") if isinstance(self.coreInvoice, dict) else None
        amounts = [cents(line.get("amount")) for line in lines or [] if isinstance(line, dict)]
        return sum(a for a in amounts if a is not None) / 100


class DataPoint(_Answer):
    timestamp: str = ""
    values: list[float] = Field(default_factory=list)

    @field_validator("values", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> list[float]:
        if not isinstance(value, list):
            return []
        out = []
        for v in value:
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not math.isfinite(v)
                or abs(v) > MAX_USD
            ):
                raise ValueError(f"a usage value must be a finite number of USD, got {v!r}")
            out.append(float(v))
        return out


class TimeSeries(_Answer):
    group: list[str] = Field(default_factory=list)
    groupLabels: list[str] = Field(default_factory=list)
    dataPoints: list[DataPoint] = Field(default_factory=list)


class UsageAnalytics(_Answer):
    """``POST /v1/billing/teams/{team_id}/usage``: USD by group and time bucket;
    ``limitReached``: the answer was cut (ask for a shorter window)."""

    timeSeries: list[TimeSeries] = Field(default_factory=list)
    limitReached: bool = False


__all__ = [
    "MAX_CENTS",
    "DataPoint",
    "ImageGenerationModel",
    "ImageGenerationModelList",
    "ImagePricing",
    "InvoicePreview",
    "PrepaidBalance",
    "TimeSeries",
    "UsageAnalytics",
    "VideoGenerationModel",
    "VideoGenerationModelList",
    "cents",
]
