"""Connection settings: an Airflow connection read once into a checked, immutable value.

Everything that can be wrong with a connection (no key, a bad number, a bad ``prices`` extra, a
cleartext URL to a remote host) is refused here, when the connection is read, before any
request: nothing can fail a task later between a billed response and the recording of its usage.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_xai import __version__, secrets
from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, is_finite_number
from airflow_provider_xai.connection.rate_limits import (
    DEFAULT_BUCKET_RATES,
    RATE_LIMIT_FIELDS,
    RateLimitConfig,
    bucket_rates,
    rate_limit_config,
)
from airflow_provider_xai.connection.spend import SPEND_FIELDS, SpendConfig, spend_config
from airflow_provider_xai.defaults import (
    API_KEY_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MANAGEMENT_URL,
    DEFAULT_MODEL,
    MANAGEMENT_KEY_ENV,
)
from airflow_provider_xai.exceptions import XAIConfigurationError
from airflow_provider_xai.pricing import Price, parse_prices

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_TIMEOUT = 600.0
#: Longest one request attempt may take from sending to the last byte read (a stream that
#: trickles forever is cut here; ``timeout`` bounds each wait for bytes).
DEFAULT_DEADLINE = 1800.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 2
#: Largest response body read into memory (a chat answer is a few KB; a batch results page a few MB).
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Longest line (characters) of a server-sent event stream (one chunk is usually under 1 KB).
DEFAULT_MAX_SSE_LINE_LENGTH = 4 * 1024 * 1024
USER_AGENT = f"airflow-provider-xai/{__version__}"


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to build a client. ``api_key`` is kept out of ``repr``."""

    base_url: str
    api_key: str = field(repr=False)
    default_model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    max_retries: int = DEFAULT_MAX_RETRIES
    #: Price overrides from the connection's ``prices`` extra, already parsed.
    prices: Mapping[str, Price] = field(default_factory=dict)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_sse_line_length: int = DEFAULT_MAX_SSE_LINE_LENGTH
    #: The shared client-side rate limit (``rate_limit_*`` extras); None: no client-side limit.
    rate_limit: RateLimitConfig | None = None
    #: Requests per second of the endpoint families xAI limits on their own (``images``,
    #: ``videos``), shared through the same store (0: no client-side limit for that bucket).
    bucket_rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_BUCKET_RATES))
    #: xAI's Management API (collections, billing): its root and its own key (None: not set).
    management_base_url: str = DEFAULT_MANAGEMENT_URL
    management_key: str | None = field(default=None, repr=False)
    #: Spend control: budgets, live prices' time to live, how forecasts count tokens.
    spend: SpendConfig = field(default_factory=SpendConfig)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "User-Agent": USER_AGENT}

    def require_management_key(self, conn_id: str = "") -> str:
        """The management key; refused (naming the field) when the connection has none."""
        if not self.management_key:
            raise XAIConfigurationError(
                f"Connection {conn_id!r}: this call needs xAI's Management API: set the connection's "
                f"management_key (Management key) extra, or export {MANAGEMENT_KEY_ENV}"
            )
        return self.management_key

    def management_headers(self, conn_id: str = "") -> dict[str, str]:
        """The Management API's headers; refused (naming the field) without a management key."""
        return {"Authorization": f"Bearer {self.require_management_key(conn_id)}", "User-Agent": USER_AGENT}

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, DEFAULT_CONNECT_TIMEOUT))

    def url(self, path: str) -> str:
        """The full URL of an API path (for messages; requests use the client's base URL); an
        absolute URL (a media file's) without its query, which may hold a signature."""
        if "://" in path:
            return path.split("?", 1)[0]
        return f"{self.base_url}/{path}"


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    value = extra.get(name, extra.get(f"extra__xai__{name}"))
    return None if value in ("", None) else value


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str, conn_id: str, *, allow_insecure_http: bool = False) -> str:
    """A usable base URL: https anywhere, http only to loopback unless explicitly allowed."""
    try:
        httpx.URL(base_url)  # what the client will parse: ports, characters
        parts = urlsplit(base_url)
        host = parts.hostname or ""
    except (ValueError, httpx.InvalidURL) as exc:
        raise XAIConfigurationError(f"Connection {conn_id!r}: invalid Base URL {base_url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise XAIConfigurationError(
            f"Connection {conn_id!r}: Base URL must be an http(s) URL with a host, got {base_url!r}"
        )
    if parts.scheme == "http" and not is_loopback(host) and not allow_insecure_http:
        raise XAIConfigurationError(
            f"Connection {conn_id!r}: Base URL {base_url!r} is plain http to a remote host, so the API "
            "key would travel unencrypted. Use https, or set the extra allow_insecure_http=true "
            "for a trusted proxy."
        )
    return base_url


