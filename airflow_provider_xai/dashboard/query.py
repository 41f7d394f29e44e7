"""The xAI usage page's numbers, added up by SQL in Airflow's metadata DB.

What counts (so nothing is counted twice): per task instance (DAG run, task, map index), the
records of its ``xai_usage_ledger`` XCom, which holds every billed response of every attempt
(batch results are only there); the ``xai_usage`` XCom (the latest single record, also in the
ledger) counts only for a task instance that has no ledger. The usage sensor's roll-ups
(its return value, ``xai_usage_summary``) are never counted; ``xai_usage_summary`` only marks a
run as over budget. A record's day is its own ``timestamp`` (UTC), not the XCom's.

The records are unnested and grouped in SQL (SQLite ``json_each``, PostgreSQL
``jsonb_array_elements``); only the grouped rows reach Python. Costs are summed as integer ticks
(1 USD = 1e10 ticks) as in :mod:`airflow_provider_xai.usage_summary`, so totals are exact sums.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    select,
    true,
    tuple_,
    type_coerce,
)
from sqlalchemy.orm import Session, aliased

from airflow_provider_xai.sensors.usage import XCOM_SUMMARY_KEY
from airflow_provider_xai.usage import COUNT_FIELDS, TICKS_PER_USD, XCOM_LEDGER_KEY, XCOM_USAGE_KEY

#: What the page shows of an over-budget run's ``budget`` (``usage_summary.evaluate_budget``).
BUDGET_FIELDS = ("max_total_tokens", "max_cost_usd", "over_tokens", "over_cost_usd", "message")
#: The runs table's length.
TOP_RUNS = 25


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


# --- dialects -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Dialect:
    """The three things SQL does not say portably: unnest a JSON array, unnest a JSON object,
    and the UTC day of an epoch."""

    array_elements: Callable[[Any], Any]
    object_entries: Callable[[Any], Any]
    day: Callable[[Any], Any]


_DIALECTS = {
    "sqlite": _Dialect(
        array_elements=lambda v: func.json_each(v).table_valued("value"),
        object_entries=lambda v: func.json_each(v).table_valued("key", "value"),
        day=lambda epoch: func.strftime("%Y-%m-%d", epoch, "unixepoch"),
    ),
    "postgresql": _Dialect(
        array_elements=lambda v: func.jsonb_array_elements(v).table_valued("value").lateral(),
        object_entries=lambda v: func.jsonb_each_text(v).table_valued("key", "value").lateral(),
        day=lambda epoch: func.to_char(func.timezone("UTC", func.to_timestamp(epoch)), "YYYY-MM-DD"),
    ),
}


def _dialect(session: Session) -> _Dialect:
    name = session.get_bind().dialect.name
    if name not in _DIALECTS:
        raise NotImplementedError(
            f"The xAI usage page reads SQLite and PostgreSQL metadata DBs, not {name!r}; "
            "disable it with [xai] usage_page = False"
        )
    return _DIALECTS[name]


# --- the records ----------------------------------------------------------------------------------
def _records(session: Session, dag_ids: Collection[str], window: Window) -> Any:
    """One row per counted usage record: dag_id, run_id, task_id, map_index, rec (its JSON)."""
    from airflow.models.xcom import XComModel as X

    dialect = _dialect(session)
    # A ledger published at time T holds records stamped <= T: the XCom time bounds from below.
    scope = (X.dag_id.in_(sorted(dag_ids)) if dag_ids else false(), X.timestamp >= window.start)
    where = (X.dag_id, X.run_id, X.task_id, X.map_index)
    element = dialect.array_elements(X.value)
    from_ledgers = (
        select(*where, element.c.value.label("rec"))
        .select_from(X)
        .join(element, true())
        .where(X.key == XCOM_LEDGER_KEY, *scope)
    )
    ledger = aliased(X)
    has_ledger = exists().where(
        ledger.dag_run_id == X.dag_run_id,
        ledger.task_id == X.task_id,
        ledger.map_index == X.map_index,
        ledger.key == XCOM_LEDGER_KEY,
    )
    singles = select(*where, X.value.label("rec")).where(X.key == XCOM_USAGE_KEY, *scope, ~has_ledger)
    records = from_ledgers.union_all(singles).subquery("records")
    rec = type_coerce(records.c.rec, JSON)
    stamp = rec["timestamp"].as_float()
    return records, rec, stamp, dialect


def _ticks(rec: Any) -> Any:
    return cast(func.round(rec["cost_usd"].as_float() * TICKS_PER_USD), BigInteger)


def _sums(rec: Any) -> list[Any]:
    requests = func.coalesce(rec["requests"].as_integer(), 1)
    cost = rec["cost_usd"].as_float()
    estimated = rec["cost_source"].as_string() == "estimate"
    return [
        func.count().label("records"),
        func.sum(requests).label("requests"),
        *(func.coalesce(func.sum(rec[name].as_integer()), 0).label(name) for name in COUNT_FIELDS),
        func.coalesce(func.sum(_ticks(rec)), 0).label("cost_ticks"),
        func.coalesce(func.sum(case((estimated, _ticks(rec)), else_=0)), 0).label("estimate_ticks"),
        func.coalesce(func.sum(case((cost.is_(None), requests), else_=0)), 0).label("unpriced_requests"),
    ]


def _totals(row: Any) -> dict[str, Any]:
    out = {"records": row.records, "requests": row.requests or 0}
    out.update({name: int(getattr(row, name) or 0) for name in COUNT_FIELDS})
    out["cost_ticks"] = int(row.cost_ticks or 0)
    out["estimate_ticks"] = int(row.estimate_ticks or 0)  # the rest of cost_ticks is xAI's figure
    out["unpriced_requests"] = int(row.unpriced_requests or 0)
    return out


def _add(into: dict[str, Any], more: dict[str, Any]) -> None:
    for name, value in more.items():
        if isinstance(value, int):
            into[name] = into.get(name, 0) + value


def _usd(groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cost in USD from ticks, most expensive first."""
    rows = sorted(groups, key=lambda g: (-g["cost_ticks"], -g["total_tokens"]))
    for row in rows:
        row["cost_usd"] = row["cost_ticks"] / TICKS_PER_USD
        row["estimated_cost_usd"] = row["estimate_ticks"] / TICKS_PER_USD
    return rows


