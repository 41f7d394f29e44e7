"""XAIBatchOperator with Responses requests (server-side tools included), chat and Responses
requests in one batch, and answers in either shape xAI may send, against the local server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from airflow_provider_xai.endpoints.responses import response_record
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.hooks.batch import BATCH_DISCOUNT
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.tools import mcp, web_search
from airflow_provider_xai.usage import TICKS_PER_USD
from tests.helpers.batch import by_custom_id, context, lines, operator, run

HEARD = "Grok (local) heard: "
SHAPES = ["chat", "responses"]  # how xAI sends a Responses request's answer: both are read
QUESTIONS = ["Solar sail news this week", "Tide tables for Brest tomorrow"]


def realtime(question: str) -> Any:
    """The same request answered in real time (not cached: the server's prompt cache is off)."""
    return XAIHook().create_response(model="grok-4.3", input=question, tools=[web_search()])


@pytest.mark.parametrize("shape", SHAPES)
def test_a_batch_of_responses_requests_with_a_web_search_tool(xai_server: Any, tmp_path: Path, shape: str) -> None:
    xai_server.configure(batch_responses_shape=shape, prompt_cache=False)
    ctx = context()
    summary = run(operator(tmp_path, QUESTIONS, tools=[web_search()]), ctx)

    (batch,) = xai_server.state.batches.values()
    assert [r.kind for r in batch.requests.values()] == ["responses", "responses"]
    assert [r.body["input"] for r in batch.requests.values()] == QUESTIONS
    assert all(r.body["tools"] == [{"type": "web_search"}] for r in batch.requests.values())
    out = lines(tmp_path)
    assert [(line["api"], line["status"]) for line in out] == [("responses", "succeeded")] * 2
    for line, question in zip(out, QUESTIONS, strict=True):
        answer = realtime(question)
        assert line["answer"].startswith(HEARD + question)
        assert line["citations"] == [c.url for c in answer.citations()] != []
        assert line["usage"]["prompt_tokens"] == answer.usage.input_tokens
        ticks = round(answer.usage.cost_in_usd_ticks * BATCH_DISCOUNT)
        assert round(line["usage"]["cost_usd"] * TICKS_PER_USD) == ticks
    assert summary["succeeded"] == 2 and summary["usage"]["num_server_side_tools_used"] == 2
    (folded,) = ctx["ti"].pushed("xai_usage_ledger")[-1]
    assert (folded["kind"], folded["requests"], folded["server_side_tool_usage"]) == (
        "batch", 2, {"web_search_calls": 2}
    )  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
def test_without_a_cost_from_xai_the_estimate_is_at_the_batch_discount(
    xai_server: Any, tmp_path: Path, shape: str
) -> None:
    xai_server.configure(batch_responses_shape=shape, prompt_cache=False, omit_cost=True)
    ctx = context()
    run(operator(tmp_path, QUESTIONS[:1], tools=[web_search()]), ctx)
    (line,) = lines(tmp_path)
    answer = realtime(QUESTIONS[0])
    expected = response_record(answer, XAIHook().get_prices(), discount=BATCH_DISCOUNT)
    assert expected is not None and expected.cost_source == "estimate"
    assert line["usage"]["cost_usd"] == pytest.approx(expected.cost_usd)
    (folded,) = ctx["ti"].pushed("xai_usage_ledger")[-1]
    assert folded["cost_source"] == "estimate"


def test_chat_and_responses_requests_in_one_batch(xai_server: Any, tmp_path: Path) -> None:
    inputs = [
        "A plain prompt",
        {"custom_id": "items", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Typed"}]}]},
        {"custom_id": "chat", "messages": [{"role": "user", "content": "Chat messages"}]},
        {"custom_id": "jsonl", "method": "POST", "url": "/v1/responses",
         "body": {"input": "A Responses line", "instructions": "Be terse."}},
    ]  # fmt: skip
    summary = run(operator(tmp_path, inputs, system_prompt="Be kind."), context())
    out = lines(tmp_path)
    assert [line["api"] for line in out] == ["chat", "responses", "chat", "responses"]
    assert [line["answer"] for line in out] == [HEARD + t for t in ("A plain prompt", "Typed", "Chat messages",
                                                                   "A Responses line")]  # fmt: skip
    sent = by_custom_id(next(iter(xai_server.state.batches.values())))
    assert sent["items"].body["instructions"] == "Be kind."
    assert sent["jsonl"].body["instructions"] == "Be terse.", "a request's own fields win"
    assert sent["chat"].body["messages"][0] == {"role": "system", "content": "Be kind."}
    assert summary["succeeded"] == 4


def test_structured_answers_of_responses_requests(xai_server: Any, tmp_path: Path) -> None:
    class Label(BaseModel):
        category: Literal["billing", "bug", "praise"]
        urgent: bool

    run(operator(tmp_path, ["My invoice is wrong: billing"], api="responses", response_format=Label), context())
    (line,) = lines(tmp_path)
    assert line["answer"]["category"] == "billing" and isinstance(line["answer"]["urgent"], bool)
    (request,) = next(iter(xai_server.state.batches.values())).requests.values()
    assert request.body["text"]["format"]["type"] == "json_schema" and "response_format" not in request.body


SIX_DOMAINS = [f"d{i}.example.com" for i in range(6)]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"inputs": [{"input": "x", "tools": [{"type": "web_search", "allowed_domains": SIX_DOMAINS}]}]},
         "inputs[0].tools[0].allowed_domains"),
        ({"inputs": ["x"], "api": "responses", "request_kwargs": {"stream": True}}, "inputs[0].stream"),
        ({"inputs": ["x"], "api": "responses", "request_kwargs": {"max_completion_tokens": 5}},
         "inputs[0].max_completion_tokens"),
        ({"inputs": ["x"], "tools": [mcp("https://mcp.example.com/sse", "crm", authorization_conn_id="crm_mcp")]},
         "inputs[0].tools[0].authorization_conn_id"),
        ({"inputs": [{"messages": [{"role": "user", "content": "x"}], "tools": [web_search()]}]}, "inputs[0].tools"),
        ({"inputs": [{"body": {"input": "x"}, "url": "/v1/videos/edits"}]}, "inputs[0].url"),
    ],
)  # fmt: skip
def test_a_bad_responses_input_fails_before_any_request(
    xai_server: Any, tmp_path: Path, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(XAIValidationError) as info:
        operator(tmp_path, **kwargs).execute(context())
    assert info.value.field == field
    assert xai_server.journal == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"api": "completions"}, "api"),
        ({"submit_as": "upload"}, "submit_as"),
        ({"api": "chat", "tools": [web_search()]}, "tools"),
        ({"tools": [{"type": "web_search", "allowed_domains": SIX_DOMAINS}]}, "tools[0].allowed_domains"),
        ({"tools": [web_search(), len]}, "tools[1]"),
    ],
)
def test_bad_arguments_fail_at_parse(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        operator(tmp_path, ["x"], **kwargs)
    assert info.value.field == field
