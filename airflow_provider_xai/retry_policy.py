"""``XAIRetryPolicy``: Airflow task retries that know xAI's errors (Airflow 3.3 and later).

Airflow 3.3 lets a task carry a ``retry_policy`` whose ``evaluate`` the worker calls with the
real exception when the task fails. This policy reads the provider's typed errors:

* a rate limit (429) retries the task after the error's ``retry_after`` (the server's
  ``retry-after``, or the cool-down the team shares) when it is 0 to an hour, else (none, NaN,
  negative, beyond an hour) after the task's ``retry_delay``;
* a refused request, bad input or settings, authentication, permission, exhausted credits, an
  unknown model or retired feature, a budget overrun, or a structured-output failure caused
  by the schema itself (``XAIStructuredOutputError.permanent``) fails at once: trying again
  would fail the same way (and bill again). An answer that merely missed the schema may be
  right next time, so it takes the task's retries;
* anything else (5xx, timeouts, dropped connections, errors that are not xAI's) takes the
  task's normal ``retries``.

The provider's operators use it by default where Airflow has retry policies; ``retry_policy=``
on the operator (or in ``default_args``) replaces it, and ``retry_policy=None`` turns it off.
On Airflow 3.2 (no retry policies) nothing changes: ``XAI_RETRY_POLICY`` is None and the
operators pass nothing. Importing this module never fails.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import (
    XAIAuthenticationError,
    XAIBadRequestError,
    XAIBudgetExceededError,
    XAIConfigurationError,
    XAIError,
    XAIGoneError,
    XAINotFoundError,
    XAIPermissionError,
    XAIQuotaExhaustedError,
    XAIRateLimitError,
    XAIStructuredOutputError,
    XAIValidationError,
)

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

    _PolicyBase = RetryPolicy
else:
    try:  # Airflow 3.3+
        from airflow.sdk.definitions.retry_policy import RetryPolicy as _PolicyBase
    except ImportError:  # Airflow 3.2: no retry policies
        _PolicyBase = object

#: Longest delay a rate limit's ``retry_after`` may set for a task retry (seconds). Longer than
#: the hook's own ``MAX_RETRY_AFTER`` (a task retry frees its worker slot while it waits), but
#: bounded: beyond it (``retry-after: 1e15``) the task's ``retry_delay`` applies, as for none.
MAX_TASK_RETRY_AFTER = 3600.0

#: Errors a retry cannot fix, checked in order (the first match names the reason).
PERMANENT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (XAIQuotaExhaustedError, "xAI credits or spending limit exhausted"),
    (XAIAuthenticationError, "xAI refused the API key"),
    (XAIPermissionError, "xAI denied permission"),
    (XAIValidationError, "invalid input"),
    (XAIBadRequestError, "xAI refused the request as invalid"),
    (XAINotFoundError, "xAI does not know the model or resource"),
    (XAIGoneError, "the xAI feature is retired"),
    (XAIConfigurationError, "unusable xAI connection or settings"),
    (XAIBudgetExceededError, "the DAG run's xAI budget is spent"),
)


def xai_error_of(exception: BaseException) -> XAIError | None:
    """The provider error behind a task failure: the exception itself or what it was raised
    from (``raise ... from err``, a few levels deep)."""
    current: BaseException | None = exception
    for _ in range(5):
        if current is None:
            return None
        if isinstance(current, XAIError):
            return current
        current = current.__cause__
    return None


def _seconds(delay: float) -> str:
    return f"{delay:.3g}s" if delay < 10 else f"{delay:.0f}s"


class XAIRetryPolicy(_PolicyBase):
    """Retry rate limits after xAI's delay, fail permanent xAI errors at once, leave the rest
    to the task's ``retries`` (see the module docstring). Stateless: one instance serves every
    task.
    """

    def __init__(self) -> None:
        if _PolicyBase is object:
            raise RuntimeError("XAIRetryPolicy needs Airflow 3.3 or later (task retry policies)")

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        from airflow.sdk.definitions.retry_policy import RetryDecision

        error = xai_error_of(exception)
        if error is None:
            return RetryDecision.default()
        for error_class, what in PERMANENT_ERRORS:
            if isinstance(error, error_class):
                return RetryDecision.fail(f"{what}: failing without retries ({_describe(error)})")
        if isinstance(error, XAIStructuredOutputError) and error.permanent:
            # a mismatch caused by this answer may not recur; one caused by the schema always does
            return RetryDecision.fail(
                f"the requested schema cannot be checked: failing without retries ({_describe(error)})")
        if isinstance(error, XAIRateLimitError):
            retry_after = getattr(error, "retry_after", None)
            delay = _usable_delay(retry_after)
            if delay is not None:
                return RetryDecision.retry(timedelta(seconds=delay),
                                           f"xAI rate limit: retrying in {_seconds(delay)}")
            problem = "no retry-after" if retry_after is None else f"unusable retry-after {_shown(retry_after)}"
            return RetryDecision.retry(
                reason=f"xAI rate limit: {problem}, retrying after the task's retry_delay")
        return RetryDecision(reason=f"{_describe(error)}: the task's retries apply")

    def serialize(self) -> dict[str, Any]:
        """Airflow stores only a ``has_retry_policy`` flag; this is for tools that ask."""
        return {"__type": "XAIRetryPolicy"}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> XAIRetryPolicy:
        return cls()

    def __repr__(self) -> str:
        return "XAIRetryPolicy()"


def _usable_delay(value: Any) -> float | None:
    """Seconds from 0 to :data:`MAX_TASK_RETRY_AFTER`, else None (absent, not a number, NaN,
    negative, or beyond any sane horizon: then the task's own bounded ``retry_delay`` applies)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        delay = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return delay if 0 <= delay <= MAX_TASK_RETRY_AFTER else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(error: XAIError) -> str:
    status = f" {error.status}" if error.status is not None else ""
    return f"{type(error).__name__}{status}"


#: The policy the operators use by default: an ``XAIRetryPolicy`` on Airflow 3.3+, else None.
XAI_RETRY_POLICY: Any = XAIRetryPolicy() if _PolicyBase is not object else None


def retry_policy_argument(value: Any) -> dict[str, Any]:
    """``BaseOperator`` keyword arguments for an operator's ``retry_policy`` parameter: none on
    Airflow 3.2 when the user left it alone (3.2 has no such argument), else the value as given
    (None turns retry policies off)."""
    if value is None and XAI_RETRY_POLICY is None:
        return {}
    return {"retry_policy": value}
