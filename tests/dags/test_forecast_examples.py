"""The forecast against the bill over every example DAG: each DAG runs under dag.test() against
the local server with ``forecast_tokens: tokenize`` (every call's prompt counted by the
tokenizer, as under a cap or a budget), and every billed call's forecast is held to its bill:
the prompt's count is exact where nothing but the request is read (no image, no stored
conversation, no tool result), and the billed cost never passes the worst case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.dags.conftest import DAGS_FOLDER, run_dag, xcom_values

EXAMPLES = sorted(path.stem for path in DAGS_FOLDER.glob("example_xai_*.py"))


def plain(forecast: dict[str, Any]) -> bool:
    """A call whose whole prompt is in its request: the tokenizer's count is the bill's."""
    return not (forecast["image_tokens"] or forecast["history_of"] or forecast["tool_calls"])


def test_forecasts_bound_the_bill_over_every_example_dag(
    dagbag: Any, xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    extra = {**xai_server.management_extra(), "forecast_tokens": "tokenize",
             "rate_limit_path": str(tmp_path / "spend.sqlite")}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(**extra))
    xai_server.configure(batch_pending_polls=1)
    calls = []
    for dag_id in EXAMPLES:
        dr = run_dag(dagbag, dag_id)
        for task_id in dagbag.get_dag(dag_id).task_ids:
            for forecasts in xcom_values(dr, task_id, "xai_forecast").values():
                calls += [c for c in forecasts if c.get("actual_usd") is not None]
    assert len(calls) >= 10
    exact = [c for c in calls if plain(c["forecast"])]
    assert exact and all(c["forecast"]["input_tokens"] == c["actual_prompt_tokens"] for c in exact)
    over = [c for c in calls if c["actual_prompt_tokens"] > c["forecast"]["prompt_tokens"]]
    assert over == [], json.dumps(over, indent=1)
    assert all(c["actual_tokens"] <= c["forecast"]["total_tokens"] for c in calls)
    assert all(c["actual_usd"] <= c["forecast"]["cost_usd"] for c in calls)
    worst, billed = sum(c["forecast"]["cost_usd"] for c in calls), sum(c["actual_usd"] for c in calls)
    tightest = max(c["actual_usd"] / c["forecast"]["cost_usd"] for c in calls)
    print(f"\n{len(calls)} billed calls over {len(EXAMPLES)} example DAGs; {len(exact)} with the prompt counted "
          f"exactly; billed ${billed:.6f} of a worst case ${worst:.6f} ({billed / worst:.0%}); "
          f"the tightest call billed {tightest:.0%} of its worst case")
