"""Batch inputs without a server: request kinds, fingerprints and request names, the batch name of
a set of inputs, what changed between two sets, and reading answers of either shape."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_xai.operators.batch_attach import (
    Changes,
    batch_name_for,
    batch_prefix_for,
    inputs_digest,
)
from airflow_provider_xai.operators.batch_inputs import (
    KINDS,
    KINDS_BY_WIRE,
    RequestDefaults,
    fingerprint,
    prepare_requests,
    split_request_id,
)
from airflow_provider_xai.operators.batch_results import read_result
from airflow_provider_xai.schemas import BatchResult, ChatCompletion, Response
from airflow_provider_xai.testing import batch_run

BODY = {"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}


def prepared(items: list[Any], **defaults: Any) -> list[Any]:
    return prepare_requests(items, RequestDefaults(**defaults), "grok-4.3")


class TestFingerprints:
    def test_a_fingerprint_is_the_body_as_sent_whatever_its_key_order(self) -> None:
        chat = fingerprint("chat_get_completion", BODY)
        assert chat == fingerprint("chat_get_completion", dict(reversed(BODY.items())))
        assert chat != fingerprint("chat_get_completion", {**BODY, "temperature": 0.3})
        assert chat != fingerprint("responses", BODY)

    @given(custom_id=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1).filter(str.strip))
    def test_a_request_name_splits_back_into_its_custom_id_and_fingerprint(self, custom_id: str) -> None:
        (request,) = prepared([{"custom_id": custom_id, "prompt": "hi"}])
        assert split_request_id(request.request_id) == (custom_id, request.fingerprint)

    def test_a_name_without_a_fingerprint_has_none(self) -> None:
        assert split_request_id("req-000001") == ("req-000001", None)
        assert split_request_id("a~b~0123456789abcdef") == ("a~b", "0123456789abcdef")

    def test_a_changed_prompt_or_default_changes_the_request_name(self) -> None:
        (a,) = prepared(["Ticket 1"])
        (b,) = prepared(["Ticket 1, fixed"])
        (c,) = prepared(["Ticket 1"], system_prompt="Be brief.")
        (d,) = prepared(["Ticket 1"])
        assert a.custom_id == b.custom_id == c.custom_id == "req-000000"
        assert len({a.request_id, b.request_id, c.request_id}) == 3 and a.request_id == d.request_id


class TestBatchNames:
    def test_one_name_per_task_instance_and_set_of_requests(self) -> None:
        name = batch_name_for("d", "r", "t", -1, ["x~1", "y~2"])
        assert name == batch_name_for("d", "r", "t", -1, ["y~2", "x~1"]), "order does not matter"
        assert name.startswith(batch_prefix_for("d", "r", "t", -1))
        assert name != batch_name_for("d", "r", "t", -1, ["x~1", "y~3"])
        assert name != batch_name_for("d", "r", "t", 0, ["x~1", "y~2"])
        assert name != batch_name_for("d", "r", "t", -1, ["x~1", "y~2"], "file")
        assert inputs_digest([], "requests") != inputs_digest([], "file")

    def test_what_changed_between_two_sets(self) -> None:
        before = ["a~" + "0" * 16, "b~" + "1" * 16, "c~" + "2" * 16, "legacy"]
        now = {"a": "0" * 16, "b": "f" * 16, "d": "3" * 16}
        changes = Changes.between(before, now)
        assert (changes.changed, changes.new, changes.dropped) == (["b"], ["d"], ["c", "legacy"])
        assert changes.unverifiable == 1
        many = Changes.between([], {f"id{i:02d}": "0" * 16 for i in range(12)}).describe()
        assert many.startswith("0 changed; 12 new (id00, id01,") and "id09, ...)" in many


class TestKinds:
    def test_a_prompt_takes_the_api_and_auto_takes_responses_with_tools(self) -> None:
        tool = [{"type": "web_search"}]
        assert [p.kind for p in prepared(["x"])] == ["chat"]
        assert [p.kind for p in prepared(["x"], api="responses")] == ["responses"]
        assert [p.kind for p in prepared(["x"], api="auto", tools=tool)] == ["responses"]
        assert [p.kind for p in prepared([{"prompt": "x", "tools": tool}], api="auto")] == ["responses"]
        assert [p.kind for p in prepared([{"body": {"input": "x"}}, {"body": {"messages": BODY["messages"]}}])] == [
            "responses", "chat"
        ]  # fmt: skip

    def test_the_shared_defaults_in_each_kind(self) -> None:
        (chat, responses) = prepared(["q", {"input": "q"}], system_prompt="S", max_tokens=7, temperature=0.5)
        assert chat.body["messages"][0] == {"role": "system", "content": "S"}
        assert (chat.body["max_completion_tokens"], chat.body["temperature"]) == (7, 0.5)
        assert (responses.body["instructions"], responses.body["max_output_tokens"]) == ("S", 7)
        assert responses.item() == {"batch_request_id": responses.request_id,
                                    "batch_request": {"responses": responses.body}}  # fmt: skip
        assert responses.line()["url"] == "/v1/responses" and chat.line()["url"] == "/v1/chat/completions"

    def test_the_local_server_serves_every_kind_and_url(self) -> None:
        for kind in KINDS.values():
            assert kind.wire in batch_run.RUNS and batch_run.URLS[kind.url] == kind.wire


def result(response: dict[str, Any]) -> BatchResult:
    return BatchResult.model_validate({"batch_request_id": "a~" + "0" * 16, "batch_result": {"response": response}})


class TestAnswers:
    CHAT_SHAPED = {"id": "c", "model": "grok-4.3", "citations": ["https://x.example/1"], "choices": [
        {"index": 0, "message": {"role": "tool", "content": None, "tool_calls": [
            {"id": "ws_1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}]}},
        {"index": 1, "message": {"role": "assistant", "content": "The answer."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}  # fmt: skip
    RESPONSE = {"id": "r", "model": "grok-4.3", "status": "completed", "output": [
        {"type": "message", "id": "m", "role": "assistant", "content": [
            {"type": "output_text", "text": "The answer.", "annotations": [
                {"type": "url_citation", "url": "https://x.example/1"}]}]}],
        "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}}  # fmt: skip

    @pytest.mark.parametrize(("response", "model"), [({"chat_get_completion": CHAT_SHAPED}, ChatCompletion),
                                                     ({"responses": RESPONSE}, Response)])  # fmt: skip
    def test_either_shape_is_read_as_its_kind(self, response: dict[str, Any], model: type) -> None:
        read = read_result(result(response))
        assert isinstance(read.answer, model) and read.error is None
        assert read.answer.text == "The answer."
        assert KINDS_BY_WIRE[result(response).response_kind or ""].answer()[0] is model

    def test_an_unknown_or_malformed_answer_is_a_failed_line(self) -> None:
        assert read_result(result({"speech_generation": {"audio": ""}})).error == (
            "unsupported batch answer kind: speech_generation"
        )  # fmt: skip
        malformed = read_result(result({"responses": {"output": "nope"}}))
        assert malformed.answer is None and "Malformed responses answer for batch request a~" in str(malformed.error)

    def test_a_completion_text_skips_tool_choices(self) -> None:
        assert ChatCompletion.model_validate(self.CHAT_SHAPED).text == "The answer."
