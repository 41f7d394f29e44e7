"""Prices that are current: xAI's model lists, cached in the shared store, over the built-in table.

:class:`PriceBook` answers the price table of a connection: the built-in prices
(:data:`~airflow_provider_xai.pricing.DEFAULT_PRICES`, :data:`~airflow_provider_xai.pricing.MEDIA_PRICES`),
then xAI's live prices (``/v1/language-models``, ``/v1/image-generation-models``), then the
connection's ``prices`` extra on top (negotiated prices win). The live lists are asked for at
most once per ``prices_ttl`` seconds by all the workers sharing the store: the one that finds
them stale takes a lease and refreshes them, the others use what is cached (or the built-in
table) meanwhile. A refresh that fails leaves the cached or built-in prices in force (logged).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.pricing import (
    DEFAULT_PRICES,
    MEDIA_PRICES,
    VOICE_PRICES,
    Price,
    UnitPrice,
    prices_from_language_models,
)

log = logging.getLogger(__name__)
TICKS_PER_USD = 10_000_000_000
#: The most a price may be: $100,000 per million tokens or per unit (a larger one is no price).
MAX_PRICE_USD = 100_000.0


@dataclass(frozen=True)
class PriceTable:
    """Token prices (USD per million) and unit prices (USD per image or second) by model, and
    where the live part came from (``xai`` with its time, or ``built-in``)."""

    tokens: Mapping[str, Price] = field(default_factory=dict)
    units: Mapping[str, UnitPrice] = field(default_factory=dict)
    source: str = "built-in"
    fetched_at: float | None = None

    def knows(self, model: str) -> bool:
        return model in self.tokens or model in self.units


#: What the live lists give: language models, image models (the schema objects).
LiveLists = tuple[Sequence[Any], Sequence[Any]]


def _sane(usd: Any) -> bool:
    return (
        isinstance(usd, int | float)
        and not isinstance(usd, bool)
        and math.isfinite(usd)
        and 0 <= usd <= MAX_PRICE_USD
    )


def live_prices(
    languages: Sequence[Any], images: Sequence[Any]
) -> tuple[dict[str, Price], dict[str, UnitPrice]]:
    """Token and image prices from xAI's lists, by id and alias; a price out of bounds (or
    missing) leaves its model out."""
    tokens = {
        name: price
        for name, price in prices_from_language_models(languages).items()
        if all(_sane(v) for v in (price.input, price.output, price.cached_input or 0, price.image or 0))
    }
    units: dict[str, UnitPrice] = {}
    for model in images:
        per_image = [p.price_per_image for p in model.pricing if p.price_per_image is not None]
        ticks = max(per_image) if per_image else model.image_price
        if ticks is None or not _sane(ticks / TICKS_PER_USD):
            continue
        for name in (model.id, *model.aliases):
            units[name] = UnitPrice(ticks / TICKS_PER_USD, "image")
    return tokens, units


def encode(tokens: Mapping[str, Price], units: Mapping[str, UnitPrice], written_at: float) -> str:
    """The cached form of a live table (JSON)."""
    return json.dumps(
        {
            "written_at": written_at,
            "tokens": {m: [p.input, p.cached_input, p.output, p.image] for m, p in tokens.items()},
            "units": {m: [u.usd, u.unit] for m, u in units.items()},
        },
        separators=(",", ":"),
    )


def decode(text: str | None) -> tuple[dict[str, Price], dict[str, UnitPrice], float | None, int]:
    """A cached live table, read leniently: an entry that is no price is skipped (and counted)."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}, {}, None, 1
    if not isinstance(data, dict):
        return {}, {}, None, 1
    tokens, units, skipped = {}, {}, 0
    for model, row in (data.get("tokens") or {}).items() if isinstance(data.get("tokens"), dict) else ():
        ok = isinstance(row, list) and len(row) == 4 and _sane(row[0]) and _sane(row[2])
        ok = ok and all(v is None or _sane(v) for v in (row[1], row[3]))
        if ok:
            tokens[model] = Price(float(row[0]), row[1], float(row[2]), row[3])
        else:
            skipped += 1
    for model, row in (data.get("units") or {}).items() if isinstance(data.get("units"), dict) else ():
        if isinstance(row, list) and len(row) == 2 and _sane(row[0]) and isinstance(row[1], str):
            units[model] = UnitPrice(float(row[0]), row[1])
        else:
            skipped += 1
    written = data.get("written_at")
    stamp = float(written) if isinstance(written, int | float) and not isinstance(written, bool) else None
    return tokens, units, (stamp if stamp is not None and math.isfinite(stamp) else None), skipped


class PriceBook:
    """The price table of one connection (see the module docstring).

    :param fetch: asks xAI's model lists (blocking): ``(language models, image models)``.
    :param overrides: the connection's ``prices`` extra (already checked).
    :param ttl: seconds a live table is used before it is asked for again (0: never ask).
    """

    def __init__(self, fetch: Callable[[], LiveLists], overrides: Mapping[str, Price], ttl: float) -> None:
        self.fetch, self.overrides, self.ttl = fetch, dict(overrides), ttl
        self._table: PriceTable | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def built_in(self) -> PriceTable:
        return PriceTable({**DEFAULT_PRICES, **self.overrides}, {**MEDIA_PRICES, **VOICE_PRICES})

    def table(self, store: Any, key: str) -> PriceTable:
        """The current table: cached in this process for a tenth of the time to live, then read
        from ``store`` under ``key`` (refreshed from xAI by one worker when stale)."""
        if self.ttl <= 0 or store is None:  # never cached: it must not hide the live table
            return self.built_in()
        now = time.time()
        with self._lock:
            if self._table is not None and now - self._checked < max(self.ttl / 10, 1.0):
                return self._table
        table = self._shared(store, key, now)
        with self._lock:
            self._table, self._checked = table, now
        return table

    def _shared(self, store: Any, key: str, now: float) -> PriceTable:
        try:
            text, refresh = store.cached(key, self.ttl)
        except XAIError as exc:
            log.warning("xAI prices: the shared store is unusable (%s); using the built-in prices", exc)
            return self.built_in()
        if refresh:
            try:
                tokens, units = live_prices(*self.fetch())
            except XAIError as exc:
                log.warning("xAI prices could not be refreshed (%s); using the %s prices", exc,
                            "cached" if text else "built-in")  # fmt: skip
            else:
                text = encode(tokens, units, now)
                try:
                    store.cache(key, text, max(self.ttl * 2, 60.0))
                except XAIError as exc:
                    log.warning("xAI prices could not be cached (%s)", exc)
                log.info("xAI prices refreshed from the model lists: %d token-priced, %d unit-priced models",
                         len(tokens), len(units))  # fmt: skip
        tokens, units, written, skipped = decode(text)
        if skipped:
            log.warning("xAI prices: skipped %d cached entries that are no price", skipped)
        if not tokens and not units:
            return self.built_in()
        base = self.built_in()
        return PriceTable(
            {**base.tokens, **tokens, **self.overrides}, {**base.units, **units}, "xai", written
        )


__all__ = ["MAX_PRICE_USD", "PriceBook", "PriceTable", "decode", "encode", "live_prices"]
