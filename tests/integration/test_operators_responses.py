"""The chat and vision operators on the Responses API, against the local xAI server: how the
endpoint is chosen, what is refused at parse time, what reaches XCom, conversations across
tasks, streaming into the log, structured output and images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from airflow_provider_xai import tools
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.operators.vision import XAIVisionOperator
from tests.helpers.context import FakeTI, make_context
from tests.integration.test_chat_operator import logged

MODEL = "grok-4-1-fast-reasoning"
PNG = (Path(__file__).resolve().parents[2] / "example_dags" / "sample_images" / "bar_chart.png").read_bytes()


def op(**kwargs: Any) -> XAIChatOperator:
    kwargs.setdefault("task_id", "research")
    kwargs.setdefault("model", MODEL)
    return XAIChatOperator(**kwargs)


def response_posts(server: Any) -> list[Any]:
    return server.requests("/responses", method="POST")


def test_api_auto_picks_responses_unless_the_task_asks_for_chat_only_things() -> None:
    assert op(prompt="x").api == "responses"
    assert op(prompt="x", tools=[tools.web_search()]).api == "responses"
    assert op(prompt="x", store=False).api == "responses"
    assert op(prompt="x", api="responses").api == "responses"
    assert op(prompt="x", seed=7).api == "chat" and op(prompt="x", stop=["\n"]).api == "chat"
    assert op(prompt="x", deferrable=True).api == "chat"  # xAI's deferred completions
    assert op(prompt="x", request_kwargs={"n": 2}).api == "chat"
    assert op(prompt="x", api="chat").api == "chat"


def test_a_templated_chat_only_field_is_seen_once_rendered(xai_server: Any) -> None:
    task = op(prompt="x", request_kwargs="{{ params.extra }}")  # a template: unknown at parse
    assert task.api == "responses"
    task.request_kwargs = {"n": 1}  # what it rendered to
    task.execute(make_context())
    assert xai_server.requests("/chat/completions") and not response_posts(xai_server)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"api": "chat", "tools": [tools.web_search()]}, "tools"),
        ({"api": "graphql"}, "api"),
        ({"tools": [tools.web_search()], "deferrable": True, "store": False}, "store"),
        ({"tools": [tools.web_search()], "seed": 3}, "seed"),
        ({"previous_response_id": "r1", "system_prompt": "Be brief"}, "system_prompt"),
        ({"api": "responses", "stop": ["\n"]}, "stop"),
        ({"tools": [{"type": "web_search", "allowed_domains": ["a.com"], "excluded_domains": ["b.com"]}]}, "tools[0]"),
        ({"tools": [tools.x_search()], "max_turns": 0}, "max_turns"),
    ],
)
def test_refused_at_parse_time(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        op(prompt="x", **kwargs)
    assert info.value.field.startswith(field)


def test_search_task_returns_text_and_pushes_id_citations_and_usage(xai_server: Any) -> None:
    ti = FakeTI()
    answer = op(prompt="Tides in Brest", tools=[tools.web_search(), tools.x_search()]).execute(make_context(ti))
    assert isinstance(answer, str) and answer.startswith("Grok (local) heard")
    assert ti.pushed["xai_response_id"]
    citations = ti.pushed["xai_citations"]
    assert citations and all(set(c) == {"url", "title"} for c in citations)
    usage = ti.pushed["xai_usage"]
    assert usage["num_server_side_tools_used"] >= 2 and usage["cost_source"] == "xai"
    assert usage["completion_id"] == ti.pushed["xai_response_id"]


def test_conversation_across_two_tasks_sends_only_the_new_input(xai_server: Any) -> None:
    first = FakeTI(task_id="research")
    op(prompt="Research solar sails", tools=[tools.web_search()]).execute(make_context(first))
    follow = op(
        task_id="summary",
        prompt="Summarise that in one line",
        previous_response_id=first.pushed["xai_response_id"],
    )
    assert follow.api == "responses"
    follow.execute(make_context(FakeTI(task_id="summary")))
    body = response_posts(xai_server)[-1].body
    assert body["previous_response_id"] == first.pushed["xai_response_id"]
    assert body["input"] == [{"role": "user", "content": "Summarise that in one line"}]
    assert "instructions" not in body


def test_store_false_leaves_nothing_to_continue(xai_server: Any) -> None:
    ti = FakeTI()
    op(prompt="ephemeral", store=False).execute(make_context(ti))
    assert ti.pushed["xai_response_id"] is None
    downstream = op(task_id="next", prompt="and then?", previous_response_id="None")
    with pytest.raises(XAIValidationError, match="store=False"):
        downstream.execute(make_context())
    assert len(response_posts(xai_server)) == 1


def test_streaming_logs_lines_tool_steps_and_citations(xai_server: Any, capfd: pytest.CaptureFixture[str]) -> None:
    task = op(prompt="Tides in Brest", tools=[tools.web_search()], stream=True)
    capfd.readouterr()
    answer = task.execute(make_context())
    lines = ["xAI | " + line.split("xAI | ", 1)[1].split(" [airflow")[0].rstrip() for line in logged(capfd)
             if "xAI | " in line]
    assert any("web_search" in line for line in lines), lines
    assert any(line.startswith("xAI | [1] http") for line in lines), lines
    assert answer.split("\n")[0] in "\n".join(lines)


class Summary(BaseModel):
    headline: str
    points: list[str]


def test_structured_output_on_responses(xai_server: Any) -> None:
    result = op(prompt="Summarise", response_format=Summary, store=True).execute(make_context())
    assert set(result) == {"headline", "points"}
    assert response_posts(xai_server)[0].body["text"]["format"]["type"] == "json_schema"


def test_function_calls_land_in_xcom_for_a_downstream_task(xai_server: Any) -> None:
    save = tools.function("save_note", {"type": "object", "properties": {"text": {"type": "string"}}})
    ti = FakeTI()
    op(prompt="Save a note", tools=[save], request_kwargs={"tool_choice": "required"}).execute(make_context(ti))
    (call,) = ti.pushed["xai_function_calls"]
    assert call["name"] == "save_note" and isinstance(call["arguments"], dict) and call["call_id"]
    # A downstream task answers it: a function_call_output item continuing the conversation.
    answer = op(
        task_id="answer",
        messages=[{"type": "function_call_output", "call_id": call["call_id"], "output": "saved"}],
        previous_response_id=ti.pushed["xai_response_id"],
        tools=[save],
    ).execute(make_context())
    assert isinstance(answer, str) and answer
    sent = response_posts(xai_server)[-1].body
    assert sent["input"] == [{"type": "function_call_output", "call_id": call["call_id"], "output": "saved"}]


def test_vision_operator_sends_images_as_input_image(xai_server: Any) -> None:
    ti = FakeTI()
    task = XAIVisionOperator(
        task_id="look", prompt="What is in the image?", images=PNG, model=MODEL, api="responses", detail="low"
    )
    assert isinstance(task.execute(make_context(ti)), str)
    content = response_posts(xai_server)[0].body["input"][-1]["content"]
    parts = {part["type"]: part for part in content}
    assert set(parts) == {"input_text", "input_image"} and len(content) == 2
    assert parts["input_text"]["text"] == "What is in the image?"
    assert parts["input_image"]["image_url"].startswith("data:image/png;base64,")
    assert parts["input_image"]["detail"] == "low"
    assert ti.pushed["xai_usage"]["prompt_tokens"] > 256  # the image is billed as input (no separate count)


def test_a_stream_that_fails_after_billing_still_records_its_usage(xai_server: Any) -> None:
    from airflow_provider_xai.exceptions import XAIError
    from airflow_provider_xai.testing import Fault

    xai_server.enqueue(Fault(fail_stream=True, path="/v1/responses"))
    ti = FakeTI()
    with pytest.raises(XAIError) as info:
        op(prompt="Tides in Brest", tools=[tools.web_search()], stream=True).execute(make_context(ti))
    assert info.value.billed is not None
    usage = ti.pushed["xai_usage"]
    assert usage["completion_id"] == info.value.billed.id and usage["total_tokens"] > 0


def test_task_xai_decorator_runs_on_the_responses_api(xai_server: Any) -> None:
    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_xai.decorators.xai import xai_task

    @xai_task(tools=[tools.web_search()], model=MODEL)
    def ask(topic: str) -> str:
        return f"Latest news about {topic}"

    with DAG("decorated", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        ask("solar sails")
    task = dag.get_task("ask")
    assert task.api == "responses" and "tools" in task.template_fields
    ti = FakeTI(task_id="ask")
    answer = task.execute(make_context(ti))
    assert answer.startswith("Grok (local) heard: Latest news about solar sails")
    assert ti.pushed["xai_citations"] and ti.pushed["xai_usage"]["num_server_side_tools_used"] == 1


# --- XAIResponsesOperator: the Responses API's own operator ----------------------------------------
def responses_op(**kwargs: Any) -> Any:
    from airflow_provider_xai.operators.responses import XAIResponsesOperator

    kwargs.setdefault("task_id", "ask")
    kwargs.setdefault("model", MODEL)
    return XAIResponsesOperator(**kwargs)


def test_the_responses_operator_sends_one_responses_request(xai_server: Any) -> None:
    ti = FakeTI()
    answer = responses_op(prompt="Tides in Brest", system_prompt="Be brief", tools=[tools.web_search()],
                          max_tokens=200).execute(make_context(ti))  # fmt: skip
    (post,) = response_posts(xai_server)
    assert post.body["instructions"] == "Be brief" and post.body["max_output_tokens"] == 200
    assert post.body["input"] == [{"role": "user", "content": "Tides in Brest"}]
    assert isinstance(answer, str) and ti.pushed["xai_response_id"] and ti.pushed["xai_citations"]
    assert xai_server.requests("/chat/completions") == []


def test_the_responses_operator_validates_structure_and_streams(xai_server: Any) -> None:
    ti = FakeTI()
    value = responses_op(prompt="Summarise solar sails", response_format=Summary, stream=True).execute(make_context(ti))
    assert set(value) == {"headline", "points"} and ti.pushed["xai_usage"]["kind"] == "responses"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"previous_response_id": "r1", "system_prompt": "Be brief"}, "system_prompt"),
    ({"max_turns": 0}, "max_turns"),
    ({"store": "yes"}, "store"),
    ({"prompt": None}, "prompt"),
])  # fmt: skip
def test_the_responses_operator_refuses_at_parse_time(kwargs: dict[str, Any], field: str) -> None:
    kwargs = {"prompt": "x", **kwargs}
    with pytest.raises(XAIValidationError) as info:
        responses_op(**kwargs)
    assert info.value.field == field


def test_usage_records_carry_the_servers_request_id(xai_server: Any) -> None:
    """``request_id`` in ``xai_usage`` is xAI's id of the request (its ``x-request-id``)."""
    for task in (op(prompt="chat"), responses_op(prompt="responses"), op(prompt="stream", stream=True)):
        ti = FakeTI()
        task.execute(make_context(ti))
        request_id = ti.pushed["xai_usage"]["request_id"]
        assert request_id and request_id == xai_server.journal[-1].request_id
