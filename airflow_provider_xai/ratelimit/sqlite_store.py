"""The embedded store: the shared limits in an SQLite file, for the processes of one machine.

Each update is atomic for every process sharing the file, in one of two ways:

- usually one statement: the process remembers the value it last wrote under each key, computes
  the transition from it (``slots.advance``) and writes the result only if the row still
  holds that value (``UPDATE ... WHERE state = ?``, a compare-and-set), which it does unless
  another process wrote the key since;
- else one transaction: ``BEGIN IMMEDIATE`` takes the file's write lock (other processes wait
  their turn; no extra service, no lock file), then one read and one write of the key's row,
  the transition computed in between. A key this process has not written yet, a value another
  process changed, or a file not in WAL mode (where a lone statement's commit may wait for
  readers) take this way.

The async path runs that operation on the event loop only when it can take the locks at once
(no waiting: a busy timeout of 0), which is cheaper than handing it to a thread; when another
thread or process holds them, it waits in a worker thread, so the loop never blocks. In WAL
mode nothing after ``BEGIN IMMEDIATE`` waits for a lock, so the connection's busy timeout is
changed only when a transaction of the other kind comes (no statement per transaction).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow_provider_xai.exceptions import XAIConfigurationError, XAIConnectionError
from airflow_provider_xai.ratelimit.slots import Outcome, SlotStore, Update, advance, decode, encode

#: How long a process waits for another process's transaction (they take microseconds).
SQLITE_BUSY_TIMEOUT = 30.0
#: SQLite's "database is locked" (sqlite3 names its codes from Python 3.11 on).
_SQLITE_BUSY = 5
_CREATE = "CREATE TABLE IF NOT EXISTS xai_rate_limit (key TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID"
_SELECT = "SELECT state FROM xai_rate_limit WHERE key = ?"
_SWAP = "UPDATE xai_rate_limit SET state = ? WHERE key = ? AND state = ?"
_UPSERT = (
    "INSERT INTO xai_rate_limit (state, key) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET state = excluded.state"
)


class Busy(Exception):
    """The file (or this process's connection) is in use and the caller would not wait."""


class SQLiteStates(SlotStore):
    """The embedded store: one SQLite file shared by the processes of one machine.

    One connection per process (reopened after a fork, as Celery's prefork workers do), used by
    one thread at a time. The file must be on a local disk (SQLite's locking is unreliable on
    network file systems); Redis is the store for many machines.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None  # none in a forked child, until it opens its own
        #: The connection is in WAL mode, and whether its busy timeout is now the waiting one.
        self._wal = self._waits = False
        #: The value this process last wrote under each key, and its times (what a
        #: compare-and-set expects, and computes from).
        self._written: dict[str, tuple[str, tuple[int, int, int]]] = {}
        os.register_at_fork(after_in_child=self._after_fork)
        with self.transaction():  # fail now, naming the field, if the file cannot be used
            pass

    def describe(self) -> str:
        return f"embedded store {self.path}"

    def _connect(self) -> sqlite3.Connection:
        """Open this process's connection."""
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._wal = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() == "wal"
            self._waits = True  # SQLITE_BUSY_TIMEOUT, as connected
            conn.execute("PRAGMA synchronous=OFF")  # limiter state: losing it in an OS crash is harmless
            # One b-tree (WITHOUT ROWID): a transaction writes one page. A file made by an
            # older release keeps its table, which works the same.
            conn.execute(_CREATE)
        except (OSError, sqlite3.Error) as exc:
            raise XAIConfigurationError(
                f"rate_limit_path {self.path!r} cannot hold the shared rate limits: {exc}"
            ) from None
        self._conn = conn
        return conn

    def _connection(self, wait: bool) -> _Connection:
        """This process's connection, for this thread alone (``with``); its failures as typed
        errors. ``wait=False``: raise :class:`Busy` instead of waiting for another thread (and
        instead of opening the file, which may take a while)."""
        return _Connection(self, wait)

    @contextmanager
    def transaction(self, wait: bool = True) -> Iterator[sqlite3.Cursor]:
        """One write transaction (``BEGIN IMMEDIATE``: other processes wait for its end).

        ``wait=False``: raise :class:`Busy` instead of waiting for another thread or process.
        """
        with self._connection(wait) as conn:
            cursor = conn.cursor()
            try:
                self._begin(cursor, wait)
                try:
                    yield cursor
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            finally:
                cursor.close()

    def _begin(self, cursor: sqlite3.Cursor, wait: bool) -> None:
        self._busy_timeout(cursor, wait)
        if wait:
            cursor.execute("BEGIN IMMEDIATE")
            return
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise Busy from None
            raise
        finally:
            if not self._wal:  # a rollback journal's COMMIT may wait for readers
                self._busy_timeout(cursor, True)

    def _busy_timeout(self, cursor: sqlite3.Cursor | sqlite3.Connection, wait: bool) -> None:
        """Wait for the locks (``wait``) or not at all, unless the connection already does."""
        if wait != self._waits:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000) if wait else 0}")
            self._waits = wait

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock and no connection (neither may cross a fork)."""
        self._lock, self._conn = threading.Lock(), None

    def _apply(self, key: str, update: Update, wait: bool) -> Outcome:
        outcome = self._swapped(key, update, wait)
        if outcome is None:
            with self.transaction(wait) as cursor:
                row = cursor.execute(_SELECT, (key,)).fetchone()
                times, garbled = decode(row[0] if row else None, update.now)
                after, outcome = advance(times, update, garbled)
                self._store(cursor, _UPSERT, key, after)
        return self.counted(key, outcome)

    def _swapped(self, key: str, update: Update, wait: bool) -> Outcome | None:
        """``update`` applied by one compare-and-set against the value this process last wrote
        under ``key``; None when that cannot be done (see the module docstring)."""
        known = self._written.get(key)
        if known is None or not self._wal:
            return None
        expected, times = known
        after, outcome = advance(times, update)
        with self._connection(wait) as conn:
            self._busy_timeout(conn, wait)
            try:
                return outcome if self._store(conn, _SWAP, key, after, expected) else None
            except sqlite3.OperationalError as exc:
                if not wait and _busy(exc):  # on the loop: try again in a thread
                    raise Busy from None
                raise

    def _store(
        self, on: sqlite3.Cursor | sqlite3.Connection, statement: str, key: str, times: tuple[int, int, int],
        *expected: str,
    ) -> bool:  # fmt: skip
        """Write ``times`` under ``key`` by ``statement`` and remember them; whether a row
        changed (a compare-and-set that missed changes none)."""
        state = encode(times)
        if on.execute(statement, (state, key, *expected)).rowcount != 1:
            return False
        self._written[key] = (state, times)
        return True

    def update(self, key: str, update: Update) -> Outcome:
        """Apply ``update`` to ``key`` in one store operation (see the module docstring)."""
        return self._apply(key, update, True)

    async def aupdate(self, key: str, update: Update) -> Outcome:
        """:meth:`update` on the loop when the file is free at once, else in a worker thread."""
        try:
            return self._apply(key, update, False)
        except Busy:
            return await asyncio.to_thread(self._apply, key, update, True)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another process holds the file)."""
    return getattr(exc, "sqlite_errorcode", _SQLITE_BUSY) & 0xFF == _SQLITE_BUSY


