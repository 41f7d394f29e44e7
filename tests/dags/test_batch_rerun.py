"""A batch task re-run in the same DAG run after its inputs changed answers the new inputs
(issue 21): the task is cleared and run again by ``dag.test()`` for the same logical date, so
the DAG run, the task instance and its deterministic batch prefix are the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_xai.operators.batch import XAIBatchOperator
from tests.dags.conftest import sync_inline_dag, xcom_values

WHEN = pendulum.datetime(2026, 1, 1, tz="UTC")


def answers(path: Path) -> list[str]:
    return [json.loads(line)["answer"] for line in path.read_text().splitlines()]


def test_a_rerun_with_changed_inputs_answers_the_new_inputs(airflow_db: None, xai_server: Any, tmp_path: Path) -> None:
    xai_server.configure(batch_pending_polls=1)
    tickets = {"today": ["Ticket 1: I was billed twice", "Ticket 2: the login page is blank"]}
    out = tmp_path / "summaries.jsonl"

    with DAG("batch_rerun", schedule=None, start_date=WHEN, catchup=False) as dag:

        @task
        def load_tickets() -> list[str]:
            return list(tickets["today"])

        XAIBatchOperator(
            task_id="summarise", inputs=load_tickets(), output_path=f"file://{out}", poll_interval=0.01
        )

    sync_inline_dag(dag)
    first = dag.test(logical_date=WHEN, run_after=WHEN)
    assert first.state == "success"
    assert [a.removeprefix("Grok (local) heard: ") for a in answers(out)] == tickets["today"]
    old = xcom_values(first, "summarise")[-1]["batch_id"]

    # The upstream data is corrected and the DAG run is cleared and run again.
    tickets["today"] = ["Ticket 1: I was billed three times", "Ticket 2: the login page is blank"]
    second = dag.test(logical_date=WHEN, run_after=WHEN)
    assert (second.run_id, second.state) == (first.run_id, "success")
    assert [a.removeprefix("Grok (local) heard: ") for a in answers(out)] == tickets["today"]
    new = xcom_values(second, "summarise")[-1]["batch_id"]
    assert old != new and len(xai_server.state.batches) == 2, "changed inputs are a new batch"
    sent = [r.body["messages"][-1]["content"] for r in xai_server.state.batches[new].requests.values()]
    assert sent == tickets["today"], "the new batch holds every request of the new inputs"

    # Cleared again with the same inputs: the batch of these inputs is re-attached, not paid twice.
    adds = len(xai_server.requests("/requests", "POST"))
    third = dag.test(logical_date=WHEN, run_after=WHEN)
    assert third.state == "success" and xcom_values(third, "summarise")[-1]["batch_id"] == new
    assert len(xai_server.state.batches) == 2 and len(xai_server.requests("/requests", "POST")) == adds
    assert [a.removeprefix("Grok (local) heard: ") for a in answers(out)] == tickets["today"]
