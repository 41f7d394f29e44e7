"""XAIHook against httpx.MockTransport: request bodies, error mapping, retry policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_xai.exceptions import (
    XAIAuthenticationError,
    XAIBadRequestError,
    XAIConfigurationError,
    XAIConnectionError,
    XAINotFoundError,
    XAIQuotaExhaustedError,
    XAIRateLimitError,
    XAIResponseError,
    XAIServerError,
    XAIStructuredOutputError,
    XAITimeoutError,
    XAIValidationError,
)
from airflow_provider_xai.hooks.xai import XAIHook

KEY = "xai-unit-secret-key-123456"


def completion(content: str = "hello", **usage: Any) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "grok-4.3",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, **usage},
    }


class Recorder:
    """A MockTransport handler that answers from a script and records requests."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.content]


@pytest.fixture
def conn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        json.dumps(
            {"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY, "extra": {"max_retries": 3}}
        ),
    )


def make_hook(recorder: Recorder, **kwargs: Any) -> XAIHook:
    return XAIHook(backoff_base=0.001, client_kwargs={"transport": httpx.MockTransport(recorder)}, **kwargs)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": "c", "error": message}, headers=headers)


@pytest.mark.usefixtures("conn_env")
class TestRequests:
    def test_chat_sends_validated_body_with_auth_and_user_agent(self) -> None:
        rec = Recorder(httpx.Response(200, json=completion("hi there")))
        result = make_hook(rec).chat(messages=[{"role": "user", "content": "Hi"}], temperature=0.2)
        assert result.text == "hi there"
        request = rec.requests[0]
        assert str(request.url) == "https://xai.test/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["user-agent"].startswith("airflow-provider-xai/")
        assert rec.bodies()[0] == {
            "model": "grok-4.3",
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0.2,
        }

    def test_default_model_comes_from_connection_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_XAI_DEFAULT",
            json.dumps({"conn_type": "xai", "password": KEY, "extra": {"default_model": "grok-3-mini"}}),
        )
        rec = Recorder(httpx.Response(200, json=completion()))
        hook = make_hook(rec)
        hook.chat(messages=[{"role": "user", "content": "x"}])
        assert rec.bodies()[0]["model"] == "grok-3-mini"
        assert str(rec.requests[0].url).startswith("https://api.x.ai/v1/")

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"messages": []}, "messages"),
            ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
            ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
            ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
            ({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ],
    )
    def test_bad_input_names_field_and_sends_nothing(self, kwargs: dict[str, Any], field: str) -> None:
        rec = Recorder(httpx.Response(200, json=completion()))
        with pytest.raises(XAIValidationError) as info:
            make_hook(rec).chat(**kwargs)
        assert info.value.field == field
        assert field in str(info.value)
        assert rec.requests == []


