"""Hardened edges of the hook core (issue "Hook core"), each against httpx.MockTransport.

Numbers in the test names are the edges of the issue: 1 retry-after, 2 httpx failures typed,
3 prices checked at connection read, 9 cleartext to remote hosts, 10 bounded reads,
13 error classes, 16 quoted path segments.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest

from airflow_provider_xai.exceptions import (
    XAIAuthenticationError,
    XAIConfigurationError,
    XAIConnectionError,
    XAIDeferredExpiredError,
    XAINotFoundError,
    XAIPermissionError,
    XAIQuotaExhaustedError,
    XAIRateLimitError,
    XAIResponseError,
)
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.pipeline.errors import error_from_response, parse_retry_after
from airflow_provider_xai.pipeline.retry import MAX_RETRY_AFTER, RetryPolicy
from tests.unit.test_hook_mock import KEY, Recorder, completion, error, make_hook

MESSAGES = [{"role": "user", "content": "x"}]


def set_conn(monkeypatch: pytest.MonkeyPatch, host: str = "https://xai.test/v1", **extra: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        json.dumps({"conn_type": "xai", "host": host, "password": KEY, "extra": {"max_retries": 2, **extra}}),
    )


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch)


# --- 1: retry-after ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "retry_after", ["soon", "Wed, 21 Oct 2015 07:28:00", "3600", "nan", "inf", "", "-5, or so"]
)
@pytest.mark.usefixtures("conn")
def test_1_unusable_retry_after_is_retried_with_backoff(retry_after: str) -> None:
    rec = Recorder(error(503, "busy", {"retry-after": retry_after}), httpx.Response(200, json=completion()))
    assert make_hook(rec).chat(messages=MESSAGES).text == "hello"
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00"}, None),  # no zone: nothing certain
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "bad", "retry-after": "1"}, 1.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "inf"}, None),
    ],
)
def test_1_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_1_retry_after_beyond_the_cap_falls_back_to_capped_backoff() -> None:
    exc = error_from_response(429, {"retry-after": str(MAX_RETRY_AFTER * 10)}, b'{"error": "slow down"}')
    policy = RetryPolicy(max_retries=3, backoff_base=0.5, backoff_cap=2.0)
    waits = [policy.delay(attempt, exc) for attempt in (1, 2, 3)]
    assert all(w is not None and 0 < w <= 2.0 for w in waits)
    assert policy.delay(4, exc) is None  # the budget still ends
    sensible = error_from_response(429, {"retry-after": "7"}, b"{}")
    assert policy.delay(1, sensible) == 7.0


# --- 2: every httpx failure typed --------------------------------------------------------------
@pytest.mark.usefixtures("conn")
def test_2_corrupt_content_encoding_is_a_typed_response_error() -> None:
    corrupt = httpx.Response(200, headers={"content-encoding": "gzip"}, content=iter([b"not gzip at all"]))
    rec = Recorder(corrupt)
    with pytest.raises(XAIResponseError, match="DecodingError"):
        make_hook(rec).chat(messages=MESSAGES)
    assert len(rec.requests) == 1  # an answered (maybe billed) request is not sent again
    good = httpx.Response(
        200, headers={"content-encoding": "gzip"}, content=iter([gzip.compress(json.dumps(completion()).encode())])
    )
    assert make_hook(Recorder(good)).chat(messages=MESSAGES).text == "hello"


@pytest.mark.usefixtures("conn")
@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.UnsupportedProtocol("no such scheme"), XAIConfigurationError),
        (httpx.TooManyRedirects("loop"), XAIResponseError),
        (httpx.RemoteProtocolError("peer closed"), XAIConnectionError),
        (httpx.InvalidURL("bad url"), XAIConfigurationError),
    ],
)
def test_2_any_httpx_request_failure_is_typed(raised: Exception, expected: type[Exception]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    with pytest.raises(expected):
        make_hook(Recorder(fail), max_retries=0).chat(messages=MESSAGES)


@pytest.mark.usefixtures("conn")
async def test_2_async_path_types_the_same_failures() -> None:
    async def body() -> Any:
        yield b"not gzip at all"

    corrupt = httpx.Response(200, headers={"content-encoding": "gzip"}, content=body())
    with pytest.raises(XAIResponseError, match="DecodingError"):
        await make_hook(Recorder(corrupt)).achat(messages=MESSAGES)


# --- 3: prices checked when the connection is read ----------------------------------------------
@pytest.mark.parametrize(
    "prices",
    [
        "not json",
        '["a list"]',
        {"grok-4.3": {"input": "cheap", "output": 1}},
        {"grok-4.3": {"output": 1}},
        {"grok-4.3": {"input": -1, "output": 1}},
        {"grok-4.3": {"input": "NaN", "output": 1}},
    ],
)
def test_3_bad_prices_extra_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch, prices: Any
) -> None:
    set_conn(monkeypatch, prices=prices)
    rec = Recorder(httpx.Response(200, json=completion()))
    with pytest.raises(XAIConfigurationError, match="prices"):
        make_hook(rec).chat(messages=MESSAGES)
    assert rec.requests == []


def test_3_good_prices_extra_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, prices={"grok-4.3": {"input": 9, "output": 9}})
    assert make_hook(Recorder(httpx.Response(200, json=completion()))).get_prices()["grok-4.3"].input == 9


# --- 9: cleartext only to loopback ----------------------------------------------------------------
@pytest.mark.parametrize("host", ["http://api.x.ai/v1", "http://10.1.2.3:8080/v1", "http://proxy.internal/v1"])
def test_9_plain_http_to_a_remote_host_is_refused(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    set_conn(monkeypatch, host=host)
    rec = Recorder(httpx.Response(200, json=completion()))
    with pytest.raises(XAIConfigurationError, match="unencrypted"):
        make_hook(rec).chat(messages=MESSAGES)
    assert rec.requests == []


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("http://127.0.0.1:8000/v1", {}),
        ("http://localhost:8000/v1", {}),
        ("http://[::1]:8000/v1", {}),
        ("http://proxy.internal/v1", {"allow_insecure_http": True}),
        ("http://proxy.internal/v1", {"allow_insecure_http": "true"}),
    ],
)
def test_9_loopback_or_explicit_permission_may_use_http(
    monkeypatch: pytest.MonkeyPatch, host: str, extra: dict[str, Any]
) -> None:
    set_conn(monkeypatch, host=host, **extra)
    rec = Recorder(httpx.Response(200, json=completion()))
    assert make_hook(rec).chat(messages=MESSAGES).text == "hello"


def test_9_base_url_that_is_not_http_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, host="ftp://xai.test/v1")
    with pytest.raises(XAIConfigurationError, match="http"):
        _ = XAIHook().settings


# --- 10: bounded reads ----------------------------------------------------------------------------
@pytest.mark.usefixtures("conn")
def test_10_response_larger_than_the_limit_is_a_typed_error() -> None:
    big = completion("x" * 5000)
    rec = Recorder(httpx.Response(200, json=big))
    with pytest.raises(XAIResponseError, match="max_response_bytes"):
        make_hook(rec, max_response_bytes=1000).chat(messages=MESSAGES)
    assert make_hook(Recorder(httpx.Response(200, json=big)), max_response_bytes=10_000).chat(
        messages=MESSAGES
    ).text.startswith("xxx")


@pytest.mark.usefixtures("conn")
def test_10_response_size_limit_holds_without_content_length() -> None:
    def chunked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b'{"id": "', b"x" * 4000, b'"}']))

    with pytest.raises(XAIResponseError, match="max_response_bytes"):
        make_hook(Recorder(chunked), max_response_bytes=1000).chat(messages=MESSAGES)


@pytest.mark.usefixtures("conn")
def test_10_event_stream_line_longer_than_the_limit_is_a_typed_error() -> None:
    chunk = {"id": "c", "model": "grok-4.3", "choices": [{"index": 0, "delta": {"content": "y" * 3000}}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    stream = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    with pytest.raises(XAIResponseError, match="max_sse_line_length"):
        make_hook(Recorder(stream), max_sse_line_length=1000, max_retries=0).stream_chat_completion(
            messages=MESSAGES
        )
    fine = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    done = make_hook(Recorder(fine), max_sse_line_length=10_000).stream_chat_completion(
        messages=MESSAGES, stream_options={"include_usage": False}
    )
    assert done.text == "y" * 3000


# --- 13: error classes ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, {"code": "c", "error": "Your team has either used all available credits"}, XAIQuotaExhaustedError),
        (429, {"code": "c", "error": "reached its monthly spending limit"}, XAIQuotaExhaustedError),
        (429, {"code": "c", "error": "too many requests"}, XAIRateLimitError),
        (403, {"code": "c", "error": "blocked"}, XAIPermissionError),
        (
            400,
            {"code": "The request does not have valid authentication credentials", "error": "nope"},
            XAIAuthenticationError,
        ),
        (400, {"code": "Some requested entity was not found", "error": "no such model"}, XAINotFoundError),
        (429, {"error": {"code": "insufficient_quota", "message": "pay up"}}, XAIQuotaExhaustedError),
        (400, {"code": "Client specified an invalid argument", "error": "Incorrect API key"}, XAIAuthenticationError),
    ],
)
def test_13_error_class_from_status_and_code_first(status: int, body: Any, expected: type[Exception]) -> None:
    err = error_from_response(status, {}, json.dumps(body).encode())
    assert type(err) is expected


def test_13_url_encoded_message_is_decoded_before_shown_or_matched() -> None:
    body = b'{"code": "c", "error": "Your%20team%20has%20used%20all%20available%20credits%20(100%25)"}'
    err = error_from_response(429, {}, body)
    assert isinstance(err, XAIQuotaExhaustedError)
    assert err.xai_message == "Your team has used all available credits (100%)"
    plain = error_from_response(400, {}, b'{"error": "discount of 100% applies"}')
    assert plain.xai_message == "discount of 100% applies"


@pytest.mark.usefixtures("conn")
def test_13_quota_exhausted_on_403_is_not_retried() -> None:
    rec = Recorder(error(403, "Your team has used all available credits"))
    with pytest.raises(XAIQuotaExhaustedError):
        make_hook(rec).chat(messages=MESSAGES)
    assert len(rec.requests) == 1


# --- 16: quoted path segments --------------------------------------------------------------------
@pytest.mark.usefixtures("conn")
def test_16_ids_are_quoted_as_one_path_segment() -> None:
    rec = Recorder(error(404, "unknown"))
    hook = make_hook(rec)
    with pytest.raises(XAIDeferredExpiredError):
        hook.get_deferred("../../models?x=1#frag")
    with pytest.raises(XAINotFoundError):
        hook.get_language_model("grok/../../api-key")
    paths = [r.url.raw_path.decode() for r in rec.requests]
    assert paths == [
        "/v1/chat/deferred-completion/..%2F..%2Fmodels%3Fx%3D1%23frag",
        "/v1/language-models/grok%2F..%2F..%2Fapi-key",
    ]


# --- 6 (hook side): deeply nested error bodies and stream events stay typed -----------------------
def test_6_deeply_nested_error_body_is_still_a_typed_error() -> None:
    deep = ('{"error": ' * 100_000 + '"x"' + "}" * 100_000).encode()
    err = error_from_response(500, {}, deep)
    assert err.status == 500 and isinstance(err.xai_message, str)


@pytest.mark.usefixtures("conn")
def test_6_deeply_nested_stream_event_is_a_typed_error() -> None:
    deep = '{"error": ' * 100_000 + '"x"' + "}" * 100_000
    stream = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=f"data: {deep}\n\n".encode()
    )
    with pytest.raises(XAIResponseError):
        make_hook(Recorder(stream), max_retries=0).stream_chat_completion(messages=MESSAGES)
