"""What xAI charges per unit rather than per token: per image made, per second of video.

The built-in table, dated, for forecasts (and costs when an answer carries none); live prices
from ``/v1/image-generation-models`` take its place when they are refreshed
(:mod:`airflow_provider_xai.spend.prices`). The video lists carry no prices: video is always
priced from this table (or the connection's ``prices`` extra). A leaf module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class UnitPrice:
    """USD per ``unit`` (``image`` or ``second``); ``by_resolution`` overrides it for some
    output resolutions (``720p`` video)."""

    usd: float
    unit: str
    by_resolution: Mapping[str, float] | None = None

    def at(self, resolution: str | None = None) -> float:
        """USD per unit at ``resolution`` (the base price for any other)."""
        return (self.by_resolution or {}).get(resolution or "", self.usd)


#: As published by xAI on 2026-11-01 (docs.x.ai/developers/pricing; video at 720p from the
#: model page). The highest per-unit price of a model is its worst case.
UNIT_PRICES_AS_OF = "2026-11-01"
DEFAULT_UNIT_PRICES: dict[str, UnitPrice] = {
    "grok-imagine-image": UnitPrice(0.02, "image"),
    "grok-imagine-image-2.0": UnitPrice(0.02, "image"),
    "grok-imagine-image-quality": UnitPrice(0.05, "image"),
    "grok-imagine-image-pro": UnitPrice(0.07, "image"),
    "grok-2-image-1212": UnitPrice(0.07, "image"),
    "grok-imagine-video": UnitPrice(0.05, "second", {"720p": 0.07}),
    "grok-imagine-video-1.5": UnitPrice(0.08, "second", {"720p": 0.14}),
}


def worst(price: UnitPrice) -> float:
    """The most one unit of ``price`` may cost, whatever the resolution."""
    return max([price.usd, *(price.by_resolution or {}).values()])


__all__ = ["DEFAULT_UNIT_PRICES", "UNIT_PRICES_AS_OF", "UnitPrice", "worst"]
