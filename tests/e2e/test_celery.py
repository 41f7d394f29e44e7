"""A real distributed deployment: CeleryExecutor with two workers, a Redis broker and a
PostgreSQL metadata database (``tests/e2e/celery_stack.py``), all started by the test on
loopback and stopped cleanly at the end.

Every example DAG runs to success with the checks of the LocalExecutor test
(``tests/e2e/dag_runs.py``: XComs, the deferrable task finished by the triggerer, the API key in
no file), and both workers run some of their tasks.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai.ratelimit.limiter import slot_spacing_us
from airflow_provider_xai.testing.redis_server import RedisServer
from airflow_provider_xai.testing.runner import XAIServer
from tests.e2e.celery_stack import WORKERS, CeleryDeployment, celery_deployment
from tests.e2e.conftest import AirflowStack, put_connection, put_xai_connection
from tests.e2e.dag_runs import (
    DEFERRED_POLLS,
    run_example_dags,
    task_instances,
    trigger,
    wait_parsed,
    watch,
    xcom,
)
from tests.e2e.scale_figures import TARGETS, ScaleFigures, WaitFigures, figures, wait_figures
from tests.e2e.waiting import TEST_TIMEOUT, wait_while_moving

pytestmark = [pytest.mark.slow, pytest.mark.celery, pytest.mark.timeout(TEST_TIMEOUT)]

#: Where the scale run's figures are written (``make test-scale`` sets it); else the test's tmp dir.
RESULTS_ENV = "XAI_SCALE_RESULTS"


@pytest.fixture(scope="module")
def celery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryDeployment]:
    with celery_deployment(tmp_path_factory.mktemp("celery")) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def celery_api(celery: CeleryDeployment) -> Iterator[httpx.Client]:
    with celery.stack.client() as client:
        yield client


def test_example_dags_run_on_two_celery_workers(
    celery: CeleryDeployment, celery_api: httpx.Client, e2e_xai: XAIServer
) -> None:
    stack = celery.stack
    e2e_xai.reset()
    e2e_xai.configure(deferred_pending_polls=DEFERRED_POLLS, batch_pending_polls=0)
    put_xai_connection(celery_api, e2e_xai)

    runs = run_example_dags(celery_api, stack, e2e_xai, celery.postgres.root)

    ran_on = {
        t["hostname"]
        for dag_id, run_id in runs.items()
        for t in task_instances(celery_api, dag_id, run_id)
        if t["state"] == "success"
    }
    assert ran_on == set(WORKERS), f"task instances ran on {ran_on}"


# --- the scale run -----------------------------------------------------------------------------

#: The local server's limit, requests per second per key and model (xAI's is per team).
SERVER_RPS = 20
#: The connection's shared limit: the server's own. The limiter leaves room for arrival jitter
#: itself (its slots are slot_spacing_us(R) apart: (1 s + 25 ms) / R), so users set xAI's number.
CLIENT_RPS = SERVER_RPS
#: 20 mapped chat tasks + 6 fan-outs of 164 = 1,004 requests from 29 task instances.
SCALE_CONF = {"mapped": 20, "fanouts": 6, "per_fanout": 164, "max_concurrency": 8}
SCALE_DAG = "xai_scale"
#: The Airflow connection of the shared limiter's Redis store.
LIMITER_REDIS_CONN = "xai_rate_limits_redis"


def expected_tags(run_id: str) -> list[str]:
    mapped = [f"{run_id}/m{i:04d}" for i in range(SCALE_CONF["mapped"])]
    fanned = [
        f"{run_id}/f{f:02d}-{i:04d}" for f in range(SCALE_CONF["fanouts"]) for i in range(SCALE_CONF["per_fanout"])
    ]
    return mapped + fanned


def run_scale(
    api: httpx.Client, stack: AirflowStack, server: XAIServer, limiter: str, **connection_extra: Any
) -> ScaleFigures:
    """Run the scale DAG once against ``server`` limited to SERVER_RPS; its figures."""
    server.reset()
    server.configure(rate_limit_rps=SERVER_RPS, journal_limit=1_000_000)
    put_xai_connection(api, server, max_retries=6, **connection_extra)
    wait_parsed(api, stack, {SCALE_DAG})
    t0 = time.monotonic()
    run_id = trigger(api, SCALE_DAG, SCALE_CONF)
    watch(api, stack, {SCALE_DAG: run_id}, SCALE_DAG, "usage")
    dag_run_s = time.monotonic() - t0
    tis = task_instances(api, SCALE_DAG, run_id)

    # Answers from the tasks that succeeded; usage from every task that recorded any (a fan-out
    # records what was billed before it fails for the items that got no answer).
    answers: list[tuple[str, str]] = []
    recorded_tokens = 0
    prompts = xcom(api, SCALE_DAG, run_id, "mapped_prompts")
    for t in tis:
        task_id, index = t["task_id"], t["map_index"]
        if task_id not in ("chat", "fan_out"):
            continue
        ledger = xcom(api, SCALE_DAG, run_id, task_id, "xai_usage_ledger", index, missing_ok=True) or []
        recorded_tokens += sum(r["total_tokens"] for r in ledger)
        if t["state"] != "success":
            continue
        stored = xcom(api, SCALE_DAG, run_id, task_id, map_index=index)
        if task_id == "chat":
            answers.append((prompts[index], stored))
        else:
            answers += [(a["prompt"], a["answer"]) for a in stored]
    usage_ok = any(t["task_id"] == "usage" and t["state"] == "success" for t in tis)
    rollup = xcom(api, SCALE_DAG, run_id, "usage") if usage_ok else {}
    result = figures(
        limiter=limiter,
        server_rps=SERVER_RPS,
        run_id=run_id,
        expected_tags=expected_tags(run_id),
        journal=server.journal,
        answers=answers,
        failed_tasks=sum(1 for t in tis if t["state"] != "success"),
        rollup=rollup,
        recorded_tokens=recorded_tokens,
        dag_run_s=dag_run_s,
        ran_on=dict(Counter(t["hostname"] for t in tis if t["hostname"])),
    )
    print(json.dumps(result.to_dict()))
    return result


def put_redis_connection(api: httpx.Client, redis: RedisServer) -> None:
    """The limiter's Redis store: database 1 of the broker's Redis (Celery uses database 0)."""
    put_connection(api, LIMITER_REDIS_CONN, **redis.connection(), extra=json.dumps({"db": 1}))


def test_scale_run_with_and_without_the_shared_limiter(
    celery: CeleryDeployment, celery_api: httpx.Client, e2e_xai: XAIServer, tmp_path: Path
) -> None:
    api, stack = celery_api, celery.stack
    put_redis_connection(api, celery.redis)
    on = run_scale(
        api, stack, e2e_xai, "on (redis store)",
        rate_limit_requests_per_second=CLIENT_RPS, rate_limit_redis_conn_id=LIMITER_REDIS_CONN,
    )
    off = run_scale(api, stack, e2e_xai, "off")
    results = {
        "server_rps": SERVER_RPS,
        "client_rps": CLIENT_RPS,
        # the pace the limiter's reserved slots give at that limit
        "client_slot_rps": round(1e6 / slot_spacing_us(CLIENT_RPS), 2),
        "conf": SCALE_CONF,
        "targets": TARGETS,
        "limiter_on": {**on.to_dict(), "targets_missed": on.targets_missed()},
        "limiter_off": off.to_dict(),
        # how busy the machine was (the figures above move with it)
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    path = Path(os.environ.get(RESULTS_ENV) or tmp_path / "scale.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"scale figures written to {path}; limiter on missed targets: {on.targets_missed() or 'none'}")

    # With the shared limiter: every request answered once, by either worker.
    assert on.failed_tasks == 0, on
    assert on.billed == on.requests == len(expected_tags("x")), on
    assert on.lost_answers == on.duplicated_answers == on.crossed_answers == 0, on
    assert set(on.ran_on) == set(WORKERS), on
    # Limiter on or off, every billed request's usage reached the usage sensor's roll-up.
    for run in (on, off):
        assert run.rollup_requests == run.billed and run.rollup_total_tokens == run.recorded_tokens, run
    # Without it every worker finds the server's limit on its own.
    assert off.refused_429 > max(10 * on.refused_429, 0.01 * off.requests), (on, off)


# --- waiting for capacity: in workers, or in the triggerer ---------------------------------------

WAITS_DAG, BYSTANDER_DAG = "xai_waits", "xai_waits_bystander"
#: The server's limit and the connection's: a few requests per second for many tasks.
WAITS_RPS = 2
#: 40 mapped tasks; and, in the second scenario, 40 requests of other work sent at once first.
WAITS_SCENARIOS = {"alone": {"mapped": 40, "others": 0}, "behind other work": {"mapped": 40, "others": 40}}
#: The worker slots the tasks share: a pool (deferred tasks hold none of its slots).
WAITS_POOL = {"name": "xai_waits", "slots": 4, "include_deferred": False}
#: With deferral: a slot further away than this waits in the triggerer; the task is handed back
#: its learned resume lead before its slot, at most this long (this deployment runs a deferred
#: task again 1.5 s to half a minute after its trigger fires, with the machine's load and the
#: pool; a slot missed is a slot lost).
WAITS_DEFERRAL = {"rate_limit_defer_after": 1.0, "rate_limit_resume_lead": 3.0}
_CAME_BACK = re.compile(rb"Back on a worker (\d+(?:\.\d+)?)s after the triggerer")
_LEAD = re.compile(rb"waiting for it in the triggerer \(back (\d+(?:\.\d+)?)s before it\)")
_LATE = re.compile(rb"later than its \d+(?:\.\d+)?s lead")


def put_pool(api: httpx.Client, name: str, **pool: Any) -> None:
    response = api.delete(f"/pools/{name}")
    assert response.status_code in (204, 404), response.text
    response = api.post("/pools", json={"name": name, **pool})
    assert response.status_code == 201, response.text


def logged(stack: AirflowStack, run_id: str, pattern: re.Pattern[bytes]) -> list[bytes]:
    """What ``pattern`` captured in the run's task logs, each match."""
    found: list[bytes] = []
    for path in (stack.home / "logs").rglob("*"):
        if path.is_file() and run_id in str(path):
            found += pattern.findall(path.read_bytes())
    return found


