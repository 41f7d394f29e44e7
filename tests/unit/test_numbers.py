"""Every numeric argument of every operator, sensor, trigger and decorator, and every numeric
connection field, refuses NaN and infinity, naming the field, before any request (issue 27,
item 8 and its class). NaN passes any ``<`` or ``>`` check unrefused, so each is tried."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, check_number, is_finite_number
from airflow_provider_xai.exceptions import XAIConfigurationError, XAIValidationError
from airflow_provider_xai.operators.batch import XAIBatchOperator
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.operators.vision import XAIVisionOperator
from airflow_provider_xai.sensors.usage import XAIUsageSensor
from airflow_provider_xai.tool_prices import tool_price_table
from airflow_provider_xai.triggers.batch import XAIBatchTrigger
from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger
from airflow_provider_xai.triggers.usage import XAIUsageTrigger
from tests.unit.test_hook_mock import KEY, Recorder, completion, make_hook

NAN, INF = float("nan"), float("inf")
NOT_FINITE = [NAN, INF, -INF]
START = pendulum.datetime(2026, 1, 1, tz="UTC")


def test_is_finite_number() -> None:
    assert all(is_finite_number(v) for v in (0, -3, 2.5, 10**400, 1e308))
    assert not any(is_finite_number(v) for v in (*NOT_FINITE, True, "1", None, [1]))
    assert is_finite_number(3, integer=True) and not is_finite_number(3.0, integer=True)


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
def test_check_number_refuses_nan_and_infinity_whatever_the_bounds(value: float) -> None:
    for kwargs in ({"low": 0}, {"low": 0, "high": 2}, {"low": 0, "positive": True}, {"low": -math.inf}):
        with pytest.raises(XAIValidationError, match="finite") as info:
            check_number("x", value, **kwargs)
        assert info.value.field == "x"


# --- operators and the decorator: at DAG parse ------------------------------------------------------
def chat(**kwargs: Any) -> Any:
    return XAIChatOperator(task_id="t", prompt="hi", **kwargs)


def vision(**kwargs: Any) -> Any:
    return XAIVisionOperator(task_id="t", prompt="hi", images=["https://example.com/a.png"], **kwargs)


def batch(**kwargs: Any) -> Any:
    return XAIBatchOperator(task_id="t", inputs=["a"], output_path="file:///tmp/x.jsonl", **kwargs)


def decorated(**kwargs: Any) -> Any:
    from airflow_provider_xai.decorators.xai import xai_task

    with DAG(f"t_numbers_{time.monotonic_ns()}", schedule=None, start_date=START):

        @xai_task(task_id="t", **kwargs)
        def ask() -> str:
            return "hi"

        return ask()


def sensor(**kwargs: Any) -> Any:
    return XAIUsageSensor(task_id="t", **kwargs)


ARGUMENTS = [
    # issue 27: XAIChatOperator(deferrable=True, poll_interval=nan) built, and deferred_timeout=nan
    (chat, "poll_interval", {"deferrable": True}),
    (chat, "deferred_timeout", {"deferrable": True}),
    (chat, "temperature", {}),
    (chat, "max_tokens", {}),
    (chat, "max_turns", {}),
    (vision, "poll_interval", {"deferrable": True}),
    (vision, "temperature", {}),
    (decorated, "poll_interval", {"deferrable": True}),
    (decorated, "deferred_timeout", {"deferrable": True}),
    (decorated, "temperature", {}),
    (batch, "poll_interval", {}),
    (batch, "batch_timeout", {}),
    (batch, "temperature", {}),
    (batch, "max_tokens", {}),
    (sensor, "max_cost_usd", {}),
    (sensor, "max_total_tokens", {}),
    (sensor, "poke_interval", {}),
    (sensor, "timeout", {}),
]


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize(("build", "field", "others"), ARGUMENTS, ids=lambda v: getattr(v, "__name__", v))
def test_operator_arguments_refuse_nan_and_infinity(
    build: Any, field: str, others: dict[str, Any], value: float
) -> None:
    with pytest.raises(XAIValidationError) as info:
        build(**others, **{field: value})
    assert info.value.field == field


@pytest.mark.parametrize(
    ("build", "field"),
    [(chat, "poll_interval"), (chat, "deferred_timeout"), (batch, "poll_interval"), (batch, "batch_timeout"),
     (sensor, "poke_interval"), (sensor, "timeout")],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_waits_beyond_a_year_are_refused_and_a_year_is_not(build: Any, field: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        build(**{field: MAX_WAIT_SECONDS + 1})
    assert info.value.field == field and "<= 31622400" in str(info.value)
    assert getattr(build(**{field: MAX_WAIT_SECONDS}), field) == MAX_WAIT_SECONDS


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity", " NaN "])
@pytest.mark.parametrize("field", ["max_cost_usd", "max_total_tokens"])
def test_a_templated_budget_that_renders_to_nan_or_infinity_is_refused(field: str, value: str) -> None:
    probe = sensor(**{field: "{{ params.limit }}"})
    setattr(probe, field, value)  # what rendering produced
    with pytest.raises(XAIValidationError) as info:
        _ = probe.budget
    assert info.value.field == field


# --- triggers: at construction (also when the triggerer rebuilds one) --------------------------------
TRIGGERS = [
    (lambda **kw: XAIDeferredCompletionTrigger("req", **kw), ["poll_interval", "end_time", "expired_grace",
                                                              "max_poll_failures"]),
    (lambda **kw: XAIBatchTrigger("batch", **kw), ["poll_interval", "end_time", "timeout", "max_poll_failures"]),
    (lambda **kw: XAIUsageTrigger(dag_id="d", run_id="r", task_ids=["a"], **kw), ["poll_interval", "end_time"]),
]


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize(("build", "field"), [(b, f) for b, fields in TRIGGERS for f in fields])
def test_trigger_arguments_refuse_nan_and_infinity(build: Any, field: str, value: float) -> None:
    with pytest.raises(XAIValidationError) as info:
        build(**{field: value})
    assert info.value.field == field


def test_triggers_still_take_what_the_operators_give_them() -> None:
    end = time.time() + 60
    for build, _ in TRIGGERS:
        _, kwargs = build(poll_interval=0, end_time=end).serialize()
        assert kwargs["poll_interval"] == 0 and kwargs["end_time"] == end
    with pytest.raises(XAIValidationError, match="max_poll_failures"):
        XAIBatchTrigger("batch", max_poll_failures=0)


# --- connection fields: when the connection is read, before any request ------------------------------
def use_extra(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        # json.dumps writes NaN and Infinity, which the connection's extra_dejson reads back
        json.dumps({"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY, "extra": extra}),
    )


CONNECTION_FIELDS = [
    ("timeout", NAN), ("timeout", INF), ("timeout", "nan"), ("timeout", "inf"), ("timeout", "-Infinity"),
    ("timeout", 1e300),  # a socket cannot take it: OverflowError on every request before
    ("max_retries", NAN), ("max_retries", INF), ("max_retries", "inf"), ("max_retries", 2.5),
    ("max_retries", True),
    ("max_response_bytes", INF), ("max_response_bytes", NAN), ("max_sse_line_length", "nan"),
    ("rate_limit_requests_per_second", NAN), ("rate_limit_requests_per_second", "inf"),
    ("rate_limit_tokens_per_minute", NAN), ("rate_limit_tokens_per_minute", INF),
    ("rate_limit_tokens_per_minute", "Infinity"),
    ("prices", {"grok-4.3": {"input": NAN, "output": 1}}),
    ("prices", {"grok-4.3": {"input": 1, "output": INF}}),
    ("prices", {"grok-4.3": {"input": 1, "output": 1, "cached_input": "nan"}}),
    ("prices", json.dumps({"grok-4.3": {"input": 1, "output": 1, "image": float("inf")}})),
]


@pytest.mark.parametrize(("field", "value"), CONNECTION_FIELDS, ids=repr)
def test_connection_fields_refuse_nan_and_infinity_before_any_request(
    monkeypatch: pytest.MonkeyPatch, field: str, value: Any
) -> None:
    use_extra(monkeypatch, **{field: value})
    rec = Recorder(httpx.Response(200, json=completion()))
    with pytest.raises(XAIConfigurationError, match=field):
        make_hook(rec).chat(messages=[{"role": "user", "content": "x"}])
    assert rec.requests == []


@pytest.mark.parametrize(("field", "value"), [("timeout", NAN), ("timeout", INF), ("max_retries", 1.5)])
def test_hook_arguments_refuse_nan_and_infinity_before_any_request(
    monkeypatch: pytest.MonkeyPatch, field: str, value: Any
) -> None:
    use_extra(monkeypatch)
    rec = Recorder(httpx.Response(200, json=completion()))
    with pytest.raises(XAIConfigurationError, match=field):
        make_hook(rec, **{field: value}).chat(messages=[{"role": "user", "content": "x"}])
    assert rec.requests == []


def test_sane_connection_numbers_are_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    use_extra(monkeypatch, timeout="30", max_retries=0, max_response_bytes=10**12, max_sse_line_length=2.0,
              rate_limit_requests_per_second="0.5")
    settings = make_hook(Recorder(httpx.Response(200, json=completion()))).settings
    assert (settings.timeout, settings.max_retries, settings.max_response_bytes) == (30.0, 0, 10**12)
    assert settings.max_sse_line_length == 2 and settings.rate_limit is not None
    assert settings.rate_limit.requests_per_second == 0.5


@pytest.mark.parametrize("price", [NAN, INF, -1.0, True, "5"])
def test_tool_prices_refuse_nan_and_infinity(price: Any) -> None:
    with pytest.raises(ValueError, match="web_search_calls"):
        tool_price_table({"web_search_calls": price})
    assert tool_price_table({"web_search_calls": 0})["web_search_calls"] == 0.0