@pytest.mark.usefixtures("conn_env")
class TestErrors:
    @pytest.mark.parametrize(
        ("status", "message", "cls"),
        [
            (
                400,
                "Incorrect API key provided: xa***56. You can obtain an API key from x",
                XAIAuthenticationError,
            ),
            (401, "missing auth", XAIAuthenticationError),
            (400, "Model grok-4 does not support parameter presencePenalty.", XAIBadRequestError),
            (404, "The model grok-beta does not exist", XAINotFoundError),
            (422, "Failed to deserialize the JSON body", XAIBadRequestError),
        ],
    )
    def test_client_errors_are_typed_and_never_retried(self, status: int, message: str, cls: type) -> None:
        rec = Recorder(error(status, message, {"x-request-id": "req-9"}))
        with pytest.raises(cls) as info:
            make_hook(rec).chat(messages=[{"role": "user", "content": "x"}])
        assert len(rec.requests) == 1
        assert info.value.status == status
        assert info.value.request_id == "req-9"
        assert info.value.xai_message == message

    def test_retries_429_then_503_then_succeeds(self) -> None:
        rec = Recorder(
            error(429, "Rate limit", {"retry-after": "0.01"}),
            error(503, "unavailable"),
            httpx.Response(200, json=completion("ok")),
        )
        assert make_hook(rec).chat(messages=[{"role": "user", "content": "x"}]).text == "ok"
        assert len(rec.requests) == 3

    def test_retries_stop_after_max_retries(self) -> None:
        rec = Recorder(error(503, "down"))
        with pytest.raises(XAIServerError):
            make_hook(rec, max_retries=2).chat(messages=[{"role": "user", "content": "x"}])
        assert len(rec.requests) == 3

    def test_max_retries_comes_from_connection_extra(self) -> None:
        rec = Recorder(error(502, "bad gateway"))
        with pytest.raises(XAIServerError):
            make_hook(rec).chat(messages=[{"role": "user", "content": "x"}])
        assert len(rec.requests) == 4  # conn extra max_retries=3

    def test_quota_exhausted_429_is_not_retried(self) -> None:
        rec = Recorder(
            error(
                429,
                "Your team abc has either used all available credits or reached its monthly spending limit",
            )
        )
        with pytest.raises(XAIQuotaExhaustedError) as info:
            make_hook(rec).chat(messages=[{"role": "user", "content": "x"}])
        assert isinstance(info.value, XAIRateLimitError)
        assert len(rec.requests) == 1

    def test_retry_after_ms_is_honoured(self) -> None:
        waits: list[float] = []
        rec = Recorder(
            error(429, "slow down", {"retry-after-ms": "30"}), httpx.Response(200, json=completion())
        )
        hook = make_hook(rec)
        hook.log.warning = lambda msg, *args: waits.append(args[3])  # type: ignore[method-assign]
        hook.chat(messages=[{"role": "user", "content": "x"}])
        assert waits == [pytest.approx(0.03)]

    def test_timeouts_and_dropped_connections_are_retried_then_typed(self) -> None:
        def timeout(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("read timed out", request=request)

        def dropped(request: httpx.Request) -> httpx.Response:
            raise httpx.RemoteProtocolError("peer closed connection", request=request)

        rec = Recorder(timeout, dropped, httpx.Response(200, json=completion("fine")))
        assert make_hook(rec).chat(messages=[{"role": "user", "content": "x"}]).text == "fine"
        rec = Recorder(timeout)
        with pytest.raises(XAITimeoutError) as info:
            make_hook(rec, max_retries=1).chat(messages=[{"role": "user", "content": "x"}])
        assert isinstance(info.value, XAIConnectionError)
        assert len(rec.requests) == 2

    @pytest.mark.parametrize(
        "body",
        [b"not json", b'{"foo": 1}', json.dumps({**completion(), "choices": "nope"}).encode()],
    )
    def test_malformed_200_bodies_raise_typed_error(self, body: bytes) -> None:
        rec = Recorder(httpx.Response(200, content=body))
        with pytest.raises(XAIResponseError, match="Malformed"):
            make_hook(rec).chat(messages=[{"role": "user", "content": "x"}])

    def test_empty_choices_raise_typed_error_on_text(self) -> None:
        rec = Recorder(httpx.Response(200, json={**completion(), "choices": []}))
        result = make_hook(rec).chat(messages=[{"role": "user", "content": "x"}])
        with pytest.raises(XAIResponseError, match="no choices"):
            _ = result.text

    def test_key_echoed_by_a_server_is_scrubbed(self) -> None:
        rec = Recorder(error(400, f"Incorrect API key provided: {KEY}"))
        with pytest.raises(XAIAuthenticationError) as info:
            make_hook(rec).chat(messages=[{"role": "user", "content": "x"}])
        assert KEY not in str(info.value)
        assert KEY not in repr(info.value.__dict__)


def test_missing_key_names_both_places(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_XAI_DEFAULT", raising=False)
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    with pytest.raises(XAIConfigurationError) as info:
        _ = XAIHook().settings
    assert "xai_default" in str(info.value)
    assert "XAI_API_KEY" in str(info.value)


def test_env_key_used_when_connection_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_XAI_DEFAULT", raising=False)
    monkeypatch.setenv("XAI_API_KEY", KEY)
    settings = XAIHook().settings
    assert settings.api_key == KEY
    assert settings.base_url == "https://api.x.ai/v1"
    assert KEY not in repr(settings)
    assert KEY not in repr(XAIHook())


@pytest.mark.usefixtures("conn_env")
def test_structured_output_validates_and_keeps_completion() -> None:
    from pydantic import BaseModel

    class Invoice(BaseModel):
        number: str
        total: float

    rec = Recorder(
        httpx.Response(200, json=completion('{"number": "A1", "total": 9.5}')),
        httpx.Response(200, json=completion('{"number": "A1"}', cost_in_usd_ticks=100)),
    )
    hook = make_hook(rec)
    result = hook.chat_structured(messages=[{"role": "user", "content": "x"}], output=Invoice)
    assert result.value == {"number": "A1", "total": 9.5}
    fmt = rec.bodies()[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["required"] == ["number", "total"]
    with pytest.raises(XAIStructuredOutputError) as info:
        hook.chat_structured(messages=[{"role": "user", "content": "x"}], output=Invoice)
    assert "total" in str(info.value)
    assert info.value.completion.usage.cost_in_usd_ticks == 100


@pytest.mark.usefixtures("conn_env")
def test_chat_many_runs_on_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    uvloop = pytest.importorskip("uvloop")  # a dependency of uvicorn[standard], which Airflow brings
    loops: list[type] = []
    hook = make_hook(Recorder(httpx.Response(200, json=completion("ok"))))
    original = type(hook).achat_many

    async def spy(self: XAIHook, *args: Any, **kwargs: Any) -> Any:
        loops.append(type(asyncio.get_running_loop()))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(type(hook), "achat_many", spy)
    results = hook.chat_many([{"messages": [{"role": "user", "content": "x"}]}] * 3)
    assert [r.text for r in results] == ["ok"] * 3  # type: ignore[union-attr]
    assert loops == [uvloop.Loop]


def test_body_is_never_stale() -> None:
    from airflow_provider_xai.schemas import build_chat_request

    request = build_chat_request(model="grok-4.3", messages=[{"role": "user", "content": "x"}], temperature=0.1)
    body = request.to_body()
    body["stream"] = True  # callers add keys to their copy
    assert "stream" not in request.to_body()
    request.temperature = 0.9
    assert request.to_body()["temperature"] == 0.9
    copy = build_chat_request(request).model_copy(update={"temperature": 1.5})
    assert copy.to_body()["temperature"] == 1.5
    assert build_chat_request(copy).to_body()["temperature"] == 1.5
    checked = build_chat_request(request)
    checked.messages[0].content = "edited in place"  # a nested edit, after validation
    assert checked.to_body()["messages"][0]["content"] == "edited in place"


@pytest.mark.parametrize(("argument", "value"), [("backoff_base", float("nan")), ("backoff_cap", float("inf")),
                                                 ("backoff_base", -1.0)])  # fmt: skip
def test_hook_backoff_arguments_refuse_what_no_sleep_takes(argument: str, value: float) -> None:
    with pytest.raises(XAIValidationError) as info:
        XAIHook(**{argument: value})
    assert info.value.field == argument


@pytest.mark.parametrize("width", [float("nan"), 0, 2.5, True])
def test_chat_many_refuses_a_width_that_is_no_count(width: Any) -> None:
    with pytest.raises(XAIValidationError) as info:
        XAIHook().chat_many([], max_concurrency=width)
    assert info.value.field == "max_concurrency"