def came_back_times(stack: AirflowStack, run_id: str) -> list[float]:
    """Seconds each resumed task took from its trigger firing to running again (task logs)."""
    return [float(m) for m in logged(stack, run_id, _CAME_BACK)]


def started_at(ti: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(ti["start_date"]).replace("Z", "+00:00"))


def run_waits(
    api: httpx.Client, stack: AirflowStack, server: XAIServer, mode: str, conf: dict[str, int], **extra: Any
) -> WaitFigures:
    """Run the capacity-waits DAG once; once its tasks hold the pool's slots, two runs of a task
    that never calls xAI ask for one, one queued behind them, one first in line; the figures."""
    server.reset()
    server.configure(rate_limit_rps=WAITS_RPS, journal_limit=1_000_000)
    put_xai_connection(
        api, server, max_retries=6, rate_limit_requests_per_second=WAITS_RPS,
        rate_limit_redis_conn_id=LIMITER_REDIS_CONN, **extra,
    )
    wait_parsed(api, stack, {WAITS_DAG, BYSTANDER_DAG})
    t0 = time.monotonic()
    run_id = trigger(api, WAITS_DAG, conf, logical_date=datetime.now(timezone.utc).isoformat())
    busy: list[Any] = []

    def waiting() -> bool:  # every task mapped, and the pool's slots taken
        stack.check_alive()
        states = [t["state"] for t in task_instances(api, WAITS_DAG, run_id) if t["task_id"] == "ask"]
        busy[:] = sorted(map(str, states))
        taken = sum(1 for s in states if s in ("queued", "running", "deferred", "success"))
        return len(states) == conf["mapped"] and taken >= WAITS_POOL["slots"]

    wait_while_moving(waiting, lambda: list(busy), "the capacity-waits tasks to take the pool", interval=0.2)
    triggered = datetime.now(timezone.utc)
    # Airflow queues by priority, then the run's logical date: one run behind the mapped tasks,
    # one first in line (it takes the first slot that frees).
    behind = trigger(api, BYSTANDER_DAG, logical_date=triggered.isoformat())
    first = trigger(api, BYSTANDER_DAG, logical_date=(triggered - timedelta(days=1)).isoformat())
    for other in (behind, first):
        watch(api, stack, {WAITS_DAG: run_id, BYSTANDER_DAG: other}, WAITS_DAG, "ask")
    dag_run_s = time.monotonic() - t0
    tis = task_instances(api, WAITS_DAG, run_id)
    mapped = [t for t in tis if t["task_id"] == "ask"]
    prompts = xcom(api, WAITS_DAG, run_id, "prompts")
    answers = [(prompts[t["map_index"]], xcom(api, WAITS_DAG, run_id, "ask", map_index=t["map_index"]))
               for t in mapped if t["state"] == "success"]
    ledgers = [xcom(api, WAITS_DAG, run_id, "ask", "xai_usage_ledger", t["map_index"], missing_ok=True) or []
               for t in mapped]
    bystanders = [task_instances(api, BYSTANDER_DAG, other)[0] for other in (behind, first)]
    assert all(b["state"] == "success" for b in bystanders), bystanders
    behind_delay, first_delay = ((started_at(b) - triggered).total_seconds() for b in bystanders)
    result = wait_figures(
        mode=mode, server_rps=WAITS_RPS, run_id=run_id, tasks=conf["mapped"], journal=server.journal,
        answers=answers, ledgers=ledgers, failed_tasks=sum(1 for t in tis if t["state"] != "success"),
        came_back=came_back_times(stack, run_id), bystander_start_delays=(behind_delay, first_delay),
        dag_run_s=dag_run_s, leads=[float(m) for m in logged(stack, run_id, _LEAD)],
        late_returns=len(logged(stack, run_id, _LATE)),
    )
    print(json.dumps(result.to_dict()))
    return result


