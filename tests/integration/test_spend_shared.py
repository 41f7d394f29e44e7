"""Six processes share one daily budget of the team against the local server.

Each process (spawned: a fresh interpreter, as a Celery worker) calls until the budget refuses
it. Every call reserves its forecast before it is sent, in one store operation, and settles to
what the server billed after; so together they may overspend the budget by at most the
forecast's error (billed above the worst case), never by a whole call. What the server billed
(its own tick ledger, read through the Management API's usage query) is the judge. The Redis
store runs against a real ``redis-server`` on a free loopback port.
"""

from __future__ import annotations

import multiprocessing
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_rate_limit_shared import redis_connection, redis_port  # noqa: F401 (a fixture)

PROCESSES = 6
BUDGET_USD = 0.002
MODEL = "grok-4-1-fast-non-reasoning"


def _worker(env: dict[str, str], number: int, start: Any, out: Any) -> None:
    """One worker: calls until the budget refuses; puts (calls made, [(worst case, billed)])."""
    os.environ.update(env)
    from airflow_provider_xai.exceptions import XAIOverBudgetError
    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.spend.layer import SpendTask

    hook = XAIHook()
    hook.spend.task = SpendTask(dag_id=f"worker_{number}")
    hook.count_tokens("warm up", MODEL)
    start.wait()
    calls, refused = 0, False
    while not refused and calls < 200:
        try:
            hook.chat(
                model=MODEL,
                max_tokens=30,
                messages=[{"role": "user", "content": f"worker {number} asks question {calls}"}],
            )
            calls += 1
        except XAIOverBudgetError:
            refused = True
    pairs = [(c["forecast"]["cost_usd"], c["actual_usd"]) for c in hook.spend.task.calls if c["actual_usd"]]
    out.put((calls, refused, pairs))


@pytest.mark.slow
@pytest.mark.parametrize("store", ["embedded", "redis"])
def test_six_processes_never_overspend_a_shared_budget_by_a_call(
    store: str, xai_server: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    budget = [{"name": f"team-{store}", "scope": "team", "period": "daily", "usd": BUDGET_USD}]
    where = (
        {"rate_limit_redis_conn_id": "spend_redis"}
        if store == "redis"
        else {"rate_limit_path": str(tmp_path / "s.db")}
    )
    env = {
        "AIRFLOW_CONN_XAI_DEFAULT": xai_server.connection_json(
            **xai_server.management_extra(), budgets=budget, **where
        )
    }
    if store == "redis":
        port = request.getfixturevalue("redis_port")
        env["AIRFLOW_CONN_SPEND_REDIS"] = redis_connection(port)
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [context.Process(target=_worker, args=(env, n, start, out)) for n in range(PROCESSES)]
    for worker in workers:
        worker.start()
    start.set()
    results = [out.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    assert all(refused for _, refused, _ in results)  # every worker ran into the budget
    pairs = [pair for _, _, worker_pairs in results for pair in worker_pairs]
    calls = sum(n for n, _, _ in results)
    assert len(pairs) == calls == len(xai_server.requests("/chat/completions", method="POST"))

    from airflow_provider_xai.hooks.xai import XAIHook

    os.environ["AIRFLOW_CONN_XAI_DEFAULT"] = env["AIRFLOW_CONN_XAI_DEFAULT"]
    today = datetime.now(timezone.utc).date()
    billed = sum(p.values[0] for s in XAIHook().query_usage(today, today).timeSeries for p in s.dataPoints)
    assert billed == pytest.approx(sum(actual for _, actual in pairs), abs=1e-9)
    error = max(actual - worst for worst, actual in pairs)  # above 0: a forecast below the bill
    cheapest = min(actual for _, actual in pairs)
    overspend = billed - BUDGET_USD
    print(
        f"\n{store}: {calls} calls by {PROCESSES} processes, billed ${billed:.6f} of ${BUDGET_USD}: overspend "
        f"${overspend:.6f}, largest forecast error ${error:.6f}, cheapest call ${cheapest:.6f}"
    )
    assert overspend <= max(error, 0.0) + 1e-9  # at most one call's forecast error
    assert overspend < cheapest  # never a whole call
    assert billed > BUDGET_USD / 2  # the budget was spent, not refused from the start
