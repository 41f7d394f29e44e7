"""example_xai_usage end to end under dag.test() against the local xAI server."""

from __future__ import annotations

from typing import Any

from tests.dags.conftest import run_dag, task_states, xcom_values

CHAT_TASKS = ("summarise", "plan", "describe_image", "classify")


def test_example_usage_dag_runs_green(dagbag: Any, xai_server: Any) -> None:
    dr = run_dag(dagbag, "example_xai_usage")
    states = task_states(dr)
    assert set(states.values()) == {"success"}, states

    records = []
    for task_id in CHAT_TASKS:
        for ledger in xcom_values(dr, task_id, "xai_usage_ledger").values():
            records.extend(ledger)
    asked = xai_server.requests("/chat/completions") + xai_server.requests("/responses", method="POST")
    assert len(records) == 6 == len(asked)

    report = xcom_values(dr, "xai_usage")[-1]
    assert report["records"] == 6
    assert sorted(report["tasks_with_usage"]) == sorted(CHAT_TASKS)
    totals = report["totals"]
    for name in ("prompt_tokens", "completion_tokens", "reasoning_tokens", "image_tokens", "total_tokens"):
        assert totals[name] == sum(r[name] for r in records), name
    assert totals["total_tokens"] == sum(
        r["prompt_tokens"] + r["completion_tokens"] + r["reasoning_tokens"] for r in records
    )
    # The Responses API counts an image inside the input tokens (it itemizes no image tokens).
    assert totals["reasoning_tokens"] > 0 and totals["prompt_tokens"] > 256
    assert report["by_task"]["classify"]["map_indexes"] == 3
    assert report["by_task"]["classify"]["requests"] == 3
    assert set(report["by_model"]) == {"grok-4.3", "grok-3-mini"}
    assert report["budget"]["status"] == "ok"
    assert report["budget"]["remaining_tokens"] == 200_000 - totals["total_tokens"]

    line = xcom_values(dr, "spend_report")[-1]
    assert line.startswith(f"6 xAI requests, {totals['total_tokens']} tokens")