def test_tasks_waiting_for_capacity_with_and_without_the_triggerer(
    celery: CeleryDeployment, celery_api: httpx.Client, e2e_xai: XAIServer, tmp_path: Path
) -> None:
    api, stack = celery_api, celery.stack
    put_redis_connection(api, celery.redis)
    put_pool(api, **WAITS_POOL)
    runs = {
        (scenario, mode): run_waits(api, stack, e2e_xai, mode, conf, **settings)
        for scenario, conf in WAITS_SCENARIOS.items()
        for mode, settings in (("in workers", {"rate_limit_defer_after": 0}), ("in the triggerer", WAITS_DEFERRAL))
    }
    path = Path(os.environ.get(RESULTS_ENV) or tmp_path / "scale.json")
    results = json.loads(path.read_text()) if path.exists() else {}
    results["capacity_waits"] = {
        "server_rps": WAITS_RPS, "client_rps": WAITS_RPS, "pool": WAITS_POOL, "deferral": WAITS_DEFERRAL,
        "scenarios": {
            scenario: {"conf": conf, **{mode: runs[scenario, mode].to_dict() for scenario_, mode in runs
                                         if scenario_ == scenario}}
            for scenario, conf in WAITS_SCENARIOS.items()
        },
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"capacity-wait figures written to {path}")

    # Either way: every task answered once, nothing lost or duplicated.
    for run in runs.values():
        assert run.failed_tasks == 0 and run.billed == run.tasks, run
        assert run.lost_answers == run.duplicated_answers == 0, run
    # Waits in workers never defer. Behind other work, slots are further away than the lead:
    # tasks waited in the real triggerer and came back to send with the slot they held (once:
    # no duplicate above).
    for scenario in WAITS_SCENARIOS:
        assert runs[scenario, "in workers"].deferred_tasks == 0, runs[scenario, "in workers"]
    behind = runs["behind other work", "in the triggerer"]
    assert behind.deferred_tasks > 0 and behind.seconds_deferred > 0 and behind.came_back_s, behind
