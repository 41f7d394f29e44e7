"""The example DAGs under a real scheduler, dag-processor and triggerer (LocalExecutor, SQLite).

What is run and checked is ``tests/e2e/dag_runs.py``'s ``run_example_dags``, shared with the
CeleryExecutor deployment (``test_celery.py``).
"""

from __future__ import annotations

import time

import httpx
import pytest

from airflow_provider_xai.testing.runner import XAIServer
from tests.e2e.conftest import AirflowStack, put_xai_connection
from tests.e2e.dag_runs import DEFERRED_POLLS, run_example_dags
from tests.e2e.waiting import TEST_TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT)]


def test_example_dags_run_under_a_real_scheduler_and_triggerer(
    airflow_stack: AirflowStack, airflow_api: httpx.Client, e2e_xai: XAIServer
) -> None:
    api, stack = airflow_api, airflow_stack
    e2e_xai.reset()
    # Batches finish at their first poll: the example polls every 60 s, which is right for xAI
    # and too slow for a test (the batch still goes through the triggerer).
    e2e_xai.configure(deferred_pending_polls=DEFERRED_POLLS, batch_pending_polls=0)
    put_xai_connection(api, e2e_xai)

    t0 = time.monotonic()
    stack.start_scheduling()
    try:
        stack.wait_healthy("scheduler", "triggerer", "dag_processor")
        print(f"{time.monotonic() - t0:.1f}s: healthy")
        run_example_dags(api, stack, e2e_xai)
    finally:
        stack.stop_scheduling()
