"""The shared limiter's state transition (ratelimit/slots.py) and its embedded store.

The transition is pure: given a stored value and an update it returns the value to store and
the answer. The embedded store is a real SQLite file in tmp_path, shared by threads, by a
second store object on the same file (another process's view) and by a forked child. The Redis
twin of the transition is compared with this one in tests/integration/test_rate_limit_shared.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_xai.exceptions import XAIConnectionError
from airflow_provider_xai.ratelimit import store as rate_limit_store
from airflow_provider_xai.ratelimit.redis_store import RedisStates
from airflow_provider_xai.ratelimit.slots import HORIZON, Update, decode, encode, transition
from airflow_provider_xai.ratelimit.sqlite_store import SQLiteStates

NOW = 1_800_000_000_000_000  # us
SECOND = 1_000_000


def apply(stored: str | None, *updates: Update) -> tuple[str | None, list[Any]]:
    outcomes = []
    for update in updates:
        stored, outcome = transition(stored, update)
        outcomes.append(outcome)
    return stored, outcomes


class TestTransition:
    def test_slots_taken_at_the_same_moment_are_booked_one_spacing_apart(self) -> None:
        _, outcomes = apply(None, *[Update(NOW, slot=True, spacing=50_000)] * 4)
        assert [o.at - NOW for o in outcomes] == [0, 50_000, 100_000, 150_000]

    def test_a_slot_waits_for_room_in_the_tokens_bucket(self) -> None:
        minute = 60 * SECOND
        stored, (first, second) = apply(
            None,
            Update(NOW, slot=True, tokens=minute, depth=minute),  # the whole minute's budget
            Update(NOW, slot=True, tokens=minute // 4, depth=minute),
        )
        assert first.at == NOW and second.at == NOW + minute // 4  # a quarter has drained by then
        assert decode(stored, NOW)[0][1] == NOW + minute + minute // 4

    def test_a_refund_never_leaves_the_bucket_below_empty(self) -> None:
        stored, _ = apply(None, Update(NOW, slot=True, tokens=5 * SECOND, depth=60 * SECOND))
        stored, _ = apply(stored, Update(NOW + 2 * SECOND, correction=-10 * SECOND))
        assert decode(stored, NOW)[0][1] == NOW + 2 * SECOND  # empty now, not 8 s ago

    def test_a_debt_past_the_budget_pushes_the_next_slot(self) -> None:
        minute = 60 * SECOND
        stored, _ = apply(None, Update(NOW, correction=minute + 30 * SECOND))  # 1.5 minutes billed
        _, (outcome,) = apply(stored, Update(NOW, slot=True, tokens=0, depth=minute))
        assert outcome.at == NOW + 30 * SECOND

    def test_a_cool_down_pushes_every_later_slot_and_never_shrinks(self) -> None:
        stored, (first, shorter) = apply(
            None, Update(NOW, cool_until=NOW + 3 * SECOND), Update(NOW, cool_until=NOW + SECOND)
        )
        assert first.cool_until == shorter.cool_until == NOW + 3 * SECOND
        _, (slot,) = apply(stored, Update(NOW, slot=True, spacing=10))
        assert slot.at == NOW + 3 * SECOND


class TestGivingBack:
    """A slot given back (slots.py): the next caller gets it only while it is to come and the
    last one booked; otherwise it stays a gap; giving it back twice never hands it out twice."""

    SPACING = 500_000

    def book(self, stored: str | None, now: int = NOW) -> tuple[str, int]:
        stored, (outcome,) = apply(stored, Update(now, slot=True, spacing=self.SPACING))
        assert stored is not None
        return stored, outcome.at

    def release(self, stored: str, at: int, now: int = NOW) -> str:
        released, _ = apply(stored, Update(now, release=at, spacing=self.SPACING))
        assert released is not None
        return released

    def test_the_last_slot_booked_goes_to_the_next_caller(self) -> None:
        stored, _ = self.book(None)
        stored, second = self.book(stored)
        _, third = self.book(self.release(stored, second))
        assert third == second + 1  # the slot given back, as another slot (1 us later)

    def test_a_slot_with_bookings_after_it_stays_a_gap(self) -> None:
        stored, _ = self.book(None)
        stored, held = self.book(stored)
        stored, after = self.book(stored)
        _, next_one = self.book(self.release(stored, held))
        assert next_one == after + self.SPACING  # nobody gets the held slot: one request fewer

    def test_a_past_slot_gives_nothing_back(self) -> None:
        stored, _ = self.book(None)
        stored, held = self.book(stored)
        later = held + 1
        released = self.release(stored, held, now=later)
        assert self.book(released, later)[1] == self.book(stored, later)[1] == held + self.SPACING

    def test_giving_a_slot_back_twice_never_hands_it_out_twice(self) -> None:
        stored, _ = self.book(None)
        stored, held = self.book(stored)
        stored, taken = self.book(self.release(stored, held))  # another caller takes it
        stored = self.release(stored, held)  # the old holder gives it back again (its next try)
        _, after = self.book(stored)
        assert after == taken + self.SPACING != taken

    def test_tokens_given_back_ride_on_the_same_operation(self) -> None:
        minute = 60 * SECOND
        stored, (outcome,) = apply(None, Update(NOW, slot=True, spacing=self.SPACING, tokens=minute // 2, depth=minute))
        stored, _ = apply(
            stored, Update(NOW, correction=-(minute // 2), release=outcome.at, spacing=self.SPACING)
        )
        assert decode(stored, NOW)[0][1] == NOW  # the bucket is empty again


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "1,2",
        "1,2,3,4",
        "-5,0,0",
        "1.5,2,3",
        " 1,2,3",
        "nan,0,0",
        str(NOW + HORIZON + 1) + ",0,0",  # a lock-out past any sane horizon
        "9" * 25 + ",0,0",
        12345,
        b"\xff\xfe",
        3.5,
    ],
)
def test_an_unreadable_value_is_read_as_an_empty_key(value: Any) -> None:
    assert decode(value, NOW) == ((0, 0, 0), True)
    stored, outcome = transition(value, Update(NOW, slot=True, spacing=SECOND))
    assert outcome.garbled and outcome.at == NOW
    assert decode(stored, NOW) == ((NOW + SECOND, NOW, 0), False)


def test_a_readable_value_is_read_back() -> None:
    times = (NOW + 5, NOW - 7, 0)
    assert decode(encode(times), NOW) == (times, False)
    assert decode(encode(times).encode(), NOW) == (times, False)
    assert decode(None, NOW) == ((0, 0, 0), False)


@pytest.fixture
def states(tmp_path: Path) -> SQLiteStates:
    return SQLiteStates(str(tmp_path / "limits.sqlite"))


def test_two_connections_of_one_machine_share_one_sqlite_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    assert rate_limit_store.open_states("embedded", path, None) is rate_limit_store.open_states("embedded", path, None)
    SQLiteStates(path).update("k", Update(1, slot=True))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT key FROM xai_rate_limit").fetchall() == [("k",)]


def test_concurrent_reservations_never_share_a_slot(states: SQLiteStates) -> None:
    """Threads of this process and a second store object on the same file (as another process
    opens it) all ask for a slot at the same moment: each gets its own, none is skipped."""
    other = SQLiteStates(states.path)
    spacing, each = 1000, 25
    slots: list[int] = []
    lock = threading.Lock()

    def reserve(store: SQLiteStates) -> None:
        for _ in range(each):
            at = store.update("k", Update(NOW, slot=True, spacing=spacing)).at
            with lock:
                slots.append(at)

    threads = [threading.Thread(target=reserve, args=(s,)) for s in (states, other) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(slots) == [NOW + i * spacing for i in range(6 * each)]


def _transactions(states: SQLiteStates, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys ``states`` opened a transaction for from here on (its other updates were one
    compare-and-set statement each)."""
    opened: list[str] = []
    transaction = states.transaction

    def spy(*args: Any, **kwargs: Any) -> Any:
        opened.append("transaction")
        return transaction(*args, **kwargs)

    monkeypatch.setattr(states, "transaction", spy)
    return opened


