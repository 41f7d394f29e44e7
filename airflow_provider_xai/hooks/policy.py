"""Policy shared by the sync and async paths of :class:`XAIHook` (and by triggers).

Pure functions and small classes: connection settings, mapping HTTP answers and transport
faults to the exception tree, the tenacity retry policy, and assembling streamed chunks.
"""

from __future__ import annotations

import email.utils
import functools
import json
import os
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

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

T = TypeVar("T")

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


def replay_first(failure: BaseException, fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, except that its first call raises ``failure``: an attempt already made outside
    tenacity. The hook tries each request once without tenacity (setting up ``Retrying`` costs
    about as much as the rest of the hook's per-call work) and only on a retryable failure hands
    over to the usual retry loop, which then sees that attempt and waits, logs and stops exactly
    as if it had made it itself."""
    pending = [failure]

    def call(*args: Any, **kwargs: Any) -> T:
        if pending:
            raise pending.pop()
        return fn(*args, **kwargs)

    return call


def areplay_first(failure: BaseException, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Async :func:`replay_first`."""
    pending = [failure]

    async def call(*args: Any, **kwargs: Any) -> T:
        if pending:
            raise pending.pop()
        return await fn(*args, **kwargs)

    return call


# --- transport ------------------------------------------------------------------------------
@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for every client of the process.

    httpx builds a new context (loading the whole CA bundle, ~20-50 ms of CPU) for each client;
    a triggerer starting hundreds of deferred-completion triggers on one event loop would be
    blocked for seconds. An ``SSLContext`` is safe to share. Honours ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` as httpx does, as set when it is first built.
    """
    return httpx.create_ssl_context(verify=True, trust_env=True)


#: Strings at least this long (base64 images) are streamed into the request body in slices.
LARGE_STRING = 1 << 20
_SLICE = 1 << 20


def _has_large_string(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) >= LARGE_STRING
    if isinstance(value, dict):
        return any(_has_large_string(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_large_string(v) for v in value)
    return False


class JSONBody:
    """A JSON request body sent in slices, so a 27 MB base64 image is not copied three times.

    ``httpx.request(json=...)`` holds the body as a ``str`` and then ``bytes`` (and h11 joins
    the bytes into one more copy when sending), on top of the caller's data URI: four copies of
    a large image at once. Here the large strings are encoded 1 MiB at a time while sending,
    with an exact ``Content-Length`` (the JSON text is what httpx 0.28's ``json=`` sends).
    """

    def __init__(self, body: Any) -> None:
        token = f"xai-large-{uuid.uuid4().hex}-"
        self.large: list[str] = []

        def swap(value: Any) -> Any:
            if isinstance(value, str) and len(value) >= LARGE_STRING:
                self.large.append(value)
                return f"{token}{len(self.large) - 1}"
            if isinstance(value, dict):
                return {k: swap(v) for k, v in value.items()}
            if isinstance(value, list):
                return [swap(v) for v in value]
            return value

        skeleton = json.dumps(swap(body), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self.pieces: list[bytes | int] = []  # encoded JSON text, or the index of a large string
        rest = skeleton
        for i in range(len(self.large)):
            marker = json.dumps(f"{token}{i}")
            head, _, rest = rest.partition(marker)
            self.pieces += [head.encode("utf-8"), i]
        self.pieces.append(rest.encode("utf-8"))
        self.length = sum(
            len(p) if isinstance(p, bytes) else sum(map(len, self._slices(p))) for p in self.pieces
        )

    def _slices(self, index: int) -> Iterator[bytes]:
        text = self.large[index]
        yield b'"'
        for start in range(0, len(text), _SLICE):
            yield json.dumps(text[start : start + _SLICE], ensure_ascii=False)[1:-1].encode("utf-8")
        yield b'"'

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            if isinstance(piece, bytes):
                yield piece
            else:
                yield from self._slices(piece)

    async def aiter(self) -> AsyncIterator[bytes]:
        """The same chunks for ``httpx.AsyncClient`` (which needs an async iterable)."""
        for chunk in self:
            yield chunk


def body_arguments(body: Any, *, asynchronous: bool = False) -> dict[str, Any]:
    """``httpx`` request arguments for a JSON body: ``json=`` as usual, or a sliced
    :class:`JSONBody` (build a fresh one per attempt) when the body holds a large string."""
    if body is None or not _has_large_string(body):
        return {"json": body}
    content = JSONBody(body)
    return {
        "content": content.aiter() if asynchronous else content,
        "headers": {"Content-Type": "application/json", "Content-Length": str(content.length)},
    }
