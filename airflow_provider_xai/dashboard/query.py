"""The xAI usage page's numbers: the counted records (:mod:`.records`) added up in one pass.

Each record becomes one tuple of :data:`SUMS` and is appended (not yet added) to its fine
group (day, DAG, task, model, API, cost source) and to its run; each group's column sums are
then taken at once (``zip`` and ``sum``), and the page's roll-ups (totals, per day x DAG, by DAG,
task, model, API) are made from the few thousand fine groups, not from the records. Costs are
summed as integer ticks (1 USD = 1e10 ticks) as in :mod:`airflow_provider_xai.usage_summary`, so
totals are exact sums. Adding up inside SQL with JSON element access was measured slower on
SQLite (figures in docs/dashboard.md); this way one portable query serves SQLite, PostgreSQL
and MySQL.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from operator import attrgetter
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from airflow_provider_xai.dashboard.records import counted_rows, decode, decode_summary
from airflow_provider_xai.sensors.usage import XCOM_SUMMARY_KEY
from airflow_provider_xai.usage import COUNT_FIELDS, TICKS_PER_USD, XCOM_LEDGER_KEY, XCOM_USAGE_KEY

#: What the page shows of an over-budget run's ``budget`` (``usage_summary.evaluate_budget``).
BUDGET_FIELDS = ("max_total_tokens", "max_cost_usd", "over_tokens", "over_cost_usd", "message")
#: The runs table's length.
TOP_RUNS = 25
#: The sums kept per group, in order: a group is a list of ints in this order (the waits for
#: rate-limit capacity in milliseconds: in workers, deferred; and the 429s met).
SUMS = (
    "records", "requests", *COUNT_FIELDS, "cost_ticks", "estimate_ticks", "unpriced_requests",
    "waited_ms", "deferred_ms", "rate_limited",
)
_DAY = 86400
_TICKS, _TOKENS = SUMS.index("cost_ticks"), SUMS.index("total_tokens")
_counts = attrgetter(*COUNT_FIELDS)
log = logging.getLogger(__name__)


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


# --- one pass over the records ----------------------------------------------------------------------
def _column_sums(rows: Iterable[tuple[int, ...]]) -> list[int]:
    return [sum(column) for column in zip(*rows, strict=True)]


def _collect(session: Session, dag_ids: Collection[str], window: Window) -> tuple[dict, dict, dict, int]:
    """Fine groups, runs and tool calls of the counted records in ``window``, summed; and how
    many stored values or ledger items were no usage record (skipped)."""
    fine: dict[tuple[Any, ...], list[tuple[int, ...]]] = {}  # (day, dag, task, model, kind, cost source)
    by_run: dict[tuple[str, str], list[tuple[int, ...]]] = {}
    tools: dict[str, list[tuple[int, int]]] = {}
    skipped = 0
    start, end = window.start.timestamp(), window.end.timestamp()
    for dag_id, run_id, task_id, text in counted_rows(session, dag_ids, window.start):
        records, bad = decode(text)
        skipped += bad
        for rec in records:
            stamp = rec.timestamp
            if not start <= stamp < end:
                continue
            cost, requests = rec.cost_usd, rec.requests or 1
            ticks = 0 if cost is None else round(cost * TICKS_PER_USD)
            estimate = ticks if rec.cost_source == "estimate" else 0
            waits = (round(rec.waited_s * 1000), round(rec.deferred_s * 1000), rec.rate_limited)
            sums = (1, requests, *_counts(rec), ticks, estimate, requests if cost is None else 0, *waits)
            key = (int(stamp // _DAY), dag_id, task_id, rec.model, rec.kind or "chat", rec.cost_source)
            fine.setdefault(key, []).append(sums)
            by_run.setdefault((dag_id, run_id), []).append(sums)
            for tool, calls in (rec.server_side_tool_usage or {}).items():
                tools.setdefault(tool, []).append((calls or 0, 1))
    return (
        {key: _column_sums(rows) for key, rows in fine.items()},
        {key: _column_sums(rows) for key, rows in by_run.items()},
        {tool: _column_sums(rows) for tool, rows in tools.items()},
        skipped,
    )


def _add(into: dict[Any, list[int]], key: Any, sums: list[int]) -> None:
    group = into.get(key)
    if group is None:
        into[key] = sums.copy()
    else:
        group[:] = [a + b for a, b in zip(group, sums, strict=True)]


def _rows(groups: Mapping[Any, list[int]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Groups as dicts (their key named by ``names``), cost in USD, most expensive first."""
    rows = []
    for key, sums in groups.items():
        row: dict[str, Any] = dict(zip(names, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(zip(SUMS, sums, strict=True))
        row["cost_usd"] = row["cost_ticks"] / TICKS_PER_USD
        row["estimated_cost_usd"] = row["estimate_ticks"] / TICKS_PER_USD
        # The cached part of the prompt: what prompt-cache routing bought (0 without a prompt).
        prompt = row["prompt_tokens"]
        row["cache_hit_share"] = round(min(row["cached_tokens"] / prompt, 1.0), 4) if prompt else 0.0
        row["waited_s"], row["deferred_s"] = row["waited_ms"] / 1000, row["deferred_ms"] / 1000
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["cost_ticks"], -r["total_tokens"], [str(r[n]) for n in names]))


