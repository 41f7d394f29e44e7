"""Deferrable Responses calls against the local xAI server (tools take ``tool_latency`` there):
the worker sends the request, keeps the response id the moment xAI names it and defers; the
trigger polls the stored response until it is done. A restarted triggerer, a duplicate trigger
or a task retry never sends the request again; changed inputs do; a failed answer's usage is
recorded before the task fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_xai import tools
from airflow_provider_xai.exceptions import XAIServerError, XAIValidationError
from airflow_provider_xai.operators.responses import XAIResponsesOperator
from airflow_provider_xai.operators.responses_api import RESPONSE_STATE_KEY
from airflow_provider_xai.testing import Fault
from airflow_provider_xai.triggers.responses import XAIResponseTrigger
from tests.helpers.context import FakeStateStore, FakeTI, make_context
from tests.integration.test_chat_operator import run_trigger

TOOL_LATENCY = 0.6


@pytest.fixture
def slow_tools(xai_server: Any) -> Any:
    xai_server.configure(tool_latency=TOOL_LATENCY)
    return xai_server


def op(**kwargs: Any) -> XAIResponsesOperator:
    kwargs.setdefault("task_id", "research")
    kwargs.setdefault("prompt", "What changed in solar sails this week?")
    kwargs.setdefault("tools", [tools.web_search(), tools.code_interpreter()])
    return XAIResponsesOperator(deferrable=True, poll_interval=0.05, **kwargs)


def posts(server: Any) -> int:
    return len(server.requests("/responses", method="POST"))


def deferred(task: XAIResponsesOperator, ti: FakeTI, store: FakeStateStore) -> XAIResponseTrigger:
    with pytest.raises(TaskDeferred) as info:
        task.execute(make_context(ti, store))
    trigger = info.value.trigger
    assert isinstance(trigger, XAIResponseTrigger) and info.value.method_name == "execute_response_complete"
    return trigger


def test_the_worker_defers_once_xai_names_the_response(slow_tools: Any) -> None:
    store, ti = FakeStateStore(), FakeTI()
    trigger = deferred(op(), ti, store)
    assert ti.pushed["xai_response_id"] == trigger.response_id == store.data[RESPONSE_STATE_KEY]["value"]
    # The tools are still running: the stored response reads as in progress.
    assert slow_tools.journal[-1].status == 200 and posts(slow_tools) == 1
    event = run_trigger(trigger)
    assert event["status"] == "success" and event["response"]["status"] == "completed"
    finished = FakeTI()
    answer = op().execute_response_complete(make_context(finished, store), event)
    assert isinstance(answer, str) and answer
    assert finished.pushed["xai_usage"]["num_server_side_tools_used"] >= 2
    assert finished.pushed["xai_citations"] and RESPONSE_STATE_KEY not in store.data
    assert posts(slow_tools) == 1


def test_a_restarted_triggerer_polls_again_and_never_resends(slow_tools: Any) -> None:
    trigger = deferred(op(), FakeTI(), FakeStateStore())

    async def restart() -> dict[str, Any]:
        first = asyncio.ensure_future(trigger.run().__anext__())
        while not [e for e in slow_tools.journal if e.method == "GET" and "/responses/" in e.path]:
            await asyncio.sleep(0.01)  # the first copy is polling: now the triggerer goes down
        first.cancel()
        classpath, kwargs = trigger.serialize()
        assert classpath == "airflow_provider_xai.triggers.responses.XAIResponseTrigger"
        event = await XAIResponseTrigger(**kwargs).run().__anext__()
        return dict(event.payload)

    event = asyncio.run(restart())
    assert event["status"] == "success" and posts(slow_tools) == 1


def test_a_retry_reattaches_and_collects_without_paying_again(slow_tools: Any) -> None:
    store = FakeStateStore()
    first = deferred(op(), FakeTI(try_number=1), store)
    # The first try's wait was lost; the retry finds the same response, still in progress...
    again = deferred(op(), FakeTI(try_number=2), store)
    assert again.response_id == first.response_id and posts(slow_tools) == 1
    run_trigger(again)  # ...then done: a third try collects it at once, without deferring.
    ti = FakeTI(try_number=3)
    assert op().execute(make_context(ti, store)) and ti.pushed["xai_usage"]["total_tokens"] > 0
    assert posts(slow_tools) == 1


def test_a_retry_with_changed_inputs_sends_the_new_request(slow_tools: Any) -> None:
    store = FakeStateStore()
    first = deferred(op(prompt="Old question"), FakeTI(try_number=1), store)
    second = deferred(op(prompt="Fixed question"), FakeTI(try_number=2), store)
    assert second.response_id != first.response_id and posts(slow_tools) == 2
    body = slow_tools.requests("/responses", method="POST")[-1].body
    assert body["input"] == [{"role": "user", "content": "Fixed question"}]


def test_a_failed_answer_records_its_usage_then_fails(slow_tools: Any) -> None:
    store = FakeStateStore()
    slow_tools.enqueue(Fault(fail_stream=True, message="model crashed", path="/v1/responses"))
    trigger = deferred(op(), FakeTI(), store)
    event = run_trigger(trigger)
    assert event["response"]["status"] == "failed"
    ti = FakeTI()
    with pytest.raises(XAIServerError, match="model crashed"):
        op().execute_response_complete(make_context(ti, store), event)
    assert ti.pushed["xai_usage"]["total_tokens"] > 0


def test_store_false_cannot_be_deferred() -> None:
    with pytest.raises(XAIValidationError) as info:
        op(store=False)
    assert info.value.field == "store"


def test_the_chat_operator_with_a_tool_makes_a_deferrable_responses_call(slow_tools: Any) -> None:
    from airflow_provider_xai.operators.chat import XAIChatOperator

    task = XAIChatOperator(task_id="t", prompt="Search", tools=[tools.web_search()], deferrable=True,
                           poll_interval=0.05)  # fmt: skip
    assert task.api == "responses"
    with pytest.raises(TaskDeferred) as info:
        task.execute(make_context(FakeTI(), FakeStateStore()))
    assert isinstance(info.value.trigger, XAIResponseTrigger) and posts(slow_tools) == 1