# --- the report -----------------------------------------------------------------------------------
def usage_report(session: Session, dag_ids: Collection[str], window: Window) -> dict[str, Any]:
    """Totals, per-day series, breakdowns, tool calls and top runs of ``dag_ids`` in ``window``.

    ``dag_ids`` must already be only what the user may read: nothing else is looked at.
    """
    records, rec, stamp, dialect = _records(session, dag_ids, window)
    in_window = and_(stamp >= window.start.timestamp(), stamp < window.end.timestamp())
    day = dialect.day(stamp)
    keys = {
        "day": day,
        "dag_id": records.c.dag_id,
        "task_id": records.c.task_id,
        "model": rec["model"].as_string(),
        "kind": rec["kind"].as_string(),
        "cost_source": rec["cost_source"].as_string(),
    }
    grouped = (
        select(*(expr.label(name) for name, expr in keys.items()), *_sums(rec))
        .where(in_window)
        .group_by(*keys.values())
    )
    totals: dict[str, Any] = {}
    series: dict[tuple[str, str], dict[str, Any]] = {}
    breakdowns: dict[str, dict[Any, dict[str, Any]]] = {"dag": {}, "task": {}, "model": {}, "kind": {}}
    cost_by_source: dict[str, int] = {}
    for row in session.execute(grouped):
        sums = _totals(row)
        _add(totals, sums)
        _add(series.setdefault((row.day, row.dag_id), {"day": row.day, "dag_id": row.dag_id}), sums)
        for name, key, label in (
            ("dag", row.dag_id, {"dag_id": row.dag_id}),
            ("task", (row.dag_id, row.task_id), {"dag_id": row.dag_id, "task_id": row.task_id}),
            ("model", row.model, {"model": row.model}),
            ("kind", row.kind or "chat", {"kind": row.kind or "chat"}),
        ):
            _add(breakdowns[name].setdefault(key, dict(label)), sums)
        source = row.cost_source or "unknown"
        cost_by_source[source] = cost_by_source.get(source, 0) + sums["cost_ticks"]

    runs = _top_runs(session, records, rec, in_window, _exceeded_runs(session, dag_ids, window))
    return {
        "window": {"first": window.first.isoformat(), "last": window.last.isoformat(), "days": window.days()},
        "totals": _usd([totals or _totals_zero()])[0],
        "cost_by_source": {s: t / TICKS_PER_USD for s, t in sorted(cost_by_source.items())},
        "daily": sorted(_usd(series.values()), key=lambda g: (g["day"], g["dag_id"])),
        **{f"by_{name}": _usd(groups.values()) for name, groups in breakdowns.items()},
        "tools": _tool_calls(session, records, rec, in_window, dialect),
        "runs": runs,
        "exceeded_runs": sorted(
            ({"dag_id": r["dag_id"], "run_id": r["run_id"], **r["budget"]} for r in runs if r["budget"]),
            key=lambda r: (r["dag_id"], r["run_id"]),
        ),
    }


