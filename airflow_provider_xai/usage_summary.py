"""Usage across a DAG run: gather records, add them up, check a budget, render a table.

Pure functions over :class:`~airflow_provider_xai.usage.UsageRecord` (no Airflow imports at
module level), shared by :class:`~airflow_provider_xai.sensors.usage.XAIUsageSensor` and its
trigger. Costs are summed as integer ticks (1 USD = 1e10 ticks) so totals are exact sums.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.usage import COUNT_FIELDS, COUNTS, TICKS_PER_USD, UsageRecord, add_tool_usage

#: Task instance states after which a task will spend nothing more (for this try sequence).
FINISHED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


# --- records ------------------------------------------------------------------------------------
def records_from_values(values: Iterable[Any]) -> tuple[list[UsageRecord], int]:
    """Records from XCom values (a record dict, a ledger list, or None), de-duplicated by
    identity and ordered by task, map index and time; and how many values or ledger items were
    no usage record (:meth:`UsageRecord.from_stored`), skipped."""
    seen: dict[tuple[Any, ...], UsageRecord] = {}
    skipped = 0
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if (record := UsageRecord.from_stored(item)) is not None:
                seen.setdefault(record.key, record)
            elif item is not None:
                skipped += 1
    records = sorted(seen.values(), key=lambda r: (r.task_id or "", r.map_index, r.try_number or 0, r.timestamp))
    return records, skipped


def cost_ticks(record: UsageRecord) -> int | None:
    """The record's cost in ticks (exact for xAI's own figure), or None when unknown."""
    return None if record.cost_usd is None else round(record.cost_usd * TICKS_PER_USD)


# --- totals -------------------------------------------------------------------------------------
@dataclass
class Totals:
    """Requests, counts (every field of :data:`~airflow_provider_xai.usage.COUNTS`) and cost of
    a group of records. A count reads as an attribute too: ``totals.total_tokens``."""

    requests: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_FIELDS, 0))
    server_side_tool_usage: dict[str, int] = field(default_factory=dict)
    cost_ticks: int = 0
    unpriced_requests: int = 0

    def __getattr__(self, name: str) -> int:
        counts = self.__dict__.get("counts", {})
        if name in counts:
            return int(counts[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def add(self, record: UsageRecord) -> None:
        self.requests += record.requests
        for name in COUNT_FIELDS:
            self.counts[name] += int(getattr(record, name) or 0)
        add_tool_usage(self.server_side_tool_usage, record.server_side_tool_usage)
        ticks = cost_ticks(record)
        if ticks is None:
            self.unpriced_requests += record.requests
        else:
            self.cost_ticks += ticks

    @property
    def cost_usd(self) -> float:
        return self.cost_ticks / TICKS_PER_USD

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            **self.counts,
            "server_side_tool_usage": dict(sorted(self.server_side_tool_usage.items())),
            "cost_usd": self.cost_usd,
            "unpriced_requests": self.unpriced_requests,
        }


@dataclass
class TaskTotals(Totals):
    """Totals of one task, with how many map indexes and tries spent."""

    map_indexes: set[int] = field(default_factory=set)
    tries: set[tuple[int, int]] = field(default_factory=set)

    def add(self, record: UsageRecord) -> None:
        super().add(record)
        self.map_indexes.add(record.map_index)
        self.tries.add((record.map_index, record.try_number or 1))

    @property
    def mapped(self) -> bool:
        return any(index >= 0 for index in self.map_indexes)

    def label(self, task_id: str) -> str:
        extras = [f"{len(self.map_indexes)} mapped"] if self.mapped else []
        if len(self.tries) > len(self.map_indexes):
            extras.append(f"{len(self.tries)} tries")
        return f"{task_id} [{', '.join(extras)}]" if extras else task_id

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "mapped": self.mapped,
            "map_indexes": len(self.map_indexes),
            "tries": len(self.tries),
        }


@dataclass
class UsageSummary:
    """Run totals, by model and by task."""

    totals: Totals
    by_model: dict[str, Totals]
    by_task: dict[str, TaskTotals]
    records: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the sensor's XCom)."""
        return {
            "totals": self.totals.to_dict(),
            "by_model": {name: t.to_dict() for name, t in self.by_model.items()},
            "by_task": {name: t.to_dict() for name, t in self.by_task.items()},
            "records": self.records,
        }


def summarize(records: Sequence[UsageRecord]) -> UsageSummary:
    """Add up records: every total is the exact sum of the records' fields."""
    totals = Totals()
    by_model: dict[str, Totals] = {}
    by_task: dict[str, TaskTotals] = {}
    for record in records:
        totals.add(record)
        by_model.setdefault(record.model, Totals()).add(record)
        by_task.setdefault(record.task_id or "?", TaskTotals()).add(record)
    return UsageSummary(
        totals=totals,
        by_model=dict(sorted(by_model.items())),
        by_task=dict(sorted(by_task.items())),
        records=len(records),
    )


# --- budget -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """Limits for one DAG run; None means no limit. Spending exactly the limit is within it."""

    max_total_tokens: int | None = None
    max_cost_usd: float | None = None

    @property
    def unlimited(self) -> bool:
        return self.max_total_tokens is None and self.max_cost_usd is None


def top_spenders(summary: UsageSummary, limit: int = 3) -> list[dict[str, Any]]:
    """The tasks that spent most (by cost, then tokens)."""
    ranked = sorted(summary.by_task.items(), key=lambda kv: (-kv[1].cost_ticks, -kv[1].total_tokens))
    return [
        {"task_id": task_id, "cost_usd": t.cost_usd, "total_tokens": t.total_tokens, "requests": t.requests}
        for task_id, t in ranked[:limit]
    ]


