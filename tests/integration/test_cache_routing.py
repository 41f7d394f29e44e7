"""Prompt-cache routing and service tiers against the local xAI server, whose API has
``cache_servers`` servers with a cache each (as xAI's): a routing key lands every request of one
task on the same server. The key is derived from the DAG and task by default, so the mapped
instances and daily runs of a task share a cache; it can be given or turned off."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_xai.operators.chat import XAIChatOperator
from tests.helpers.context import FakeTI, make_context

SYSTEM = "Translate the user's text to French. Reply with the translation only. " * 20
TEXTS = ["Good morning", "The pipeline finished", "Budget exceeded", "See you tomorrow", "All green", "Retry"]


def translate(api: str, prompt: str, **kwargs: Any) -> dict[str, Any]:
    ti = FakeTI(task_id="translate", dag_id="example_xai_chat")
    task = XAIChatOperator(task_id="translate", system_prompt=SYSTEM, prompt=prompt, api=api, **kwargs)
    task.execute(make_context(ti))
    return dict(ti.pushed["xai_usage"])


def share(records: list[dict[str, Any]]) -> float:
    return sum(r["cached_tokens"] for r in records) / sum(r["prompt_tokens"] for r in records)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_routed_instances_share_one_cache_and_unrouted_ones_scatter(xai_server: Any, api: str) -> None:
    xai_server.configure(cache_servers=8)
    routed = [translate(api, text) for text in TEXTS]
    assert all(r["cached_tokens"] > 0 for r in routed[1:])  # every instance after the first hits
    xai_server.configure(cache_servers=8)
    scattered = [translate(api, text, prompt_cache_key=False) for text in TEXTS]
    assert share(routed) > share(scattered)


def test_the_key_is_the_tasks_own_and_travels_as_each_api_wants(xai_server: Any) -> None:
    translate("chat", "Hello")
    translate("responses", "Hello")
    translate("responses", "Hello", prompt_cache_key="my-key")
    translate("chat", "Hello", prompt_cache_key=False)
    (chat, unrouted) = xai_server.requests("/chat/completions", method="POST")
    derived = chat.headers["x-grok-conv-id"]
    assert derived.startswith("airflow-") and "prompt_cache_key" not in chat.body
    (responses, own) = xai_server.requests("/responses", method="POST")
    assert responses.body["prompt_cache_key"] == derived and own.body["prompt_cache_key"] == "my-key"
    assert "x-grok-conv-id" not in unrouted.headers


def test_a_priority_answer_is_recorded_with_its_tier_and_cost(xai_server: Any) -> None:
    xai_server.configure(prompt_cache=False)  # the same prompt twice: compare like with like
    default = translate("responses", "Hello", prompt_cache_key=False)
    priority = translate("responses", "Hello", prompt_cache_key=False, service_tier="priority")
    body = xai_server.requests("/responses", method="POST")[-1].body
    assert body["service_tier"] == "priority" and priority["service_tier"] == "priority"
    assert priority["cost_usd"] == pytest.approx(2 * default["cost_usd"], rel=0.05)
