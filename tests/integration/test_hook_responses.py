"""XAIHook's Responses API methods against the local xAI server: every tool type round-trips,
streamed equals non-streamed, conversations continue with only the new input, bad options send
nothing, MCP secrets come from a connection, and usage counts the tool calls."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from airflow_provider_xai import tools
from airflow_provider_xai.exceptions import XAINotFoundError, XAITruncatedStreamError, XAIValidationError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.testing import Fault
from airflow_provider_xai.usage import build_record

MODEL = "grok-4-1-fast-reasoning"
DOCS = {"handbook": [{"file_id": "file_1", "filename": "leave.md", "text": "Staff get 25 vacation days."}]}
MCP_TABLE = {"crm.lookup_customer": {"customer": "ACME", "tier": "gold"}}
MCP_SECRET = "mcp-secret-token-4711"
ALL_TOOLS = [
    ("web_search", tools.web_search(), "Tides in Brest"),
    ("x_search", tools.x_search(from_date="2026-01-01", to_date="2026-12-31"), "solar sail news"),
    ("code_interpreter", tools.code_interpreter(), "7*6"),
    ("file_search", tools.file_search(["handbook"]), "vacation days"),
    ("mcp", tools.mcp("https://crm.example.com/mcp", "crm", authorization_conn_id="crm_mcp"), "customer ACME"),
]


@pytest.fixture
def server(xai_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    xai_server.configure(responses_collections=DOCS, responses_mcp_tools=MCP_TABLE)
    monkeypatch.setenv("AIRFLOW_CONN_CRM_MCP", json.dumps({"conn_type": "generic", "password": MCP_SECRET}))
    return xai_server


def response_posts(server: Any) -> list[Any]:
    return [e for e in server.journal if e.method == "POST" and e.path.endswith("/responses")]


@pytest.mark.parametrize(("kind", "tool", "prompt"), ALL_TOOLS, ids=[t[0] for t in ALL_TOOLS])
def test_each_tool_round_trips_and_streams_the_same(server: Any, kind: str, tool: Any, prompt: str) -> None:
    hook = XAIHook()
    plain = hook.create_response(model=MODEL, input=prompt, tools=[tool])
    steps: list[str] = []
    streamed = hook.stream_response(
        model=MODEL,
        input=prompt,
        tools=[tool],
        on_event=lambda event, assembler: steps.append(line) if (line := assembler.describe(event)) else None,
    )
    assert plain.status == streamed.status == "completed"
    assert [t.type for t in plain.tool_calls] and {t.type for t in plain.tool_calls} == {
        t.type for t in streamed.tool_calls
    }
    assert streamed.text == plain.text and plain.text.startswith("Grok (local) heard")
    assert streamed.citations() == plain.citations()
    assert streamed.usage is not None and plain.usage is not None
    assert streamed.usage.num_server_side_tools_used == plain.usage.num_server_side_tools_used >= 1
    assert any(kind.split("_")[0] in step for step in steps), steps
    record = build_record(plain.usage, plain.model, completion_id=plain.id, prices=hook.get_prices())
    assert record.cost_source == "xai" and record.num_server_side_tools_used >= 1
    if kind == "mcp":  # the secret went to xAI for the MCP server, from the connection
        sent = response_posts(server)[0].body["tools"][0]
        assert sent["authorization"] == MCP_SECRET and "authorization_conn_id" not in sent


def test_web_search_citations_reach_the_result(server: Any) -> None:
    response = XAIHook().create_response(model=MODEL, input="Tides in Brest", tools=[tools.web_search()])
    citations = response.citations()
    assert citations and all(c.url.startswith("http") for c in citations)
    assert "[[1]](" in response.text and "[[1]](" not in response.text_without_citations


def test_two_task_conversation_sends_only_the_new_input(server: Any) -> None:
    hook = XAIHook()
    first = hook.create_response(model=MODEL, input="Remember the word: heliotrope", store=True)
    second = hook.create_response(model=MODEL, input="Which word?", previous_response_id=first.id)
    body = response_posts(server)[-1].body
    assert body["previous_response_id"] == first.id
    assert body["input"] == "Which word?"
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the history is billed as input
    assert second.usage.input_tokens_details is not None
    assert second.usage.input_tokens_details.cached_tokens > 0


def test_get_delete_and_store_false(server: Any) -> None:
    hook = XAIHook()
    stored = hook.create_response(model=MODEL, input="keep me")
    assert hook.get_response(stored.id).text == stored.text
    assert hook.delete_response(stored.id).deleted is True
    with pytest.raises(XAINotFoundError):
        hook.get_response(stored.id)
    ephemeral = hook.create_response(model=MODEL, input="forget me", store=False)
    with pytest.raises(XAINotFoundError):
        hook.get_response(ephemeral.id)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tools": [{"type": "web_search", "allowed_domains": ["a.com"], "excluded_domains": ["b.com"]}]}, "tools[0]"),
        ({"tools": [{"type": "x_search", "from_date": "2026-13-01"}]}, "tools[0].from_date"),
        ({"instructions": "be brief", "previous_response_id": "r1"}, "instructions"),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages"),
        ({"search_parameters": {"mode": "on"}}, "search_parameters"),
    ],
)
def test_bad_options_are_refused_with_zero_requests(server: Any, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        XAIHook().create_response(model=MODEL, input="x", **fields)
    assert info.value.field.startswith(field)
    assert response_posts(server) == []


class Verdict(BaseModel):
    topic: str
    confident: bool


def test_structured_output_through_text_format(server: Any) -> None:
    result = XAIHook().create_response_structured(model=MODEL, input="Classify this", output=Verdict)
    assert set(result.value) == {"topic", "confident"}
    assert response_posts(server)[0].body["text"]["format"]["type"] == "json_schema"


def test_function_call_and_follow_up(server: Any) -> None:
    hook = XAIHook()
    save = tools.function("save_note", {"type": "object", "properties": {"text": {"type": "string"}}})
    asked = hook.create_response(model=MODEL, input="Save a note", tools=[save], tool_choice="required")
    (call,) = asked.function_calls
    assert call.name == "save_note" and isinstance(call.arguments, dict)
    done = hook.create_response(
        model=MODEL, previous_response_id=asked.id, input=[call.output("saved")], tools=[save]
    )
    assert done.text and not done.function_calls


async def test_async_create_and_stream(server: Any) -> None:
    hook = XAIHook()
    plain = await hook.acreate_response(model=MODEL, input="Tides in Brest", tools=[tools.web_search()])
    streamed = await hook.astream_response(model=MODEL, input="Tides in Brest", tools=[tools.web_search()])
    assert streamed.text == plain.text and streamed.citations() == plain.citations()
    assert (await hook.aget_response(plain.id)).id == plain.id
    assert (await hook.adelete_response(plain.id)).deleted
    await hook.aclose()


def test_stream_ends_at_the_terminal_event_with_or_without_done(server: Any) -> None:
    hook = XAIHook()
    server.configure(responses_done_marker=True)
    with_done = list(hook.iter_response_events(model=MODEL, input="hello"))
    server.configure(responses_done_marker=False)
    without = list(hook.iter_response_events(model=MODEL, input="hello"))
    assert with_done[-1].type == without[-1].type == "response.completed"
    assert [e.sequence_number for e in without] == list(range(len(without)))


def test_stream_open_is_retried_and_truncation_is_typed(server: Any) -> None:
    hook = XAIHook(backoff_base=0.001)
    server.enqueue(Fault(status=503, message="busy", path="/v1/responses"))
    assert hook.stream_response(model=MODEL, input="hello").status == "completed"
    server.enqueue(Fault(truncate_stream=True, path="/v1/responses"))
    with pytest.raises(XAITruncatedStreamError):
        hook.stream_response(model=MODEL, input="hello")