def settings_from_connection(
    conn: Connection | None,
    conn_id: str,
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
    deadline: float | None = None,
    max_response_bytes: int | None = None,
    max_sse_line_length: int | None = None,
) -> ClientSettings:
    """Read a connection (or only ``XAI_API_KEY`` when ``conn`` is None) into checked settings.

    Hook arguments win over the connection's extras, which win over the defaults.
    """
    extra: Mapping[str, Any] = (conn.extra_dejson if conn else {}) or {}
    api_key = (conn.password if conn else None) or os.environ.get(API_KEY_ENV)
    if not api_key:
        raise XAIConfigurationError(
            f"No xAI API key: set the password (API Key) of connection {conn_id!r} "
            f"or export the {API_KEY_ENV} environment variable."
        )
    secrets.register(api_key)
    base_url = ((conn.host if conn else None) or DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in base_url:
        base_url = f"https://{base_url}"
    check_base_url(base_url, conn_id, allow_insecure_http=_truthy(_extra(extra, "allow_insecure_http")))
    values = {
        "timeout": _number(conn_id, "timeout", float, timeout, _extra(extra, "timeout"), DEFAULT_TIMEOUT),
        "deadline": _number(conn_id, "deadline", float, deadline, _extra(extra, "deadline"), DEFAULT_DEADLINE),
        "max_retries": _number(
            conn_id, "max_retries", int, max_retries, _extra(extra, "max_retries"), DEFAULT_MAX_RETRIES
        ),
        "max_response_bytes": _number(
            conn_id,
            "max_response_bytes",
            int,
            max_response_bytes,
            _extra(extra, "max_response_bytes"),
            DEFAULT_MAX_RESPONSE_BYTES,
        ),
        "max_sse_line_length": _number(
            conn_id,
            "max_sse_line_length",
            int,
            max_sse_line_length,
            _extra(extra, "max_sse_line_length"),
            DEFAULT_MAX_SSE_LINE_LENGTH,
        ),
    }
    try:
        prices = _read_prices(_extra(extra, "prices"))
    except (TypeError, ValueError) as exc:
        raise XAIConfigurationError(f"Connection {conn_id!r}: invalid extra 'prices': {exc}") from None
    management_url = str(_extra(extra, "management_base_url") or DEFAULT_MANAGEMENT_URL).strip().rstrip("/")
    check_base_url(management_url, conn_id, allow_insecure_http=_truthy(_extra(extra, "allow_insecure_http")))
    management_key = _extra(extra, "management_key") or os.environ.get(MANAGEMENT_KEY_ENV) or None
    if management_key is not None and not isinstance(management_key, str):
        raise XAIConfigurationError(f"Connection {conn_id!r}: management_key must be text")
    secrets.register(management_key)
    return ClientSettings(
        base_url=base_url,
        api_key=api_key,
        management_base_url=management_url,
        management_key=management_key,
        default_model=str(_extra(extra, "default_model") or DEFAULT_MODEL),
        prices=prices,
        rate_limit=rate_limit_config(
            {name: _extra(extra, f"rate_limit_{name}") for name in RATE_LIMIT_FIELDS}, conn_id
        ),
        bucket_rates=bucket_rates(_extra(extra, "rate_limit_buckets"), conn_id),
        spend=spend_config({name: _extra(extra, name) for name in SPEND_FIELDS}, conn_id),
        **values,
    )


def _number(conn_id: str, name: str, kind: type[float] | type[int], *candidates: Any) -> Any:
    """The first given value as a finite number above 0 (``max_retries`` may be 0; ``timeout``
    at most a year, which a socket can still take), naming the field."""
    value = _first(*candidates)
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)  # True is no number; 2.5 (or NaN) no integer
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise XAIConfigurationError(
            f"Connection {conn_id!r}: {name} must be {'an integer' if kind is int else 'a number'}, "
            f"got {value!r}"
        ) from None
    problem = None
    if not is_finite_number(number) or not (number > 0 or (name == "max_retries" and number == 0)):
        problem = f"must be a finite number {'>= 0' if name == 'max_retries' else '> 0'}"
    elif name == "timeout" and number > MAX_WAIT_SECONDS:
        problem = f"must be at most {MAX_WAIT_SECONDS:.0f} (a year)"
    if problem:
        raise XAIConfigurationError(f"Connection {conn_id!r}: {name} {problem}, got {value!r}")
    return number


def _read_prices(raw: Any) -> dict[str, Price]:
    """The ``prices`` extra (a JSON object or its text), every price a finite number >= 0."""
    if raw is None:
        return {}
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object of model -> price, got {type(data).__name__}")
    prices = parse_prices(data)
    for model, price in prices.items():
        for name, value in vars(price).items():
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{model}.{name} must be a finite number >= 0, got {value!r}")
    return prices
