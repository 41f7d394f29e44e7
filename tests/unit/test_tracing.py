"""OpenTelemetry GenAI spans of XAIHook requests, against httpx.MockTransport and an in-memory
span exporter: attributes, retries as events, errors, opt-in content, the key never recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from airflow_provider_xai.endpoints import chat as chat_api
from airflow_provider_xai.exceptions import XAIAuthenticationError, XAIBadRequestError, XAIError
from airflow_provider_xai.pipeline.layers import Exchange
from airflow_provider_xai.tracing import spans as tracing
from airflow_provider_xai.tracing.content import CAPTURE_ENV
from airflow_provider_xai.tracing.layer import TracingLayer
from tests.helpers.spans import memory_spans
from tests.unit.response_fixtures import ILLUSTRATIVE_STREAM, TIDE_RESPONSE
from tests.unit.test_hook_mock import KEY, Recorder, completion, error, make_hook

MCP_SECRET = "mcp-bearer-secret-987654"
USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 10,
    "total_tokens": 62,
    "prompt_tokens_details": {"cached_tokens": 32},
    "completion_tokens_details": {"reasoning_tokens": 12},
}


@pytest.fixture(autouse=True)
def conn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        json.dumps({"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY, "extra": {"max_retries": 2}}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_SILO_MCP", json.dumps({"conn_type": "generic", "password": MCP_SECRET}))
    monkeypatch.delenv(CAPTURE_ENV, raising=False)


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    with memory_spans(monkeypatch) as exporter:
        yield exporter


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def everything_recorded(exporter: InMemorySpanExporter) -> str:
    """Every span of the export (name, attributes, events, status) as one text."""
    return "\n".join(span.to_json() for span in exporter.get_finished_spans())


def sse(*payloads: str) -> httpx.Response:
    body = "".join(f"data: {p}\n\n" for p in payloads).encode()
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


class TestChatSpan:
    def test_attributes_follow_the_genai_conventions(self, exporter: InMemorySpanExporter) -> None:
        hook = make_hook(Recorder(httpx.Response(200, json=completion(**USAGE))))
        hook.chat(messages=[{"role": "user", "content": "hi"}], model="grok-4.3", max_tokens=50, temperature=0.2)
        span = only_span(exporter)
        assert span.name == "chat grok-4.3"
        assert span.kind is SpanKind.CLIENT
        a = dict(span.attributes or {})
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "x_ai"
        assert a["gen_ai.system"] == "xai"
        assert a["gen_ai.request.model"] == "grok-4.3"
        assert a["gen_ai.request.max_tokens"] == 50
        assert a["gen_ai.request.temperature"] == 0.2
        assert (a["server.address"], a["server.port"]) == ("xai.test", 443)
        assert a["gen_ai.response.id"] == "cmpl-1"
        assert a["gen_ai.response.model"] == "grok-4.3"
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert a["gen_ai.usage.input_tokens"] == 40
        assert a["gen_ai.usage.output_tokens"] == 22  # xAI's completion excludes reasoning
        assert a["gen_ai.usage.reasoning.output_tokens"] == 12
        assert a["gen_ai.usage.cache_read.input_tokens"] == 32
        assert a["xai.usage.total_tokens"] == 62
        assert a["xai.cost_source"] == "estimate"
        assert a["xai.cost_usd"] > 0
        assert span.status.status_code is StatusCode.UNSET
        assert not any(key.startswith("airflow.") for key in a)  # not in a task

    def test_cost_reported_by_xai_is_used_as_the_usage_records_use_it(self, exporter: InMemorySpanExporter) -> None:
        hook = make_hook(Recorder(httpx.Response(200, json=completion(cost_in_usd_ticks=25_000_000))))
        hook.chat(messages=[{"role": "user", "content": "hi"}])
        a = dict(only_span(exporter).attributes or {})
        assert (a["xai.cost_usd"], a["xai.cost_source"]) == (0.0025, "xai")

    def test_the_span_is_a_child_of_the_current_span(self, exporter: InMemorySpanExporter) -> None:
        hook = make_hook(Recorder(httpx.Response(200, json=completion())))
        with trace.get_tracer("test").start_as_current_span("worker.summarise") as task_span:
            hook.chat(messages=[{"role": "user", "content": "hi"}])
        chat = next(s for s in exporter.get_finished_spans() if s.name.startswith("chat"))
        assert chat.parent is not None
        assert chat.parent.span_id == task_span.get_span_context().span_id
        assert chat.context.trace_id == task_span.get_span_context().trace_id

    def test_retries_are_span_events(self, exporter: InMemorySpanExporter) -> None:
        recorder = Recorder(error(503, "busy", {"retry-after": "0"}), error(429, "slow down", {"retry-after": "0"}),
                            httpx.Response(200, json=completion()))  # fmt: skip
        make_hook(recorder).chat(messages=[{"role": "user", "content": "hi"}])
        span = only_span(exporter)
        retries = [e for e in span.events if e.name == "xai.retry"]
        assert [(e.attributes or {})["xai.retry.attempt"] for e in retries] == [1, 2]
        assert [(e.attributes or {})["error.type"] for e in retries] == ["XAIServerError", "XAIRateLimitError"]
        assert all((e.attributes or {})["xai.retry.wait_s"] == 0 for e in retries)
        assert span.status.status_code is StatusCode.UNSET  # it succeeded in the end
        assert len(recorder.requests) == 3

    def test_an_error_sets_status_and_type_without_the_key(self, exporter: InMemorySpanExporter) -> None:
        hook = make_hook(Recorder(error(401, f"Incorrect API key provided: {KEY}")))
        with pytest.raises(XAIAuthenticationError):
            hook.chat(messages=[{"role": "user", "content": "hi"}])
        span = only_span(exporter)
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "XAIAuthenticationError"
        assert (span.attributes or {})["http.response.status_code"] == 401
        assert "Incorrect API key" in (span.status.description or "")
        assert KEY not in everything_recorded(exporter)
        assert KEY[-6:] not in everything_recorded(exporter)

    def test_a_bad_request_is_not_retried_and_records_one_failure(self, exporter: InMemorySpanExporter) -> None:
        recorder = Recorder(error(400, "bad temperature"))
        with pytest.raises(XAIBadRequestError):
            make_hook(recorder).chat(messages=[{"role": "user", "content": "hi"}])
        span = only_span(exporter)
        assert [e.name for e in span.events] == ["exception"]
        assert len(recorder.requests) == 1

    def test_async_chat_has_the_same_span(self, exporter: InMemorySpanExporter) -> None:
        hook = make_hook(Recorder(error(500, "oops"), httpx.Response(200, json=completion(**USAGE))))
        asyncio.run(hook.achat(messages=[{"role": "user", "content": "hi"}]))
        span = only_span(exporter)
        assert (span.attributes or {})["gen_ai.usage.input_tokens"] == 40
        assert [e.name for e in span.events] == ["xai.retry"]

    def test_calls_that_are_not_generation_have_no_span(self, exporter: InMemorySpanExporter) -> None:
        hook = make_hook(Recorder(httpx.Response(200, json={"data": [{"id": "grok-4.3"}]})))
        hook.list_models()
        assert exporter.get_finished_spans() == ()


class TestContent:
    MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "What is 2+2?"}]

    def test_nothing_of_prompt_or_answer_by_default(self, exporter: InMemorySpanExporter) -> None:
        make_hook(Recorder(httpx.Response(200, json=completion("The answer is four")))).chat(messages=self.MESSAGES)
        recorded = everything_recorded(exporter)
        assert "2+2" not in recorded and "four" not in recorded and "terse" not in recorded

    def test_span_only_records_input_and_output_messages(
        self, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(CAPTURE_ENV, "SPAN_ONLY")
        make_hook(Recorder(httpx.Response(200, json=completion("four")))).chat(messages=self.MESSAGES)
        a = dict(only_span(exporter).attributes or {})
        assert json.loads(str(a["gen_ai.input.messages"])) == [
            {"role": "system", "parts": [{"type": "text", "content": "Be terse."}]},
            {"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]},
        ]
        assert json.loads(str(a["gen_ai.output.messages"])) == [
            {"role": "assistant", "parts": [{"type": "text", "content": "four"}], "finish_reason": "stop"}
        ]
        assert KEY not in everything_recorded(exporter)

    def test_event_only_puts_content_on_an_event(
        self, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(CAPTURE_ENV, "EVENT_ONLY")
        make_hook(Recorder(httpx.Response(200, json=completion("four")))).chat(messages=self.MESSAGES)
        span = only_span(exporter)
        assert "gen_ai.input.messages" not in (span.attributes or {})
        (details,) = [e for e in span.events if e.name == "gen_ai.client.inference.operation.details"]
        assert "What is 2+2?" in str((details.attributes or {})["gen_ai.input.messages"])
        assert "four" in str((details.attributes or {})["gen_ai.output.messages"])


class TestResponses:
    MCP_TOOL = {"type": "mcp", "server_url": "https://mcp.example.com/mcp", "server_label": "silo",
                "authorization_conn_id": "silo_mcp"}  # fmt: skip

    def test_tool_calls_counted_by_kind_and_mcp_secret_never_recorded(
        self, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(CAPTURE_ENV, "SPAN_AND_EVENT")  # even with content on
        recorder = Recorder(httpx.Response(200, json=TIDE_RESPONSE))
        make_hook(recorder).create_response(
            input="When is high tide in Brest?", instructions="Cite sources.",
            tools=[{"type": "web_search"}, self.MCP_TOOL], max_output_tokens=300,
        )  # fmt: skip
        assert MCP_SECRET in recorder.requests[0].content.decode()  # it was sent...
        span = only_span(exporter)
        a = dict(span.attributes or {})
        assert a["xai.api"] == "responses"
        assert a["gen_ai.request.max_tokens"] == 300
        assert a["xai.request.tools"] == ("web_search", "mcp")
        assert a["xai.response.tool_calls"] == ("web_search",)
        assert a["xai.usage.server_side_tool_usage.web_search_calls"] == 1
        assert a["xai.usage.server_side_tools_used"] == 1
        assert a["gen_ai.usage.input_tokens"] == 5120
        assert a["gen_ai.usage.output_tokens"] == 180
        assert a["gen_ai.usage.reasoning.output_tokens"] == 120
        assert a["gen_ai.usage.cache_read.input_tokens"] == 4096
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert (a["xai.cost_usd"], a["xai.cost_source"]) == (0.01234, "xai")
        assert json.loads(str(a["gen_ai.system_instructions"])) == [{"type": "text", "content": "Cite sources."}]
        recorded = everything_recorded(exporter)
        assert MCP_SECRET not in recorded and KEY not in recorded  # ...but never recorded

    def test_a_streamed_response_span_ends_with_the_assembled_usage(self, exporter: InMemorySpanExporter) -> None:
        hook = make_hook(Recorder(sse(*ILLUSTRATIVE_STREAM)))
        with trace.get_tracer("test").start_as_current_span("worker.t") as task_span:
            for _event in hook.iter_response_events(input="tide?"):
                # the caller's code between events still runs under its own span, not ours
                assert trace.get_current_span() is task_span
                assert exporter.get_finished_spans() == ()
        chat = next(s for s in exporter.get_finished_spans() if s.name.startswith("chat"))
        a = dict(chat.attributes or {})
        assert a["gen_ai.request.stream"] is True
        assert a["gen_ai.usage.input_tokens"] == 5120
        assert a["xai.usage.server_side_tool_usage.web_search_calls"] == 1
        assert chat.parent is not None and chat.parent.span_id == task_span.get_span_context().span_id


def chunk(**fields: Any) -> str:
    return json.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "grok-4.3", **fields})


class TestStreamsAndDeferred:
    STREAM = (
        chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": "fo"}}]),
        chunk(choices=[{"index": 0, "delta": {"content": "ur"}, "finish_reason": "stop"}]),
        chunk(choices=[], usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}),
        "[DONE]",
    )

    def test_a_chat_stream_span_ends_when_the_stream_is_assembled(self, exporter: InMemorySpanExporter) -> None:
        hook = make_hook(Recorder(error(503, "busy", {"retry-after": "0"}), sse(*self.STREAM)))
        texts = []
        for piece in hook.stream_chat(messages=[{"role": "user", "content": "2+2?"}]):
            assert exporter.get_finished_spans() == ()  # still open while chunks flow
            texts.append(piece.choices[0].delta.content if piece.choices else "")
        span = only_span(exporter)
        a = dict(span.attributes or {})
        assert "".join(t or "" for t in texts) == "four"
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (7, 2)
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert [e.name for e in span.events] == ["xai.retry"]  # the opening was retried

    def test_a_stream_the_caller_abandons_ends_its_span_without_error(self, exporter: InMemorySpanExporter) -> None:
        stream = make_hook(Recorder(sse(*self.STREAM))).stream_chat(messages=[{"role": "user", "content": "2+2?"}])
        next(stream)
        stream.close()
        assert only_span(exporter).status.status_code is StatusCode.UNSET

    def test_stream_chat_completion_restarts_are_events(self, exporter: InMemorySpanExporter) -> None:
        broken = sse(*self.STREAM[:1])  # ends without finish or usage: truncated, requested again
        hook = make_hook(Recorder(broken, sse(*self.STREAM)))
        assert hook.stream_chat_completion(messages=[{"role": "user", "content": "2+2?"}]).text == "four"
        span = only_span(exporter)
        assert [(e.attributes or {})["error.type"] for e in span.events] == ["XAITruncatedStreamError"]

    def test_deferred_polls_leave_one_span_with_the_answer(self, exporter: InMemorySpanExporter) -> None:
        recorder = Recorder(
            httpx.Response(200, json={"request_id": "req-1"}),
            httpx.Response(202), httpx.Response(202),
            httpx.Response(200, json=completion(**USAGE)),
        )  # fmt: skip
        hook = make_hook(recorder)
        request_id = hook.start_deferred(messages=[{"role": "user", "content": "hi"}], model="grok-4.3")
        while hook.get_deferred(request_id) is None:
            pass
        submit, answer = exporter.get_finished_spans()
        assert submit.name == "chat grok-4.3"
        assert (submit.attributes or {})["xai.deferred"] is True
        assert (submit.attributes or {})["xai.deferred.request_id"] == "req-1"
        assert answer.name == "chat"  # the model is known only from the answer
        assert (answer.attributes or {})["gen_ai.response.model"] == "grok-4.3"
        assert (answer.attributes or {})["gen_ai.usage.input_tokens"] == 40
        assert len(recorder.requests) == 4  # three polls, two of them pending: no span


class TestOff:
    def test_without_a_tracer_provider_nothing_is_made(self) -> None:
        assert not tracing.tracing_on()
        settings = make_hook(Recorder(httpx.Response(200, json=completion()))).settings
        call = chat_api.chat({"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}]}, {})
        assert TracingLayer().scope(Exchange(call, settings, {"model": "grok-4.3"})) is None

    def test_requests_work_the_same_without_one(self) -> None:
        hook = make_hook(Recorder(error(503, "busy", {"retry-after": "0"}), httpx.Response(200, json=completion())))
        assert hook.chat(messages=[{"role": "user", "content": "hi"}]).text == "hello"


class TestTracingNeverBreaksARequest:
    def test_a_fault_while_starting_the_span_sends_the_request_without_one(
        self, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(*args: Any) -> dict[str, Any]:
            raise TypeError("unexpected body shape")

        monkeypatch.setattr(tracing, "request_attributes", broken)
        hook = make_hook(Recorder(httpx.Response(200, json=completion())))
        assert hook.chat(messages=[{"role": "user", "content": "hi"}]).text == "hello"
        assert exporter.get_finished_spans() == ()

    def test_a_fault_while_reading_the_answer_still_ends_the_span(
        self, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(*args: Any) -> dict[str, Any]:
            raise ValueError("unexpected answer shape")

        monkeypatch.setattr(tracing, "response_attributes", broken)
        hook = make_hook(Recorder(httpx.Response(200, json=completion())))
        assert hook.chat(messages=[{"role": "user", "content": "hi"}]).text == "hello"
        span = only_span(exporter)
        assert span.name == "chat grok-4.3" and span.status.status_code is StatusCode.UNSET


def test_a_failed_stream_still_records_the_billed_usage(exporter: InMemorySpanExporter) -> None:
    failed = json.loads(ILLUSTRATIVE_STREAM[-1])
    failed["type"] = "response.failed"
    failed["response"].update(status="failed", error={"code": "server_error", "message": "model crashed"})
    hook = make_hook(Recorder(sse(*ILLUSTRATIVE_STREAM[:-1], json.dumps(failed))))
    with pytest.raises(XAIError) as raised:
        hook.stream_response(input="tide?")
    span = only_span(exporter)
    a = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert a["error.type"] == type(raised.value).__name__
    assert a["gen_ai.usage.input_tokens"] == 5120  # billed although it failed
    assert a["xai.cost_usd"] == 0.01234
