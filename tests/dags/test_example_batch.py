"""example_xai_batch end to end under dag.test() against the local xAI server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.dags.conftest import run_dag, task_states, xcom_values


def test_example_batch_dag_runs_green(
    dagbag: Any, xai_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XAI_EXAMPLE_DATA", f"file://{tmp_path}")
    xai_server.configure(batch_pending_polls=1)  # done at the trigger's first poll
    dr = run_dag(dagbag, "example_xai_batch")
    states = task_states(dr)
    assert set(states.values()) == {"success"}, states

    summary = xcom_values(dr, "classify")[-1]
    assert (summary["requests"], summary["succeeded"], summary["failed"]) == (300, 300, 0)
    assert summary["usage"]["requests"] == 300 and summary["usage"]["cost_usd"] > 0
    assert xcom_values(dr, "classify", "xai_batch_id")[-1] == summary["batch_id"]
    ledger = xcom_values(dr, "classify", "xai_usage_ledger")[-1]
    assert sum(r["requests"] for r in ledger) == 300 and {r["kind"] for r in ledger} == {"batch"}
    assert len(ledger) == 1, "a batch is folded into one ledger record per model"

    assert summary["output_path"].startswith(f"file://{tmp_path}/batch/")
    output = Path(summary["output_path"].removeprefix("file://"))
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == [f"ticket-{n:04d}" for n in range(300)]
    report = xcom_values(dr, "summarise")[-1]
    assert report["by_category"] == {"account": 75, "billing": 75, "bug": 75, "praise": 75}
    assert report["labelled"] == 300 and report["cost_usd"] == summary["usage"]["cost_usd"]

    batches = {b.batch_id: b for b in xai_server.state.batches.values()}
    assert len(batches[summary["batch_id"]].requests) == 300
    assert len(xai_server.requests("/requests", "POST")) == 2, "one add-requests call per batch"

    research = xcom_values(dr, "find_help_articles")[-1]
    requests = list(batches[research["batch_id"]].requests.values())
    assert [r.kind for r in requests] == ["responses"] * 4
    assert all(r.body["tools"] == [{"type": "web_search"}] for r in requests)
    assert research["succeeded"] == 4 and report["web_searches"] == 4
    assert set(report["help_articles"]) == {"account", "billing", "bug", "praise"}
    assert all(url and url.startswith("https://") for url in report["help_articles"].values())
    (folded,) = xcom_values(dr, "find_help_articles", "xai_usage_ledger")[-1]
    assert folded["kind"] == "batch" and folded["server_side_tool_usage"] == {"web_search_calls": 4}
