"""The capacity-waits DAGs of the CeleryExecutor test (``tests/e2e/test_celery.py``).

``xai_waits``: ``mapped`` one-request ``XAIChatOperator`` tasks in the pool ``xai_waits`` (its
slots stand for the worker slots they share), on a connection whose shared limit is a few
requests per second: most of them wait for capacity, in a worker or in the triggerer. Every
prompt carries a tag unique in the run (``<run>/w0003``), which the local server's answer
echoes. ``others`` (conf ``others`` > 0) sends that many requests on the same key and model at
once, from the default pool, so that the mapped tasks' slots are further away.

``xai_waits_bystander``: one task that never calls xAI, in the same pool, started while the
xAI tasks wait: how long it waits for a slot is what waiting in workers costs other work.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_xai.operators.chat import XAIChatOperator

POOL = "xai_waits"
START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(dag_id="xai_waits", schedule=None, start_date=START, catchup=False, params={"mapped": 40, "others": 0},
     tags=["xai", "scale-test"])
def xai_waits() -> None:
    @task
    def prompts(params: dict[str, Any], run_id: str) -> list[str]:
        return [f"{run_id}/w{i:04d} Say hello." for i in range(params["mapped"])]

    @task(priority_weight=100)
    def others(params: dict[str, Any], run_id: str) -> int:
        """Other work on the same key and model, sent at once (``chat_many``): the limit's
        queue is longer than the mapped tasks' own, as when a team is rate-limited."""
        from airflow_provider_xai.hooks.xai import XAIHook
        from airflow_provider_xai.schemas import ChatCompletion

        count = params["others"]
        asks = [{"messages": [{"role": "user", "content": f"{run_id}/o{i:04d} Say hello."}], "max_tokens": 64}
                for i in range(count)]
        results = XAIHook().chat_many(asks, max_concurrency=max(count, 1)) if count else []
        failed = [r for r in results if not isinstance(r, ChatCompletion)]
        if failed:
            raise RuntimeError(f"{len(failed)} of {count} requests failed; first: {failed[0]!r}")
        return len(results)

    others()
    XAIChatOperator.partial(task_id="ask", api="chat", max_tokens=64, pool=POOL).expand(prompt=prompts())


@dag(dag_id="xai_waits_bystander", schedule=None, start_date=START, catchup=False, tags=["scale-test"])
def xai_waits_bystander() -> None:
    @task(pool=POOL)
    def other_work() -> str:
        return "done"

    other_work()


xai_waits()
xai_waits_bystander()
