"""Policy shared by the sync and async paths of :class:`XAIHook` (and by triggers).

Pure functions and small classes: connection settings, mapping HTTP answers and transport
faults to the exception tree, the tenacity retry policy, and assembling streamed chunks.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from airflow_provider_xai import __version__
from airflow_provider_xai.exceptions import (
    XAIAPIError,
    XAIAuthenticationError,
    XAIBadRequestError,
    XAIConfigurationError,
    XAIConnectionError,
    XAIGoneError,
    XAINotFoundError,
    XAIPermissionError,
    XAIQuotaExhaustedError,
    XAIRateLimitError,
    XAIServerError,
    XAITimeoutError,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_BASE_URL = "https://api.x.ai/v1"
DEFAULT_MODEL = "grok-4.3"
DEFAULT_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 2
USER_AGENT = f"airflow-provider-xai/{__version__}"
API_KEY_ENV = "XAI_API_KEY"

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER = 60.0
_QUOTA_WORDS = ("credits", "spending limit")


# --- settings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to build a client. ``api_key`` is kept out of ``repr``."""

    base_url: str
    api_key: str = field(repr=False)
    default_model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    prices: Mapping[str, Any] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "User-Agent": USER_AGENT}

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, DEFAULT_CONNECT_TIMEOUT))


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    value = extra.get(name, extra.get(f"extra__xai__{name}"))
    return None if value in ("", None) else value


def settings_from_connection(
    conn: Connection | None,
    conn_id: str,
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> ClientSettings:
    """Read a connection (or only ``XAI_API_KEY`` when ``conn`` is None) into settings."""
    extra: Mapping[str, Any] = (conn.extra_dejson if conn else {}) or {}
    api_key = (conn.password if conn else None) or os.environ.get(API_KEY_ENV)
    if not api_key:
        raise XAIConfigurationError(
            f"No xAI API key: set the password (API Key) of connection {conn_id!r} "
            f"or export the {API_KEY_ENV} environment variable."
        )
    base_url = ((conn.host if conn else None) or DEFAULT_BASE_URL).rstrip("/")
    if "://" not in base_url:
        base_url = f"https://{base_url}"
    prices = _extra(extra, "prices") or {}
    try:
        settings = ClientSettings(
            base_url=base_url,
            api_key=api_key,
            default_model=str(_extra(extra, "default_model") or DEFAULT_MODEL),
            timeout=float(timeout if timeout is not None else _extra(extra, "timeout") or DEFAULT_TIMEOUT),
            max_retries=int(
                max_retries if max_retries is not None else _coalesce(_extra(extra, "max_retries"))
            ),
            prices=json.loads(prices) if isinstance(prices, str) else dict(prices),
        )
    except (TypeError, ValueError) as exc:
        raise XAIConfigurationError(f"Connection {conn_id!r} has an invalid extra field: {exc}") from None
    if settings.timeout <= 0 or settings.max_retries < 0:
        raise XAIConfigurationError(f"Connection {conn_id!r}: timeout must be > 0 and max_retries >= 0")
    return settings


def _coalesce(value: Any) -> Any:
    return DEFAULT_MAX_RETRIES if value is None else value


def scrub(text: str, secret: str | None) -> str:
    """Remove a secret from text that came from outside (server bodies, transport errors)."""
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


# --- errors ---------------------------------------------------------------------------------
def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value.strip() else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def _error_class(status: int, message: str) -> type[XAIAPIError]:
    lowered = message.lower()
    if status == 429:
        return XAIQuotaExhaustedError if any(w in lowered for w in _QUOTA_WORDS) else XAIRateLimitError
    if status == 401 or (status == 400 and "api key" in lowered):
        return XAIAuthenticationError
    if status >= 500:
        return XAIServerError
    return {
        400: XAIBadRequestError,
        403: XAIPermissionError,
        404: XAINotFoundError,
        410: XAIGoneError,
        413: XAIBadRequestError,
        415: XAIBadRequestError,
        422: XAIBadRequestError,
    }.get(status, XAIAPIError)


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, secret: str | None = None
) -> XAIAPIError:
    """Map an error answer (xAI's ``{"code", "error"}`` or OpenAI's shape) to a typed error."""
    code: str | None = None
    message = ""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # OpenAI-style body, seen behind proxies
            code = error.get("code") or error.get("type")
            message = str(error.get("message") or "")
        else:
            code = data.get("code") if isinstance(data.get("code"), str) else None
            message = str(error or data.get("message") or "")
    if not message:
        message = body[:200].decode("utf-8", "replace").strip() or httpx.codes.get_reason_phrase(status)
    message = scrub(message, secret)
    cls = _error_class(status, message)
    err = cls(
        f"xAI API error {status}: {message}",
        status=status,
        code=code,
        xai_message=message,
        request_id=headers.get("x-request-id"),
    )
    err.retry_after = parse_retry_after(headers)
    return err


def error_from_transport(
    exc: httpx.TransportError, url: str, secret: str | None = None
) -> XAIConnectionError:
    """Map an httpx transport failure (no answer) to a typed error."""
    detail = scrub(f"{type(exc).__name__}: {exc}", secret)
    if isinstance(exc, httpx.TimeoutException):
        return XAITimeoutError(f"Request to {url} timed out ({detail})")
    return XAIConnectionError(f"Request to {url} got no complete answer ({detail})")


# --- retries --------------------------------------------------------------------------------
def is_retryable(exc: BaseException) -> bool:
    """Connection errors, timeouts and 408/409/429/5xx/529, except exhausted credits."""
    if isinstance(exc, XAIQuotaExhaustedError):
        return False
    if isinstance(exc, XAIConnectionError):
        return True
    if isinstance(exc, XAIAPIError):
        return exc.status in RETRYABLE_STATUSES and (exc.retry_after or 0) <= MAX_RETRY_AFTER
    return False


class BackoffWait(wait_base):
    """``retry-after`` when the server sent one, else capped exponential backoff with jitter."""

    def __init__(self, base: float = 0.5, cap: float = 8.0) -> None:
        self.base = base
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        ceiling = min(self.cap, self.base * 2 ** (retry_state.attempt_number - 1))
        return ceiling * random.uniform(0.5, 1.0)


def retry_policy(
    max_retries: int,
    log: Any,
    *,
    backoff_base: float = 0.5,
    backoff_cap: float = 8.0,
    retryable: Callable[[BaseException], bool] = is_retryable,
    stop: stop_base | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying``/``AsyncRetrying`` (same policy for both)."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "xAI request failed (%s); retry %d of %d in %.2fs",
            exc,
            state.attempt_number,
            max_retries,
            state.upcoming_sleep,
        )

    return {
        "retry": retry_if_exception(retryable),
        "stop": stop or stop_after_attempt(max_retries + 1),
        "wait": BackoffWait(backoff_base, backoff_cap),
        "before_sleep": before_sleep,
        "reraise": True,
    }
