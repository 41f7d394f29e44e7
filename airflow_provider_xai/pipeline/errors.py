"""From what came back (an error answer, a transport failure) to the typed exception tree.

I/O-free: the sync and async paths, streams and triggers all map failures here, so an error
means the same whichever path met it. Structured fields decide first (HTTP status, xAI's
``code``), the message text second; every text that came from outside is scrubbed of the key.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from urllib.parse import unquote

import httpx

from airflow_provider_xai.exceptions import (
    XAIAPIError,
    XAIAuthenticationError,
    XAIBadRequestError,
    XAIConfigurationError,
    XAIConnectionError,
    XAIError,
    XAIGoneError,
    XAINotFoundError,
    XAIPermissionError,
    XAIQuotaExhaustedError,
    XAIRateLimitError,
    XAIResponseError,
    XAIServerError,
    XAITimeoutError,
)
from airflow_provider_xai.secrets import scrub

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_QUOTA_WORDS = ("credits", "spending limit", "insufficient_quota")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")

#: xAI's ``code`` is gRPC's status text (or, behind OpenAI-style proxies, a short code). Words
#: that identify the class whatever the HTTP status was.
_CODE_CLASSES: tuple[tuple[str, type[XAIAPIError]], ...] = (
    ("unauthenticated", XAIAuthenticationError),
    ("valid authentication credentials", XAIAuthenticationError),
    ("invalid_api_key", XAIAuthenticationError),
    ("does not have permission", XAIPermissionError),
    ("permission_denied", XAIPermissionError),
    ("requested entity was not found", XAINotFoundError),
    ("resource has been exhausted", XAIRateLimitError),
    ("resource_exhausted", XAIRateLimitError),
    ("rate_limit", XAIRateLimitError),
)
_STATUS_CLASSES: dict[int, type[XAIAPIError]] = {
    400: XAIBadRequestError,
    401: XAIAuthenticationError,
    403: XAIPermissionError,
    404: XAINotFoundError,
    410: XAIGoneError,
    413: XAIBadRequestError,
    415: XAIBadRequestError,
    422: XAIBadRequestError,
    429: XAIRateLimitError,
}


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date with
    its zone); None when absent or unreadable, so the caller computes its own backoff."""
    if (ms := _seconds(headers.get("retry-after-ms"))) is not None:
        return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    if (seconds := _seconds(value)) is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # a date without a zone means nothing certain
        return None
    return max(0.0, when.timestamp() - time.time())


def _seconds(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return max(0.0, number) if number is not None and math.isfinite(number) else None


def _read_body(body: bytes) -> tuple[str | None, str]:
    """(code, message) from xAI's ``{"code", "error"}`` body or OpenAI's ``{"error": {...}}``."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return None, body[:300].decode("utf-8", "replace").strip()
    error = data.get("error")
    if isinstance(error, dict):  # OpenAI-style body, seen behind proxies
        code, message = error.get("code") or error.get("type"), error.get("message")
    else:
        code, message = data.get("code"), error if error is not None else data.get("message")
    return (code if isinstance(code, str) else None), ("" if message is None else str(message))


def _decoded(message: str) -> str:
    """xAI sometimes percent-encodes messages (``Incorrect%20API%20key``): decode them once."""
    return unquote(message) if _PERCENT_ESCAPE.search(message) else message


def error_class(status: int, code: str | None, message: str) -> type[XAIAPIError]:
    """The exception class for an error answer: status and code first, then the message."""
    lowered, code_text = message.lower(), (code or "").lower()
    quota = any(w in lowered or w in code_text for w in _QUOTA_WORDS)
    if quota and status in (403, 429):
        return XAIQuotaExhaustedError
    if status >= 500:
        return XAIServerError
    if status in (401, 403, 404, 410, 429):
        return _STATUS_CLASSES[status]
    for words, cls in _CODE_CLASSES:
        if code_text and words in code_text:
            return cls
    if status == 400 and "api key" in lowered:  # xAI answers a bad key with 400
        return XAIAuthenticationError
    return _STATUS_CLASSES.get(status, XAIAPIError)


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes
) -> XAIAPIError:
    """Map an error answer to a typed error carrying status, code, message and request id."""
    code, message = _read_body(body)
    message = scrub(_decoded(message)) or httpx.codes.get_reason_phrase(status) or "no message"
    err = error_class(status, code, message)(
        f"xAI API error {status}: {message}",
        status=status,
        code=scrub(code) if code else None,
        xai_message=message,
        request_id=headers.get("x-request-id"),
    )
    err.retry_after = parse_retry_after(headers)
    return err


def error_from_httpx(exc: Exception, url: str) -> XAIError:
    """Map any httpx failure (no usable answer) to a typed error.

    Transport failures (refused, reset, timed out) are connection errors and retryable; a body
    that cannot be decoded or a redirect loop is a response error; an unusable URL is a
    configuration error (neither is retried).
    """
    detail = scrub(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return XAITimeoutError(f"Request to {url} timed out ({detail})")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return XAIConfigurationError(f"Cannot send a request to {url}: {detail}")
    if isinstance(exc, httpx.TransportError):
        return XAIConnectionError(f"Request to {url} got no complete answer ({detail})")
    return XAIResponseError(f"Request to {url} got an unusable answer ({detail})")


#: What :func:`error_from_httpx` handles: every failure httpx raises for a request.
HTTPX_FAILURES = (httpx.RequestError, httpx.InvalidURL)


def is_retryable(exc: BaseException) -> bool:
    """Connection errors, timeouts and 408/409/429/5xx/529, except exhausted credits."""
    if isinstance(exc, XAIQuotaExhaustedError):
        return False
    if isinstance(exc, XAIConnectionError):
        return True
    return isinstance(exc, XAIAPIError) and exc.status in RETRYABLE_STATUSES
