"""XAIHook over real HTTP against the bundled local xAI server."""

from __future__ import annotations

import asyncio
import json
import pickle
import traceback
from typing import Any

import pytest
from pydantic import BaseModel

from airflow_provider_xai.exceptions import (
    XAIAuthenticationError,
    XAIBadRequestError,
    XAIDeferredExpiredError,
    XAINotFoundError,
    XAIQuotaExhaustedError,
    XAIResponseError,
    XAIServerError,
    XAITruncatedStreamError,
)
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.testing import Fault, XAIServer

USER = [{"role": "user", "content": "Hello Grok"}]


def hook(**kwargs: Any) -> XAIHook:
    return XAIHook(backoff_base=0.01, **kwargs)


def chat_posts(server: Any) -> list[Any]:
    return server.requests("/chat/completions", method="POST")


def test_chat_answer_and_usage(xai_server: Any) -> None:
    completion = hook().chat(messages=USER, model="grok-3-mini")
    assert completion.text == "Grok (local) heard: Hello Grok"
    usage = completion.usage
    assert usage is not None and usage.reasoning_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens + usage.reasoning_tokens
    assert usage.cost_in_usd_ticks and usage.cost_in_usd_ticks > 0
    entry = chat_posts(xai_server)[0]
    assert entry.headers["authorization"] == "Bearer ***"
    assert entry.headers["user-agent"].startswith("airflow-provider-xai/")


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(status=429, retry_after=0.01)],
        [Fault(status=429)],
        [Fault(status=503), Fault(status=429, retry_after_ms=10)],
        [Fault(drop=True)],
    ],
    ids=["429-retry-after", "429-bare", "503-then-429", "dropped"],
)
def test_retryable_faults_then_success(xai_server: Any, faults: list[Fault]) -> None:
    for fault in faults:
        xai_server.enqueue(fault)
    assert hook().chat(messages=USER).text.endswith("Hello Grok")
    assert len(chat_posts(xai_server)) == len(faults) + 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=400, message="Model x does not support parameter stop."), XAIBadRequestError),
        (Fault(status=401), XAIAuthenticationError),
        (Fault(status=404), XAINotFoundError),
        (Fault(status=422), XAIBadRequestError),
        (
            Fault(
                status=429,
                message="Your team t has either used all available credits or reached its monthly spending limit.",
            ),
            XAIQuotaExhaustedError,
        ),
    ],
)
def test_non_retryable_errors_send_exactly_one_request(xai_server: Any, fault: Fault, error: type) -> None:
    xai_server.enqueue(fault, times=5)
    with pytest.raises(error):
        hook().chat(messages=USER)
    assert len(chat_posts(xai_server)) == 1


def test_persistent_503_gives_server_error_after_max_retries(xai_server: Any) -> None:
    xai_server.enqueue(Fault(status=503), times=10)
    with pytest.raises(XAIServerError):
        hook(max_retries=2).chat(messages=USER)
    assert len(chat_posts(xai_server)) == 3


def test_bad_key_error_does_not_contain_key(xai_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "xai-wrong-key-abcdefghijklmnop"
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        json.dumps({"conn_type": "xai", "host": xai_server.base_url, "password": wrong}),
    )
    with pytest.raises(XAIAuthenticationError) as info:
        hook().chat(messages=USER)
    assert info.value.status == 400
    assert "Incorrect API key" in str(info.value)
    assert wrong not in str(info.value) and wrong not in repr(info.value.__dict__)
    assert len(chat_posts(xai_server)) == 1
    ok, message = hook().test_connection()
    assert not ok and "Incorrect API key" in message and wrong not in message


