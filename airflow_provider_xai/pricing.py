"""Token prices: the built-in table (dated), connection overrides and xAI's live prices.

USD per million tokens by model. :func:`~airflow_provider_xai.usage.build_record` costs a usage
with them when xAI sends no ``cost_in_usd_ticks``; server-side tool fees are in
:mod:`airflow_provider_xai.tool_prices`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_xai.schemas import LanguageModel


@dataclass(frozen=True)
class Price:
    """USD per million tokens (``image`` per million image tokens).

    ``cached_input`` None: no cached-token price is known (none published or given). Cached
    tokens are then priced at ``input``, an upper bound since caching never costs more.
    """

    input: float
    cached_input: float | None
    output: float
    image: float | None = None

    def cost(self, *, prompt: int, cached: int, image: int, output: int) -> float:
        """USD for one response; reasoning tokens are billed as output, images at ``image``."""
        image_price = self.input if self.image is None else self.image
        cached_price = self.input if self.cached_input is None else self.cached_input
        uncached_text = max(prompt - cached - image, 0)
        total = uncached_text * self.input + cached * cached_price + image * image_price
        return (total + output * self.output) / 1_000_000


#: Prices as published by xAI on 2026-11-01 (docs.x.ai models page). Override per
#: connection (extra ``prices``) for negotiated or new prices, or refresh from
#: ``GET /v1/language-models`` with :func:`prices_from_language_models`.
PRICES_AS_OF = "2026-11-01"
DEFAULT_PRICES: dict[str, Price] = {
    "grok-4.3": Price(1.25, 0.20, 2.50),
    "grok-4": Price(1.25, 0.20, 2.50),
    "grok-4.20-0309-reasoning": Price(2.00, 0.20, 6.00),
    "grok-4.20-0309-non-reasoning": Price(2.00, 0.20, 6.00),
    "grok-4.20-multi-agent-0309": Price(2.00, 0.20, 6.00),
    "grok-4-1-fast-reasoning": Price(0.20, 0.05, 0.50),
    "grok-4-1-fast-non-reasoning": Price(0.20, 0.05, 0.50),
    "grok-4-fast-reasoning": Price(0.20, 0.05, 0.50),
    "grok-4-fast-non-reasoning": Price(0.20, 0.05, 0.50),
    "grok-4-0709": Price(3.00, 0.75, 15.00),
    "grok-code-fast-1": Price(0.20, 0.02, 1.50),
    "grok-3": Price(3.00, 0.75, 15.00),
    "grok-3-mini": Price(0.30, 0.075, 0.50),
    "grok-2-vision-1212": Price(2.00, None, 10.00, image=2.00),
}


#: What xAI's service tiers cost against the default, as published with the prices above:
#: ``priority`` is billed twice, and only when the answer says it was served so.
TIER_PRICE_FACTORS: dict[str, float] = {"priority": 2.0}


@dataclass(frozen=True)
class UnitPrice:
    """USD per ``unit`` of what an endpoint bills beyond tokens: an image, a second of video,
    a character spoken, a second of audio (``by_resolution`` overrides it for some output
    resolutions of a video)."""

    usd: float
    unit: str
    by_resolution: Mapping[str, float] | None = None

    def at(self, resolution: str | None = None) -> float:
        """USD per unit at ``resolution`` (the base price for any other)."""
        return (self.by_resolution or {}).get(resolution or "", self.usd)

    def worst(self) -> float:
        """The most one unit may cost, whatever the resolution (a forecast's bound)."""
        return max([self.usd, *(self.by_resolution or {}).values()])

    def cost(self, units: float, resolution: str | None = None) -> float:
        return units * self.at(resolution)


#: Media prices as published by xAI on 2026-11-01 (docs.x.ai pricing; the 720p video price is
#: the model page's). Used only when xAI's answer carries no ``cost_in_usd_ticks``: the record
#: is then marked ``estimate``; forecasts price a call with them (live image prices from
#: ``/v1/image-generation-models`` take their place when refreshed: ``spend.prices``).
MEDIA_PRICES_AS_OF = "2026-11-01"
MEDIA_PRICES: dict[str, UnitPrice] = {
    "grok-imagine-image": UnitPrice(0.02, "image"),
    "grok-imagine-image-2.0": UnitPrice(0.02, "image"),
    "grok-imagine-image-quality": UnitPrice(0.05, "image"),
    "grok-imagine-image-pro": UnitPrice(0.07, "image"),
    "grok-2-image-1212": UnitPrice(0.07, "image"),
    "grok-imagine-video": UnitPrice(0.05, "second", {"720p": 0.07}),
    "grok-imagine-video-1.5": UnitPrice(0.08, "second", {"720p": 0.14}),
}


def parse_prices(raw: Mapping[str, Any]) -> dict[str, Price]:
    """Read price overrides (``{"model": {"input": .., "cached_input": .., "output": ..}}``)."""
    prices: dict[str, Price] = {}
    for model, spec in raw.items():
        if not isinstance(spec, Mapping) or "input" not in spec or "output" not in spec:
            raise ValueError(f"price for {model!r} needs at least 'input' and 'output' (USD per 1M tokens)")
        prices[model] = Price(
            input=float(spec["input"]),
            cached_input=None if spec.get("cached_input") is None else float(spec["cached_input"]),
            output=float(spec["output"]),
            image=None if spec.get("image") is None else float(spec["image"]),
        )
    return prices


def price_table(overrides: Mapping[str, Any] | None = None) -> dict[str, Price]:
    """The default table with connection overrides applied on top."""
    return {**DEFAULT_PRICES, **parse_prices(overrides or {})}


def prices_from_language_models(models: Iterable[LanguageModel]) -> dict[str, Price]:
    """Prices from ``/v1/language-models`` (US cents per 100M tokens -> USD per 1M), by id and alias."""

    def usd(cents_per_100m: int | None) -> float | None:
        return None if cents_per_100m is None else cents_per_100m / 10_000

    prices: dict[str, Price] = {}
    for m in models:
        if m.prompt_text_token_price is None or m.completion_text_token_price is None:
            continue
        price = Price(
            input=m.prompt_text_token_price / 10_000,
            cached_input=usd(m.cached_prompt_text_token_price),  # 0 is a price (free caching)
            output=m.completion_text_token_price / 10_000,
            image=usd(m.prompt_image_token_price),
        )
        for name in (m.id, *m.aliases):
            prices[name] = price
    return prices


#: xAI's voice prices as published on 2026-11-01 (docs.x.ai pricing page): text-to-speech
#: $4.20 per million characters, speech-to-text $0.10 per hour of audio. By usage record kind,
#: which is also the model a voice call's record and forecast name (xAI names none).
VOICE_PRICES_AS_OF = "2026-11-01"
VOICE_PRICES: dict[str, UnitPrice] = {
    "tts": UnitPrice(4.20 / 1_000_000, "characters"),
    "stt": UnitPrice(0.10 / 3600, "audio_seconds"),
}
