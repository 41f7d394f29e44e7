"""Agentic steps on the Responses API: a deferrable search-and-code call, a loop with a Python
function the task runs, and a branch Grok chooses.

``research`` searches the web and runs code at xAI, which can take minutes: with
``deferrable=True`` the worker only sends the request and keeps its id, and the answer is
collected by the triggerer (a restart or a retry re-attaches, never pays twice). ``support``
gives Grok a Python function, ``order_status``: when the model asks for it, the task calls it
and sends the result back, until the model answers (every turn's usage is recorded).
``triage`` lets Grok decide whether the ticket is escalated or archived; the other branch is
skipped, and the reason is in XCom ``xai_branch_reason``.

Runs against xAI when the ``xai_default`` connection (or ``XAI_API_KEY``) points there, or
against the bundled local server (``python -m airflow_provider_xai.testing``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_xai import tools
from airflow_provider_xai.operators.responses import XAIResponsesOperator

ORDERS = {"A-1042": {"status": "shipped", "carrier": "DHL", "eta": "2026-12-09"}}


def order_status(order_id: str) -> dict[str, str]:
    """Look up the shipping status of an order by its id (e.g. A-1042)."""
    return ORDERS.get(order_id.strip().upper(), {"status": "unknown order"})


@dag(
    dag_id="example_xai_agents",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai"],
)
def example_xai_agents() -> None:
    research = XAIResponsesOperator(
        task_id="research",
        prompt="How much did lithium carbonate cost this month? Compute the change in percent with code.",
        tools=[tools.web_search(), tools.code_interpreter()],
        deferrable=True,  # the tools run at xAI; the triggerer waits, not a worker
        poll_interval=1,
    )

    support = XAIResponsesOperator(
        task_id="support",
        prompt="A customer asks where order A-1042 is. Use order_status to check, then answer in one line.",
        tools=[order_status],  # a Python function: the task runs it when Grok asks
        max_turns=4,
    )

    @task.xai_branch(model="grok-4.3")
    def triage(ticket: str) -> str:
        return (
            f"Support ticket: {ticket!r}. Choose escalate when something is broken or lost, "
            "archive when the customer only says thanks."
        )

    @task
    def escalate(answer: str) -> str:
        return f"escalated with context: {answer[:80]}"

    @task
    def archive() -> str:
        return "archived"

    decision = triage("My parcel A-1042 was lost and support never answered")
    decision >> [escalate(support.output), archive()]
    research >> decision


example_xai_agents()
