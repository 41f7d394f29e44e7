"""The usage page's forecast against the actual: each call's worst-case forecast beside what
xAI billed, from the ``xai_forecast`` XComs (one list of calls per task run, written by
:func:`~airflow_provider_xai.operators.spend.run_within_budget`).

One SQL query picks the XComs of the readable DAGs written in the page's window (by the XCom's
time: a call's forecast has no time of its own); :func:`compare` is the pure part: the recent
calls and the totals, ``sum of actual / sum of forecast`` over the calls that have both.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from airflow_provider_xai.dashboard.query import Window
from airflow_provider_xai.dashboard.records import decode_json
from airflow_provider_xai.operators.spend import XCOM_FORECAST_KEY

#: The calls table's length (the most recent first).
RECENT_CALLS = 50
#: A stored forecast row: ``(dag_id, run_id, task_id, map_index, XCom time as ISO text, value)``.
Row = tuple[str, str, str, int, str, Any]


def _usd(value: Any) -> float | None:
    """A finite, non-negative amount of USD, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def call_row(dag_id: str, run_id: str, task_id: str, map_index: int, at: str, call: Any) -> dict[str, Any] | None:
    """One call as the page shows it, or None when ``call`` is no forecast entry."""
    forecast = call.get("forecast") if isinstance(call, Mapping) else None
    if not isinstance(forecast, Mapping):
        return None
    predicted, actual = _usd(forecast.get("cost_usd")), _usd(call.get("actual_usd"))
    return {
        "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "at": at,
        "model": str(forecast.get("model") or ""),
        "forecast_usd": predicted,
        "actual_usd": actual,
        "ratio": round(actual / predicted, 4) if actual is not None and predicted else None,
        "forecast_tokens": _count(forecast.get("total_tokens")),
        "actual_tokens": _count(call.get("actual_tokens")),
        "bounded": forecast.get("bounded") is not False,
        "refused": str(call["refused"]) if call.get("refused") else None,
    }  # fmt: skip


def compare(rows: Iterable[Row], limit: int = RECENT_CALLS) -> dict[str, Any]:
    """The ``limit`` most recent calls of ``rows`` and the totals over all of them: calls with
    both a priced forecast and a billed cost are compared (``actual_usd / forecast_usd``);
    the others (refused, unpriced, unbilled) are counted apart. Values that hold no forecast
    entry are skipped and counted."""
    calls: list[dict[str, Any]] = []
    skipped = 0
    for dag_id, run_id, task_id, map_index, at, value in rows:
        items = value if isinstance(value, list) else [value]
        for item in items:
            row = call_row(dag_id, run_id, task_id, map_index, at, item)
            if row is None:
                skipped += 1
            else:
                calls.append(row)
    compared = [c for c in calls if c["ratio"] is not None]
    forecast_usd = math.fsum(c["forecast_usd"] for c in compared)
    actual_usd = math.fsum(c["actual_usd"] for c in compared)
    calls.sort(key=lambda c: (c["at"], c["dag_id"], c["run_id"], c["task_id"], c["map_index"]), reverse=True)
    return {
        "calls": calls[:limit],
        "totals": {
            "calls": len(calls),
            "compared": len(compared),
            "forecast_usd": forecast_usd,
            "actual_usd": actual_usd,
            "ratio": round(actual_usd / forecast_usd, 4) if forecast_usd else None,
            "over_forecast": sum(1 for c in compared if c["actual_usd"] > c["forecast_usd"]),
            "refused": sum(1 for c in calls if c["refused"]),
        },
        "skipped": skipped,
    }


def forecast_rows(session: Session, dag_ids: Collection[str], window: Window) -> Iterable[Row]:
    """The ``xai_forecast`` XComs of ``dag_ids`` written in ``window``, decoded (a value that is
    no JSON comes as None, and is then skipped by :func:`compare`)."""
    from airflow.models.xcom import XComModel as X

    if not dag_ids:
        return
    stmt = select(X.dag_id, X.run_id, X.task_id, X.map_index, X.timestamp, cast(X.value, Text)).where(
        X.key == XCOM_FORECAST_KEY,
        X.dag_id.in_(sorted(dag_ids)),
        X.timestamp >= window.start,
        X.timestamp < window.end,
    )
    for dag_id, run_id, task_id, map_index, stamp, text in session.connection().execute(stmt):
        value = decode_json(text) if text is not None else None
        yield dag_id, run_id, task_id, map_index, _iso(stamp), value


def _iso(stamp: Any) -> str:
    return stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)


def forecast_report(session: Session, dag_ids: Collection[str], window: Window) -> dict[str, Any]:
    """Forecast against actual for ``dag_ids`` (already only what the user may read) in ``window``."""
    return compare(forecast_rows(session, dag_ids, window))


__all__ = ["RECENT_CALLS", "call_row", "compare", "forecast_report", "forecast_rows"]
