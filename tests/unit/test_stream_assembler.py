"""StreamAssembler: a streamed answer assembles into what the same call returns unstreamed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_xai import secrets
from airflow_provider_xai.exceptions import XAIServerError, XAITruncatedStreamError
from airflow_provider_xai.schemas import ChatCompletion
from airflow_provider_xai.streams.chat import StreamAssembler
from airflow_provider_xai.testing.streaming import stream_events

#: Fields a non-streamed answer has that the assembled one must reproduce.
COMPARED = {"id", "model", "created", "system_fingerprint", "choices", "usage", "citations"}

ID = "5f0c3a8e-2b1d-4c7e-9a61-0d3e8b7f2c45"
HEAD = {"id": ID, "object": "chat.completion.chunk", "created": 1790000000, "model": "grok-3-mini"}
FINGERPRINT = {"system_fingerprint": "fp_2a885414fb"}
USAGE = {
    "prompt_tokens": 288,
    "completion_tokens": 27,
    "total_tokens": 489,
    "prompt_tokens_details": {"text_tokens": 288, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 256},
    "completion_tokens_details": {
        "reasoning_tokens": 174,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
    "num_sources_used": 0,
    "cost_in_usd_ticks": 1287500,
}
TIDE_CALL = {
    "id": "call_40217733",
    "function": {"name": "tide_table", "arguments": '{"port":"Brest","day":"2026-11-02"}'},
    "type": "function",
}


def chunk(choices: list[dict[str, Any]], **top: Any) -> str:
    """One SSE ``data`` payload in xAI's chunk shape."""
    return json.dumps({**HEAD, "choices": choices, **top, **FINGERPRINT})


def assemble(payloads: list[str]) -> ChatCompletion:
    assembler = StreamAssembler()
    for data in payloads:
        assembler.feed(data)
    return assembler.completion()


def answer(choices: list[dict[str, Any]], **top: Any) -> ChatCompletion:
    """The non-streamed ``chat.completion`` body of the same call."""
    body = {**HEAD, "object": "chat.completion", "choices": choices, "usage": USAGE, **top, **FINGERPRINT}
    return ChatCompletion.model_validate(body)


def same_answer(streamed: ChatCompletion, direct: ChatCompletion) -> None:
    assert streamed.model_dump(include=COMPARED) == direct.model_dump(include=COMPARED)


def test_a_whole_tool_call_in_one_chunk_as_xai_streams_it() -> None:
    """xAI's recorded shape (grok-3-mini, 2026; vercel/ai packages/xai/src/__fixtures__/
    xai-tool-call.chunks.txt): reasoning deltas, the whole call in one chunk with its ``index``,
    an empty delta with the finish reason, then ``choices: []`` with the usage. Our own values."""
    stream = [
        chunk([{"index": 0, "delta": {"reasoning_content": "The user", "role": "assistant"}}]),
        chunk([{"index": 0, "delta": {"reasoning_content": " wants Brest's tides."}}]),
        chunk([{"index": 0, "delta": {"tool_calls": [{**TIDE_CALL, "index": 0}]}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        chunk([], usage=USAGE),
        "[DONE]",
    ]
    message = {
        "role": "assistant",
        "content": "",
        "reasoning_content": "The user wants Brest's tides.",
        "tool_calls": [TIDE_CALL],
        "refusal": None,
    }
    streamed = assemble(stream)
    same_answer(streamed, answer([{"index": 0, "message": message, "finish_reason": "tool_calls"}]))
    call = streamed.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name) == ("call_40217733", "tide_table")  # type: ignore[union-attr]


def test_fragmented_parallel_calls_are_merged_by_index() -> None:
    """OpenAI-style fragments: id, type and name in the first one, arguments in pieces, two
    calls interleaved; each call is rebuilt by its ``index``."""
    first = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "tide_table", "arguments": ""}}
    second = {"index": 1, "id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"'}}
    pieces = [[first], [{"index": 0, "function": {"arguments": '{"port":'}}, second]]
    pieces += [[{"index": 1, "function": {"arguments": 'city":"Brest"}'}}]]
    pieces += [[{"index": 0, "function": {"arguments": '"Brest"}'}}]]
    stream = [chunk([{"index": 0, "delta": {"tool_calls": p}}]) for p in pieces]
    stream += [chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]), chunk([], usage=USAGE)]
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "tide_table", "arguments": '{"port":"Brest"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Brest"}'}},
    ]
    message = {"role": "assistant", "content": "", "tool_calls": calls}
    same_answer(assemble(stream), answer([{"index": 0, "message": message, "finish_reason": "tool_calls"}]))


