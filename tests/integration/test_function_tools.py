"""Python callables as function tools, against the local xAI server (which calls a function
whose name the prompt mentions, then answers with its output): the task runs the loop, sends
each output back, records every turn's usage, and tells the model about a failing function
instead of crashing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_xai import tools
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.functions import PythonTool
from airflow_provider_xai.operators.responses import XAIResponsesOperator
from tests.helpers.context import FakeTI, make_context

ORDERS = {"A-1042": "shipped"}
calls: list[str] = []


def get_order_status(order_id: str) -> dict[str, str]:
    """Look up the shipping status of an order.

    The second paragraph is not sent."""
    calls.append(order_id)
    return {"order_id": order_id, "status": ORDERS.get(order_id, "unknown")}


def get_refund(order_id: str, amount: float) -> str:
    """Start a refund."""
    raise RuntimeError("refunds are closed on Sundays")


def posts(server: Any) -> list[Any]:
    return server.requests("/responses", method="POST")


def test_a_callable_becomes_a_function_tool_with_its_signature() -> None:
    spec = PythonTool(get_refund).spec()
    assert spec["name"] == "get_refund" and spec["description"] == "Start a refund."
    assert spec["parameters"]["required"] == ["order_id", "amount"]
    assert spec["parameters"]["properties"]["amount"]["type"] == "number"


def test_the_task_runs_the_function_and_sends_its_output_back(xai_server: Any) -> None:
    calls.clear()
    ti = FakeTI()
    answer = XAIResponsesOperator(
        task_id="support", prompt="Use get_order_status to tell me about my order",
        tools=[get_order_status, tools.web_search()],
    ).execute(make_context(ti))  # fmt: skip
    first, second = posts(xai_server)
    assert [t["name"] for t in first.body["tools"] if t["type"] == "function"] == ["get_order_status"]
    (output,) = second.body["input"]
    assert output["type"] == "function_call_output" and json.loads(output["output"])["order_id"] == calls[0]
    assert second.body["previous_response_id"] and "instructions" not in second.body
    assert "heard" in answer or calls[0] in answer
    assert len(ti.values("xai_usage")) == 2  # both turns were billed and recorded
    assert ti.pushed["xai_function_calls"] == []


def test_a_failing_function_is_reported_to_the_model_not_raised(xai_server: Any) -> None:
    ti = FakeTI()
    XAIResponsesOperator(task_id="refund", prompt="Call get_refund for order A-1", tools=[get_refund]
                         ).execute(make_context(ti))  # fmt: skip
    output = json.loads(posts(xai_server)[-1].body["input"][0]["output"])
    assert output == {"error": "RuntimeError: refunds are closed on Sundays"}


def test_without_a_store_the_conversation_is_replayed(xai_server: Any) -> None:
    XAIResponsesOperator(task_id="t", prompt="Use get_order_status please", tools=[get_order_status],
                         store=False).execute(make_context())  # fmt: skip
    second = posts(xai_server)[-1].body
    assert "previous_response_id" not in second
    kinds = [item.get("type", "message") for item in second["input"]]
    assert kinds[0] == "message" and "function_call" in kinds and kinds[-1] == "function_call_output"


def test_the_loop_stops_at_max_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that keeps asking (a MockTransport that always answers with a function call)."""
    conn = {"conn_type": "xai", "password": "xai-loop-key-123", "host": "https://xai.test/v1"}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
    import httpx

    from airflow_provider_xai.hooks.xai import XAIHook

    answers: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(answers)
        answers.append(json.loads(request.content))
        call = {"type": "function_call", "id": f"fc{n}", "call_id": f"c{n}", "name": "get_order_status",
                "arguments": json.dumps({"order_id": f"A-{n}"}), "status": "completed"}
        return httpx.Response(200, json={"id": f"r{n}", "object": "response", "model": "grok-4.3",
                                         "status": "completed", "output": [call],
                                         "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}})

    task = XAIResponsesOperator(task_id="t", prompt="go", tools=[get_order_status], max_turns=3)
    task.hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(handler)})  # type: ignore[misc]
    ti = FakeTI()
    task.execute(make_context(ti))
    assert len(answers) == 1 + 3 and len(ti.values("xai_usage")) == 4
    assert answers[-1]["previous_response_id"] == "r2" and answers[1]["max_turns"] == 3
    assert ti.pushed["xai_function_calls"][0]["name"] == "get_order_status"  # left unanswered


def test_function_tools_cannot_be_deferred() -> None:
    with pytest.raises(XAIValidationError) as info:
        XAIResponsesOperator(task_id="t", prompt="x", tools=[get_order_status], deferrable=True)
    assert info.value.field == "deferrable"
