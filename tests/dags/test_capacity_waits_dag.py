"""Waiting for rate-limit capacity in the triggerer under ``dag.test()``: the real task runner
defers the task (its reservation through the deferral's kwargs and the task state store), runs
the trigger in line, resumes the task with the trigger's event, and the task sends once with
the slot it held. ``@task.xai`` and a branch, as the decorators run them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.capacity import CAPACITY_STATE_KEY
from airflow_provider_xai.ratelimit.slots import Update
from tests.dags.conftest import run_inline_dag, task_states, xcom_values

START = pendulum.datetime(2026, 1, 1, tz="UTC")
MODEL = "grok-4.3"


@pytest.fixture
def crowded(xai_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A shared limit of 10 requests per second; tasks wait in the triggerer past 0.3 s."""
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(
        rate_limit_requests_per_second=10, rate_limit_path=str(tmp_path / "limits.sqlite"),
        rate_limit_defer_after=0.3, rate_limit_resume_lead=0.3,
    ))
    return xai_server


def crowd(slots: int = 15) -> None:
    """Other callers book the next ``slots`` slots (about 1.5 s): the task's call is far away."""
    hook = XAIHook()
    limiter = hook.rate_limit.limiter(hook.settings)
    assert limiter is not None
    for _ in range(slots):
        update = Update(limiter.now_us(), slot=True, spacing=limiter.spacing_us, depth=limiter.depth_us)
        limiter.states.update(limiter.key(f"model:{MODEL}"), update)


def slot_rows(dag_run: Any) -> list[Any]:
    """The task state store's rate-limit slot rows of a run (none once tasks sent with them)."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(select(TaskStateStoreModel.task_id).where(
            TaskStateStoreModel.run_id == dag_run.run_id, TaskStateStoreModel.key == CAPACITY_STATE_KEY
        )))


def test_a_decorated_task_waits_for_its_slot_in_the_triggerer_and_sends_once(airflow_db: None, crowded: Any) -> None:
    from airflow.sdk import DAG, task

    with DAG("t_xai_capacity_wait", schedule=None, start_date=START) as dag:

        @task
        def others() -> None:
            crowd()

        @task.xai(model=MODEL, max_tokens=256)
        def ask() -> str:
            return "Say hello."

        others() >> ask()
    dr = run_inline_dag(dag)
    assert task_states(dr)[("ask", -1)] == "success"
    (sent,) = crowded.requests("/responses", method="POST")
    assert sent.status == 200
    usage = xcom_values(dr, "ask", "xai_usage")[-1]
    assert usage["deferred_s"] > 0.3 and usage["waited_s"] < 1.0  # it came back with its slot
    assert slot_rows(dr) == []
