"""The language models the local xAI server serves, with their list prices."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerPrice:
    """USD per 1M tokens. ``cached_input``/``image`` None = no discount / same as input."""

    input: float
    cached_input: float | None
    output: float
    image: float | None = None

    @staticmethod
    def ticks(usd_per_million: float) -> int:
        """USD per 1M tokens -> cost ticks per token (1 USD = 1e10 ticks); equals cents/100M."""
        return round(usd_per_million * 10_000)

    @property
    def input_ticks(self) -> int:
        return self.ticks(self.input)

    @property
    def cached_ticks(self) -> int:
        return self.ticks(self.input if self.cached_input is None else self.cached_input)

    @property
    def output_ticks(self) -> int:
        return self.ticks(self.output)

    @property
    def image_ticks(self) -> int:
        return self.ticks(self.input if self.image is None else self.image)


@dataclass(frozen=True)
class ModelSpec:
    """A language model served by the fake."""

    id: str
    price: ServerPrice
    context_length: int
    vision: bool = False
    reasoning: bool = False
    reasoning_effort: bool = False  # accepts the ``reasoning_effort`` parameter
    aliases: tuple[str, ...] = ()
    created: int = 1_735_689_600  # 2025-01-01T00:00:00Z

    @property
    def fingerprint(self) -> str:
        return "fp_" + hashlib.sha1(self.id.encode()).hexdigest()[:10]

    @property
    def input_modalities(self) -> list[str]:
        return ["text", "image"] if self.vision else ["text"]


def _m(id: str, p: tuple[float, float | None, float], ctx: int, **kw: Any) -> ModelSpec:
    return ModelSpec(id=id, price=ServerPrice(*p, image=kw.pop("image", None)), context_length=ctx, **kw)


_ALL = [
    _m("grok-4.3", (1.25, 0.20, 2.50), 1_000_000, vision=True, reasoning=True,
       reasoning_effort=True, aliases=("grok-4",)),
    _m("grok-4.5", (3.00, 0.30, 12.00), 2_000_000, vision=True, reasoning=True),  # no published price: the fake's own
    _m("grok-4.20-0309-reasoning", (2.00, 0.20, 6.00), 2_000_000, vision=True, reasoning=True),
    _m("grok-4.20-0309-non-reasoning", (2.00, 0.20, 6.00), 2_000_000, vision=True),
    _m("grok-4-1-fast-reasoning", (0.20, 0.05, 0.50), 2_000_000, vision=True, reasoning=True),
    _m("grok-4-1-fast-non-reasoning", (0.20, 0.05, 0.50), 2_000_000, vision=True),
    _m("grok-3", (3.00, 0.75, 15.00), 131_072),
    _m("grok-3-mini", (0.30, 0.075, 0.50), 131_072, reasoning=True, reasoning_effort=True),
    _m("grok-code-fast-1", (0.20, 0.02, 1.50), 256_000),
    _m("grok-2-vision-1212", (2.00, None, 10.00), 32_768, vision=True, image=2.00),
]
#: Canonical model id -> spec.
MODELS: dict[str, ModelSpec] = {m.id: m for m in _ALL}
#: Every accepted name (ids and aliases) -> price.
PRICES: dict[str, ServerPrice] = {
    name: m.price for m in _ALL for name in (m.id, *m.aliases)
}


def resolve_model(models: Mapping[str, ModelSpec], name: str) -> ModelSpec | None:
    """Look a model up by id or alias."""
    if name in models:
        return models[name]
    return next((m for m in models.values() if name in m.aliases), None)
