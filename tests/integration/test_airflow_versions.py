"""What depends on the Airflow version, in real runs under ``dag.test()``.

The task state store came with Airflow 3.3. Where it is missing (3.2, the oldest supported
version) the provider falls back as the docs say: a deferred task's retry submits a new
request (docs/deferrable.md) and the usage ledger covers the current try (docs/usage.md, checked
in test_usage_sensor.py). Each test here asserts one side or the other, never skips.
"""

from __future__ import annotations

import datetime
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, task
from packaging.version import Version

from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.testing import Fault
from tests.dags.conftest import run_inline_dag, task_states, xcom_values
from tests.helpers.airflow_features import AIRFLOW_VERSION, HAS_TASK_STATE_STORE

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def test_the_supported_range_and_the_store_probe_agree_with_the_docs() -> None:
    assert Version("3.2.0") <= AIRFLOW_VERSION, "pyproject.toml declares apache-airflow>=3.2.0"
    store_expected = Version("3.3.0") <= AIRFLOW_VERSION
    assert store_expected is HAS_TASK_STATE_STORE


@pytest.mark.task_state_store
def test_a_running_task_sees_the_task_state_store_only_where_airflow_has_it(airflow_db: None) -> None:
    with DAG("t_xai_store_probe", schedule=None, start_date=START) as dag:

        @task
        def probe(**context: Any) -> bool:
            return "task_state_store" in context

        probe()
    dr = run_inline_dag(dag)
    assert xcom_values(dr, "probe")[-1] is HAS_TASK_STATE_STORE


@pytest.mark.task_state_store
def test_a_deferred_retry_reattaches_with_the_store_and_submits_anew_without(
    airflow_db: None, xai_server: Any
) -> None:
    with DAG("t_xai_deferred_retry", schedule=None, start_date=START) as dag:
        XAIChatOperator(
            task_id="ask",
            prompt="hello",
            deferrable=True,
            poll_interval=0.01,
            retries=1,
            retry_delay=datetime.timedelta(0),
            retry_policy=None,  # XAIRetryPolicy would fail a 401 at once; this tests the retry
        )
    # The first try's wait ends in error (a key revoked mid-wait, say); the retry follows.
    xai_server.enqueue(Fault(status=401, message="key revoked", path="/v1/chat/deferred-completion"))
    dr = run_inline_dag(dag)

    assert task_states(dr)[("ask", -1)] == "success"
    polls = [e.status for e in xai_server.journal if "deferred-completion" in e.path]
    assert 401 in polls, "the first try's wait did not fail: no retry was tested"
    submitted = [e for e in xai_server.journal if e.method == "POST" and e.path.endswith("chat/completions")]
    if HAS_TASK_STATE_STORE:
        assert len(submitted) == 1, "the retry re-attached to the stored request id"
    else:
        assert len(submitted) == 2, "without a store every try submits its own request"
    assert xcom_values(dr, "ask")[-1]
    assert [r["try_number"] for r in xcom_values(dr, "ask", "xai_usage_ledger")[-1]] == [2]
