"""XAIRetryPolicy's decisions for every class of error, and where the operators use it.

On Airflow 3.2 (no task retry policies) the same file checks the fallback: the module imports,
``XAI_RETRY_POLICY`` is None, the policy cannot be built, and operators pass nothing.
"""

from __future__ import annotations

import datetime
import pickle
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_xai.exceptions import (
    XAIAPIError,
    XAIAuthenticationError,
    XAIBadRequestError,
    XAIBudgetExceededError,
    XAIConfigurationError,
    XAIConnectionError,
    XAIDeferredError,
    XAIDeferredExpiredError,
    XAIDeferredTimeoutError,
    XAIError,
    XAIGoneError,
    XAINotFoundError,
    XAIPermissionError,
    XAIQuotaExhaustedError,
    XAIRateLimitError,
    XAIResponseError,
    XAIServerError,
    XAIStructuredOutputError,
    XAITimeoutError,
    XAITruncatedStreamError,
    XAIValidationError,
    error_from_dict,
)
from airflow_provider_xai.operators.batch import XAIBatchOperator
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.operators.vision import XAIVisionOperator
from airflow_provider_xai.retry_policy import (
    MAX_TASK_RETRY_AFTER,
    XAI_RETRY_POLICY,
    XAIRetryPolicy,
    xai_error_of,
)
from airflow_provider_xai.sensors.usage import XAIUsageSensor
from tests.helpers.airflow_features import HAS_RETRY_POLICY

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def api_error(cls: type[XAIAPIError], status: int, retry_after: float | None = None) -> XAIAPIError:
    err = cls(f"xAI API error {status}: no", status=status, code="c", request_id="r-1")
    err.retry_after = retry_after
    return err


#: (error, expected action, words the reason must hold)
FAILS: list[tuple[BaseException, str]] = [
    (api_error(XAIQuotaExhaustedError, 429, retry_after=5), "credits or spending limit exhausted"),
    (api_error(XAIAuthenticationError, 400), "refused the API key"),
    (api_error(XAIAuthenticationError, 401), "refused the API key"),
    (api_error(XAIPermissionError, 403), "denied permission"),
    (XAIValidationError("prompt", "is empty"), "invalid input"),
    (api_error(XAIBadRequestError, 422), "refused the request as invalid"),
    (api_error(XAINotFoundError, 404), "does not know the model"),
    (api_error(XAIGoneError, 410), "retired"),
    (XAIConfigurationError("no API key"), "unusable xAI connection"),
    (XAIBudgetExceededError("over budget"), "budget is spent"),
    (XAIStructuredOutputError("schema ref", permanent=True), "schema cannot be checked"),
]
DEFAULTS: list[BaseException] = [
    api_error(XAIServerError, 503),
    api_error(XAIServerError, 529),
    api_error(XAIAPIError, 409),
    XAIConnectionError("reset"),
    XAITimeoutError("timed out"),
    XAIResponseError("bad body"),
    XAITruncatedStreamError("cut"),
    XAIStructuredOutputError("not valid JSON"),  # this answer missed: the next may not
    XAIDeferredError("wait failed"),
    XAIDeferredTimeoutError("not ready"),
    XAIDeferredExpiredError("gone"),
    ValueError("not an xAI error"),
    RuntimeError("boom"),
]

def decide(exc: BaseException, try_number: int = 1) -> Any:
    return XAIRetryPolicy().evaluate(exc, try_number=try_number, max_tries=4, context=None)


#: Tests of what only Airflow 3.3+ has: collected everywhere, skipped with this reason on 3.2 (where
#: test_every_operator_uses_the_policy_unless_told_otherwise checks the fallback).
needs_retry_policies = pytest.mark.skipif(
    not HAS_RETRY_POLICY, reason="Airflow 3.2 has no task retry policies (3.3+); the 3.2 fallback is tested below"
)


def action(name: str) -> Any:
    """``RetryAction.<name>`` (Airflow 3.3+; imported here so that 3.2 collects this file)."""
    from airflow.sdk.definitions.retry_policy import RetryAction

    return RetryAction[name]


