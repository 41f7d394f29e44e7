"""The scale DAG of the CeleryExecutor test (``tests/e2e/test_celery.py``): over a thousand xAI
requests from a few dozen Airflow tasks, then the usage sensor's roll-up of the run.

Most requests come from ``fan_out`` tasks, each sending its share at once with
``XAIHook.chat_many`` (one task start-up, many requests in flight); a few come from mapped
``XAIChatOperator`` tasks (``chat``, one request each, how a small DAG would do it). Every
prompt carries a tag unique in the run (``<run>/m0003``, ``<run>/f02-0117``), which the local
server's answer echoes, so the test can match each answer in XCom to the request the server
answered. A fan-out records the usage of every billed answer before it fails for any item that
got none, so a failure never loses usage.

Sizes come from the run's conf: ``mapped`` chat tasks, ``fanouts`` fan-out tasks of
``per_fanout`` requests, ``max_concurrency`` in flight per fan-out.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.sensors.usage import XAIUsageSensor

MAX_TOKENS = 64


def tag(run_id: str, name: str) -> str:
    return f"{run_id}/{name}"


@dag(
    dag_id="xai_scale",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"mapped": 20, "fanouts": 6, "per_fanout": 164, "max_concurrency": 8},
    tags=["xai", "scale-test"],
)
def xai_scale() -> None:
    @task
    def mapped_prompts(params: dict[str, Any], run_id: str) -> list[str]:
        return [f"{tag(run_id, f'm{i:04d}')} Say hello." for i in range(params["mapped"])]

    @task
    def fan_out_shares(params: dict[str, Any], run_id: str) -> list[list[str]]:
        return [
            [f"{tag(run_id, f'f{f:02d}-{i:04d}')} Say hello." for i in range(params["per_fanout"])]
            for f in range(params["fanouts"])
        ]

    @task(priority_weight=100)  # start the fan-outs first: they carry most of the load
    def fan_out(prompts: list[str], params: dict[str, Any]) -> list[dict[str, str]]:
        from airflow_provider_xai.hooks.xai import XAIHook
        from airflow_provider_xai.schemas import ChatCompletion
        from airflow_provider_xai.usage import UsageLedger, build_record

        context = get_current_context()
        hook = XAIHook()
        results = hook.chat_many(
            [{"messages": [{"role": "user", "content": p}], "max_tokens": MAX_TOKENS} for p in prompts],
            max_concurrency=params["max_concurrency"],
        )
        answered = [(p, r) for p, r in zip(prompts, results, strict=True) if isinstance(r, ChatCompletion)]
        prices = hook.get_prices()
        UsageLedger(context, hook.log).record_many(
            build_record(c.usage, c.model, completion_id=c.id, prices=prices) for _, c in answered
        )
        failed = [(p, r) for p, r in zip(prompts, results, strict=True) if not isinstance(r, ChatCompletion)]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(prompts)} requests failed; first: {failed[0][1]!r}")
        return [{"prompt": p, "answer": c.text} for p, c in answered]

    chat = XAIChatOperator.partial(task_id="chat", api="chat", max_tokens=MAX_TOKENS).expand(prompt=mapped_prompts())
    answers = fan_out.expand(prompts=fan_out_shares())
    usage = XAIUsageSensor(task_id="usage", trigger_rule="all_done", deferrable=True, poke_interval=2)
    [chat, answers] >> usage


xai_scale()
