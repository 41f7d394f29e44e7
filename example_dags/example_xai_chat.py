"""Chat with Grok from a DAG: a plain prompt, a system prompt with a templated user prompt
from an upstream task, structured output into a pydantic model, a deferrable call, a mapped
fan-out and the ``@task.xai`` decorator.

Runs against xAI when the ``xai_default`` connection (or ``XAI_API_KEY``) points there, or
against the bundled local server (``python -m airflow_provider_xai.testing``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from pydantic import BaseModel

from airflow_provider_xai.operators.chat import XAIChatOperator


class CitySummary(BaseModel):
    """What the structured-output step extracts."""

    city: str
    country: str
    population_millions: float
    known_for: list[str]


@dag(
    dag_id="example_xai_chat",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai"],
)
def example_xai_chat() -> None:
    plain = XAIChatOperator(
        task_id="plain_prompt",
        prompt="In one sentence, why do data engineers schedule pipelines at night?",
        max_tokens=200,
    )

    @task
    def pick_city() -> str:
        return "Lisbon"

    city = pick_city()

    guide = XAIChatOperator(
        task_id="travel_tip",
        system_prompt="You are a concise travel guide. Answer in two lines.",
        prompt="Give one tip for a first visit to {{ ti.xcom_pull(task_ids='pick_city') }}.",
        temperature=0.3,
    )
    city >> guide

    structured = XAIChatOperator(
        task_id="city_facts",
        prompt="Summarise {{ ti.xcom_pull(task_ids='pick_city') }} as structured data.",
        response_format=CitySummary,
    )
    city >> structured

    deferred = XAIChatOperator(
        task_id="deferred_haiku",
        prompt="Write a haiku about a scheduler waiting for data.",
        deferrable=True,
        poll_interval=0.5,
        deferred_timeout=600,
    )

    translations = XAIChatOperator.partial(
        task_id="translate",
        system_prompt="Translate the user's text to French. Reply with the translation only.",
    ).expand(prompt=["Good morning", "The pipeline finished", "Budget exceeded"])

    @task.xai(max_tokens=300)
    def name_the_dag(purpose: str) -> str:
        return f"Suggest a short snake_case DAG id for a pipeline that {purpose}."

    name = name_the_dag("loads invoices every night")

    @task
    def report(plain: str, tip: str, facts: dict, haiku: str, french: list[str], dag_name: str) -> dict:
        summary = {
            "plain": plain,
            "tip": tip,
            "facts": facts,
            "haiku": haiku,
            # A mapped task's results arrive as a lazy sequence: slice it to fetch them all in
            # one request. list(french) would iterate it, asking for one item after another
            # until a lookup fails, and Airflow logs that last lookup as an "XCom not found"
            # error.
            "french": french[:],
            "dag_name": dag_name,
        }
        print(summary)
        return summary

    report(plain.output, guide.output, structured.output, deferred.output, translations.output, name)


example_xai_chat()
