"""Account for what a DAG run spends on xAI, and stop it when it overspends.

Chat and vision steps (one mapped) run first; ``XAIUsageSensor`` then waits for them, logs a
table of tokens and dollars per task and per model, and fails the run if it is over budget
(``trigger_rule="all_done"``: it reports even when a step failed). A last task reads the
summary from the sensor's XCom.

Runs against xAI when the ``xai_default`` connection (or ``XAI_API_KEY``) points there, or
against the bundled local server (``python -m airflow_provider_xai.testing``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.sensors.usage import XAIUsageSensor

#: A 1x1 PNG, inline so the example needs no files or network access.
PIXEL_PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dag(
    dag_id="example_xai_usage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai"],
)
def example_xai_usage() -> None:
    summary = XAIChatOperator(
        task_id="summarise",
        system_prompt="You summarise incident reports in two sentences.",
        prompt="The nightly load failed twice on a full disk, then succeeded after cleanup.",
        max_tokens=200,
    )

    reasoning = XAIChatOperator(
        task_id="plan",
        model="grok-3-mini",
        reasoning_effort="low",
        prompt="List three checks to run before re-running a failed backfill.",
    )

    describe = XAIChatOperator(
        task_id="describe_image",
        model="grok-4.3",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What colour is this pixel?"},
                    {"type": "image_url", "image_url": {"url": PIXEL_PNG, "detail": "low"}},
                ],
            }
        ],
    )

    classify = XAIChatOperator.partial(
        task_id="classify",
        system_prompt="Label the log line as INFO, WARN or ERROR. Reply with the label only.",
        max_tokens=20,
    ).expand(prompt=["disk 91% full", "load finished in 42s", "connection reset by peer"])

    usage = XAIUsageSensor(
        task_id="xai_usage",
        max_total_tokens=200_000,
        max_cost_usd=1.00,
        poke_interval=5,
        timeout=3600,
        mode="reschedule",
        trigger_rule="all_done",
    )
    [summary, reasoning, describe, classify] >> usage

    @task
    def spend_report(report: dict) -> str:
        totals = report["totals"]
        line = (
            f"{totals['requests']} xAI requests, {totals['total_tokens']} tokens, "
            f"${totals['cost_usd']:.6f}; budget {report['budget']['status']}"
        )
        print(line)
        return line

    spend_report(usage.output)


example_xai_usage()
