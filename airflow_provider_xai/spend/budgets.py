"""Budgets over time: which period a moment falls in, the store key of a budget's period, the
amounts a forecast reserves and an answer bills, and a budget's state as people read it.

Periods are UTC: a ``daily`` budget starts again at midnight, a ``monthly`` one on the 1st.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.connection.spend import NANO, Budget

if TYPE_CHECKING:
    from airflow_provider_xai.forecast import Forecast
    from airflow_provider_xai.usage import UsageRecord

#: A period's key is kept this long after the period ends (its burn-down stays readable).
KEEP_AFTER = timedelta(days=2)


def period_of(budget: Budget, now: float) -> tuple[str, datetime, datetime]:
    """The period ``now`` falls in: its id (``2026-12-07`` or ``2026-12``), start and end."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    if budget.period == "daily":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.date().isoformat(), start, start + timedelta(days=1)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), start, end


def key_of(budget: Budget, now: float) -> str:
    """The store key of ``budget`` in the period of ``now``."""
    return f"xai-budget:{budget.name}:{period_of(budget, now)[0]}"


def expiry_of(budget: Budget, now: float) -> float:
    """When the store may forget the period of ``now`` (epoch seconds)."""
    return (period_of(budget, now)[2] + KEEP_AFTER).timestamp()


def reserved_amount(budget: Budget, forecast: Forecast) -> int | None:
    """What ``forecast`` reserves against ``budget`` (nano-USD rounded up, or tokens); None
    when a USD budget meets an unpriced forecast."""
    if budget.unit == "tokens":
        return forecast.total_tokens
    return None if forecast.cost_usd is None else math.ceil(forecast.cost_usd * NANO)


def billed_amount(unit: str, record: UsageRecord) -> int | None:
    """What a billed answer counts against a budget in ``unit`` (nano-USD rounded up, or tokens;
    None: its cost is unknown)."""
    if unit == "tokens":
        return record.total_tokens
    return None if record.cost_usd is None else math.ceil(record.cost_usd * NANO)


def shown(budget: Budget, amount: int) -> str:
    """An amount in the budget's units, for people."""
    return f"${amount / NANO:,.6f}" if budget.unit == "usd" else f"{amount:,} tokens"


@dataclass(frozen=True)
class BudgetState:
    """One budget in one period: what is committed to it (settled spend and open reservations)."""

    budget: Budget
    period: str
    committed: int
    ends: datetime

    @property
    def remaining(self) -> int:
        return max(self.budget.limit - self.committed, 0)

    def to_dict(self) -> dict[str, Any]:
        b = self.budget
        scale = NANO if b.unit == "usd" else 1
        return {
            "name": b.name,
            "scope": b.scope if b.target is None else f"{b.scope}:{b.target}",
            "period": b.period,
            "period_id": self.period,
            "unit": b.unit,
            "limit": b.limit / scale,
            "committed": self.committed / scale,
            "remaining": self.remaining / scale,
            "resets_at": self.ends.isoformat(),
        }

    def describe(self) -> str:
        b = self.budget
        return f"{b.name} ({self.period}): {shown(b, self.committed)} of {b.shown_limit} committed"


def states_of(budgets: Sequence[Budget], values: Sequence[int], now: float) -> list[BudgetState]:
    """The states of ``budgets`` from their stored ``values`` in the period of ``now``."""
    return [
        BudgetState(b, period_of(b, now)[0], v, period_of(b, now)[2])
        for b, v in zip(budgets, values, strict=True)
    ]


__all__ = [
    "KEEP_AFTER",
    "BudgetState",
    "billed_amount",
    "expiry_of",
    "key_of",
    "period_of",
    "reserved_amount",
    "shown",
    "states_of",
]
