"""The one send (pipeline/transport.py) and its layers, against httpx.MockTransport: the body is
built once, layers see each call at fixed points in order (plain, streamed, iterated, failed,
billed-then-failed), the usage record is read once and carries xAI's request id, every attempt
has a deadline, secrets beyond the API key are scrubbed, and the async connection lookup falls
back to the blocking one."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from airflow_provider_xai.connection.settings import DEFAULT_DEADLINE
from airflow_provider_xai.endpoints import chat as chat_api
from airflow_provider_xai.exceptions import (
    XAIBadRequestError,
    XAIConfigurationError,
    XAIError,
    XAIServerError,
    XAITimeoutError,
)
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.pipeline.body import Form, FormFile
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.pipeline.layers import Exchange, Layer, Scope
from tests.helpers.spans import memory_spans
from tests.unit.response_fixtures import ILLUSTRATIVE_STREAM, TIDE_RESPONSE
from tests.unit.test_hook_mock import KEY, Recorder, completion, error

USER = [{"role": "user", "content": "hi"}]
MCP_SECRET = "mcp-pipeline-secret-5551234"


@pytest.fixture(autouse=True)
def conn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY, "extra": {"max_retries": 2}}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_VAULT_MCP", json.dumps({"conn_type": "generic", "password": MCP_SECRET}))
    monkeypatch.setattr("airflow_provider_xai.pipeline.transport.time.sleep", lambda _s: None)


class Journal(Layer):
    """A layer that writes down what it is shown, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def scope(self, exchange: Exchange) -> Scope | None:
        journal = self

        class Seen(Scope):
            @contextmanager
            def active(self) -> Iterator[None]:
                journal.seen.append("active")
                yield

            def attempt(self, send: Callable[[], Any]) -> Any:
                journal.seen.append("attempt")
                return send()

            async def aattempt(self, send: Callable[[], Awaitable[Any]]) -> Any:
                journal.seen.append("attempt")
                return await send()

            def retried(self, exc: BaseException, attempt: int, wait: float) -> None:
                journal.seen.append(f"retried:{type(exc).__name__}")

            def answered(self) -> None:
                record = exchange.record
                journal.seen.append(f"answered:{record.total_tokens if record else None}")

            def finish(self, exc: BaseException | None) -> None:
                journal.seen.append(f"finish:{type(exc).__name__ if exc else None}")

        return Seen()


def hook_with(recorder: Recorder, *layers: Layer) -> XAIHook:
    hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(recorder)})
    hook.transport.layers = (*hook.transport.layers, *layers)
    return hook


