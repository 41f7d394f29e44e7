"""example_xai_spend end to end under dag.test() against the local xAI server (its Management
API with its management key, a store of the test's own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dags.conftest import run_dag, task_states, xcom_values


def test_example_spend_dag_runs_green(
    dagbag: Any, xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    extra = {**xai_server.management_extra(), "rate_limit_path": str(tmp_path / "spend.sqlite")}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(**extra))
    dr = run_dag(dagbag, "example_xai_spend")
    assert set(task_states(dr).values()) == {"success"}, task_states(dr)
    lines = xcom_values(dr, "report")[-1]
    assert [line.split(":")[0] for line in lines] == ["summarise", "check_invoice", "check_invoice"]
    for task_id in ("summarise", "check_invoice"):
        for call in xcom_values(dr, task_id, "xai_forecast")[-1]:
            assert call["forecast"]["input_source"] in ("tokenize", "cache")
            assert 0 < call["actual_usd"] <= call["forecast"]["cost_usd"]
    reconciled = xcom_values(dr, "reconcile")[-1]
    assert reconciled["differences"] == [] and {r["model"] for r in reconciled["rows"]} == {
        "grok-4-1-fast-non-reasoning", "grok-4.3"}  # fmt: skip
    assert xai_server.management_key not in str(reconciled)