# --- the report -----------------------------------------------------------------------------------
def usage_report(session: Session, dag_ids: Collection[str], window: Window) -> dict[str, Any]:
    """Totals, per-day series, breakdowns, tool calls and top runs of ``dag_ids`` in ``window``.

    ``dag_ids`` must already be only what the user may read: nothing else is looked at.
    """
    fine, by_run, tools, skipped = _collect(session, dag_ids, window)
    exceeded, bad_summaries = _exceeded_runs(session, dag_ids, window)
    skipped += bad_summaries
    if skipped:
        log.warning("xAI usage page: skipped %d stored value(s) that are no usage record or summary", skipped)
    rollups: dict[str, dict[Any, list[int]]] = {
        name: {} for name in ("total", "daily", "dag", "task", "model", "kind", "dag_model")
    }
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
            ("dag_model", (dag_id, model)),
        )
        for name, key in keys:
            _add(rollups[name], key, sums)
    runs = _top_runs(by_run, exceeded)
    return {
        "window": {"first": window.first.isoformat(), "last": window.last.isoformat(), "days": window.days()},
        "totals": _rows({(): rollups["total"].get((), [0] * len(SUMS))}, ())[0],
        "daily": sorted(_rows(rollups["daily"], ("day", "dag_id")), key=lambda g: (g["day"], g["dag_id"])),
        "by_dag": _rows(rollups["dag"], ("dag_id",)),
        "by_task": _rows(rollups["task"], ("dag_id", "task_id")),
        "by_model": _rows(rollups["model"], ("model",)),
        "by_kind": _rows(rollups["kind"], ("kind",)),
        # Waiting for rate-limit capacity, by DAG and model: the longest waits first.
        "waits": sorted(
            _rows(rollups["dag_model"], ("dag_id", "model")),
            key=lambda g: (-g["waited_ms"], -g["deferred_ms"], -g["rate_limited"], g["dag_id"], g["model"]),
        ),
        "tools": [
            {"tool": tool, "calls": calls, "records": records}
            for tool, (calls, records) in sorted(tools.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ],
        "runs": runs,
        "skipped_records": skipped,
        "exceeded_runs": sorted(
            ({"dag_id": r["dag_id"], "run_id": r["run_id"], **r["budget"]} for r in runs if r["budget"]),
            key=lambda r: (r["dag_id"], r["run_id"]),
        ),
    }


def _top_runs(
    by_run: dict[tuple[str, str], list[int]], over_budget: Mapping[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """The most expensive runs (by cost, then tokens) and every run over budget (that has usage
    in the window), each over-budget run carrying its ``budget``."""
    exceeded = {key: budget for key, budget in over_budget.items() if key in by_run}
    top = heapq.nsmallest(TOP_RUNS, by_run, key=lambda run: (-by_run[run][_TICKS], -by_run[run][_TOKENS], run))
    runs = _rows({run: by_run[run] for run in [*top, *exceeded]}, ("dag_id", "run_id"))  # the order of _rows
    for run in runs:
        run["budget"] = exceeded.get((run["dag_id"], run["run_id"]))
    return runs


def _exceeded_runs(
    session: Session, dag_ids: Collection[str], window: Window
) -> tuple[dict[tuple[str, str], dict[str, Any]], int]:
    """Runs whose usage sensor found them over budget (it writes ``xai_usage_summary`` then),
    and how many values under that key were no summary (skipped)."""
    from airflow.models.xcom import XComModel as X

    if not dag_ids:
        return {}, 0
    stmt = select(X.dag_id, X.run_id, cast(X.value, Text)).where(
        X.key == XCOM_SUMMARY_KEY, X.dag_id.in_(sorted(dag_ids)), X.timestamp >= window.start
    )
    out, skipped = {}, 0
    for dag_id, run_id, text in session.connection().execute(stmt):
        summary = decode_summary(text) if text is not None else None
        budget = summary.get("budget") if summary is not None else None
        if isinstance(budget, Mapping) and budget.get("status") == "exceeded":
            out[(dag_id, run_id)] = {name: budget.get(name) for name in BUDGET_FIELDS}
        elif text is not None and summary is None:
            skipped += 1
    return out, skipped


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
