"""ResponseStreamAssembler: a streamed response assembles into what the unstreamed call returns."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

import pytest

from airflow_provider_xai import secrets
from airflow_provider_xai.exceptions import (
    XAIAPIError,
    XAIRateLimitError,
    XAIResponseError,
    XAIServerError,
    XAITruncatedStreamError,
)
from airflow_provider_xai.schemas import Response
from airflow_provider_xai.streams.responses import ResponseStreamAssembler
from tests.unit.response_fixtures import (
    FUNCTION_CALL_RESPONSE,
    ILLUSTRATIVE_STREAM,
    ITEMS_2025,
    ITEMS_2026,
    TIDE_RESPONSE,
    TIDE_TEXT,
)


def assemble(payloads: Iterable[str], assembler: ResponseStreamAssembler | None = None) -> Response:
    assembler = assembler or ResponseStreamAssembler()
    for data in payloads:
        assembler.feed(data)
    return assembler.response()


def same_answer(streamed: Response, direct: Response) -> None:
    """What callers use is the same whichever way the answer came."""
    assert streamed.id == direct.id and streamed.status == direct.status
    assert streamed.text == direct.text
    assert streamed.citations() == direct.citations()
    assert streamed.function_calls == direct.function_calls
    assert streamed.tool_calls == direct.tool_calls
    assert streamed.reasoning_summary == direct.reasoning_summary
    assert streamed.usage == direct.usage
    assert streamed.output_as_input() == direct.output_as_input()


def stream_of(body: dict[str, Any], *, pieces: int = 3, snapshot_output: bool = True) -> list[str]:
    """The events an xAI-like server sends for ``body``: created, each item added (empty) with
    its deltas and done, then completed (with the output, or without when ``snapshot_output``
    is false). Sequence numbers are contiguous from 0."""
    events: list[dict[str, Any]] = []
    head = {"id": body["id"], "object": "response", "model": body.get("model"), "status": "in_progress",
            "output": [], "usage": None}  # fmt: skip
    events.append({"type": "response.created", "response": head})
    for index, item in enumerate(body["output"]):
        at = {"output_index": index, "item_id": item.get("id")}
        start = {**item}
        if item["type"] == "message":
            start["content"] = []
        if item["type"] == "function_call":
            start["arguments"] = ""
        events.append({"type": "response.output_item.added", "output_index": index, "item": start})
        if item["type"] == "reasoning":
            for s, part in enumerate(item.get("summary") or []):
                events.append({"type": "response.reasoning_summary_text.delta", **at, "summary_index": s,
                               "delta": part["text"]})  # fmt: skip
        if item["type"] == "function_call":
            args = item["arguments"]
            step = max(1, len(args) // pieces)
            for i in range(0, len(args), step):
                events.append({"type": "response.function_call_arguments.delta", **at, "delta": args[i : i + step]})
            events.append({"type": "response.function_call_arguments.done", **at, "arguments": args})
        if item["type"] == "message":
            for c, part in enumerate(item["content"]):
                events.append({"type": "response.content_part.added", **at, "content_index": c,
                               "part": {"type": part["type"], "text": "", "annotations": []}})  # fmt: skip
                text = part.get("text", "")
                step = max(1, len(text) // pieces)
                for i in range(0, len(text), step):
                    events.append({"type": "response.output_text.delta", **at, "content_index": c,
                                   "delta": text[i : i + step]})  # fmt: skip
                for a, note in enumerate(part.get("annotations", [])):
                    events.append({"type": "response.output_text.annotation.added", **at, "content_index": c,
                                   "annotation_index": a, "annotation": note})  # fmt: skip
                events.append({"type": "response.output_text.done", **at, "content_index": c, "text": text})
                events.append({"type": "response.content_part.done", **at, "content_index": c, "part": part})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    final = body if snapshot_output else {k: v for k, v in body.items() if k != "output"}
    events.append({"type": f"response.{'incomplete' if body['status'] == 'incomplete' else 'completed'}",
                   "response": final})  # fmt: skip
    return [json.dumps({**event, "sequence_number": n}) for n, event in enumerate(events)]


class TestSameAnswerAsUnstreamed:
    def test_the_reference_illustrative_stream(self) -> None:
        """Verbatim from the reference: abridged snapshots (``"output": ["…3 items…"]``, a done
        message with ``content: ["…"]``), so the items are rebuilt from the events."""
        streamed = assemble(ILLUSTRATIVE_STREAM)
        same_answer(streamed, Response.model_validate(TIDE_RESPONSE))
        assert streamed.text == TIDE_TEXT and streamed.text_without_citations == "High tide is at 14:05."
        assert streamed.usage is not None and streamed.usage.cost_in_usd_ticks == 123400000

    @pytest.mark.parametrize("snapshot_output", [True, False])
    def test_a_function_call_turn(self, snapshot_output: bool) -> None:
        direct = Response.model_validate(FUNCTION_CALL_RESPONSE)
        streamed = assemble(stream_of(FUNCTION_CALL_RESPONSE, snapshot_output=snapshot_output))
        same_answer(streamed, direct)
        assert streamed.function_calls[0].arguments == {"text": "buy rope"}
        if snapshot_output:
            assert streamed.model_dump() == direct.model_dump()

    @pytest.mark.parametrize("items", [ITEMS_2025, ITEMS_2026], ids=["2025", "2026"])
    @pytest.mark.parametrize("snapshot_output", [True, False])
    def test_server_side_items_old_new_and_unknown(self, items: list[dict[str, Any]], snapshot_output: bool) -> None:
        body = {**TIDE_RESPONSE, "output": [*items, TIDE_RESPONSE["output"][-1]]}
        same_answer(assemble(stream_of(body, snapshot_output=snapshot_output)), Response.model_validate(body))

    def test_a_dropped_snapshot_item_is_taken_from_the_events(self) -> None:
        payloads = stream_of(TIDE_RESPONSE)
        last = json.loads(payloads[-1])
        last["response"]["output"] = last["response"]["output"][:1]  # one of three
        payloads[-1] = json.dumps(last)
        same_answer(assemble(payloads), Response.model_validate(TIDE_RESPONSE))

    def test_raw_reasoning_and_code_deltas(self) -> None:
        payloads = [
            {"type": "response.created", "response": {"id": "R", "status": "in_progress", "output": []}},
            {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs"}},
            {"type": "response.reasoning_text.delta", "output_index": 0, "content_index": 0, "delta": "Think"},
            {"type": "response.reasoning_text.done", "output_index": 0, "content_index": 0, "text": "Think."},
            {"type": "response.output_item.added", "output_index": 1,
             "item": {"type": "code_interpreter_call", "id": "ci", "status": "in_progress"}},
            {"type": "response.code_interpreter_call_code.delta", "item_id": "ci", "delta": "print("},
            {"type": "response.code_interpreter_call_code.delta", "item_id": "ci", "delta": "1)"},
            {"type": "response.completed", "response": {"id": "R", "status": "completed"}},
        ]  # fmt: skip
        response = assemble(json.dumps(p) for p in payloads)
        assert response.reasoning_summary == "Think."
        assert [s.describe() for s in response.tool_calls] == ["code_interpreter: 'print(1)'"]

    def test_a_streamed_refusal(self) -> None:
        payloads = [
            {"type": "response.created", "response": {"id": "R", "status": "in_progress"}},
            {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "content": []}},
            {"type": "response.content_part.added", "output_index": 0, "content_index": 0,
             "part": {"type": "refusal", "refusal": ""}},
            {"type": "response.refusal.delta", "output_index": 0, "content_index": 0, "delta": "No."},
            {"type": "response.completed", "response": {"id": "R", "status": "completed"}},
        ]  # fmt: skip
        assert assemble(json.dumps(p) for p in payloads).refusal == "No."


class TestTheTerminalEventCarriesContent:
    """The Responses twin of a chat chunk that carries the finish reason and the last words:
    the terminal event (``response.completed``/``.incomplete``) brings content of its own."""

    def test_the_whole_answer_only_in_the_terminal_event(self) -> None:
        created = {"type": "response.created", "response": {"id": "R", "status": "in_progress", "output": []}}
        payloads = [json.dumps(created), json.dumps({"type": "response.completed", "response": TIDE_RESPONSE})]
        streamed = assemble(payloads)
        same_answer(streamed, Response.model_validate(TIDE_RESPONSE))
        assert streamed.text == TIDE_TEXT

    def test_the_last_words_only_in_the_terminal_snapshot(self) -> None:
        """Deltas stop short (``High tide``); the completed snapshot has the whole text: it wins."""
        events = [json.loads(p) for p in stream_of(TIDE_RESPONSE)]
        deltas = [e for e in events if e["type"] == "response.output_text.delta"]
        kept = [e for e in events if e["type"] not in ("response.output_text.done", "response.content_part.done",
                                                         "response.output_item.done") and e not in deltas[1:]]
        assembler = ResponseStreamAssembler()
        streamed = assemble((json.dumps({**e, "sequence_number": n}) for n, e in enumerate(kept)), assembler)
        assert assembler.text == deltas[0]["delta"] != TIDE_TEXT  # what was streamed
        same_answer(streamed, Response.model_validate(TIDE_RESPONSE))  # what was answered

    def test_deltas_then_at_once_the_terminal_event_without_output(self) -> None:
        """No ``.done`` events, and a terminal snapshot with no output: the deltas are the text."""
        events = [json.loads(p) for p in stream_of(TIDE_RESPONSE, snapshot_output=False)]
        kept = [e for e in events if not e["type"].endswith(".done")]
        streamed = assemble(json.dumps({**e, "sequence_number": n}) for n, e in enumerate(kept))
        assert streamed.text == TIDE_TEXT and streamed.status == "completed"
        assert streamed.usage == Response.model_validate(TIDE_RESPONSE).usage

    def test_an_incomplete_terminal_event_with_its_partial_output(self) -> None:
        cut = {**TIDE_RESPONSE, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
        cut["output"] = [*TIDE_RESPONSE["output"][:-1], {**TIDE_RESPONSE["output"][-1], "status": "incomplete"}]
        created = {"type": "response.created", "response": {"id": "R", "status": "in_progress", "output": []}}
        streamed = assemble([json.dumps(created), json.dumps({"type": "response.incomplete", "response": cut})])
        assert (streamed.status, streamed.incomplete_reason, streamed.text) == ("incomplete", "max_output_tokens",
                                                                                TIDE_TEXT)


class TestEndOfStream:
    def test_done_after_the_terminal_event_or_none(self) -> None:
        direct = Response.model_validate(TIDE_RESPONSE)
        same_answer(assemble([*ILLUSTRATIVE_STREAM, "[DONE]"]), direct)
        same_answer(assemble(ILLUSTRATIVE_STREAM), direct)

    def test_nothing_after_the_terminal_event_is_read(self) -> None:
        assembler = ResponseStreamAssembler()
        for data in ILLUSTRATIVE_STREAM:
            assembler.feed(data)
        assert assembler.finished
        late = '{"type":"response.output_text.delta","sequence_number":99,"delta":"late"}'
        assert assembler.feed(late) is None and assembler.feed("[DONE]") is None
        assert assembler.response().text == TIDE_TEXT

    def test_a_stray_done_does_not_end_the_stream(self) -> None:
        assembler = ResponseStreamAssembler()
        payloads = ILLUSTRATIVE_STREAM[:12]
        for data in [*payloads[:5], "[DONE]", *payloads[5:]]:
            assembler.feed(data)
        assert not assembler.finished and assembler.done
        with pytest.raises(XAITruncatedStreamError, match=r"\[DONE\] came without one"):
            assembler.response()
        for data in ILLUSTRATIVE_STREAM[12:]:
            assembler.feed(data)
        same_answer(assembler.response(), Response.model_validate(TIDE_RESPONSE))

    @pytest.mark.parametrize("cut", [0, 1, 5, 12, 16])
    def test_eof_before_a_terminal_event_is_truncation(self, cut: int) -> None:
        assembler = ResponseStreamAssembler()
        for data in ILLUSTRATIVE_STREAM[:cut]:
            assembler.feed(data)
        with pytest.raises(XAITruncatedStreamError, match=f"after {cut} events"):
            assembler.response()

    def test_what_arrived_before_truncation_is_still_readable(self) -> None:
        assembler = ResponseStreamAssembler()
        for data in ILLUSTRATIVE_STREAM[:12]:
            assembler.feed(data)
        assert assembler.text == TIDE_TEXT
        partial = assembler.snapshot()
        assert partial is not None and partial.status == "in_progress" and partial.usage is None
        assert [type(i).__name__ for i in partial.output] == ["ReasoningItem", "WebSearchCallItem", "MessageItem"]
        assert ResponseStreamAssembler().snapshot() is None

    def test_incomplete_is_an_answer_not_an_error(self) -> None:
        body = {**TIDE_RESPONSE, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
        response = assemble(stream_of(body))
        assert (response.status, response.incomplete_reason, response.finish_reason) == (
            "incomplete", "max_output_tokens", "length"
        )
        assert response.usage == Response.model_validate(TIDE_RESPONSE).usage


class TestSequence:
    def test_a_gap_is_an_error(self) -> None:
        payloads = [*ILLUSTRATIVE_STREAM[:7], *ILLUSTRATIVE_STREAM[8:]]
        with pytest.raises(XAIResponseError, match=r"skipped 1 event.*sequence_number 8 after 6"):
            assemble(payloads)

    def test_a_repeat_is_an_error(self) -> None:
        payloads = [*ILLUSTRATIVE_STREAM[:7], ILLUSTRATIVE_STREAM[6], *ILLUSTRATIVE_STREAM[7:]]
        with pytest.raises(XAIResponseError, match=r"repeated.*sequence_number 6 after 6"):
            assemble(payloads)

    def test_events_without_numbers_are_taken_as_they_come(self) -> None:
        def unnumbered(data: str) -> str:
            event = json.loads(data)
            event.pop("sequence_number")
            return json.dumps(event)

        same_answer(assemble(map(unnumbered, ILLUSTRATIVE_STREAM)), Response.model_validate(TIDE_RESPONSE))


class TestErrors:
    def test_an_error_event_is_the_typed_error(self) -> None:
        secrets.register("xai-SECRET-KEY")  # as reading the connection does
        assembler = ResponseStreamAssembler()
        assembler.feed(ILLUSTRATIVE_STREAM[0])
        event = {"type": "error", "sequence_number": 1, "code": "internal_error",
                 "message": "Upstream failed for key xai-SECRET-KEY", "param": None}  # fmt: skip
        with pytest.raises(XAIServerError) as info:
            assembler.feed(json.dumps(event))
        assert info.value.code == "internal_error" and "xai-SECRET-KEY" not in str(info.value)
        assert "Upstream failed" in (info.value.xai_message or "")

    def test_the_nested_error_event_shape_with_a_status(self) -> None:
        event = {"type": "error", "status": 429, "error": {"code": "rate_limit_exceeded", "message": "Slow down"}}
        with pytest.raises(XAIRateLimitError, match="Slow down"):
            ResponseStreamAssembler().feed(json.dumps(event))

    def test_an_error_body_without_a_type(self) -> None:
        with pytest.raises(XAIAPIError, match="Service unavailable"):
            ResponseStreamAssembler().feed('{"code": "Unavailable", "error": "Service unavailable", "status": 503}')

    def test_a_failed_response_raises_and_keeps_its_usage(self) -> None:
        assembler = ResponseStreamAssembler()
        payloads = stream_of(TIDE_RESPONSE)
        failed = {"type": "response.failed", "sequence_number": 5, "response": {
            "id": "R", "status": "failed", "error": {"code": "server_error", "message": "Model crashed"},
            "usage": {"input_tokens": 900, "output_tokens": 3, "total_tokens": 903,
                      "cost_in_usd_ticks": 11}}}  # fmt: skip
        for data in payloads[:5]:
            assembler.feed(data)
        with pytest.raises(XAIAPIError, match="Model crashed") as info:
            assembler.feed(json.dumps(failed))
        assert info.value.code == "server_error"
        assert assembler.finished
        snapshot = assembler.snapshot()
        assert snapshot is not None and snapshot.status == "failed"
        assert snapshot.usage is not None and snapshot.usage.cost_in_usd_ticks == 11  # billed: record it

    @pytest.mark.parametrize("data", ["{not json", '{"sequence_number": 0}', "[1, 2]"])
    def test_malformed_payloads(self, data: str) -> None:
        with pytest.raises(XAIResponseError, match="Malformed stream event"):
            ResponseStreamAssembler().feed(data)

    def test_unknown_events_and_items_pass_through(self) -> None:
        payloads = stream_of({**TIDE_RESPONSE, "output": [*ITEMS_2026[-2:], *TIDE_RESPONSE["output"]]})
        novel = json.loads(payloads[2])
        extra = {"type": "response.hologram.rendered", "sequence_number": novel["sequence_number"], "depth": 3}
        shifted = [json.loads(p) for p in payloads[2:]]
        for event in shifted:
            event["sequence_number"] += 1
        assembler = ResponseStreamAssembler()
        events = [assembler.feed(p) for p in [*payloads[:2], json.dumps(extra), *map(json.dumps, shifted)]]
        assert events[2] is not None and events[2].model_extra == {"depth": 3}
        assert [type(i).__name__ for i in assembler.response().output][:2] == ["ServerToolCallItem", "UnknownItem"]


class TestForLogs:
    def test_text_deltas_and_tool_steps(self) -> None:
        assembler = ResponseStreamAssembler()
        deltas, steps = [], []
        for data in ILLUSTRATIVE_STREAM:
            event = assembler.feed(data)
            if event is not None and event.text_delta is not None:
                deltas.append(event.text_delta)
            if line := assembler.describe(event):
                steps.append(line)
        assert "".join(deltas) == assembler.text == TIDE_TEXT
        assert steps == ["web_search: searching", "web_search: 'tide tables Brest'"]

    def test_code_mcp_and_function_steps(self) -> None:
        mcp_item = copy.deepcopy(ITEMS_2026[3])
        payloads = [
            {"type": "response.created", "response": {"id": "R", "status": "in_progress"}},
            {"type": "response.output_item.added", "output_index": 0,
             "item": {"type": "code_interpreter_call", "id": "ci", "status": "in_progress"}},
            {"type": "response.code_interpreter_call.in_progress", "output_index": 0, "item_id": "ci"},
            {"type": "response.code_interpreter_call.interpreting", "output_index": 0, "item_id": "ci"},
            {"type": "response.output_item.added", "output_index": 1, "item": {**mcp_item, "status": "in_progress"}},
            {"type": "response.mcp_call.executing", "output_index": 1, "item_id": mcp_item["id"]},
            {"type": "response.mcp_call.failed", "output_index": 1, "item_id": mcp_item["id"]},
            {"type": "response.x_search_call.searching", "output_index": 7},
            {"type": "response.output_item.done", "output_index": 2, "item": FUNCTION_CALL_RESPONSE["output"][1]},
        ]  # fmt: skip
        assembler = ResponseStreamAssembler()
        lines = [assembler.describe(assembler.feed(json.dumps(p))) for p in payloads]
        assert [line for line in lines if line] == [
            "code_interpreter: running",
            "mcp:silo.get_rows: running",
            "mcp:silo.get_rows: failed",
            "x_search: searching",
            "function_call: save_note",
        ]
