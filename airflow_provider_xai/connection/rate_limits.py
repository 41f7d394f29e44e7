"""The shared rate limit's connection settings (``rate_limit_*`` extras), checked on reading.

Kept apart from the limiter so reading a connection imports nothing of it (no limit set: no
limiter, no store opened).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_xai.exceptions import XAIConfigurationError

STORES = ("embedded", "redis")
#: Requests per second of the endpoint families xAI limits on their own (images 5 RPS, video
#: 1 RPS, every tier), by rate-limit bucket; the ``rate_limit_buckets`` extra overrides them
#: (0 turns one off).
DEFAULT_BUCKET_RATES: dict[str, float] = {"images": 5.0, "videos": 1.0}
BUCKETS_SHAPE = 'must be a JSON object of bucket -> requests per second (e.g. {"images": 2})'
#: The connection extras of the shared limit, each ``rate_limit_<name>``.
RATE_LIMIT_FIELDS = (
    "requests_per_second", "tokens_per_minute", "store", "path", "redis_conn_id", "defer_after", "resume_lead",
    "send_in_triggerer",
)
DEFAULT_PATH_NAME = "xai_rate_limits.sqlite"
#: A task whose slot is further away than this many seconds waits for it in the triggerer.
DEFAULT_DEFER_AFTER = 10.0
#: How long before its slot the triggerer hands a deferred task back, so that it is on a worker
#: when the slot comes (a Celery worker takes a few seconds to start a task; a pod longer).
DEFAULT_RESUME_LEAD = 5.0
#: The longest either may be: an hour.
MAX_WAIT_SETTING = 3600.0


@dataclass(frozen=True)
class RateLimitConfig:
    """The connection's shared-limit settings (already checked)."""

    requests_per_second: float | None = None
    tokens_per_minute: int | None = None
    store: str = "embedded"
    path: str = ""
    redis_conn_id: str | None = None
    #: Seconds of wait past which a prompt task's first call waits in the triggerer (None: never).
    defer_after: float | None = DEFAULT_DEFER_AFTER
    resume_lead: float = DEFAULT_RESUME_LEAD
    #: A call that waits in the triggerer is sent from there at its slot (False: its task is
    #: handed back to a worker shortly before the slot, to send it; for a triggerer that cannot
    #: reach xAI).
    send_in_triggerer: bool = True


def default_path() -> str:
    """``$AIRFLOW_HOME/xai_rate_limits.sqlite`` (``~/airflow`` when AIRFLOW_HOME is unset)."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, DEFAULT_PATH_NAME)


def rate_limit_config(values: Mapping[str, Any], conn_id: str) -> RateLimitConfig | None:
    """The shared-limit settings from the connection's extras (None: no client-side limit).

    ``values`` maps the field names (without the ``rate_limit_`` prefix) to the extras' values,
    None when unset. Bad values raise :class:`XAIConfigurationError` naming the field.
    """
    rps, tpm = values.get("requests_per_second"), values.get("tokens_per_minute")
    store, path, redis_conn_id = values.get("store"), values.get("path"), values.get("redis_conn_id")
    if rps is None and tpm is None and store is None and path is None and redis_conn_id is None:
        return None
    store = str(store).strip().lower() if store is not None else ("redis" if redis_conn_id else "embedded")
    if store not in STORES:
        raise _bad(conn_id, "rate_limit_store", f"must be one of {', '.join(STORES)}, got {values.get('store')!r}")
    if store == "redis" and not redis_conn_id:
        raise _bad(
            conn_id,
            "rate_limit_redis_conn_id",
            "(the Airflow connection of the Redis store) is required with rate_limit_store 'redis'",
        )
    if store == "embedded" and redis_conn_id:
        raise _bad(conn_id, "rate_limit_redis_conn_id", "is set but rate_limit_store is 'embedded'")
    defer_after = _seconds(conn_id, "rate_limit_defer_after", values.get("defer_after"), DEFAULT_DEFER_AFTER)
    return RateLimitConfig(
        requests_per_second=_positive(conn_id, "rate_limit_requests_per_second", rps, float, minimum=0.001),
        tokens_per_minute=_positive(conn_id, "rate_limit_tokens_per_minute", tpm, int, minimum=1),
        store=store,
        path=_absolute(conn_id, path) if path else default_path(),
        redis_conn_id=str(redis_conn_id) if redis_conn_id else None,
        defer_after=defer_after or None,  # 0: never
        resume_lead=_seconds(conn_id, "rate_limit_resume_lead", values.get("resume_lead"), DEFAULT_RESUME_LEAD),
        send_in_triggerer=_flag(conn_id, "rate_limit_send_in_triggerer", values.get("send_in_triggerer"), True),
    )


def bucket_rates(value: Any, conn_id: str) -> dict[str, float]:
    """The requests per second of each bucket: :data:`DEFAULT_BUCKET_RATES` with the
    ``rate_limit_buckets`` extra (a JSON object, or its text) on top."""
    if value is None:
        return dict(DEFAULT_BUCKET_RATES)
    try:
        given = json.loads(value) if isinstance(value, str) else value
    except ValueError as exc:
        raise _bad(conn_id, "rate_limit_buckets", f"{BUCKETS_SHAPE} ({exc})") from None
    if not isinstance(given, Mapping):
        raise _bad(conn_id, "rate_limit_buckets", f"{BUCKETS_SHAPE}, got {value!r}")
    rates = dict(DEFAULT_BUCKET_RATES)
    for bucket, rate in given.items():
        number = _positive(conn_id, f"rate_limit_buckets.{bucket}", rate, float, minimum=0)
        rates[str(bucket)] = number or 0.0
    return rates


def _seconds(conn_id: str, name: str, value: Any, default: float) -> float:
    """A number of seconds from 0 to an hour (``default`` when unset)."""
    if value is None:
        return default
    number = _positive(conn_id, name, value, float, minimum=0)
    if number > MAX_WAIT_SETTING:
        raise _bad(conn_id, name, f"must be at most {MAX_WAIT_SETTING:g} seconds, got {value!r}")
    return float(number)


def _flag(conn_id: str, name: str, value: Any, default: bool) -> bool:
    """A yes or no: a boolean, or its text (true/false, yes/no, 1/0); ``default`` when unset."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise _bad(conn_id, name, f"must be true or false, got {value!r}")


def _absolute(conn_id: str, path: Any) -> str:
    """The store file's path: absolute (``~`` expanded), so every worker, whatever its working
    directory, opens the same file."""
    expanded = os.path.expanduser(str(path))
    if not os.path.isabs(expanded):
        raise _bad(conn_id, "rate_limit_path", f"must be an absolute path, got {path!r}")
    return expanded


def _bad(conn_id: str, name: str, problem: str) -> XAIConfigurationError:
    return XAIConfigurationError(f"Connection {conn_id!r}: {name} {problem}")


def _positive(conn_id: str, name: str, value: Any, kind: type[float] | type[int], minimum: float) -> Any:
    if value is None:
        return None
    try:
        number = kind(value)
        if kind is int and number != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _bad(conn_id, name, f"must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if not (math.isfinite(number) and number >= minimum):
        raise _bad(conn_id, name, f"must be at least {minimum:g}, got {value!r}")
    return number


__all__ = [
    "DEFAULT_BUCKET_RATES",
    "DEFAULT_DEFER_AFTER",
    "DEFAULT_RESUME_LEAD",
    "RATE_LIMIT_FIELDS",
    "STORES",
    "RateLimitConfig",
    "bucket_rates",
    "default_path",
    "rate_limit_config",
]