def test_an_update_is_one_statement_until_another_process_writes_the_key(
    states: SQLiteStates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The value this process wrote is what a compare-and-set expects; once another process
    (here a second store object) wrote the key, the set misses and a transaction reads it."""
    other = SQLiteStates(states.path)
    opened = _transactions(states, monkeypatch)
    take = Update(NOW, slot=True, spacing=SECOND)
    assert states.update("k", take).at == NOW and opened == ["transaction"]  # a key not written yet
    assert states.update("k", take).at == NOW + SECOND and len(opened) == 1  # one statement
    assert asyncio.run(states.aupdate("k", take)).at == NOW + 2 * SECOND and len(opened) == 1
    assert other.update("k", take).at == NOW + 3 * SECOND
    assert states.update("k", take).at == NOW + 4 * SECOND and len(opened) == 2  # missed: read anew
    assert states.update("k", take).at == NOW + 5 * SECOND and len(opened) == 2


def test_without_wal_every_update_is_a_transaction(states: SQLiteStates, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rollback journal's lone statement may wait for readers at its commit: no compare-and-set."""
    monkeypatch.setattr(states, "_wal", False)
    opened = _transactions(states, monkeypatch)
    take = Update(NOW, slot=True, spacing=SECOND)
    assert [states.update("k", take).at for _ in range(3)] == [NOW, NOW + SECOND, NOW + 2 * SECOND]
    assert len(opened) == 3


def test_the_async_update_waits_for_a_locked_file_in_a_thread(
    states: SQLiteStates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the file's write lock: the update waits for it off the loop, so
    the loop runs on (and here releases the lock; a blocked loop would never get there)."""
    states.update("k", Update(NOW))  # the connection is open
    holder = sqlite3.connect(states.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    in_thread = threading.Event()
    to_thread = asyncio.to_thread

    def spy(*args: Any, **kwargs: Any) -> Any:
        in_thread.set()
        return to_thread(*args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)

    async def main() -> Any:
        update = asyncio.ensure_future(states.aupdate("k", Update(NOW, slot=True, spacing=7)))
        while not in_thread.is_set():
            await asyncio.sleep(0)
        holder.execute("COMMIT")
        return await update

    outcome = asyncio.run(main())
    holder.close()
    assert outcome.at == NOW
    assert states.update("k", Update(NOW, slot=True, spacing=7)).at == NOW + 7


def test_the_async_update_runs_on_the_loop_when_the_file_is_free(
    states: SQLiteStates, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a free file needs no worker thread")

    states.update("k", Update(NOW))
    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    assert asyncio.run(states.aupdate("k", Update(NOW, slot=True, spacing=5))).at == NOW


def test_a_blocking_update_after_ones_on_the_loop_still_waits_for_a_locked_file(states: SQLiteStates) -> None:
    """An update on the loop waits for no lock, and the connection is left so; the next blocking
    update waits for another process's transaction again instead of failing."""
    states.update("k", Update(NOW))
    asyncio.run(states.aupdate("k", Update(NOW)))
    asyncio.run(states.aupdate("k", Update(NOW)))
    holder = sqlite3.connect(states.path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        assert states.update("k", Update(NOW, slot=True, spacing=7)).at == NOW
    finally:
        release.join()
        holder.close()
    assert asyncio.run(states.aupdate("k", Update(NOW, slot=True, spacing=7))).at == NOW + 7


def test_a_garbled_row_is_counted_and_reset(
    states: SQLiteStates, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics: list[str] = []
    stats = type("Stats", (), {"incr": staticmethod(lambda name, *a, **k: metrics.append(name))})
    monkeypatch.setattr("airflow_provider_xai.usage.airflow_stats", lambda: stats)
    states.update("k", Update(NOW, slot=True, spacing=SECOND))
    with sqlite3.connect(states.path) as db:
        db.execute("UPDATE xai_rate_limit SET state = 'garbage'")
    assert states.update("k", Update(NOW, slot=True, spacing=SECOND)).at == NOW  # read as empty
    assert states.update("k", Update(NOW, slot=True, spacing=SECOND)).at == NOW + SECOND
    assert states.garbled == 1
    assert "unreadable value under k" in caplog.text
    assert metrics == ["xai.rate_limit.garbled_values"]


def test_a_redis_failure_names_the_store_and_never_the_password() -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    password = "redis-pass-do-not-leak-42"
    states = RedisStates({"host": "127.0.0.1", "port": port, "password": password}, "limits_redis")
    with pytest.raises(XAIConnectionError) as raised:
        states.update("k", Update(1, slot=True))
    assert "limits_redis" in str(raised.value) and password not in str(raised.value)
    with pytest.raises(XAIConnectionError) as araised:
        asyncio.run(states.aupdate("k", Update(1, slot=True)))
    assert password not in str(araised.value)


def _reserve_in_child(states: SQLiteStates, result: Any) -> None:
    result.put(states.update("forked", Update(NOW, slot=True, spacing=SECOND)).at)


def test_a_forked_worker_opens_its_own_connection(states: SQLiteStates) -> None:
    import multiprocessing

    assert states.update("forked", Update(NOW, slot=True, spacing=SECOND)).at == NOW  # the parent's connection is open
    context = multiprocessing.get_context("fork")  # as Celery's prefork pool starts workers
    result = context.Queue()
    child = context.Process(target=_reserve_in_child, args=(states, result))
    child.start()
    at = result.get(timeout=60)
    child.join()
    assert child.exitcode == 0 and at == NOW + SECOND  # the child saw the parent's reservation
    assert states.update("forked", Update(NOW, slot=True, spacing=SECOND)).at == NOW + 2 * SECOND  # parent still works