def sse(*payloads: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = "".join(f"data: {p}\n\n" for p in payloads).encode()
    return httpx.Response(200, headers={"content-type": "text/event-stream", **(headers or {})}, content=body)


def chat_chunks() -> list[str]:
    choice = {"index": 0, "delta": {"content": "hel"}, "finish_reason": None}
    last = {"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    return [
        json.dumps({"id": "c", "model": "grok-4.3", "created": 1, "choices": [choice]}),
        json.dumps({"id": "c", "model": "grok-4.3", "created": 1, "choices": [last]}),
        json.dumps({"id": "c", "model": "grok-4.3", "created": 1, "choices": [], "usage": usage}),
        "[DONE]",
    ]


class TestOneSend:
    def test_the_body_is_built_once_whatever_the_retries(self, monkeypatch: pytest.MonkeyPatch) -> None:
        built: list[int] = []
        real = chat_api.chat_body

        def counting(*args: Any, **kwargs: Any) -> Any:
            build = real(*args, **kwargs)
            return lambda settings: (built.append(1), build(settings))[1]

        monkeypatch.setattr(chat_api, "chat_body", counting)
        recorder = Recorder(error(503, "busy"), error(503, "busy"), httpx.Response(200, json=completion()))
        assert hook_with(recorder).chat(messages=USER).text == "hello"
        assert len(recorder.requests) == 3 and len(built) == 1
        assert recorder.requests[0].content == recorder.requests[2].content

    def test_layers_see_a_plain_call_at_each_point_in_order(self) -> None:
        journal = Journal()
        recorder = Recorder(error(503, "busy"), httpx.Response(200, json=completion()))
        hook_with(recorder, journal).chat(messages=USER)
        assert journal.seen == [
            "active", "attempt", "retried:XAIServerError", "attempt", "answered:5", "finish:None",
        ]  # fmt: skip

    def test_a_failed_call_finishes_with_its_error_and_no_answer(self) -> None:
        journal = Journal()
        with pytest.raises(XAIServerError):
            hook_with(Recorder(error(500, "down")), journal).chat(messages=USER)
        assert journal.seen[-1] == "finish:XAIServerError" and not any(s.startswith("answered") for s in journal.seen)
        assert journal.seen.count("attempt") == 3  # max_retries=2

    def test_a_streamed_call_is_answered_once_it_is_assembled(self) -> None:
        journal = Journal()
        texts: list[str] = []
        completion_ = hook_with(Recorder(sse(*chat_chunks())), journal).stream_chat_completion(
            messages=USER, on_text=texts.append
        )
        assert completion_.text == "hello" and texts == ["hel", "lo"]
        assert journal.seen == ["active", "attempt", "answered:5", "finish:None"]

    def test_an_iterated_stream_is_answered_when_read_to_its_end(self) -> None:
        journal = Journal()
        chunks = hook_with(Recorder(sse(*chat_chunks())), journal).stream_chat(messages=USER)
        first = next(chunks)
        assert first.choices[0].delta.content == "hel" and journal.seen == ["active", "attempt"]
        rest = list(chunks)
        assert len(rest) == 2 and journal.seen[-2:] == ["answered:5", "finish:None"]

    def test_an_abandoned_stream_finishes_without_an_error(self) -> None:
        journal = Journal()
        chunks = hook_with(Recorder(sse(*chat_chunks())), journal).stream_chat(messages=USER)
        next(chunks)
        chunks.close()
        assert journal.seen[-1] == "finish:None"

    def test_a_failed_stream_hands_its_billed_usage_to_the_layers_before_failing(self) -> None:
        failed = json.loads(ILLUSTRATIVE_STREAM[-1])
        failed["type"] = "response.failed"
        failed["response"].update(status="failed", error={"code": "server_error", "message": "model crashed"})
        journal = Journal()
        hook = hook_with(Recorder(sse(*ILLUSTRATIVE_STREAM[:-1], json.dumps(failed))), journal)
        with pytest.raises(XAIServerError) as info:
            hook.stream_response(input="hi")
        billed = info.value.billed.usage_record
        assert billed is not None and billed.total_tokens > 0
        assert journal.seen[-2:] == [f"answered:{billed.total_tokens}", "finish:XAIServerError"]

    def test_a_broken_responses_stream_is_not_sent_again(self) -> None:
        """Server-side tools may have run: only opening a Responses stream is retried."""
        recorder = Recorder(sse(*ILLUSTRATIVE_STREAM[:3]))
        with pytest.raises(Exception, match="ended before"):
            hook_with(recorder).stream_response(input="hi")
        assert len(recorder.requests) == 1

    def test_the_async_path_takes_the_same_road(self) -> None:
        journal = Journal()
        recorder = Recorder(error(503, "busy"), httpx.Response(200, json=completion()))
        hook = hook_with(recorder, journal)
        assert asyncio.run(hook.achat(messages=USER)).text == "hello"
        assert journal.seen == [
            "active", "attempt", "retried:XAIServerError", "attempt", "answered:5", "finish:None",
        ]  # fmt: skip


class TestClients:
    def test_a_cookie_an_answer_sets_is_sent_back_and_answers_without_one_change_nothing(self) -> None:
        recorder = Recorder(
            httpx.Response(200, json=completion()),
            httpx.Response(200, json=completion(), headers={"set-cookie": "__cf_bm=abc; Path=/"}),
            httpx.Response(200, json=completion()),
        )
        hook = hook_with(recorder)
        for _ in range(3):
            hook.chat(messages=USER)
        assert [r.headers.get("cookie") for r in recorder.requests] == [None, None, "__cf_bm=abc"]

    def test_cookies_given_in_client_kwargs_are_sent(self) -> None:
        recorder = Recorder(httpx.Response(200, json=completion()))
        hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(recorder), "cookies": {"team": "a"}})
        hook.chat(messages=USER)
        assert recorder.requests[0].headers.get("cookie") == "team=a"

    def test_declared_paths_and_paths_with_ids_go_where_httpx_would_send_them(self) -> None:
        recorder = Recorder(lambda r: httpx.Response(200, json=completion()))
        hook = hook_with(recorder)
        hook.chat(messages=USER)
        hook.chat(messages=USER)
        hook.get_deferred("req 1")
        assert [str(r.url) for r in recorder.requests] == [
            "https://xai.test/v1/chat/completions",
            "https://xai.test/v1/chat/completions",
            "https://xai.test/v1/chat/deferred-completion/req%201",
        ]

    def test_a_callers_client_is_sent_to_its_own_base_url(self) -> None:
        recorder = Recorder(lambda r: httpx.Response(200, json=completion()))
        hook = hook_with(recorder)

        async def both() -> None:
            await hook.achat(messages=USER)
            own = httpx.AsyncClient(base_url="https://proxy.test/xai/v1", transport=httpx.MockTransport(recorder))
            async with own:
                await hook.transport.asend(chat_api.chat(None, {"messages": USER}), own)

        asyncio.run(both())
        assert [str(r.url) for r in recorder.requests] == [
            "https://xai.test/v1/chat/completions",
            "https://proxy.test/xai/v1/chat/completions",
        ]


