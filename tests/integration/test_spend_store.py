"""Spend control's store operations on both stores (the embedded SQLite file and a real Redis):
a reservation across budgets is all or nothing, a settlement never goes below zero, stored
values that are no count are reset and counted, and one worker at a time refreshes a stale
cached value; a value kept for one reader is taken once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_xai.ratelimit.redis_store import RedisStates
from airflow_provider_xai.ratelimit.sqlite_store import SQLiteStates
from airflow_provider_xai.spend.store import Entry, SpendStore
from tests.helpers.limits import redis_client
from tests.integration.test_rate_limit_shared import REDIS_PASSWORD, redis_port  # noqa: F401 (a fixture)


@pytest.fixture(params=["embedded", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpendStore]:
    if request.param == "embedded":
        yield SpendStore(SQLiteStates(str(tmp_path / "spend.sqlite")))
        return
    states = RedisStates(
        {"host": "127.0.0.1", "port": request.getfixturevalue("redis_port"), "password": REDIS_PASSWORD},
        "spend_redis",
    )
    redis_client(states).flushdb()
    yield SpendStore(states)


def write_raw(store: SpendStore, key: str, value: Any) -> None:
    """A value some other program left under a budget key."""
    if isinstance(store.states, SQLiteStates):
        store.read([key])  # the tables exist
        with store.states.transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO xai_budget (key, committed, expires) VALUES (?, ?, 1e12)",
                (key, value),
            )
    else:
        redis_client(store.states).set(key, value)


def test_a_reservation_across_budgets_is_all_or_nothing(store: SpendStore) -> None:
    assert store.reserve([Entry("a", 60, 100), Entry("b", 60, 1000)]).granted
    refused = store.reserve([Entry("a", 50, 100), Entry("b", 50, 1000)])
    assert not refused.granted and refused.values == (60, 60)
    assert store.read(["a", "b"]) == (60, 60)  # neither was charged
    forced = store.reserve([Entry("a", 50, 100), Entry("b", 50, 1000)], force=True)
    assert forced.granted and forced.values == (110, 110)


def test_a_settlement_never_goes_below_zero(store: SpendStore) -> None:
    store.reserve([Entry("a", 10, 100)])
    store.settle([Entry("a", -25)])
    assert store.read(["a"]) == (0,)


@pytest.mark.parametrize("garbage", ["not a number", "-5", "1.5", str(2**60)])
def test_a_stored_value_that_is_no_count_is_reset_and_counted(store: SpendStore, garbage: str) -> None:
    write_raw(store, "a", garbage)
    assert store.reserve([Entry("a", 7, 100)]).values == (7,)
    assert store.garbled == 1


def test_one_worker_at_a_time_refreshes_a_stale_value(store: SpendStore) -> None:
    assert store.cached("prices", 60) == (None, True)  # nothing there: this caller refreshes
    assert store.cached("prices", 60) == (None, False)  # the lease is held: the others wait
    store.cache("prices", '{"written_at": 1e12, "x": 1}', 120)
    assert store.cached("prices", 60) == ('{"written_at": 1e12, "x": 1}', False)
    store.cache("prices", '{"written_at": 1, "x": 2}', 120)  # written long ago: stale
    value, refresh = store.cached("prices", 60)
    assert refresh and value == '{"written_at": 1, "x": 2}'  # the stale value meanwhile


def test_scan_reads_a_prefix(store: SpendStore) -> None:
    store.settle([Entry("xai-tally:2026-09-01:usd:chat:m", 5), Entry("xai-tally:2026-09-02:usd:chat:m", 7)])
    assert store.scan("xai-tally:2026-09-01:") == {"xai-tally:2026-09-01:usd:chat:m": 5}


def test_a_kept_value_is_taken_once(store: SpendStore) -> None:
    assert store.take("held:none") is None
    store.cache("held:a", '{"entries": [["usd", "k", 5]]}', 60)
    store.cache("held:b", '{"entries": []}', 60)
    assert store.take("held:a") == '{"entries": [["usd", "k", 5]]}'
    assert store.take("held:a") is None  # taken: a second settlement finds nothing
    assert store.take("held:b") == '{"entries": []}'  # another key is left alone


def test_reading_a_key_never_lengthens_its_life_or_makes_one(store: SpendStore) -> None:
    import time

    store.reserve([Entry("day", 5, expires=time.time() + 60)])
    assert store.read(["day", "never"]) == (5, 0)
    if isinstance(store.states, SQLiteStates):
        with store.states.transaction() as cursor:
            rows = dict(cursor.execute("SELECT key, expires FROM xai_budget").fetchall())
        assert set(rows) == {"day"} and rows["day"] < time.time() + 61
    else:
        client = redis_client(store.states)
        assert client.exists("never") == 0 and 0 < client.pttl("day") <= 60_000
