"""Looking into the shared rate limiter's store from a test: what a key holds, how many store
operations a piece of code made."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from airflow_provider_xai.ratelimit.limiter import SharedRateLimiter
from airflow_provider_xai.ratelimit.redis_store import RedisStates
from airflow_provider_xai.ratelimit.slots import decode
from airflow_provider_xai.ratelimit.sqlite_store import SQLiteStates

MODEL = "grok-4.3"


def raw_value(states: Any, key: str) -> Any:
    """What the store holds under ``key``, as stored (None when nothing is)."""
    if isinstance(states, SQLiteStates):
        with sqlite3.connect(states.path) as db:
            row = db.execute("SELECT state FROM xai_rate_limit WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None
    assert isinstance(states, RedisStates)
    return redis_client(states).get(key)


def redis_client(states: RedisStates) -> Any:
    import redis

    options = {k: v for k, v in states._options.items() if k != "retry"}
    return redis.Redis(**options)


def tokens_held(limiter: SharedRateLimiter, model: str = MODEL) -> int:
    """Tokens the store holds for ``model`` now, after the limiter's pending refunds were carried
    (by a read of the cool-down, itself a store operation)."""
    limiter.remaining_cooldown(model)
    (_, empty, _), garbled = decode(raw_value(limiter.states, limiter.key(f"model:{model}")), limiter.now_us())
    assert not garbled
    tpm = limiter.config.tokens_per_minute
    assert tpm is not None
    return round(max(0, empty - limiter.now_us()) * tpm / 60_000_000)


@contextmanager
def counted_operations(states: SQLiteStates, limit: int | None = None) -> Iterator[Callable[[], int]]:
    """Count the embedded store's operations (a transaction, or a compare-and-set that wrote);
    past ``limit``, fail the one that goes over."""
    count = 0
    transaction, swapped = states.transaction, states._swapped

    def counted() -> None:
        nonlocal count
        count += 1
        if limit is not None and count > limit:
            raise AssertionError(f"more than {limit} store operations")

    def counting_transaction(*args: Any, **kwargs: Any) -> Any:
        counted()
        return transaction(*args, **kwargs)

    def counting_swap(*args: Any, **kwargs: Any) -> Any:
        outcome = swapped(*args, **kwargs)
        if outcome is not None:
            counted()
        return outcome

    states.transaction, states._swapped = counting_transaction, counting_swap  # type: ignore[method-assign]
    try:
        yield lambda: count
    finally:
        del states.transaction, states._swapped
