"""XAIRetryPolicy in real task runs: ``dag.test()`` runs each try through Airflow's task runner
(``_handle_current_task_failed`` evaluates the policy) and schedules retries, against the
local server with faults injected. On Airflow 3.2 (no retry policies) the same runs show
the task's plain ``retries``, as before.
"""

from __future__ import annotations

import datetime
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.testing import Fault, XAIServer
from tests.dags.conftest import run_inline_dag, task_states
from tests.helpers.airflow_features import HAS_RETRY_POLICY

START = pendulum.datetime(2026, 1, 1, tz="UTC")
#: Long enough that a retry the policy did not shorten would stall the run visibly.
TASK_RETRY_DELAY = datetime.timedelta(seconds=10)


@pytest.fixture
def no_hook_retries(xai_server: XAIServer, monkeypatch: pytest.MonkeyPatch) -> XAIServer:
    """The connection with ``max_retries=0``: every fault ends the try, so Airflow decides."""
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(max_retries=0))
    return xai_server


def task_instance(dag_run: Any, task_id: str) -> Any:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalars(select(TaskInstance).where(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id,
            TaskInstance.task_id == task_id)).one()


def tries_history(dag_run: Any, task_id: str) -> list[Any]:
    """Earlier tries of a task (Airflow moves each finished try to the history table)."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(select(TaskInstanceHistory).where(
            TaskInstanceHistory.dag_id == dag_run.dag_id, TaskInstanceHistory.run_id == dag_run.run_id,
            TaskInstanceHistory.task_id == task_id).order_by(TaskInstanceHistory.try_number)))


def chat_dag(dag_id: str, retries: int = 2, retry_delay: datetime.timedelta = TASK_RETRY_DELAY,
             **operator_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        XAIChatOperator(task_id="ask", prompt="hello", api="chat", retries=retries, retry_delay=retry_delay,
                        **operator_kwargs)
    return dag


def test_a_refused_key_fails_on_the_first_try(airflow_db: None, no_hook_retries: XAIServer) -> None:
    no_hook_retries.enqueue(Fault(401, message="Missing or invalid Authorization header."), times=4)
    dr = run_inline_dag(chat_dag("t_policy_401", retries=3, retry_delay=datetime.timedelta(0)))
    assert task_states(dr)[("ask", -1)] == "failed"
    asked = len(no_hook_retries.requests("/chat/completions"))
    ti = task_instance(dr, "ask")
    if HAS_RETRY_POLICY:
        assert asked == 1 and ti.try_number == 1, "retries=3 were left unused"
    else:  # Airflow 3.2: the task's own retries, as before
        assert asked == 4 and ti.try_number == 4


def test_a_rate_limit_is_retried_after_the_servers_delay(
    airflow_db: None, no_hook_retries: XAIServer
) -> None:
    no_hook_retries.enqueue(Fault(429, retry_after=0.5))
    dr = run_inline_dag(chat_dag("t_policy_429"))
    assert task_states(dr)[("ask", -1)] == "success"
    ti = task_instance(dr, "ask")
    assert ti.try_number == 2 and [e.status for e in no_hook_retries.requests("/chat/completions")] == [429, 200]
    first = tries_history(dr, "ask")[0]
    if HAS_RETRY_POLICY:  # the policy's delay replaced the task's 30 s, and said why
        assert first.retry_reason == "xAI rate limit: retrying in 0.5s"
        assert first.retry_delay_override == pytest.approx(0.5)
    else:
        assert getattr(first, "retry_reason", None) is None


def test_a_server_rate_limit_with_no_retry_after_takes_the_tasks_retry_delay(
    airflow_db: None, no_hook_retries: XAIServer
) -> None:
    no_hook_retries.configure(rate_limit_tpm=1)  # the first answer spends the minute's budget
    with DAG("t_policy_tpm", schedule=None, start_date=START) as dag:
        first = XAIChatOperator(task_id="first", prompt="hello", api="chat")
        second = XAIChatOperator(task_id="second", prompt="hello", api="chat", retries=1,
                                 retry_delay=datetime.timedelta(0))
        first >> second
    dr = run_inline_dag(dag)
    states = task_states(dr)
    assert states[("first", -1)] == "success" and states[("second", -1)] == "failed"
    assert no_hook_retries.rate_limited == {"tokens_per_minute": 2}  # both tries of `second`
    if HAS_RETRY_POLICY:
        reason = tries_history(dr, "second")[0].retry_reason
        assert reason == "xAI rate limit: no retry-after, retrying after the task's retry_delay"


def test_a_server_error_takes_the_tasks_normal_retries(airflow_db: None, no_hook_retries: XAIServer) -> None:
    no_hook_retries.enqueue(Fault(503), times=2)
    dr = run_inline_dag(chat_dag("t_policy_503", retry_delay=datetime.timedelta(0)))
    assert task_states(dr)[("ask", -1)] == "success"
    assert [e.status for e in no_hook_retries.requests("/chat/completions")] == [503, 503, 200]
    assert task_instance(dr, "ask").try_number == 3
    assert all(getattr(t, "retry_reason", None) is None for t in tries_history(dr, "ask"))  # no override


def test_a_deferred_wait_refused_by_the_key_fails_without_retries(
    airflow_db: None, no_hook_retries: XAIServer
) -> None:
    no_hook_retries.enqueue(Fault(401, message="key revoked", path="/v1/chat/deferred-completion"), times=2)
    dr = run_inline_dag(chat_dag("t_policy_deferred_401", retries=1, deferrable=True, poll_interval=0.01,
                                 retry_delay=datetime.timedelta(0)))
    assert task_states(dr)[("ask", -1)] == "failed"
    polls = [e.status for e in no_hook_retries.journal if "deferred-completion" in e.path]
    assert polls.count(401) == (1 if HAS_RETRY_POLICY else 2)
    assert task_instance(dr, "ask").try_number == (1 if HAS_RETRY_POLICY else 2)