class _Connection:
    """:meth:`SQLiteStates._connection` (a class rather than a generator: every update passes
    through it)."""

    __slots__ = ("states", "wait")

    def __init__(self, states: SQLiteStates, wait: bool) -> None:
        self.states, self.wait = states, wait

    def __enter__(self) -> sqlite3.Connection:
        states = self.states
        if not states._lock.acquire(blocking=self.wait):
            raise Busy
        try:
            conn = states._conn
            if conn is None:  # a forked child opens its own
                if not self.wait:
                    raise Busy
                conn = states._connect()
        except BaseException:
            states._lock.release()
            raise
        return conn

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self.states._lock.release()
        if isinstance(exc, sqlite3.Error):  # locked past the timeout, disk full, file removed...
            raise XAIConnectionError(f"xAI rate-limit {self.states.describe()} is unusable: {exc}") from None


# --- the resume lead's returns (ratelimit/lead.py): a table of their own, off the slots' path --
_RETURNS_CREATE = (
    "CREATE TABLE IF NOT EXISTS xai_resume_returns (key TEXT PRIMARY KEY, entries TEXT NOT NULL) WITHOUT ROWID"
)


def resume_returns(states: SQLiteStates, key: str, now_ms: int, new: str | None = None) -> list[str]:
    """The entries of recent returns from the triggerer under ``key`` (``lead.py``), with
    ``new`` noted first when given: one transaction, on a table of its own."""
    from airflow_provider_xai.ratelimit.lead import trimmed

    with states.transaction() as cursor:
        cursor.execute(_RETURNS_CREATE)
        row = cursor.execute("SELECT entries FROM xai_resume_returns WHERE key = ?", (key,)).fetchone()
        stored = row[0] if row and isinstance(row[0], str) else None
        entries = trimmed(stored, now_ms, new)
        if new is not None or entries != (stored or ""):
            cursor.execute(
                "INSERT INTO xai_resume_returns (key, entries) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET entries = excluded.entries",
                (key, entries),
            )
    return [e for e in entries.split(",") if e]


__all__ = ["SQLITE_BUSY_TIMEOUT", "Busy", "SQLiteStates", "resume_returns"]
