"""8. The xAI usage page's query at 100,000 usage records.

A fresh SQLite metadata DB (its own temporary AIRFLOW_HOME, ``airflow db`` schema) is filled
with what the provider writes: 5 DAGs x 2,000 runs x 5 tasks, each task instance with a
2-record ``xai_usage_ledger`` and its ``xai_usage`` (the ledger's last record, not counted
again): 100,000 counted records in 100,000 XCom rows over 30 days, 1 run in 100 over budget.
The figure is the median wall time (CPU time in the details) of what one page load asks of
the DB: :func:`usage_report` (totals, per day x DAG, by DAG, task, model and API, tool calls,
top runs) and :func:`usage_dag_ids` (the DAG filter), for all DAGs and 30 days, plus one DAG's
beside it. The totals are checked against the numbers written.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import Figure, apply_env, median

DAGS, RUNS, TASKS, PER_LEDGER = 5, 2_000, 5, 2
RECORDS = DAGS * RUNS * TASKS * PER_LEDGER
DAYS = 30


def fill(session: Any, end: datetime) -> dict[str, int]:
    """Write the runs; the expected totals."""
    from tests.helpers.usage_xcoms import RunUsage, TaskUsage, add_dags, insert_runs, record

    rng = random.Random(42)
    dag_ids = [f"bench_dag_{d}" for d in range(DAGS)]
    add_dags(session, dag_ids)
    expected = {"records": 0, "total_tokens": 0}
    start = end.timestamp() - DAYS * 86400
    for dag_id in dag_ids:
        runs = []
        for n in range(RUNS):
            run_id = f"scheduled__{n:05d}"
            stamp = start + (n + 0.5) * DAYS * 86400 / RUNS
            run = RunUsage(dag_id, run_id)
            for t in range(TASKS):
                ledger = []
                for attempt in range(PER_LEDGER):
                    tokens = rng.randint(100, 5000)
                    ledger.append(
                        record(
                            dag_id, run_id, f"task_{t}", timestamp=stamp + attempt,
                            model=("grok-4.3", "grok-3-mini")[t % 2], try_number=attempt + 1,
                            prompt_tokens=tokens - 50, completion_tokens=50, total_tokens=tokens,
                            cost_usd=tokens * 2e-6, cost_source=("xai", "estimate")[attempt],
                            kind="responses" if t == 0 else "chat",
                            server_side_tool_usage={"web_search_calls": 1} if t == 0 else {},
                            num_server_side_tools_used=1 if t == 0 else 0,
                        )
                    )
                    expected["records"] += 1
                    expected["total_tokens"] += tokens
                run.tasks.append(TaskUsage(dag_id, run_id, f"task_{t}", ledger))
            if n % 100 == 0:
                run.summary = {"budget": {"status": "exceeded", "max_cost_usd": 0.01, "over_cost_usd": 0.01}}
            runs.append(run)
        insert_runs(session, runs, when=end)
        session.commit()
    return expected


def run(quick: bool) -> list[Figure]:
    from airflow.utils import db
    from airflow.utils.session import create_session

    from airflow_provider_xai.dashboard.query import Window, usage_dag_ids, usage_report

    db.resetdb()
    end = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    with create_session() as session:
        expected = fill(session, end)
    fill_s = time.perf_counter() - t0
    window = Window(end.date() - timedelta(days=DAYS), end.date())
    all_dags = {f"bench_dag_{d}" for d in range(DAGS)}
    rounds = 3 if quick else 7
    timings: dict[str, list[float]] = {"all": [], "one": [], "all_cpu": []}
    for _ in range(rounds):
        for name, dag_ids in (("all", all_dags), ("one", {"bench_dag_0"})):
            with create_session() as session:
                t0, cpu0 = time.perf_counter(), time.process_time()
                report = usage_report(session, dag_ids, window)
                usage_dag_ids(session, dag_ids)  # the page's DAG filter: part of each answer
                timings[name].append((time.perf_counter() - t0) * 1000)
                if name == "all":
                    timings["all_cpu"].append((time.process_time() - cpu0) * 1000)
            if name == "all":
                got = (report["totals"]["records"], report["totals"]["total_tokens"])
                assert got == (expected["records"], expected["total_tokens"]), (got, expected)
                assert len(report["exceeded_runs"]) == DAGS * RUNS // 100
    detail = {
        "records": RECORDS,
        "xcom_rows": DAGS * RUNS * TASKS * 2 + DAGS * RUNS // 100,
        "fill_seconds": round(fill_s, 1),
        "cpu_ms_median_all": round(median(timings["all_cpu"]), 1),
        "rounds_ms": {k: [round(v, 1) for v in vs] for k, vs in timings.items()},
        "db": "SQLite (airflow db schema, temporary AIRFLOW_HOME)",
    }
    server = "no server (SQLite metadata DB)"
    return [
        Figure("8a_usage_page_query", f"usage page report, {RECORDS:,} records, all DAGs, 30 days",
               median(timings["all"]), 3000.0, unit="ms", server=server, detail=detail),
        Figure("8b_usage_page_query_one_dag", f"same, one DAG of {DAGS} ({RECORDS // DAGS:,} records)",
               median(timings["one"]), None, unit="ms", server=server),
    ]


if __name__ == "__main__":
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="xai-bench-dashboard-")
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
