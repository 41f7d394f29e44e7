"""Spend control: stop a call before it is billed, not after.

- ``XAIBalanceSensor`` holds the run while the team is nearly out of prepaid credit (or close to
  its monthly spending limit): xAI's Management API, through the connection's management key.
- Each xAI task has a cap, ``max_cost_usd``: a call whose worst case (the prompt counted by
  xAI's tokenizer, the answer at its ``max_tokens``) would pass it is refused before it is sent,
  and a function-tool loop stops there. Budgets declared in the connection (``budgets`` extra)
  or the provider config (``[xai] budgets``) apply too, per DAG, tag or team; over one, a task
  here is skipped (``over_budget="skip"``; ``"ask"`` would ask a person instead).
- ``report`` reads each call's forecast beside its cost (XCom ``xai_forecast``).
- ``XAIReconcileOperator`` compares what the tasks recorded with what xAI billed, per model.

Runs against xAI when the ``xai_default`` connection (with its management key) points there,
or against the bundled local server (``python -m airflow_provider_xai.testing``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.operators.reconcile import XAIReconcileOperator
from airflow_provider_xai.operators.responses import XAIResponsesOperator
from airflow_provider_xai.sensors.balance import XAIBalanceSensor


def lookup_invoice(invoice_id: str) -> str:
    """Look up the amount and status of an invoice."""
    return f"invoice {invoice_id}: 1,250.00 EUR, paid"


@dag(
    dag_id="example_xai_spend",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai", "xai-spend-example"],
)
def example_xai_spend() -> None:
    credit = XAIBalanceSensor(
        task_id="enough_credit", min_credit_usd=1.0, max_spending_share=0.9, poke_interval=300,
        timeout=6 * 3600, mode="reschedule",
    )  # fmt: skip

    summary = XAIChatOperator(
        task_id="summarise",
        system_prompt="You summarise incident reports in one sentence.",
        prompt="The nightly load failed twice on a full disk, then succeeded after cleanup.",
        model="grok-4-1-fast-non-reasoning",
        max_tokens=80,
        max_cost_usd=0.01,
        over_budget="skip",
    )

    agent = XAIResponsesOperator(
        task_id="check_invoice",
        prompt="Please lookup_invoice INV-2026-0042 and say whether it is paid.",
        tools=[lookup_invoice],
        max_turns=3,
        max_tokens=120,
        max_cost_usd=0.02,
        over_budget="skip",
    )

    @task
    def report(**context: object) -> list[str]:
        ti = context["ti"]
        lines = []
        for task_id in ("summarise", "check_invoice"):
            for call in ti.xcom_pull(task_ids=task_id, key="xai_forecast") or []:  # type: ignore[attr-defined]
                forecast = call["forecast"]
                lines.append(
                    f"{task_id}: worst case ${forecast['cost_usd']:.6f} ({forecast['input_tokens']} prompt tokens "
                    f"counted, at most {forecast['output_tokens']} out), billed ${call['actual_usd'] or 0:.6f}"
                )
        for line in lines:
            print(line)
        return lines

    reconcile = XAIReconcileOperator(task_id="reconcile", trigger_rule="all_done")

    credit >> [summary, agent] >> report() >> reconcile


example_xai_spend()
