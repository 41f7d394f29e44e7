"""``over_budget="ask"`` under ``dag.test()``: a call over budget asks a person through Airflow's
human-in-the-loop (the task waits for input with the call's forecast and the budget's state in
the question); the answer comes through Airflow's REST API, as from the Required actions page.
An approval lets exactly that call through; a rejection fails its task; nothing else is sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
from packaging.version import Version

from airflow_provider_xai.operators.chat import XAIChatOperator
from tests.dags.conftest import run_inline_dag, task_states, xcom_values
from tests.helpers.airflow_features import AIRFLOW_VERSION

DAG_ID = "t_xai_budget_approval"
ANSWERS = {"approve_me": "Approve", "reject_me": "Reject"}


@pytest.fixture
def core_api(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, str]]]:
    """Airflow's REST API in-process, and an admin's bearer header."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    manager = airflow_app.init_auth_manager()
    token = manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    with TestClient(airflow_app.create_app("core")) as client:
        yield client, {"Authorization": f"Bearer {token}"}
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)


def awaiting(dag_id: str) -> list[tuple[str, str]]:
    """(run id, task id) of the task instances waiting for a person's input."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    # Airflow 3.3 has a state for it; before, a task waiting for input is deferred.
    waiting = getattr(TaskInstanceState, "AWAITING_INPUT", TaskInstanceState.DEFERRED)
    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.run_id, TaskInstance.task_id).where(
                TaskInstance.dag_id == dag_id, TaskInstance.state == waiting
            )
        ).all()
    return [(r, t) for r, t in rows]


def answer_each(client: Any, headers: dict[str, str], done: threading.Event, seen: dict[str, Any]) -> None:
    """A person at the Required actions page: reads each question, answers it once."""
    while not done.is_set() and len(seen) < len(ANSWERS):
        for run_id, task_id in awaiting(DAG_ID):
            if task_id in seen:
                continue
            path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"
            asked = client.get(path, headers=headers)
            if asked.status_code != 200:  # deferred, its question not written yet
                continue
            question = asked.json()
            answer = client.patch(
                path, headers=headers, json={"chosen_options": [ANSWERS[task_id]], "params_input": {}}
            )
            seen[task_id] = (question, answer.status_code)
        done.wait(0.1)


@pytest.mark.skipif(
    Version("3.3") > AIRFLOW_VERSION,
    reason="Airflow 3.2's dag.test() supervisor cannot answer a human-in-the-loop task (GetHITLDetail is "
    "an unhandled request there); a real deployment's can",
)
def test_an_approval_lets_exactly_the_approved_call_through(
    core_api: tuple[Any, dict[str, str]], xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow.sdk import DAG

    budgets = [{"name": "approval-test", "scope": f"dag:{DAG_ID}", "usd": 0.000001}]
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        xai_server.connection_json(
            **xai_server.management_extra(), budgets=budgets, rate_limit_path=str(tmp_path / "spend.sqlite")
        ),
    )
    with DAG(DAG_ID, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        for task_id in ANSWERS:
            XAIChatOperator(
                task_id=task_id,
                prompt=f"{task_id}: summarise the load",
                max_tokens=30,
                over_budget="ask",
                deferrable=False,
            )
    client, headers = core_api
    done, seen = threading.Event(), {}
    person = threading.Thread(target=answer_each, args=(client, headers, done, seen), daemon=True)
    person.start()
    try:
        run = run_inline_dag(dag)
    finally:
        done.set()
        person.join(timeout=30)
    states = task_states(run)
    assert states[("approve_me", -1)] == "success" and states[("reject_me", -1)] == "failed", states
    assert {task: status for task, (_, status) in seen.items()} == {"approve_me": 200, "reject_me": 200}
    question = seen["approve_me"][0]
    assert question["options"] == ["Approve", "Reject"] and "approval-test" in question["body"]
    assert "forecast, worst case: $" in question["body"] and xai_server.management_key not in question["body"]
    sent = xai_server.requests("/responses", method="POST")
    assert [s.body["input"][0]["content"] for s in sent] == ["approve_me: summarise the load"]
    (calls,) = xcom_values(run, "approve_me", "xai_forecast").values()
    assert calls[0]["actual_usd"] > 0.000001  # past the budget, counted against it