def test_citations_and_logprobs_of_two_choices() -> None:
    """``citations`` ride on the last chunk (top level); ``logprobs.content`` of each choice
    is concatenated across its chunks, as the unstreamed answer lists every token."""

    def token(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": []}

    def piece(index: int, text: str, logprob: float) -> dict[str, Any]:
        return {"index": index, "delta": {"content": text}, "logprobs": {"content": [token(text, logprob)]}}

    sources = ["https://tides.example/brest", "https://x.com/i/status/1"]
    stream = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None}]),
        chunk([piece(0, "High", -0.1), piece(1, "Tide", -0.4)]),
        chunk([piece(1, " at 14:05", -0.2)]),
        chunk([piece(0, " tide", -0.3)]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}, {"index": 1, "delta": {}, "finish_reason": "stop"}]),
        chunk([], usage=USAGE, citations=sources),
        "[DONE]",
    ]
    choices = [
        {"index": 0, "message": {"role": "assistant", "content": "High tide"}, "finish_reason": "stop",
         "logprobs": {"content": [token("High", -0.1), token(" tide", -0.3)]}},
        {"index": 1, "message": {"role": "assistant", "content": "Tide at 14:05"}, "finish_reason": "stop",
         "logprobs": {"content": [token("Tide", -0.4), token(" at 14:05", -0.2)]}},
    ]  # fmt: skip
    streamed = assemble(stream)
    same_answer(streamed, answer(choices, citations=sources))
    assert streamed.citations == sources
    assert [t["token"] for t in streamed.choices[1].logprobs.content] == ["Tide", " at 14:05"]  # type: ignore[union-attr]


def test_the_local_server_stream_of_a_tool_call_reassembles_its_answer() -> None:
    """The provider's own xAI-compatible server cuts an answer into chunks (a role chunk,
    reasoning word by word, the tool calls, the finish, the usage); they assemble back into it."""
    message = {"role": "assistant", "content": "", "refusal": None, "tool_calls": [TIDE_CALL],
               "reasoning_content": "Reasoning (default): the user wrote 31 characters."}  # fmt: skip
    body = {**HEAD, "object": "chat.completion", "usage": USAGE, **FINGERPRINT,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls", "logprobs": None}]}  # fmt: skip
    events = [event.removeprefix("data: ").strip() for event in stream_events(body, include_usage=True)]
    same_answer(assemble(events), ChatCompletion.model_validate(body))


def test_a_stream_cut_before_the_finish_is_still_refused() -> None:
    stream = [chunk([{"index": 0, "delta": {"tool_calls": [{**TIDE_CALL, "index": 0}]}}])]
    with pytest.raises(XAITruncatedStreamError):
        assemble(stream)


# --- the finish reason in a chunk that also carries content --------------------------------------
def test_the_finish_reason_in_the_last_content_chunk_keeps_that_content() -> None:
    """Many servers put ``finish_reason`` on the chunk with the last words, not on an empty one."""
    stream = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": "High tide"}}]),
        chunk([{"index": 0, "delta": {"content": " is at 14:05."}, "finish_reason": "stop"}]),
        chunk([], usage=USAGE),
        "[DONE]",
    ]
    message = {"role": "assistant", "content": "High tide is at 14:05."}
    same_answer(assemble(stream), answer([{"index": 0, "message": message, "finish_reason": "stop"}]))


def test_content_finish_reason_and_usage_in_one_chunk_finish_the_stream_without_done() -> None:
    assembler = StreamAssembler()
    assembler.feed(chunk([{"index": 0, "delta": {"role": "assistant", "content": "High"}}]))
    assert not assembler.finished
    assembler.feed(chunk([{"index": 0, "delta": {"content": " tide."}, "finish_reason": "length"}], usage=USAGE))
    assert assembler.finished and not assembler.done  # complete: no [DONE] needed
    message = {"role": "assistant", "content": "High tide."}
    same_answer(assembler.completion(), answer([{"index": 0, "message": message, "finish_reason": "length"}]))


def test_a_tool_call_and_its_finish_reason_in_one_chunk() -> None:
    stream = [
        chunk([{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Tides."}}]),
        chunk([{"index": 0, "delta": {"tool_calls": [{**TIDE_CALL, "index": 0}]}, "finish_reason": "tool_calls"}]),
        chunk([], usage=USAGE),
    ]
    message = {"role": "assistant", "content": "", "reasoning_content": "Tides.", "tool_calls": [TIDE_CALL]}
    same_answer(assemble(stream), answer([{"index": 0, "message": message, "finish_reason": "tool_calls"}]))


def test_two_choices_finishing_differently_and_a_later_empty_reason_changes_nothing() -> None:
    stream = [
        chunk([{"index": 0, "delta": {"content": "Yes."}, "finish_reason": "stop"},
               {"index": 1, "delta": {"content": "Ma"}}]),
        chunk([{"index": 1, "delta": {"content": "ybe."}}]),
        chunk([{"index": 1, "delta": {}, "finish_reason": "stop"}, {"index": 0, "delta": {}, "finish_reason": ""}]),
        chunk([], usage=USAGE),
    ]  # fmt: skip
    streamed = assemble(stream)
    assert [(c.message.content, c.finish_reason) for c in streamed.choices] == [("Yes.", "stop"), ("Maybe.", "stop")]


def test_a_stream_whose_last_content_chunk_has_no_finish_reason_is_refused() -> None:
    stream = [chunk([{"index": 0, "delta": {"content": "High tide"}}]), chunk([], usage=USAGE)]
    with pytest.raises(XAITruncatedStreamError, match="after 9 characters"):
        assemble(stream)


def test_an_error_event_that_echoes_the_key_is_scrubbed() -> None:
    key = secrets.register("xai-assembler-secret-0123456789") or ""  # as reading the connection does
    assembler = StreamAssembler()
    assembler.feed(chunk([{"index": 0, "delta": {"content": "High"}}]))
    with pytest.raises(XAIServerError) as info:
        assembler.feed(json.dumps({"code": "Internal", "error": f"stream aborted for {key}"}))
    assert key not in str(info.value) and "stream aborted for ***" in str(info.value)