class TestUsageRecord:
    def test_the_record_carries_xais_request_id(self) -> None:
        answer = httpx.Response(200, json=completion(), headers={"x-request-id": "req-42"})
        record = hook_with(Recorder(answer)).chat(messages=USER).usage_record
        assert record is not None and record.request_id == "req-42" and record.total_tokens == 5

    def test_a_streamed_answer_carries_it_too(self) -> None:
        answer = sse(*chat_chunks(), headers={"x-request-id": "req-43"})
        record = hook_with(Recorder(answer)).stream_chat_completion(messages=USER).usage_record
        assert record is not None and record.request_id == "req-43"

    def test_responses_records_their_request_id(self) -> None:
        answer = httpx.Response(200, json=TIDE_RESPONSE, headers={"x-request-id": "req-44"})
        record = hook_with(Recorder(answer)).create_response(input="hi").usage_record
        assert record is not None and record.request_id == "req-44" and record.kind == "responses"

    def test_the_record_is_read_once_and_shared(self, monkeypatch: pytest.MonkeyPatch) -> None:
        reads: list[int] = []
        real = chat_api.build_record
        monkeypatch.setattr(chat_api, "build_record", lambda *a, **k: (reads.append(1), real(*a, **k))[1])
        journal = Journal()
        answer = hook_with(Recorder(httpx.Response(200, json=completion())), journal).chat(messages=USER)
        assert journal.seen[-2] == "answered:5"  # the layer read it...
        assert answer.usage_record is answer.usage_record and len(reads) == 1  # ...the caller shares it


class TestDeadline:
    def test_an_endless_trickling_stream_is_cut_at_the_deadline(self) -> None:
        chunk = json.dumps({"id": "c", "model": "m", "created": 1,
                            "choices": [{"index": 0, "delta": {"content": "."}}]})  # fmt: skip

        class Trickle(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                while True:  # never a finish reason, never [DONE]
                    time.sleep(0.01)
                    yield f"data: {chunk}\n\n".encode()

        def answer(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Trickle())

        hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(answer)}, deadline=0.2, max_retries=0)
        with pytest.raises(XAITimeoutError, match=r"deadline of 0\.2s"):
            hook.stream_chat_completion(messages=USER)

    def test_the_deadline_is_a_connection_field_with_a_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert XAIHook().settings.deadline == DEFAULT_DEADLINE
        conn = {"conn_type": "xai", "password": KEY, "extra": {"deadline": "90"}}
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
        assert XAIHook().settings.deadline == 90.0


