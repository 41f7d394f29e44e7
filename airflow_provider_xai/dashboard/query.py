"""The xAI usage page's numbers: one SQL query over Airflow's XCom table, one pass in Python.

What counts (so nothing is counted twice): per task instance (DAG run, task, map index), the
records of its ``xai_usage_ledger`` XCom, which holds every billed response of every attempt
(batch results are only there); the ``xai_usage`` XCom (the latest single record, also in the
ledger) counts only for a task instance that has no ledger. The usage sensor's roll-ups
(its return value, ``xai_usage_summary``) are never counted; ``xai_usage_summary`` only marks a
run as over budget. A record's day is its own ``timestamp`` (UTC), not the XCom's.

SQL picks the XCom rows (that rule as ``NOT EXISTS``, the readable DAGs, the date range's lower
bound on the XCom time) on the ``idx_xcom_key`` index; each record's JSON is then read once, in
Python. Adding up inside SQL with JSON element access was measured slower on SQLite (before
3.45 every ``json_extract`` re-parses the record, 16 times per record here; figures in
docs/dashboard.md), and this way one portable query serves SQLite, PostgreSQL and MySQL.
Costs are summed as integer ticks (1 USD = 1e10 ticks) as in
:mod:`airflow_provider_xai.usage_summary`, so totals are exact sums.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from airflow_provider_xai.sensors.usage import XCOM_SUMMARY_KEY
from airflow_provider_xai.usage import COUNT_FIELDS, TICKS_PER_USD, XCOM_LEDGER_KEY, XCOM_USAGE_KEY

#: What the page shows of an over-budget run's ``budget`` (``usage_summary.evaluate_budget``).
BUDGET_FIELDS = ("max_total_tokens", "max_cost_usd", "over_tokens", "over_cost_usd", "message")
#: The runs table's length.
TOP_RUNS = 25
#: The sums kept per group, in order: a group is a list of ints in this order.
SUMS = ("records", "requests", *COUNT_FIELDS, "cost_ticks", "estimate_ticks", "unpriced_requests")
_DAY = 86400


@dataclass(frozen=True)
class Window:
    """Whole UTC days ``first`` .. ``last`` (both included)."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), timezone.utc)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), timezone.utc)

    def days(self) -> list[str]:
        count = (self.last - self.first).days + 1
        return [(self.first + timedelta(days=n)).isoformat() for n in range(count)]


# --- the records ----------------------------------------------------------------------------------
def counted_records(session: Session, dag_ids: Collection[str], window: Window) -> Iterator[tuple[Any, ...]]:
    """``(dag_id, run_id, task_id, record dict)`` of every counted record in ``window``."""
    from airflow.models.xcom import XComModel as X

    if not dag_ids:
        return
    ledger = aliased(X)
    has_ledger = exists().where(
        ledger.dag_run_id == X.dag_run_id,
        ledger.task_id == X.task_id,
        ledger.map_index == X.map_index,
        ledger.key == XCOM_LEDGER_KEY,
    )
    is_ledger = X.key == XCOM_LEDGER_KEY
    stmt = select(X.dag_id, X.run_id, X.task_id, X.value).where(
        X.dag_id.in_(sorted(dag_ids)),
        # A ledger published at time T holds records stamped <= T: the XCom time bounds from below.
        X.timestamp >= window.start,
        is_ledger | ((X.key == XCOM_USAGE_KEY) & ~has_ledger),
    )
    start, end = window.start.timestamp(), window.end.timestamp()
    for dag_id, run_id, task_id, value in session.execute(stmt.execution_options(yield_per=5000)):
        if isinstance(value, str):  # a value stored as a JSON string (written through serialize_value)
            value = json.loads(value)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping) and start <= float(item.get("timestamp") or 0) < end:
                yield dag_id, run_id, task_id, item


def _sums(item: Mapping[str, Any]) -> list[int]:
    """One record as a group of :data:`SUMS`."""
    get = item.get
    requests = get("requests") or 1
    cost = get("cost_usd")
    ticks = 0 if cost is None else round(cost * TICKS_PER_USD)
    sums = [1, requests]
    sums += [get(name) or 0 for name in COUNT_FIELDS]
    sums += [ticks, ticks if get("cost_source") == "estimate" else 0, requests if cost is None else 0]
    return sums


def _add(into: dict[Any, list[int]], key: Any, sums: list[int]) -> None:
    group = into.get(key)
    if group is None:
        into[key] = sums.copy()
    else:
        group[:] = map(operator.add, group, sums)