def test_stream_yields_chunks_and_final_usage(xai_server: Any) -> None:
    chunks = list(hook().stream_chat(messages=[{"role": "user", "content": "one\ntwo\nthree"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Grok (local) heard: one\ntwo\nthree"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chat_posts(xai_server)[0].body["stream_options"] == {"include_usage": True}


def test_stream_completion_equals_plain_completion(xai_server: Any) -> None:
    seen: list[str] = []
    streamed = hook().stream_chat_completion(messages=USER, on_text=seen.append)
    plain = hook().chat(messages=USER)
    assert streamed.text == plain.text == "".join(seen)
    assert streamed.usage is not None and plain.usage is not None
    assert streamed.usage.prompt_tokens == plain.usage.prompt_tokens
    assert streamed.usage.completion_tokens == plain.usage.completion_tokens


@pytest.mark.parametrize(
    ("fault", "error"),
    [(Fault(truncate_stream=True), XAITruncatedStreamError), (Fault(malformed_chunk=True), XAIResponseError)],
)
def test_broken_streams_raise_typed_errors(xai_server: Any, fault: Fault, error: type) -> None:
    xai_server.enqueue(fault)
    with pytest.raises(error):
        list(hook().stream_chat(messages=USER))


async def _chunks(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


def _raise(result: Any) -> Any:
    """A fan-out's item that holds its error (``chat_many`` returns errors, not raises them)."""
    if isinstance(result, BaseException):
        raise result
    return result


STREAMED_CALLS: dict[str, Any] = {
    "stream_chat_completion": lambda h: h.stream_chat_completion(messages=USER),
    "astream_chat_completion": lambda h: asyncio.run(h.astream_chat_completion(messages=USER)),
    "stream_chat": lambda h: list(h.stream_chat(messages=USER)),
    "astream_chat": lambda h: asyncio.run(_chunks(h.astream_chat(messages=USER))),
    "chat_many(stream=True)": lambda h: _raise(h.chat_many([{"messages": USER}], stream=True)[0]),
}


@pytest.mark.parametrize("call", list(STREAMED_CALLS.values()), ids=list(STREAMED_CALLS))
def test_an_error_event_mid_stream_that_echoes_the_key_never_shows_it(xai_server: XAIServer, call: Any) -> None:
    """Issue 27: the chat StreamAssembler built without its ``secret`` let a mid-stream error
    event that quotes the key into the exception; no test could send one until ``fail_stream``
    worked for chat."""
    key = xai_server.api_key
    xai_server.enqueue(Fault(fail_stream=True, message=f"Stream aborted for key {key}; retry later."))
    client = hook(max_retries=0)
    try:
        with pytest.raises(XAIServerError) as info:
            call(client)
    finally:
        client.close()
    error = info.value
    assert "Stream aborted for key ***; retry later." in str(error)  # the event was read, scrubbed
    shown = "\n".join([str(error), repr(error), repr(error.args), json.dumps(error.to_dict()),
                        pickle.dumps(error).decode("latin-1"), "".join(traceback.format_exception(error))])
    assert key not in shown and key[-6:] not in shown
    (post,) = chat_posts(xai_server)
    assert post.fault == "200,fail_stream"


def test_a_chat_stream_that_fails_midway_is_retried_like_a_broken_one(xai_server: XAIServer) -> None:
    xai_server.enqueue(Fault(fail_stream=True, message="overloaded"))
    seen: list[str] = []
    completion = hook().stream_chat_completion(messages=USER, on_text=seen.append)
    assert completion.text == "Grok (local) heard: Hello Grok"
    assert [p.fault for p in chat_posts(xai_server)] == ["200,fail_stream", None]
    assert "".join(seen).endswith(completion.text)  # the restarted answer, from its beginning


def test_stream_completion_retries_a_truncated_stream(xai_server: Any) -> None:
    xai_server.enqueue(Fault(truncate_stream=True))
    assert hook().stream_chat_completion(messages=USER).text.endswith("Hello Grok")
    assert len(chat_posts(xai_server)) == 2


def test_structured_output_from_json_schema(xai_server: Any) -> None:
    class Verdict(BaseModel):
        label: str
        score: float
        tags: list[str]

    result = hook().chat_structured(messages=USER, output=Verdict)
    assert set(result.value) == {"label", "score", "tags"}
    assert chat_posts(xai_server)[0].body["response_format"]["type"] == "json_schema"


def test_deferred_submit_poll_fetch_once(xai_server: Any) -> None:
    h = hook()
    request_id = h.start_deferred(messages=USER)
    assert h.get_deferred(request_id) is None
    assert h.get_deferred(request_id) is None
    completion = h.get_deferred(request_id)
    assert completion is not None and completion.text.endswith("Hello Grok")
    with pytest.raises(XAIDeferredExpiredError):
        h.get_deferred(request_id)
    assert chat_posts(xai_server)[0].body["deferred"] is True


def test_models_prices_key_info_and_tokenize(xai_server: Any) -> None:
    h = hook()
    assert "grok-4.3" in {m.id for m in h.list_models()}
    prices = {m.id: m for m in h.list_language_models()}
    assert prices["grok-4.3"].prompt_text_token_price == 12500
    refreshed = h.get_prices(refresh=True)
    assert refreshed["grok-4.3"].input == pytest.approx(1.25)
    assert h.get_api_key_info().redacted_api_key.startswith("xai-")
    tokens = h.tokenize("Hello Grok, how are you?")
    assert "".join(t.string_token for t in tokens.token_ids) == "Hello Grok, how are you?"


def test_test_connection_uses_free_endpoint_and_reports_blocked(xai_server: Any) -> None:
    ok, message = hook().test_connection()
    assert ok, message
    xai_server.configure(api_key_disabled=True, team_blocked=True)
    ok, message = hook().test_connection()
    assert not ok
    assert "disabled" in message and "team is blocked" in message
    # free calls only: the key's own record, and one collection for the management key
    assert {e.path for e in xai_server.journal} == {"/v1/api-key", "/management/v1/collections"}


def test_base_url_with_path_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    with XAIServer(path_prefix="/xai") as server:
        assert server.base_url.endswith("/xai/v1")
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", server.connection_json())
        assert hook().chat(messages=USER).text.endswith("Hello Grok")
        assert [e.path for e in server.journal] == ["/xai/v1/chat/completions"]


async def test_async_methods_match_sync(xai_server: Any) -> None:
    h = hook()
    sync = h.chat(messages=USER)
    xai_server.enqueue(Fault(status=503))
    async_result = await h.achat(messages=USER)
    assert async_result.text == sync.text
    chunks = [c async for c in h.astream_chat(messages=USER)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == sync.text
    request_id = await h.astart_deferred(messages=USER)
    results = [await h.aget_deferred(request_id) for _ in range(3)]
    assert results[:2] == [None, None] and results[2] is not None and results[2].text == sync.text
    info = await h.aget_api_key_info()
    assert info.redacted_api_key == h.get_api_key_info().redacted_api_key
    xai_server.enqueue(Fault(status=404))
    with pytest.raises(XAINotFoundError):
        await h.achat(messages=USER)
    await h.aclose()


def test_chat_many_keeps_order_and_captures_errors(xai_server: Any) -> None:
    prompts = [f"item {i}" for i in range(20)]
    xai_server.enqueue(Fault(status=400, message="bad one"))
    results = hook().chat_many(
        [{"messages": [{"role": "user", "content": p}]} for p in prompts], max_concurrency=4
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], XAIBadRequestError)
    answers = [r.text for r in results if not isinstance(r, Exception)]
    assert len(answers) == 19
    for prompt, result in zip(prompts, results, strict=True):
        if not isinstance(result, Exception):
            assert result.text == f"Grok (local) heard: {prompt}"
