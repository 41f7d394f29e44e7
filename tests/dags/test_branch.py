"""LLM branching under ``dag.test()``: Grok chooses among the downstream tasks (the local server
picks the choice the prompt mentions first), the others are skipped, an answer that names no
choice is asked again, and every attempt's usage is recorded."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.operators.branch import XAIBranchOperator
from airflow_provider_xai.testing import Fault
from tests.dags.conftest import run_inline_dag, task_states, xcom_values

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def branch_dag(dag_id: str, **branch: Any) -> Any:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, task

    with DAG(dag_id, schedule=None, start_date=START) as dag:

        @task.xai_branch(**branch)
        def triage(ticket: str) -> str:
            return f"This ticket says: {ticket}. Choose escalate for outages, archive for thanks."

        triage("the site is down") >> [EmptyOperator(task_id="archive"), EmptyOperator(task_id="escalate")]
    return dag


def test_grok_chooses_the_branch_and_the_other_is_skipped(airflow_db: None, xai_server: Any) -> None:
    dr = run_inline_dag(branch_dag("t_xai_branch"))
    states = task_states(dr)
    assert states[("escalate", -1)] == "success" and states[("archive", -1)] == "skipped", states
    assert xcom_values(dr, "triage", "xai_branch_reason")[-1]
    assert xcom_values(dr, "triage", "xai_usage")[-1]["kind"] == "responses"
    (ask,) = xai_server.requests("/responses", method="POST")
    assert ask.body["text"]["format"]["schema"]["properties"]["branch"]["enum"] == ["archive", "escalate"]


def test_an_answer_naming_no_choice_is_asked_again(airflow_db: None, xai_server: Any) -> None:
    xai_server.enqueue(Fault(content='{"branch": "delete_everything", "reason": "why not"}', path="/v1/responses"))
    dr = run_inline_dag(branch_dag("t_xai_branch_retry"))
    assert task_states(dr)[("escalate", -1)] == "success"
    assert len(xai_server.requests("/responses", method="POST")) == 2
    ledger = xcom_values(dr, "triage", "xai_usage_ledger")[-1]
    assert len(ledger) == 2  # the refused answer was billed too


def test_the_branch_operator_asks_for_its_own_answer_shape() -> None:
    with pytest.raises(XAIValidationError) as info:
        XAIBranchOperator(task_id="b", prompt="x", response_format="json_object")
    assert info.value.field == "response_format"