def _totals_zero() -> dict[str, Any]:
    zeros = ("records", "requests", *COUNT_FIELDS, "cost_ticks", "estimate_ticks", "unpriced_requests")
    return dict.fromkeys(zeros, 0)


def _tool_calls(session: Session, records: Any, rec: Any, in_window: Any, dialect: _Dialect) -> list[dict[str, Any]]:
    """Server-side tool calls by kind (``web_search_calls``...), with the requests that made them."""
    entry = dialect.object_entries(rec["server_side_tool_usage"])
    calls = cast(entry.c.value, BigInteger)
    stmt = (
        select(entry.c.key.label("tool"), func.sum(calls).label("calls"), func.count().label("records"))
        .select_from(records)
        .join(entry, true())
        .where(in_window)
        .group_by(entry.c.key)
        .order_by(func.sum(calls).desc())
    )
    return [{"tool": r.tool, "calls": int(r.calls or 0), "records": r.records} for r in session.execute(stmt)]


def _top_runs(
    session: Session, records: Any, rec: Any, in_window: Any, exceeded: dict[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """The most expensive runs (by cost, then tokens) and every run over budget, each over-budget
    run carrying its ``budget``."""
    ticks = func.coalesce(func.sum(_ticks(rec)), 0)
    tokens = func.coalesce(func.sum(rec["total_tokens"].as_integer()), 0)
    stamp = rec["timestamp"].as_float()
    per_run = (
        select(records.c.dag_id, records.c.run_id, *_sums(rec), func.min(stamp).label("first"))
        .where(in_window)
        .group_by(records.c.dag_id, records.c.run_id)
    )
    rows = list(session.execute(per_run.order_by(ticks.desc(), tokens.desc(), records.c.run_id).limit(TOP_RUNS)))
    missing = sorted(set(exceeded) - {(row.dag_id, row.run_id) for row in rows})
    if missing:
        rows += session.execute(per_run.where(tuple_(records.c.dag_id, records.c.run_id).in_(missing)))
    runs = [
        {"dag_id": row.dag_id, "run_id": row.run_id, **_totals(row), "first": row.first,
         "budget": exceeded.get((row.dag_id, row.run_id))}
        for row in rows
    ]
    return _usd(runs)


def _exceeded_runs(session: Session, dag_ids: Collection[str], window: Window) -> dict[tuple[str, str], dict[str, Any]]:
    """Runs whose usage sensor found them over budget (it writes ``xai_usage_summary`` then).
    Those with usage records in the window are the window's over-budget runs."""
    from airflow.models.xcom import XComModel as X

    if not dag_ids:
        return {}
    status = type_coerce(X.value, JSON)["budget"]["status"].as_string()
    stmt = select(X.dag_id, X.run_id, X.value).where(
        X.key == XCOM_SUMMARY_KEY,
        X.dag_id.in_(sorted(dag_ids)),
        X.timestamp >= window.start,
        status == "exceeded",
    )
    out = {}
    for row in session.execute(stmt):
        budget = (row.value or {}).get("budget", {}) if isinstance(row.value, dict) else {}
        out[(row.dag_id, row.run_id)] = {name: budget.get(name) for name in BUDGET_FIELDS}
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