def evaluate_budget(summary: UsageSummary, budget: Budget) -> dict[str, Any]:
    """Budget status (JSON-safe): ``status`` is ``ok``, ``exceeded`` or ``unlimited``."""
    totals = summary.totals
    status: dict[str, Any] = {
        "status": "unlimited" if budget.unlimited else "ok",
        "max_total_tokens": budget.max_total_tokens,
        "max_cost_usd": budget.max_cost_usd,
        "total_tokens": totals.total_tokens,
        "cost_usd": totals.cost_usd,
        "cost_complete": totals.unpriced_requests == 0,
        "over_tokens": 0,
        "over_cost_usd": 0.0,
        "remaining_tokens": None,
        "remaining_cost_usd": None,
        "top_tasks": top_spenders(summary),
        "message": "",
    }
    problems = []
    if budget.max_total_tokens is not None:
        over = totals.total_tokens - budget.max_total_tokens
        status["remaining_tokens"] = max(-over, 0)
        if over > 0:
            status["over_tokens"] = over
            problems.append(
                f"total_tokens {totals.total_tokens:,} > max_total_tokens "
                f"{budget.max_total_tokens:,} (over by {over:,})"
            )
    if budget.max_cost_usd is not None:
        limit_ticks = round(budget.max_cost_usd * TICKS_PER_USD)
        over_ticks = totals.cost_ticks - limit_ticks
        status["remaining_cost_usd"] = max(-over_ticks, 0) / TICKS_PER_USD
        if over_ticks > 0:
            status["over_cost_usd"] = over_ticks / TICKS_PER_USD
            problems.append(
                f"cost ${fmt_usd(totals.cost_usd)} > max_cost_usd ${fmt_usd(budget.max_cost_usd)} "
                f"(over by ${fmt_usd(over_ticks / TICKS_PER_USD)})"
            )
    if problems:
        status["status"] = "exceeded"
        spenders = ", ".join(
            f"{t['task_id']} (${fmt_usd(t['cost_usd'])}, {t['total_tokens']:,} tokens)"
            for t in status["top_tasks"]
        )
        status["message"] = f"xAI budget exceeded: {'; '.join(problems)}. Top spenders: {spenders}."
        if not status["cost_complete"]:
            status["message"] += f" ({totals.unpriced_requests} request(s) had no known price.)"
    return status


# --- the readable table -------------------------------------------------------------------------
def fmt_usd(value: float) -> str:
    """USD with enough digits for sub-cent LLM costs."""
    return f"{value:.6f}"


_COLUMNS = ("requests", *(count.column for count in COUNTS), "cost USD")


def _row(section: str, name: str, t: Totals) -> list[str]:
    cost = fmt_usd(t.cost_usd) + ("+?" if t.unpriced_requests else "")
    numbers = [t.requests, *(t.counts[count.field] for count in COUNTS)]
    return [section, name, *(f"{n:,}" for n in numbers), cost]


def render_table(summary: UsageSummary, title: str = "xAI usage") -> str:
    """A fixed-width table: per task, per model, and the run total (``+?``: some cost unknown)."""
    rows = [["", "", *_COLUMNS]]
    rows += [_row("task", t.label(task_id), t) for task_id, t in summary.by_task.items()]
    rows += [_row("model", model, t) for model, t in summary.by_model.items()]
    rows.append(_row("TOTAL", "", summary.totals))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(line(rows[0]))
    body = [line(rows[0]), rule, *(line(r) for r in rows[1:-1]), rule, line(rows[-1])]
    return "\n".join([f"{title}: {summary.records} record(s)", *body])


# --- task states of a DAG run -------------------------------------------------------------------
def parse_task_states(raw: Mapping[str, Any], task_ids: Iterable[str]) -> dict[tuple[str, int], str | None]:
    """``{task_id or "<task_id>_<map_index>": state}`` (the execution API's shape) ->
    ``{(task_id, map_index): state}`` for the given task ids."""
    wanted = set(task_ids)
    states: dict[tuple[str, int], str | None] = {}
    for key, state in raw.items():
        value = None if state is None else str(getattr(state, "value", state))
        if key in wanted:
            states[(key, -1)] = value
        elif (m := re.fullmatch(r"(.+)_(\d+)", key)) and m.group(1) in wanted:
            states[(m.group(1), int(m.group(2)))] = value
    return states


def fetch_task_states(dag_id: str, run_id: str, task_ids: Sequence[str]) -> dict[tuple[str, int], str | None]:
    """States of every instance of ``task_ids`` in one DAG run, through the Task SDK (works in
    a task and in the triggerer; tasks cannot read the metadata DB in Airflow 3)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    if not task_ids:
        return {}
    wanted = set(task_ids)
    # "a_1" is both task "a_1" and task "a" map index 1: ask per task when ids could collide.
    ambiguous = any(re.fullmatch(r"(.+)_\d+", t) and t.rsplit("_", 1)[0] in wanted for t in wanted)
    groups = [[t] for t in task_ids] if ambiguous else [list(task_ids)]
    states: dict[tuple[str, int], str | None] = {}
    for group in groups:
        raw = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=group, run_ids=[run_id])
        states.update(parse_task_states(raw.get(run_id, {}), group))
    return states


def unfinished(states: Mapping[tuple[str, int], str | None]) -> dict[str, str]:
    """``{"task[map_index]": state}`` of instances that may still spend."""
    return {
        (task_id if index < 0 else f"{task_id}[{index}]"): str(state)
        for (task_id, index), state in sorted(states.items())
        if state not in FINISHED_STATES
    }
