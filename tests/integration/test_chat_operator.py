"""XAIChatOperator against the local server: bodies, validation, structured output,
streaming, deferrable mode (operator + trigger)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from pydantic import BaseModel

from airflow_provider_xai.exceptions import (
    XAIDeferredExpiredError,
    XAIDeferredTimeoutError,
    XAIStructuredOutputError,
    XAIValidationError,
)
from airflow_provider_xai.operators.base import LineLogger
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.testing import Fault
from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger
from tests.helpers.context import FakeTI, make_context


class Ticket(BaseModel):
    category: str
    urgent: bool


def op(**kwargs: Any) -> XAIChatOperator:
    kwargs.setdefault("task_id", "chat")
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("api", "chat")  # these tests are about Chat Completions
    return XAIChatOperator(**kwargs)


def posts(server: Any) -> list[Any]:
    return server.requests("/chat/completions", method="POST")


def test_prompt_form_sends_system_and_user_messages(xai_server: Any) -> None:
    ctx = make_context()
    result = op(
        prompt="Classify this",
        system_prompt="Be brief",
        model="grok-3",
        temperature=0.5,
        max_tokens=50,
        seed=7,
        stop=["END"],
        request_kwargs={"top_p": 0.9, "user": "etl"},
    ).execute(ctx)
    assert result == "Grok (local) heard: Classify this"
    assert posts(xai_server)[0].body == {
        "model": "grok-3",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Classify this"}],
        "temperature": 0.5,
        "max_completion_tokens": 50,
        "seed": 7,
        "stop": ["END"],
        "top_p": 0.9,
        "user": "etl",
    }
    pushed = ctx["ti"].pushed
    assert pushed["xai_completion_id"]
    usage = pushed["xai_usage"]
    assert usage["completion_id"] == pushed["xai_completion_id"]
    assert usage["task_id"] == "test_task" and usage["try_number"] == 1 and usage["cost_source"] == "xai"
    json.dumps(pushed)  # everything pushed is plain JSON


def test_messages_form_and_json_string_messages(xai_server: Any) -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}]
    assert op(messages=messages).execute(make_context()) == "Grok (local) heard: Q?"
    assert op(messages=json.dumps(messages)).execute(make_context()) == "Grok (local) heard: Q?"
    assert [p.body["messages"] for p in posts(xai_server)] == [messages, messages]
    assert posts(xai_server)[0].body["model"] == "grok-4.3"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "prompt"),
        ({"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": "not json"}, "messages"),
        ({"prompt": "x", "temperature": 2.5}, "temperature"),
        ({"prompt": "x", "temperature": -0.1}, "temperature"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "response_format": {"foo": "bar"}}, "response_format"),
        ({"prompt": "x", "response_format": "yaml"}, "response_format"),
        ({"prompt": "x", "response_format": {"type": "nonsense-type"}}, "response_format"),
        ({"prompt": "x", "request_kwargs": {"n": 0}}, "n"),
    ],
)
def test_bad_arguments_fail_naming_the_argument_with_zero_requests(
    xai_server: Any, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(XAIValidationError) as info:
        op(**kwargs).execute(make_context())
    assert info.value.field == field
    assert field in str(info.value)
    assert xai_server.journal == []


def test_structured_output_returns_validated_dict(xai_server: Any) -> None:
    ctx = make_context()
    result = op(prompt="Printer on fire, category hardware", response_format=Ticket).execute(ctx)
    assert Ticket.model_validate(result) and isinstance(result, dict)
    body = posts(xai_server)[0].body
    assert body["response_format"]["json_schema"]["schema"]["title"] == "Ticket"


def logged(capfd: pytest.CaptureFixture[str]) -> list[str]:
    """Task-log lines (Airflow 3 operators log through structlog to the console)."""
    out, err = capfd.readouterr()
    return (out + err).splitlines()


def test_schema_violation_fails_but_usage_is_recorded(
    xai_server: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    xai_server.enqueue(Fault(content='{"category": "hardware"}'))
    ctx = make_context()
    with pytest.raises(XAIStructuredOutputError) as info:
        op(prompt="x", response_format=Ticket).execute(ctx)
    assert "urgent" in str(info.value) and '"category": "hardware"' in str(info.value)
    assert ctx["ti"].pushed["xai_usage"]["total_tokens"] > 0
    assert len(ctx["ti"].pushed["xai_usage_ledger"]) == 1
    assert any("xAI usage: model=grok-4.3" in line for line in logged(capfd))


def test_json_schema_dict_and_json_object(xai_server: Any) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert isinstance(op(prompt="x", response_format=schema).execute(make_context())["n"], int)
    assert isinstance(op(prompt="x", response_format="json_object").execute(make_context()), dict)
    assert [p.body["response_format"]["type"] for p in posts(xai_server)] == ["json_schema", "json_object"]


def test_streaming_logs_lines_and_returns_same_result(
    xai_server: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    xai_server.configure(prompt_cache=False)  # the second call would otherwise be cheaper
    prompt = "line one\nline two\nline three"
    plain_ctx, stream_ctx = make_context(), make_context()
    plain = op(prompt=prompt).execute(plain_ctx)
    capfd.readouterr()
    streamed = op(prompt=prompt, stream=True).execute(stream_ctx)
    assert streamed == plain
    lines = [
        line.split("xAI | ", 1)[1].split(" [airflow")[0].rstrip()
        for line in logged(capfd)
        if "xAI | " in line
    ]
    assert ["xAI | " + line for line in lines] == [
        "xAI | Grok (local) heard: line one",
        "xAI | line two",
        "xAI | line three",
    ]
    keys = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens", "cost_usd")
    assert {k: stream_ctx["ti"].pushed["xai_usage"][k] for k in keys} == {
        k: plain_ctx["ti"].pushed["xai_usage"][k] for k in keys
    }
    assert posts(xai_server)[1].body["stream"] is True


def test_line_logger_buffers_partial_lines() -> None:
    lines: list[str] = []

    class Log:
        def info(self, fmt: str, *args: Any) -> None:
            lines.append(fmt % args)

    logger = LineLogger(Log(), prefix="")
    for piece in ["Hel", "lo\nwor", "ld\n", "tail"]:
        logger.feed(piece)
    assert lines == ["Hello", "world"]
    logger.flush()
    assert lines == ["Hello", "world", "tail"]


def run_trigger(trigger: XAIDeferredCompletionTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return asyncio.run(first())


def test_deferrable_submits_once_polls_and_completes(xai_server: Any) -> None:
    xai_server.configure(deferred_pending_polls=3)
    ti = FakeTI()
    operator = op(prompt="Deferred hello", deferrable=True, poll_interval=0.01, response_format=Ticket)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(make_context(ti))
    trigger = deferred.value.trigger
    assert isinstance(trigger, XAIDeferredCompletionTrigger)
    assert ti.pushed["xai_request_id"] == trigger.request_id
    classpath, kwargs = trigger.serialize()
    rebuilt = XAIDeferredCompletionTrigger(**kwargs)
    assert classpath.endswith("XAIDeferredCompletionTrigger") and rebuilt.serialize() == (classpath, kwargs)
    event = run_trigger(rebuilt)
    assert event["status"] == "success"
    result = operator.execute_complete(make_context(ti), event)
    assert set(result) == {"category", "urgent"}
    assert ti.pushed["xai_usage"]["completion_id"] == event["completion"]["id"]
    assert len(posts(xai_server)) == 1
    polls = [e.status for e in xai_server.journal if "deferred-completion" in e.path]
    assert polls == [202, 202, 202, 200]


def test_deferred_timeout_and_expired_and_error_events(xai_server: Any) -> None:
    xai_server.configure(deferred_pending_polls=1000)
    h_op = op(prompt="x", deferrable=True, poll_interval=0.01)
    with pytest.raises(TaskDeferred) as deferred:
        h_op.execute(make_context())
    trigger = deferred.value.trigger
    import time

    timed_out = run_trigger(
        XAIDeferredCompletionTrigger(trigger.request_id, poll_interval=0.01, end_time=time.time() + 0.1)
    )
    assert timed_out["status"] == "timeout"
    with pytest.raises(XAIDeferredTimeoutError, match=trigger.request_id):
        h_op.execute_complete(make_context(), timed_out)

    expired = run_trigger(XAIDeferredCompletionTrigger("no-such-id", poll_interval=0.01, expired_grace=0.01))
    assert expired["status"] == "expired"
    with pytest.raises(XAIDeferredExpiredError, match="no-such-id"):
        h_op.execute_complete(make_context(), expired)

    xai_server.enqueue(Fault(status=403, message="team blocked"))
    errored = run_trigger(XAIDeferredCompletionTrigger(trigger.request_id, poll_interval=0.01))
    assert errored["status"] == "error" and "team blocked" in errored["message"]
    with pytest.raises(Exception, match="team blocked"):
        h_op.execute_complete(make_context(), errored)
    assert len(posts(xai_server)) == 1


def test_stream_and_deferrable_together_are_refused() -> None:
    with pytest.raises(XAIValidationError, match="stream"):
        op(prompt="x", stream=True, deferrable=True)