def _rows(groups: Mapping[Any, list[int]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Groups as dicts (their key named by ``names``), cost in USD, most expensive first."""
    rows = []
    for key, sums in groups.items():
        row: dict[str, Any] = dict(zip(names, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(zip(SUMS, sums, strict=True))
        row["cost_usd"] = row["cost_ticks"] / TICKS_PER_USD
        row["estimated_cost_usd"] = row["estimate_ticks"] / TICKS_PER_USD
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["cost_ticks"], -r["total_tokens"], [str(r[n]) for n in names]))


# --- the report -----------------------------------------------------------------------------------
def usage_report(session: Session, dag_ids: Collection[str], window: Window) -> dict[str, Any]:
    """Totals, per-day series, breakdowns, tool calls and top runs of ``dag_ids`` in ``window``.

    ``dag_ids`` must already be only what the user may read: nothing else is looked at.
    """
    fine: dict[tuple[Any, ...], list[int]] = {}  # (day, dag, task, model, kind, cost source)
    by_run: dict[tuple[str, str], list[int]] = {}
    tools: dict[str, list[int]] = {}
    for dag_id, run_id, task_id, item in counted_records(session, dag_ids, window):
        sums = _sums(item)
        day = int(float(item["timestamp"]) // _DAY)
        key = (day, dag_id, task_id, item.get("model"), item.get("kind") or "chat", item.get("cost_source"))
        _add(fine, key, sums)
        _add(by_run, (dag_id, run_id), sums)
        for tool, calls in (item.get("server_side_tool_usage") or {}).items():
            _add(tools, tool, [int(calls or 0), 1])

    rollups: dict[str, dict[Any, list[int]]] = {name: {} for name in ("total", "daily", "dag", "task", "model", "kind")}
    days: dict[int, str] = {}
    for (day, dag_id, task_id, model, kind, _), sums in fine.items():
        days[day] = days.get(day) or (date(1970, 1, 1) + timedelta(days=day)).isoformat()
        keys: tuple[tuple[str, Any], ...] = (
            ("total", ()),
            ("daily", (days[day], dag_id)),
            ("dag", dag_id),
            ("task", (dag_id, task_id)),
            ("model", model),
            ("kind", kind),
        )
        for name, key in keys:
            _add(rollups[name], key, sums)
    runs = _top_runs(session, by_run, dag_ids, window)
    return {
        "window": {"first": window.first.isoformat(), "last": window.last.isoformat(), "days": window.days()},
        "totals": _rows({(): rollups["total"].get((), [0] * len(SUMS))}, ())[0],
        "daily": sorted(_rows(rollups["daily"], ("day", "dag_id")), key=lambda g: (g["day"], g["dag_id"])),
        "by_dag": _rows(rollups["dag"], ("dag_id",)),
        "by_task": _rows(rollups["task"], ("dag_id", "task_id")),
        "by_model": _rows(rollups["model"], ("model",)),
        "by_kind": _rows(rollups["kind"], ("kind",)),
        "tools": [
            {"tool": tool, "calls": calls, "records": records}
            for tool, (calls, records) in sorted(tools.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ],
        "runs": runs,
        "exceeded_runs": sorted(
            ({"dag_id": r["dag_id"], "run_id": r["run_id"], **r["budget"]} for r in runs if r["budget"]),
            key=lambda r: (r["dag_id"], r["run_id"]),
        ),
    }


def _top_runs(
    session: Session, by_run: dict[tuple[str, str], list[int]], dag_ids: Collection[str], window: Window
) -> list[dict[str, Any]]:
    """The most expensive runs (by cost, then tokens) and every run over budget (that has usage
    in the window), each over-budget run carrying its ``budget``."""
    exceeded = {key: budget for key, budget in _exceeded_runs(session, dag_ids, window).items() if key in by_run}
    ranked = _rows(by_run, ("dag_id", "run_id"))
    runs = ranked[:TOP_RUNS] + [r for r in ranked[TOP_RUNS:] if (r["dag_id"], r["run_id"]) in exceeded]
    for run in runs:
        run["budget"] = exceeded.get((run["dag_id"], run["run_id"]))
    return runs


def _exceeded_runs(session: Session, dag_ids: Collection[str], window: Window) -> dict[tuple[str, str], dict[str, Any]]:
    """Runs whose usage sensor found them over budget (it writes ``xai_usage_summary`` then)."""
    from airflow.models.xcom import XComModel as X

    if not dag_ids:
        return {}
    stmt = select(X.dag_id, X.run_id, X.value).where(
        X.key == XCOM_SUMMARY_KEY, X.dag_id.in_(sorted(dag_ids)), X.timestamp >= window.start
    )
    out = {}
    for dag_id, run_id, value in session.execute(stmt):
        if isinstance(value, str):
            value = json.loads(value)
        budget = value.get("budget") if isinstance(value, Mapping) else None
        if isinstance(budget, Mapping) and budget.get("status") == "exceeded":
            out[(dag_id, run_id)] = {name: budget.get(name) for name in BUDGET_FIELDS}
    return out


def usage_dag_ids(session: Session, dag_ids: Collection[str]) -> list[str]:
    """The readable DAGs that have any xAI usage (the page's DAG filter)."""
    from airflow.models.xcom import XComModel as X

    if not dag_ids:
        return []
    stmt = (
        select(X.dag_id)
        .where(X.key.in_((XCOM_LEDGER_KEY, XCOM_USAGE_KEY)), X.dag_id.in_(sorted(dag_ids)))
        .distinct()
        .order_by(X.dag_id)
    )
    return list(session.scalars(stmt))
