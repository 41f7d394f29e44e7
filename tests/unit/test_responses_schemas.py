"""Responses API schemas: the strict request and the tolerant answer with its conveniences."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from airflow_provider_xai.exceptions import XAIResponseError, XAIValidationError
from airflow_provider_xai.schemas import (
    CHAT_ONLY_FIELDS,
    Citation,
    CodeInterpreterCallItem,
    CustomToolCallItem,
    DeletedResponse,
    FileSearchCallItem,
    FunctionCall,
    FunctionCallItem,
    McpCallItem,
    MessageItem,
    ReasoningItem,
    Response,
    ResponseRequest,
    ResponseStreamEvent,
    ServerToolCallItem,
    ToolCallItem,
    UnknownItem,
    WebSearchCallItem,
    XSearchCallItem,
    build_response_request,
    parse_response,
    strip_inline_citations,
)
from airflow_provider_xai.tools import mcp, resolve_tools, web_search
from tests.unit.response_fixtures import (
    EXAMPLE_REQUEST,
    FUNCTION_CALL_RESPONSE,
    ITEMS_2025,
    ITEMS_2026,
    TIDE_RESPONSE,
    TIDE_TEXT,
)


def refused(field: str, *words: str, **kwargs: Any) -> XAIValidationError:
    """Build a request from ``kwargs`` (model and input defaulted) and expect it refused."""
    data = {"model": "grok-4.3", "input": "Hi", **kwargs}
    with pytest.raises(XAIValidationError) as info:
        build_response_request(data).to_body()
    assert info.value.field == field, info.value
    for word in words:
        assert word in info.value.problem, info.value.problem
    return info.value


class TestRequest:
    def test_the_reference_example_is_sent_as_given(self) -> None:
        request = build_response_request(copy.deepcopy(EXAMPLE_REQUEST))
        assert request.to_body() == EXAMPLE_REQUEST

    def test_keyword_arguments_on_top_of_a_mapping_or_a_request(self) -> None:
        request = build_response_request({"model": "grok-4.3"}, input="Hi", store=False)
        assert request.to_body() == {"model": "grok-4.3", "input": "Hi", "store": False}
        again = build_response_request(request, max_output_tokens=50)
        assert again.to_body() == {"model": "grok-4.3", "input": "Hi", "store": False, "max_output_tokens": 50}
        assert build_response_request(request) is request

    def test_model_and_input_are_required(self) -> None:
        with pytest.raises(XAIValidationError) as info:
            build_response_request(input="Hi")
        assert info.value.field == "model"
        with pytest.raises(XAIValidationError) as info:
            build_response_request(model="grok-4.3")
        assert info.value.field == "input"

    def test_not_a_mapping(self) -> None:
        with pytest.raises(XAIValidationError, match="ResponseRequest or a mapping"):
            build_response_request(["model"])  # type: ignore[arg-type]

    @pytest.mark.parametrize("name", sorted(CHAT_ONLY_FIELDS))
    def test_chat_only_fields_are_refused_with_what_to_use(self, name: str) -> None:
        err = refused(name, "Chat Completions field", **{name: 1})
        assert CHAT_ONLY_FIELDS[name] in err.problem

    def test_the_hints_name_the_responses_fields(self) -> None:
        assert "max_output_tokens" in refused("max_tokens", max_tokens=10).problem
        assert "input" in refused("messages", messages=[{"role": "user", "content": "Hi"}]).problem
        assert "text=" in refused("response_format", response_format={"type": "json_object"}).problem
        assert "reasoning=" in refused("reasoning_effort", reasoning_effort="low").problem
        assert "410" in refused("search_parameters", search_parameters={"mode": "on"}).problem

    def test_chat_only_fields_set_on_a_model_are_refused_too(self) -> None:
        request = ResponseRequest(model="grok-4.3", input="Hi", n=2)  # type: ignore[call-arg]
        with pytest.raises(XAIValidationError) as info:
            request.to_body()
        assert info.value.field == "n"

    def test_instructions_with_previous_response_id(self) -> None:
        refused("instructions", "previous_response_id", instructions="Be brief", previous_response_id="r1")
        assert build_response_request(model="m", input="Hi", instructions="Be brief").instructions == "Be brief"
        assert build_response_request(model="m", input="Hi", previous_response_id="r1").to_body()

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("max_output_tokens", 0),
            ("temperature", 2.5),
            ("temperature", -0.1),
            ("top_p", 0),
            ("top_p", 1.5),
            ("max_turns", 0),
            ("top_logprobs", 9),
            ("previous_response_id", ""),
            ("store", "maybe"),
            ("include", "reasoning.encrypted_content"),
        ],
    )
    def test_bounds_and_types(self, field: str, value: Any) -> None:
        refused(field, **{field: value, "logprobs": True})

    def test_top_logprobs_needs_logprobs(self) -> None:
        refused("top_logprobs", "logprobs", top_logprobs=3)
        request = build_response_request(model="m", input="Hi", logprobs=True, top_logprobs=3)
        assert request.to_body()["top_logprobs"] == 3

    def test_unknown_fields_pass_through(self) -> None:
        body = build_response_request(model="m", input="Hi", service_tier="priority", metadata={"k": "v"}).to_body()
        assert body["service_tier"] == "priority" and body["metadata"] == {"k": "v"}

    def test_values_json_cannot_carry_are_refused_naming_the_field(self) -> None:
        refused("metadata.ratio", "not a JSON number", metadata={"ratio": float("nan")})
        refused("tools[0].parameters.properties.x.default", "bytes", tools=[
            {"type": "function", "name": "f",
             "parameters": {"type": "object", "properties": {"x": {"default": b"raw"}}}}])  # fmt: skip


class TestInput:
    @pytest.mark.parametrize(
        ("item", "field"),
        [
            ({"role": "robot", "content": "x"}, "input[0].role"),
            ({"role": "user", "content": []}, "input[0].content"),
            ({"content": "x"}, "input[0].role"),
            ({"role": "user", "content": [{"type": "input_image", "image_url": ""}]}, "input[0].content[0].image_url"),
            ({"role": "user", "content": [{"type": "input_image", "image_url": "u", "detail": "max"}]},
             "input[0].content[0].detail"),
            ({"role": "user", "content": [{"type": "input_file"}]}, "input[0].content[0]"),
            ({"role": "user", "content": [{"type": "input_file", "file_id": "f", "file_url": "u"}]},
             "input[0].content[0]"),
            ({"role": "user", "content": [{"type": "input_file", "file_data": "QUJD"}]}, "input[0].content[0]"),
            ({"role": "user", "content": [{"type": "input_text"}]}, "input[0].content[0].text"),
            ({"type": "function_call_output", "call_id": "", "output": "x"}, "input[0].call_id"),
            ({"type": "function_call_output", "call_id": "c"}, "input[0].output"),
            ({"type": ""}, "input[0].type"),
        ],
    )
    def test_bad_items_are_named(self, item: dict[str, Any], field: str) -> None:
        refused(field, input=[item])

    @pytest.mark.parametrize(
        ("part", "hint"),
        [
            ({"type": "text", "text": "Hi"}, "input_text"),
            ({"type": "image_url", "image_url": {"url": "https://x/y.png"}}, "input_image"),
            ({"type": "file", "file": {"file_id": "f"}}, "input_file"),
        ],
    )
    def test_chat_style_parts_get_the_responses_shape(self, part: dict[str, Any], hint: str) -> None:
        refused("input[0].content[1].type", "Chat Completions part", hint,
                input=[{"role": "user", "content": [{"type": "input_text", "text": "See"}, part]}])  # fmt: skip

    def test_a_chat_tool_message_points_at_function_call_output(self) -> None:
        refused("input[1].role", "function_call_output",
                input=[{"role": "user", "content": "Hi"},
                       {"role": "tool", "tool_call_id": "c", "content": "x"}])  # fmt: skip

    def test_user_parts_and_files(self) -> None:
        parts = [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"},
            {"type": "input_file", "file_data": "JVBERi0=", "filename": "a.pdf", "mime_type": "application/pdf"},
            {"type": "input_file", "file_url": "https://example.com/a.pdf"},
        ]
        items = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": parts, "name": "ana"}]
        assert build_response_request(model="m", input=items).to_body()["input"] == items

    def test_replayed_output_and_function_results_go_as_given(self) -> None:
        previous = Response.model_validate(FUNCTION_CALL_RESPONSE)
        replay = previous.output_as_input()
        assert replay == FUNCTION_CALL_RESPONSE["output"]
        answer = previous.function_calls[0].output({"saved": True})
        items = [{"role": "user", "content": "Save 'buy rope'"}, *replay, answer]
        body = build_response_request(model="grok-4.3", input=items, store=False).to_body()
        assert body["input"] == items
        assert answer == {"type": "function_call_output", "call_id": "call_51d0", "output": '{"saved": true}'}

    def test_assistant_history_as_an_output_message(self) -> None:
        history = {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                   "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}  # fmt: skip
        assert build_response_request(model="m", input=[history]).to_body()["input"] == [history]


class TestTextToolsAndChoice:
    def test_flat_json_schema_format(self) -> None:
        fmt = {"type": "json_schema", "name": "tide", "schema": {"type": "object"}, "strict": True}
        body = build_response_request(model="m", input="Hi", text={"format": fmt}).to_body()
        assert body["text"] == {"format": fmt}

    def test_the_chat_wrapper_is_refused(self) -> None:
        wrapped = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object"}}}
        refused("text.format.json_schema", "flat", text={"format": wrapped})

    def test_a_json_schema_format_needs_its_schema(self) -> None:
        refused("text.format", "schema", text={"format": {"type": "json_schema"}})
        refused("text.format", "schema", text={"format": {"type": "text", "schema": {}}})
        refused("text.format.type", text={"format": {"type": "xml"}})

    def test_reasoning_effort_is_a_known_word(self) -> None:
        assert build_response_request(model="m", input="Hi", reasoning={"effort": "high"}).to_body()["reasoning"] == {
            "effort": "high"
        }
        refused("reasoning.effort", reasoning={"effort": "extreme"})
        refused("reasoning.efort", reasoning={"efort": "low"})

    def test_bad_tools_are_named(self) -> None:
        refused("tools[1].allowed_domains", "at most 5",
                tools=[{"type": "code_interpreter"},
                       {"type": "web_search", "allowed_domains": list("abcdef")}])  # fmt: skip

    def test_constructed_tools_are_accepted(self) -> None:
        body = build_response_request(model="m", input="Hi", tools=[web_search(allowed_domains=["x.ai"])]).to_body()
        assert body["tools"] == [{"type": "web_search", "allowed_domains": ["x.ai"]}]

    def test_an_unresolved_mcp_secret_is_never_sent(self) -> None:
        tools = [mcp("https://mcp.example.com/sse", "silo", authorization_conn_id="silo_mcp")]
        request = build_response_request(model="m", input="Hi", tools=tools)
        with pytest.raises(XAIValidationError) as info:
            request.to_body()
        assert info.value.field == "tools[0].authorization_conn_id" and "resolve_tools" in info.value.problem
        resolved = build_response_request(model="m", input="Hi", tools=resolve_tools(tools, lambda _: "Bearer s3"))
        assert resolved.to_body()["tools"][0]["authorization"] == "Bearer s3"

    def test_tool_choice(self) -> None:
        tools = EXAMPLE_REQUEST["tools"]
        for choice in ("auto", "none", "required", {"type": "function", "name": "save_note"},
                       {"type": "function", "function": {"name": "save_note"}}):  # fmt: skip
            assert build_response_request(EXAMPLE_REQUEST, tool_choice=choice).to_body()["tool_choice"] == choice
        refused("tool_choice", tool_choice="any")
        refused("tool_choice.name", "not one of", tools=tools, tool_choice={"type": "function", "name": "nope"})
        refused("tool_choice.name", tool_choice={"type": "function"})
        refused("tool_choice.type", "server-side", tool_choice={"type": "web_search"})


class TestResponse:
    def test_a_turn_that_stops_on_a_function_call(self) -> None:
        response = Response.model_validate(FUNCTION_CALL_RESPONSE)
        assert (response.status, response.model, response.text, response.finish_reason) == (
            "completed", "grok-4.3", "", "tool_calls"
        )
        call_item_id = "fc_0b6d2c1e-5a7f-4c1b-9e0a-2f3d4c5b6a70_0"
        assert response.function_calls == [FunctionCall("save_note", "call_51d0", {"text": "buy rope"}, call_item_id)]
        assert response.reasoning_summary == "User wants it saved."
        assert response.tool_calls == [] and response.citations() == []
        assert isinstance(response.output[0], ReasoningItem) and isinstance(response.output[1], FunctionCallItem)
        assert response.model_extra and response.model_extra["tool_choice"] == "auto"  # echo kept

    def test_usage_counts_reasoning_inside_output_and_keeps_the_total(self) -> None:
        usage = Response.model_validate(FUNCTION_CALL_RESPONSE).usage
        assert usage is not None
        counts = (usage.input_tokens, usage.cached_tokens, usage.output_tokens, usage.reasoning_tokens)
        assert counts == (310, 256, 64, 40)
        assert usage.total_tokens == 374 and usage.cost_in_usd_ticks == 5470000
        odd = usage.model_copy(update={"total_tokens": 999})
        assert odd.total_tokens == 999  # as sent, never recomputed

    def test_null_counts_read_as_zero(self) -> None:
        body = {"id": "r", "usage": {"input_tokens": 5, "output_tokens": None, "num_sources_used": None,
                                     "output_tokens_details": {"reasoning_tokens": None}}}  # fmt: skip
        usage = Response.model_validate(body).usage
        assert usage is not None and (usage.output_tokens, usage.reasoning_tokens, usage.num_sources_used) == (0, 0, 0)

    @pytest.mark.parametrize("arguments", ['{"text": "buy', "[1, 2]", '"text"'])
    def test_malformed_arguments_are_a_typed_error_naming_the_call(self, arguments: str) -> None:
        body = copy.deepcopy(FUNCTION_CALL_RESPONSE)
        body["output"][1]["arguments"] = arguments
        response = Response.model_validate(body)  # reading it never fails
        with pytest.raises(XAIResponseError, match=r"'save_note' \(call_id 'call_51d0'\)"):
            response.function_calls  # noqa: B018

    def test_empty_arguments_are_no_arguments(self) -> None:
        body = copy.deepcopy(FUNCTION_CALL_RESPONSE)
        body["output"][1]["arguments"] = ""
        assert Response.model_validate(body).function_calls[0].arguments == {}

    def test_text_citations_and_tool_calls(self) -> None:
        response = Response.model_validate(TIDE_RESPONSE)
        assert response.text == TIDE_TEXT and response.finish_reason == "stop"
        assert response.citations() == [Citation("https://tides.example/brest", "1")]
        assert response.text_without_citations == "High tide is at 14:05."
        (step,) = response.tool_calls
        assert (step.type, step.tool, step.query, step.status) == (
            "web_search_call", "web_search", "tide tables Brest", "completed"
        )
        assert step.describe() == "web_search: 'tide tables Brest'"

    def test_citations_once_each_in_order_and_without_positions(self) -> None:
        notes = [{"type": "url_citation", "url": "https://b"}, {"type": "url_citation", "url": "https://a"},
                 {"type": "url_citation", "url": "https://b", "title": "3"},
                 {"type": "file_citation", "file_id": "f"}]  # fmt: skip
        body = {"id": "r", "output": [{"type": "message", "content": [
            {"type": "output_text", "text": "x", "annotations": notes}]}]}  # fmt: skip
        assert Response.model_validate(body).citations() == [Citation("https://b", None), Citation("https://a", None)]

    def test_2025_item_shapes(self) -> None:
        response = Response.model_validate({"id": "r", "output": ITEMS_2025})
        kinds = [type(item) for item in response.output]
        assert kinds == [WebSearchCallItem, XSearchCallItem, CustomToolCallItem, WebSearchCallItem,
                         CodeInterpreterCallItem]  # fmt: skip
        steps = [(s.tool, s.query, s.code) for s in response.tool_calls]
        assert steps == [
            ("web_search", "solar sail news", None),
            ("x_search", "solar sails", None),
            ("x_keyword_search", "#solarsail", None),
            ("web_search", None, None),
            ("code_interpreter", None, "print(2 ** 10)"),
        ]
        assert response.tool_calls[3].describe() == "web_search: completed"
        assert response.function_calls == []  # server-side calls are never yours to run

    def test_2026_item_shapes_and_unknown_types(self) -> None:
        response = Response.model_validate({"id": "r", "output": ITEMS_2026})
        kinds = [type(item) for item in response.output]
        assert kinds == [WebSearchCallItem, CodeInterpreterCallItem, FileSearchCallItem, McpCallItem,
                         ServerToolCallItem, ServerToolCallItem, UnknownItem]  # fmt: skip
        assert all(isinstance(item, ToolCallItem) for item in response.output[:6])
        steps = [s.describe() for s in response.tool_calls]
        assert steps == [
            "web_search: 'https://tides.example/brest'",
            "code_interpreter: 'print(2 ** 10)'",
            "file_search: 'tide; Brest'",
            "mcp:silo.get_rows: '{\"table\":\"tides\"}'",
            "image_generation: completed",
            "hologram: completed",
        ]
        assert response.output[5].model_extra == {"depth": 3}
        assert response.output_as_input() == ITEMS_2026  # every field kept, as sent

    def test_shapes_not_known_never_fail(self) -> None:
        body = {"id": "r", "status": "thinking", "output": [
            "…3 items…", {"type": "function_call", "arguments": 5}, {"no_type": True},
            {"type": "message", "content": "plain text"},
            {"type": "message", "content": [{"type": "output_text", "text": "a", "annotations": None},
                                            {"type": "audio", "data": "…"}, "…"]},
            {"type": "reasoning", "summary": None, "content": [{"type": "reasoning_text", "text": "raw"}]},
        ], "brand_new": {"x": 1}}  # fmt: skip
        response = Response.model_validate(body)
        assert [type(i) for i in response.output] == [UnknownItem, UnknownItem, UnknownItem, MessageItem,
                                                     MessageItem, ReasoningItem]  # fmt: skip
        assert response.output[0].model_extra == {"value": "…3 items…"}
        assert response.output[1].model_extra == {"arguments": 5}  # kept whole, not a FunctionCallItem
        assert response.text == "plain texta" and response.reasoning_summary == "raw"
        assert response.status == "thinking" and response.finish_reason == "thinking"

    def test_refusal(self) -> None:
        body = {"id": "r", "status": "completed",
                "output": [{"type": "message", "content": [{"type": "refusal", "refusal": "I can't."}]}]}  # fmt: skip
        response = Response.model_validate(body)
        assert response.refusal == "I can't." and response.text == ""
        assert Response.model_validate(TIDE_RESPONSE).refusal is None

    def test_incomplete_and_failed(self) -> None:
        incomplete = Response.model_validate(
            {"id": "r", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
        )
        assert (incomplete.incomplete_reason, incomplete.finish_reason) == ("max_output_tokens", "length")
        turns = Response.model_validate(
            {"id": "r", "status": "incomplete", "incomplete_details": {"reason": "turn_limit"}}
        )
        assert turns.finish_reason == "turn_limit"
        failed = Response.model_validate(
            {"id": "r", "status": "failed", "error": {"code": "server_error", "message": "boom"}}
        )
        assert failed.error is not None and (failed.error.code, failed.error.message) == ("server_error", "boom")
        assert Response.model_validate({"id": "r", "error": "plain"}).error.message == "plain"  # type: ignore[union-attr]

    def test_a_2025_body_without_newer_fields_and_from_bytes(self) -> None:
        body = {"id": "r_us-east-1", "object": "response", "created_at": 0, "model": "grok-code-fast-1",
                "status": "completed", "output": [], "usage": None}  # fmt: skip
        response = parse_response(Response, json.dumps(body).encode(), "response")
        assert response.id == "r_us-east-1" and response.completed_at is None and response.created_at == 0
        with pytest.raises(XAIResponseError, match="Malformed response"):
            parse_response(Response, b'{"code": "x", "error": "not a response"}', "response")

    def test_deleted(self) -> None:
        deleted = DeletedResponse.model_validate({"id": "r", "object": "response", "deleted": True})
        assert deleted.deleted and deleted.id == "r"


class TestStreamEventAndCitations:
    def test_events_keep_every_field(self) -> None:
        event = ResponseStreamEvent.model_validate(
            {"type": "response.hologram.rendered", "sequence_number": 4, "depth": 3}
        )
        assert (event.type, event.sequence_number, event.model_extra, event.terminal) == (
            "response.hologram.rendered", 4, {"depth": 3}, False
        )
        delta = ResponseStreamEvent.model_validate({"type": "response.output_text.delta", "delta": "Hi"})
        assert delta.text_delta == "Hi" and event.text_delta is None
        assert ResponseStreamEvent.model_validate({"type": "response.failed"}).terminal

    @pytest.mark.parametrize(
        ("text", "plain"),
        [
            (TIDE_TEXT, "High tide is at 14:05."),
            ("Tides [[1]](https://a.example/x) and winds [[2]](https://b.example/y).", "Tides and winds."),
            ("Both.[[1]](https://a.example)[[2]](https://b.example)", "Both."),
            ("See [[3]](https://en.wikipedia.org/wiki/Brest_(France)) now", "See now"),
            ("A [link](https://x.example) and [[x]] stay", "A [link](https://x.example) and [[x]] stay"),
        ],
    )
    def test_inline_citations_are_removed_when_asked(self, text: str, plain: str) -> None:
        assert strip_inline_citations(text) == plain

    def test_a_url_with_unbalanced_characters_is_removed_by_its_annotation(self) -> None:
        url = "https://odd.example/a)b"
        assert strip_inline_citations(f"Odd.[[1]]({url})", [url]) == "Odd."
