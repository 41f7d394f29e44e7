"""The agents example under ``dag.test()``: the deferrable research call defers and finishes
through its trigger (one request), the function tool runs in the task, and the branch Grok
chose runs while the other is skipped."""

from __future__ import annotations

import json
from typing import Any

from tests.dags.conftest import run_dag, task_states, xcom_values


def test_example_agents_dag_runs_green(dagbag: Any, xai_server: Any) -> None:
    xai_server.configure(tool_latency=0.5)
    dr = run_dag(dagbag, "example_xai_agents")
    states = task_states(dr)
    assert states.pop(("archive", -1)) == "skipped"
    assert set(states.values()) == {"success"}, states

    posts = xai_server.requests("/responses", method="POST")
    research = [p for p in posts if any(t.get("type") == "code_interpreter" for t in p.body.get("tools", []))]
    assert len(research) == 1  # deferred: sent once, collected by the trigger
    assert xcom_values(dr, "research", "xai_usage")[-1]["num_server_side_tools_used"] >= 2

    support = [p for p in posts if any(t.get("name") == "order_status" for t in p.body.get("tools", []))]
    assert len(support) == 2 and support[1].body["input"][0]["type"] == "function_call_output"
    assert json.loads(support[1].body["input"][0]["output"])["status"] in ("shipped", "unknown order")
    assert len(xcom_values(dr, "support", "xai_usage_ledger")[-1]) == 2  # both turns recorded

    assert xcom_values(dr, "triage", "xai_branch_reason")[-1]
    assert xcom_values(dr, "escalate")[-1].startswith("escalated with context")
