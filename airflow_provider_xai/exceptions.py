"""One exception tree for everything the provider raises.

Every error carries the HTTP status, xAI's ``code`` and message, and the request id when
there is one. None of them ever holds a secret: every text an error is given passes through the
one scrubber (:mod:`airflow_provider_xai.secrets`), which knows every secret the provider read.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_xai.secrets import scrub


class XAIError(AirflowException):
    """Base class of every error raised by airflow-provider-xai.

    ``billed`` holds the answer that came with the failure when xAI billed it (for example a
    streamed response that failed after it started), so its usage can still be recorded.
    """

    billed: Any = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        xai_message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = scrub(code) if code else code
        self.xai_message = scrub(xai_message) if xai_message else xai_message
        self.request_id = request_id

    def __str__(self) -> str:
        details = [f"status={self.status}" if self.status is not None else ""]
        details.append(f"code={self.code!r}" if self.code else "")
        details.append(f"request_id={self.request_id}" if self.request_id else "")
        tail = ", ".join(d for d in details if d)
        return scrub(f"{self.message} ({tail})" if tail else self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description, for XComs and trigger events (see ``error_from_dict``)."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "status": self.status,
            "code": self.code,
            "request_id": self.request_id,
            "retry_after": getattr(self, "retry_after", None),
        }


def error_from_dict(data: Any) -> XAIError | None:
    """The typed error a trigger event carried as ``to_dict()`` (None if unreadable), so a
    deferred task fails with the same class, status and ``retry_after`` as a direct call
    (and a retry policy judges both alike). Only this module's classes are rebuilt."""
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return None
    cls = globals().get(str(data.get("type")))
    if not (isinstance(cls, type) and issubclass(cls, XAIError)):
        return None
    fields = ("status", "code", "request_id", "retry_after")
    return _rebuild(cls, data["message"], {"message": data["message"],
                                           **{k: data.get(k) for k in fields}})


def _rebuild(cls: type[XAIError], message: str, state: dict[str, Any]) -> XAIError:
    err = cls.__new__(cls)
    message = state["message"] = scrub(message)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class XAIConfigurationError(XAIError):
    """The connection or hook settings are unusable (no API key, bad extra)."""


class XAIValidationError(XAIError, ValueError):
    """Bad input, refused before any request is sent. ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"Invalid {field}: {problem}")
        self.field = field
        self.problem = problem


# --- errors answered by the API -------------------------------------------------------------
class XAIAPIError(XAIError):
    """xAI answered with an error status."""

    retry_after: float | None = None


class XAIBadRequestError(XAIAPIError):
    """400/413/415/422: the request was refused as invalid."""


class XAIAuthenticationError(XAIAPIError):
    """The API key is missing, wrong or revoked (xAI answers a bad key with 400)."""


class XAIPermissionError(XAIAPIError):
    """403: the key or team may not do this (blocked key, no credits yet, no model access)."""


class XAINotFoundError(XAIAPIError):
    """404: unknown model, route, or an expired deferred completion."""


class XAIGoneError(XAIAPIError):
    """410: a retired feature (for example Live Search parameters)."""


class XAIRateLimitError(XAIAPIError):
    """429: too many requests; retried with backoff."""


class XAIQuotaExhaustedError(XAIRateLimitError):
    """429 saying the team's credits or spending limit are used up; never retried."""


class XAIServerError(XAIAPIError):
    """5xx or 529 from xAI; retried with backoff."""


# --- transport and response problems --------------------------------------------------------
class XAIConnectionError(XAIError):
    """The request did not get an answer: refused, dropped or reset connection."""


class XAITimeoutError(XAIConnectionError):
    """The request timed out."""


class XAIResponseError(XAIError):
    """xAI answered 200 but the body is not what the API promises."""


class XAITruncatedStreamError(XAIResponseError):
    """A streamed answer ended without a finish reason or ``[DONE]``."""


class XAIStructuredOutputError(XAIResponseError):
    """The model's answer does not satisfy the requested schema (the call was billed).

    ``permanent`` is True when the schema itself, not this answer, is at fault, so asking
    again cannot help (the retry policy fails such a task at once)."""

    permanent: bool = False

    def __init__(self, message: str, *, completion: Any = None, permanent: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.completion = completion
        self.permanent = permanent


# --- long-running work ----------------------------------------------------------------------
class XAIDeferredError(XAIError):
    """A deferred completion could not be collected."""


class XAIDeferredTimeoutError(XAIDeferredError):
    """The deferred completion was not ready before the poll timeout."""


class XAIDeferredExpiredError(XAIDeferredError):
    """xAI no longer knows the request id (already fetched, expired after 24 h, or unknown)."""


class XAIModerationError(XAIError, AirflowFailException):
    """xAI's moderation withheld an image or video that was asked for (``respect_moderation:
    false``, no image). The call was billed; never retried, as the same request would be
    refused (and billed) again. ``refused`` holds the positions of the withheld images."""

    refused: list[int] | None = None


class XAIBudgetExceededError(XAIError, AirflowFailException):
    """A DAG run spent more tokens or dollars than its budget allows (never retried)."""


class XAICostCapError(XAIBudgetExceededError):
    """A call's worst case would take the task past its ``max_cost_usd``: refused before it is
    sent. ``forecast`` is the call's forecast (a dict), ``spent_usd`` what the task spent."""

    forecast: Any = None
    spent_usd: float = 0.0


class XAIOverBudgetError(XAIBudgetExceededError):
    """A call's forecast does not fit a budget (daily or monthly, of a DAG, a tag or the team):
    refused before it is sent. ``budgets``: the states of the budgets it would pass (dicts);
    ``forecast``: the call's forecast; ``fingerprint``: the call's, for an approval; ``resets_at``:
    when the last of those budgets starts again (ISO time)."""

    budgets: Any = None
    forecast: Any = None
    fingerprint: str | None = None
    resets_at: str | None = None
