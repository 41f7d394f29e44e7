"""The usage page's budgets and forecast-against-actual, as pure functions: a budget's burn-down
from its state, which budgets a reader sees, and the calls and totals made of ``xai_forecast``
values (no DB, no store)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_xai.connection.spend import parse_budgets
from airflow_provider_xai.dashboard.budgets import burn_down, visible
from airflow_provider_xai.dashboard.forecasts import call_row, compare
from airflow_provider_xai.spend.budgets import states_of

NOON = datetime(2026, 12, 7, 12, tzinfo=timezone.utc).timestamp()
DAILY, MONTHLY, DAG = parse_budgets(
    [
        {"name": "team", "scope": "team", "usd": 5},
        {"name": "month", "scope": "tag:nightly", "period": "monthly", "tokens": 1000},
        {"name": "mine", "scope": "dag:mine", "usd": 1},
    ],
    "budgets",
)


def test_a_daily_budget_burns_down_against_the_day_gone() -> None:
    (state,) = states_of([DAILY], [1_750_000_000], NOON)  # 1.75 USD committed, in nano-USD
    row = burn_down(state, NOON)
    assert (row["limit"], row["committed"], row["remaining"]) == (5.0, 1.75, 3.25)
    assert row["used_share"] == 0.35 and row["elapsed_share"] == 0.5 and row["over"] is False
    assert (row["starts_at"], row["resets_at"]) == ("2026-12-07T00:00:00+00:00", "2026-12-08T00:00:00+00:00")
    assert row["period_id"] == "2026-12-07" and row["scope"] == "team"


def test_a_monthly_token_budget_over_its_limit() -> None:
    (state,) = states_of([MONTHLY], [1500], NOON)
    row = burn_down(state, NOON)
    assert row["used_share"] == 1.5 and row["over"] is True and row["remaining"] == 0
    assert row["starts_at"] == "2026-12-01T00:00:00+00:00" and row["period_id"] == "2026-12"
    assert row["elapsed_share"] == round((6 * 86400 + 43200) / (31 * 86400), 4)
    assert row["scope"] == "tag:nightly" and row["unit"] == "tokens"
    # Read after its period ended (the store keeps a period two days longer): all of it gone.
    assert burn_down(state, NOON + 40 * 86400)["elapsed_share"] == 1.0


def test_a_dag_budget_is_seen_only_by_readers_of_its_dag() -> None:
    team, tag, dag = states_of([DAILY, MONTHLY, DAG], [0, 0, 0], NOON)
    assert visible(team, set()) and visible(tag, set())
    assert not visible(dag, {"other"}) and visible(dag, {"mine", "other"})


def call(forecast: float | None, actual: float | None, **kw: Any) -> dict[str, Any]:
    return {
        "forecast": {"model": "grok-4.3", "cost_usd": forecast, "total_tokens": 900, "bounded": True},
        "actual_usd": actual, "actual_tokens": 300, "actual_prompt_tokens": 200, **kw,
    }  # fmt: skip


def test_calls_and_totals_compare_the_bill_with_the_forecast() -> None:
    rows = [
        ("d", "r1", "t", -1, "2026-12-07T10:00:00", [call(0.004, 0.001), call(0.002, 0.002)]),
        ("d", "r2", "t", 0, "2026-12-07T11:00:00", [call(0.001, 0.003)]),  # billed over its forecast
        ("d", "r3", "t", -1, "2026-12-07T09:00:00", [
            call(0.5, None, refused="xAI call refused before sending: over budget"),
            call(None, 0.01),  # unpriced: no worst case to compare with
            "x", {"forecast": 3}, None,  # no forecast entries: skipped, counted
        ]),
        ("d", "r4", "t", -1, "2026-12-07T08:00:00", None),  # a value that is no JSON
    ]  # fmt: skip
    got = compare(rows)
    totals = got["totals"]
    assert totals["compared"] == 3 and totals["calls"] == 5
    assert totals["forecast_usd"] == pytest.approx(0.007) and totals["actual_usd"] == pytest.approx(0.006)
    assert totals["ratio"] == round(0.006 / 0.007, 4)
    assert totals["over_forecast"] == 1 and totals["refused"] == 1
    assert got["skipped"] == 4
    assert [c["run_id"] for c in got["calls"]] == ["r2", "r1", "r1", "r3", "r3"]  # most recent first
    first = got["calls"][0]
    assert (first["forecast_usd"], first["actual_usd"], first["ratio"], first["map_index"]) == (0.001, 0.003, 3.0, 0)
    refused = next(c for c in got["calls"] if c["refused"])
    assert refused["ratio"] is None and refused["actual_usd"] is None and "over budget" in refused["refused"]
    assert compare(rows, limit=2)["calls"] == got["calls"][:2]
    assert compare(rows, limit=2)["totals"] == totals  # the totals cover every call, not the shown ones


def test_nothing_to_compare_has_no_ratio() -> None:
    got = compare([("d", "r", "t", -1, "2026-12-07", [call(0.0, 0.0), call(None, 0.2)])])
    assert got["totals"]["ratio"] is None and got["totals"]["compared"] == 0 and len(got["calls"]) == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5, True, "0.1"])
def test_an_amount_that_is_no_cost_is_left_out(bad: Any) -> None:
    row = call_row("d", "r", "t", -1, "2026-12-07", call(bad, bad))
    assert row is not None and row["forecast_usd"] is None and row["actual_usd"] is None and row["ratio"] is None
