"""Reconciliation's arithmetic: the provider's daily tallies against xAI's usage answers, per
day and model, each difference explained when it can be (see ``operators/reconcile.py``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from airflow_provider_xai.schemas.billing import UsageAnalytics
from airflow_provider_xai.spend.tally import Tally, read


def model_of(description: str) -> tuple[str, str]:
    """``"Chat grok-4.3"`` -> (``"Chat"``, ``"grok-4.3"``); a bare model is its own."""
    kind, _, model = description.strip().rpartition(" ")
    return kind, model


def billed(answer: UsageAnalytics) -> dict[tuple[str, str], dict[str, float]]:
    """xAI's USD by (day, model), split by the description's kind (``Chat``, ``Batch``)."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for series in answer.timeSeries:
        kind, model = model_of(series.group[0] if series.group else "")
        for point in series.dataPoints:
            if point.values and point.timestamp:
                out[(point.timestamp[:10], model)][kind] += point.values[0]
    return out


def _explain(row: dict[str, Any], tally: Tally, tolerance: float, key_known: bool) -> list[str]:
    why = []
    if key_known and row["other_keys_usd"] > tolerance:
        why.append(f"other keys: ${row['other_keys_usd']:.6f} billed to team keys this connection does not use")
    diff = row["difference_usd"]
    batch = sum(v for k, v in tally.by_kind.items() if "batch" in k)
    if diff > tolerance:
        if tally.unpriced:
            why.append(f"unpriced: {tally.unpriced} recorded request(s) had no known cost")
        rest = diff - (batch if tally.estimated_usd and batch else 0)
        if rest > tolerance:
            why.append(f"outside Airflow: ${rest:.6f} billed to this key for calls no task recorded")
    if diff < -tolerance:
        if tally.estimated_usd and batch:
            why.append(f"batch discount: batch results estimated at ${batch:.6f}; xAI applied a larger discount")
        elif tally.estimated_usd:
            why.append(f"estimated: ${tally.estimated_usd:.6f} was estimated from prices (xAI sent no cost)")
        else:
            why.append("recorded more than billed: xAI's usage may not have caught up yet")
    if abs(diff) > tolerance and not why:
        why.append("unexplained")
    return why


def compare(
    days: Sequence[date],
    tallies: Mapping[str, Mapping[str, int]],
    team: UsageAnalytics,
    mine: UsageAnalytics,
    tolerance: float,
    *,
    key_known: bool = True,
) -> list[dict[str, Any]]:
    """One row per day and model that either side has, with the difference and its reasons."""
    team_by, mine_by = billed(team), billed(mine)
    rows = []
    for day in (d.isoformat() for d in days):
        recorded = read(tallies.get(day, {}), day)
        models = {m for (d, m) in [*team_by, *mine_by] if d == day} | set(recorded)
        for model in sorted(models):
            tally = recorded.get(model, Tally())
            key_usd = sum(mine_by.get((day, model), {}).values())
            team_usd = sum(team_by.get((day, model), {}).values())
            row: dict[str, Any] = {
                "day": day,
                "model": model,
                "recorded_usd": round(tally.usd, 9),
                "recorded_requests": tally.requests,
                "billed_usd": round(key_usd, 9),
                "team_usd": round(team_usd, 9),
                "other_keys_usd": round(max(team_usd - key_usd, 0.0), 9),
                "difference_usd": round(key_usd - tally.usd, 9),
            }
            row["explanations"] = _explain(row, tally, tolerance, key_known)
            row["flagged"] = bool(row["explanations"])
            rows.append(row)
    return rows


def render(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    """The rows as a table for the task log."""
    head = f"{'day':<10}  {'model':<28} {'recorded':>12} {'billed':>12} {'other keys':>12} {'difference':>12}  why"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['day']:<10}  {r['model'][:28]:<28} {r['recorded_usd']:>12.6f} {r['billed_usd']:>12.6f} "
            f"{r['other_keys_usd']:>12.6f} {r['difference_usd']:>12.6f}  {'; '.join(r['explanations']) or 'ok'}"
        )
    return "\n".join(lines)


__all__ = ["billed", "compare", "model_of", "render"]
