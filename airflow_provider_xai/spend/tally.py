"""The provider's books, day by day: every usage record a task records, added up per UTC day,
model and kind in the shared store, so a reconciliation (``operators/reconcile.py``) sees what
every worker recorded without reading the metadata DB (tasks cannot, in Airflow 3).

One store operation per batch of records. A key ``xai-tally:<day>:<field>:<kind>:<model>``
holds, for ``field``: ``usd`` (nano-USD, xAI's cost or the estimate), ``estimated`` (the part
estimated from prices), ``requests`` and ``unpriced`` (requests of unknown cost). Kept 400 days.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from airflow_provider_xai.connection.spend import NANO
from airflow_provider_xai.spend.store import Entry

if TYPE_CHECKING:
    from airflow_provider_xai.usage import UsageRecord

PREFIX = "xai-tally"
FIELDS = ("usd", "estimated", "requests", "unpriced")
KEEP_SECONDS = 400 * 86400


def day_of(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).date().isoformat()


def entries_of(records: Iterable[UsageRecord]) -> list[Entry]:
    """The store entries that add ``records`` to their days' tallies."""
    sums: dict[str, int] = defaultdict(int)
    for record in records:
        where = f"{day_of(record.timestamp)}:{{}}:{record.kind}:{record.model}"
        sums[f"{PREFIX}:{where.format('requests')}"] += record.requests
        if record.cost_usd is None:
            sums[f"{PREFIX}:{where.format('unpriced')}"] += record.requests
            continue
        sums[f"{PREFIX}:{where.format('usd')}"] += round(record.cost_usd * NANO)
        if record.cost_source == "estimate":
            sums[f"{PREFIX}:{where.format('estimated')}"] += round(record.cost_usd * NANO)
    expires = time.time() + KEEP_SECONDS
    return [Entry(key, amount, expires=expires) for key, amount in sorted(sums.items()) if amount]


@dataclass
class Tally:
    """What the provider recorded for one day and model, by kind."""

    usd: float = 0.0
    estimated_usd: float = 0.0
    requests: int = 0
    unpriced: int = 0
    by_kind: dict[str, float] = field(default_factory=dict)


def read(values: Mapping[str, int], day: str) -> dict[str, Tally]:
    """The tallies of ``day`` by model, from the store's ``xai-tally:<day>:`` keys; a key that
    is not one of the tally's is skipped."""
    out: dict[str, Tally] = defaultdict(Tally)
    for key, value in values.items():
        parts = key.split(":", 4)
        if len(parts) != 5 or parts[0] != PREFIX or parts[1] != day or parts[2] not in FIELDS:
            continue
        _, _, name, kind, model = parts
        tally = out[model]
        if name == "usd":
            tally.usd += value / NANO
            tally.by_kind[kind] = tally.by_kind.get(kind, 0.0) + value / NANO
        elif name == "estimated":
            tally.estimated_usd += value / NANO
        elif name == "requests":
            tally.requests += value
        else:
            tally.unpriced += value
    return dict(out)


__all__ = ["FIELDS", "KEEP_SECONDS", "PREFIX", "Tally", "day_of", "entries_of", "read"]