@needs_retry_policies
class TestDecisions:
    @pytest.mark.parametrize(("exc", "what"), FAILS, ids=lambda v: type(v).__name__ if
                             isinstance(v, BaseException) else "")
    def test_permanent_errors_fail_at_once(self, exc: BaseException, what: str) -> None:
        decision = decide(exc)
        assert decision.action is action("FAIL") and decision.retry_delay is None
        assert what in decision.reason and "failing without retries" in decision.reason
        assert type(exc).__name__ in decision.reason

    @pytest.mark.parametrize("exc", DEFAULTS, ids=lambda v: type(v).__name__)
    def test_transient_and_foreign_errors_take_the_tasks_retries(self, exc: BaseException) -> None:
        decision = decide(exc, try_number=3)
        assert decision.action is action("DEFAULT") and decision.retry_delay is None
        if isinstance(exc, XAIError):
            assert decision.reason.endswith("the task's retries apply")
        else:
            assert decision.reason is None

    @pytest.mark.parametrize(("retry_after", "delay", "said"), [
        (12, 12.0, "retrying in 12s"), (0.25, 0.25, "retrying in 0.25s"),
        (90.4, 90.4, "retrying in 90s"), (0, 0.0, "retrying in 0s")])
    def test_a_rate_limit_retries_after_the_errors_retry_after(
        self, retry_after: float, delay: float, said: str
    ) -> None:
        decision = decide(api_error(XAIRateLimitError, 429, retry_after))
        assert decision.action is action("RETRY")
        assert decision.retry_delay == datetime.timedelta(seconds=delay)
        assert decision.reason == f"xAI rate limit: {said}"

    def test_a_rate_limit_without_a_retry_after_retries_after_the_tasks_retry_delay(self) -> None:
        decision = decide(api_error(XAIRateLimitError, 429, None))
        assert decision.action is action("RETRY") and decision.retry_delay is None
        assert decision.reason == "xAI rate limit: no retry-after, retrying after the task's retry_delay"

    @pytest.mark.parametrize("retry_after", [
        1e15,  # issue 27: an OverflowError in timedelta, and Airflow logged a traceback
        MAX_TASK_RETRY_AFTER + 0.001, 1e308, 10**400, float("nan"), float("inf"), float("-inf"),
        -1.0, -1e15, "soon", "1e15", True, [5]])
    def test_a_rate_limit_with_an_unusable_delay_retries_after_the_tasks_retry_delay(
        self, retry_after: Any
    ) -> None:
        decision = decide(api_error(XAIRateLimitError, 429, retry_after))
        assert decision.action is action("RETRY") and decision.retry_delay is None
        assert decision.reason.startswith("xAI rate limit: unusable retry-after ")
        assert decision.reason.endswith(", retrying after the task's retry_delay")

    def test_the_reason_shows_the_unusable_value_shortened(self) -> None:
        assert decide(api_error(XAIRateLimitError, 429, "soon")).reason == (
            "xAI rate limit: unusable retry-after 'soon', retrying after the task's retry_delay")
        long = decide(api_error(XAIRateLimitError, 429, "9" * 60)).reason
        assert f"unusable retry-after '{'9' * 36}..., retrying" in long

    @pytest.mark.parametrize(("exc", "reason"), [
        (api_error(XAIServerError, 503), "XAIServerError 503: the task's retries apply"),
        (XAIConnectionError("reset"), "XAIConnectionError: the task's retries apply"),
        (api_error(XAIAuthenticationError, 401),
         "xAI refused the API key: failing without retries (XAIAuthenticationError 401)"),
        (XAIValidationError("prompt", "is empty"), "invalid input: failing without retries (XAIValidationError)"),
    ], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
    def test_the_whole_reason_names_the_error_and_its_status_when_it_has_one(
        self, exc: BaseException, reason: str
    ) -> None:
        assert decide(exc).reason == reason

    def test_the_longest_usable_delay_is_the_horizon(self) -> None:
        decision = decide(api_error(XAIRateLimitError, 429, MAX_TASK_RETRY_AFTER))
        assert decision.retry_delay == datetime.timedelta(hours=1)
        assert decision.reason == "xAI rate limit: retrying in 3600s"
        assert decide(api_error(XAIRateLimitError, 429, "7.5")).retry_delay == datetime.timedelta(seconds=7.5)

    def test_the_error_behind_a_wrapper_decides(self) -> None:
        try:
            try:
                raise api_error(XAIAuthenticationError, 401)
            except XAIError as inner:
                raise RuntimeError("my task failed") from inner
        except RuntimeError as outer:
            assert decide(outer).action is action("FAIL")
        assert xai_error_of(ValueError("x")) is None

    def test_the_default_policy_is_a_shared_airflow_retry_policy(self) -> None:
        from airflow.sdk.definitions.retry_policy import RetryPolicy

        assert isinstance(XAI_RETRY_POLICY, RetryPolicy) and isinstance(XAI_RETRY_POLICY, XAIRetryPolicy)
        assert XAIRetryPolicy.deserialize(XAI_RETRY_POLICY.serialize()).serialize() == {
            "__type": "XAIRetryPolicy"}
        assert isinstance(pickle.loads(pickle.dumps(XAI_RETRY_POLICY)), XAIRetryPolicy)
        assert repr(XAI_RETRY_POLICY) == "XAIRetryPolicy()"  # what the rendered task shows


def _operators(default_args: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
    """One of each provider operator (and ``@task.xai``), in a DAG of their own."""
    from airflow_provider_xai.decorators.xai import xai_task

    with DAG(f"t_policy_{len(kwargs)}_{id(kwargs)}", schedule=None, start_date=START,
             default_args=default_args or {}):

        @xai_task(task_id="deco", **kwargs)
        def deco() -> str:
            return "hi"

        return [
            XAIChatOperator(task_id="chat", prompt="hi", **kwargs),
            XAIVisionOperator(task_id="vision", prompt="hi", images=["https://example.com/a.png"], **kwargs),
            XAIBatchOperator(task_id="batch", inputs=["a"], output_path="file:///tmp/x.jsonl", **kwargs),
            XAIUsageSensor(task_id="usage", **kwargs),
            deco().operator,
        ]


@pytest.mark.parametrize("installed", [True, False], ids=["Airflow 3.3", "Airflow 3.2"])
def test_the_operator_argument_is_left_out_only_where_airflow_has_no_policies(
    monkeypatch: pytest.MonkeyPatch, installed: bool
) -> None:
    from airflow_provider_xai import retry_policy

    monkeypatch.setattr(retry_policy, "XAI_RETRY_POLICY", object() if installed else None)
    mine = object()
    assert retry_policy.retry_policy_argument(mine) == {"retry_policy": mine}
    assert retry_policy.retry_policy_argument(None) == ({"retry_policy": None} if installed else {})


def test_every_operator_uses_the_policy_unless_told_otherwise() -> None:
    if not HAS_RETRY_POLICY:  # Airflow 3.2: nothing to use, nothing passed, nothing breaks
        assert XAI_RETRY_POLICY is None
        with pytest.raises(RuntimeError, match=r"Airflow 3\.3"):
            XAIRetryPolicy()
        assert all(getattr(op, "retry_policy", None) is None for op in _operators())
        return

    class Mine(XAIRetryPolicy):
        pass

    mine = Mine()
    assert all(op.retry_policy is XAI_RETRY_POLICY for op in _operators())
    assert all(op.retry_policy is mine for op in _operators(retry_policy=mine))
    assert all(op.retry_policy is None and not op.has_retry_policy
               for op in _operators(retry_policy=None))
    assert all(op.retry_policy is mine for op in _operators(default_args={"retry_policy": mine}))


@needs_retry_policies
def test_mapped_tasks_carry_the_policy_and_serialization_keeps_only_a_flag() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("t_policy_mapped", schedule=None, start_date=START) as dag:
        mapped = XAIChatOperator.partial(task_id="many").expand(prompt=["a", "b"])
        XAIChatOperator(task_id="one", prompt="hi")
        XAIChatOperator(task_id="none", prompt="hi", retry_policy=None)
    assert isinstance(mapped.retry_policy, XAIRetryPolicy)
    data = DagSerialization.to_dict(dag)
    tasks = {t["__var"]["task_id"]: t["__var"] for t in data["dag"]["tasks"]}
    assert tasks["one"]["has_retry_policy"] is True and "retry_policy" not in tasks["one"]
    assert tasks["many"]["partial_kwargs"]["has_retry_policy"] is True
    assert "retry_policy" not in tasks["many"]["partial_kwargs"]
    assert not tasks["none"].get("has_retry_policy")


@pytest.mark.parametrize("error", [
    api_error(XAIAuthenticationError, 401), api_error(XAIRateLimitError, 429, retry_after=3.5),
    XAIDeferredExpiredError("gone", status=404, request_id="q")], ids=lambda e: type(e).__name__)
def test_a_trigger_event_rebuilds_the_same_typed_error(error: XAIError) -> None:
    rebuilt = error_from_dict(error.to_dict())
    assert type(rebuilt) is type(error) and str(rebuilt) == str(error)
    assert (rebuilt.status, rebuilt.code, rebuilt.request_id) == (error.status, error.code, error.request_id)
    assert getattr(rebuilt, "retry_after", None) == getattr(error, "retry_after", None)


@pytest.mark.parametrize("data", [None, "x", {}, {"type": "XAIError"},
                                  {"type": "AirflowFailException", "message": "m"},
                                  {"type": "Any", "message": "m"}, {"type": "os", "message": "m"}])
def test_only_provider_errors_are_rebuilt(data: Any) -> None:
    assert error_from_dict(data) is None


def test_execute_complete_raises_the_typed_error_of_a_trigger_event() -> None:
    op = XAIChatOperator(task_id="t", prompt="hi", deferrable=True)
    error = api_error(XAIAuthenticationError, 401)
    event = {"status": "error", "request_id": "q", "message": str(error), "http_status": 401,
             "error": error.to_dict()}
    with pytest.raises(XAIAuthenticationError) as caught:
        op.execute_complete({}, event)  # type: ignore[arg-type]
    assert caught.value.status == 401
    legacy = {k: v for k, v in event.items() if k != "error"}  # an event from an older trigger
    with pytest.raises(XAIDeferredError) as caught_legacy:
        op.execute_complete({}, legacy)  # type: ignore[arg-type]
    assert type(caught_legacy.value) is XAIDeferredError and caught_legacy.value.status == 401
    batch = XAIBatchOperator(task_id="b", inputs=["a"], output_path="file:///tmp/x.jsonl")
    with pytest.raises(XAIAuthenticationError):
        batch.execute_complete({}, {**event, "batch_id": "b1"})  # type: ignore[arg-type]