class TestSecrets:
    MCP = {"type": "mcp", "server_url": "https://mcp.example.com/mcp", "server_label": "vault",
           "authorization_conn_id": "vault_mcp"}  # fmt: skip

    def quoting(self, request: httpx.Request) -> httpx.Response:
        """A 400 that quotes the request's tools back, as a careless server does."""
        tools = json.loads(request.content)["tools"]
        body = {"code": "Client specified an invalid argument", "error": f"bad tools: {tools}"}
        return httpx.Response(400, json=body)

    def test_an_mcp_secret_quoted_by_an_error_never_reaches_the_exception_or_span(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        exporter: InMemorySpanExporter
        with memory_spans(monkeypatch) as exporter:
            recorder = Recorder(self.quoting)
            with pytest.raises(XAIBadRequestError) as info:
                hook_with(recorder).create_response(input="hi", tools=[self.MCP])
            assert MCP_SECRET in recorder.requests[0].content.decode()  # it was sent...
            text = " ".join([str(info.value), repr(info.value), info.value.message, info.value.xai_message or ""])
            assert MCP_SECRET not in text and "bad tools" in text  # ...but never repeated
            spans = "\n".join(span.to_json() for span in exporter.get_finished_spans())
            assert spans and MCP_SECRET not in spans and KEY not in spans

    def test_a_url_encoded_secret_is_scrubbed_too(self) -> None:
        from urllib.parse import quote

        from airflow_provider_xai.exceptions import XAIError
        from airflow_provider_xai.secrets import register

        register("p@ss/word+with spaces")
        error = XAIError(f"GET https://x.test/?key={quote('p@ss/word+with spaces', safe='')} failed")
        assert "p%40ss" not in str(error) and "***" in str(error)


def test_the_async_lookup_falls_back_to_the_blocking_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``airflow dags test`` the async lookup may miss a connection the DB holds."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    monkeypatch.delenv("AIRFLOW_CONN_XAI_DEFAULT")
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    hook = XAIHook()

    async def missing(conn_id: str) -> Any:
        raise AirflowNotFoundException(conn_id)

    class Stored:
        password, host, extra_dejson = KEY, "https://xai.test/v1", {}

    hook.transport._aget_connection = missing  # type: ignore[method-assign]
    hook.transport._get_connection = lambda conn_id: Stored()  # type: ignore[method-assign]
    settings = asyncio.run(hook.aget_settings())
    assert settings.api_key == KEY and settings.base_url == "https://xai.test/v1"


# --- the other hosts, downloads and multipart bodies (the media and files endpoints build on them)
MANAGEMENT_KEY = "xai-management-key-777888"
PING = Endpoint("test.management", "GET", "v1/ping", host="management")
MEDIA = Endpoint("test.media", "GET", "", host="media")
UPLOAD = Endpoint("test.upload", "POST", "files")


def _hook_for(handler: Callable[[httpx.Request], httpx.Response], monkeypatch: pytest.MonkeyPatch,
              **extra: Any) -> XAIHook:  # fmt: skip
    conn = {"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY,
            "extra": {"max_retries": 2, **extra}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
    return XAIHook(client_kwargs={"transport": httpx.MockTransport(handler)})


def _json_of(reply: Any) -> Any:
    return json.loads(reply.content)


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


class TestHosts:
    def test_management_calls_go_to_its_root_with_its_own_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[httpx.Request] = []
        hook = _hook_for(lambda r: (seen.append(r), _ok(r))[1], monkeypatch, management_key=MANAGEMENT_KEY)
        hook.transport.send(Call(PING, _json_of))
        (request,) = seen
        assert str(request.url) == "https://management-api.x.ai/v1/ping"
        assert request.headers["authorization"] == f"Bearer {MANAGEMENT_KEY}" and KEY not in str(request.headers)

    def test_a_management_call_without_its_key_sends_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[httpx.Request] = []
        hook = _hook_for(lambda r: (seen.append(r), _ok(r))[1], monkeypatch)
        with pytest.raises(XAIConfigurationError, match="management_key"):
            hook.transport.send(Call(PING, _json_of))
        assert seen == []

    def test_the_management_key_is_scrubbed_like_the_api_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def echo(request: httpx.Request) -> httpx.Response:
            return httpx.Response(403, json={"code": "denied", "error": f"{request.headers['authorization']} may not"})

        hook = _hook_for(echo, monkeypatch, management_key=MANAGEMENT_KEY)
        with pytest.raises(XAIError) as info:
            hook.transport.send(Call(PING, _json_of))
        assert MANAGEMENT_KEY not in str(info.value) and "may not" in str(info.value)

    def test_media_urls_get_no_credentials(self, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[httpx.Request] = []
        hook = _hook_for(lambda r: (seen.append(r), httpx.Response(200, content=b"png"))[1], monkeypatch,
                         management_key=MANAGEMENT_KEY)  # fmt: skip
        call = Call(MEDIA, lambda reply: reply.content, url="https://imgen.x.test/xai-tmp-1.png")
        assert hook.transport.send(call) == b"png"
        assert str(seen[0].url) == "https://imgen.x.test/xai-tmp-1.png" and "authorization" not in seen[0].headers


class Collected:
    """A sink that keeps what it was given (a real one writes to object storage)."""

    made: list[Collected] = []

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.dropped = False
        Collected.made.append(self)

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def result(self) -> int:
        return sum(map(len, self.chunks))

    def discard(self) -> None:
        self.dropped = True


class TestSinks:
    def test_a_download_is_written_chunk_by_chunk_past_the_answer_limit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        body = b"x" * (3 << 20)
        hook = _hook_for(lambda r: httpx.Response(200, content=body), monkeypatch, max_response_bytes=1 << 20)
        Collected.made = []
        call = Call(MEDIA, sink=Collected, url="https://vidgen.x.test/v.mp4", max_bytes=8 << 20)
        assert hook.transport.send(call) == len(body)
        assert len(Collected.made[0].chunks) >= 1 and not Collected.made[0].dropped

    def test_a_download_past_its_limit_is_refused_and_dropped(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hook = _hook_for(lambda r: httpx.Response(200, content=b"x" * 4096), monkeypatch)
        Collected.made = []
        with pytest.raises(XAIError, match="limit"):
            hook.transport.send(Call(MEDIA, sink=Collected, url="https://vidgen.x.test/v.mp4", max_bytes=1024))
        assert Collected.made[-1].dropped

    def test_a_retried_download_starts_a_new_sink(self, monkeypatch: pytest.MonkeyPatch) -> None:
        busy = httpx.Response(503, json={"code": "busy", "error": "busy"})
        answers = iter([busy, httpx.Response(200, content=b"ok")])
        hook = _hook_for(lambda r: next(answers), monkeypatch)
        Collected.made = []
        assert hook.transport.send(Call(MEDIA, sink=Collected, url="https://vidgen.x.test/v.mp4")) == 2
        assert len(Collected.made) == 1  # the 503 was an error answer: no sink was made for it


class TestForms:
    def test_fields_go_before_the_file_and_a_retry_reopens_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        bodies: list[bytes] = []
        answers = iter([httpx.Response(503, json={"code": "busy", "error": "busy"}), _ok(httpx.Request("GET", "/"))])

        def handler(request: httpx.Request) -> httpx.Response:
            bodies.append(request.read())
            return next(answers)

        opened: list[io.BytesIO] = []

        def open_file() -> io.BytesIO:
            opened.append(io.BytesIO(b"PDF-CONTENT"))
            return opened[-1]

        form = Form([("expires_after", "3600")], [FormFile("file", "a.pdf", open_file, "application/pdf")])
        hook = _hook_for(handler, monkeypatch)
        hook.transport.send(Call(UPLOAD, _json_of, body=lambda _s: form))
        assert len(bodies) == 2 and all(b"PDF-CONTENT" in body for body in bodies)  # the file, sent twice
        assert bodies[1].index(b'name="expires_after"') < bodies[1].index(b'name="file"; filename="a.pdf"')
        assert b"PDF-CONTENT" in bodies[1] and len(opened) == 2 and all(f.closed for f in opened)


class TestNoCycles:
    """An answer and its exchange are freed as soon as the caller drops them (by reference
    counting): nothing of a call waits for the garbage collector."""

    @pytest.mark.parametrize("api", ["chat", "responses"])
    def test_an_answer_is_freed_when_dropped_and_keeps_its_usage_record(self, api: str) -> None:
        import gc
        import weakref

        body = completion("hi") if api == "chat" else TIDE_RESPONSE
        hook = hook_with(Recorder(httpx.Response(200, json=body, headers={"x-request-id": "req-7"})))
        send = (lambda: hook.chat(messages=[{"role": "user", "content": "Hi"}])) if api == "chat" else (
            lambda: hook.create_response(input="Hi")
        )
        read = send()
        record = read.usage_record
        assert record is not None and record.request_id == "req-7" and read.usage_record is record
        gc.collect()
        gc.disable()
        try:
            answer = send()  # its usage record not read: the reader is still attached
            freed = weakref.ref(answer)
            del answer
            assert freed() is None
        finally:
            gc.enable()
