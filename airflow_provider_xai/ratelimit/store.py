"""Where the shared rate limits live: an SQLite file (one machine) or Redis (many machines).

Both stores keep pyrate-limiter's constant-state algorithm (GCRA) state, a few integers per
key, and apply each transition atomically for every process that shares them: Redis with
pyrate-limiter's own ``RedisStateStore`` (a Lua script), the file with
:class:`SQLiteStateStore`, pyrate-limiter's ``StateStore`` interface over one SQLite
transaction (``BEGIN IMMEDIATE`` takes the file's write lock, so processes on one machine take
turns; no extra service, no lock file). The algorithm is the library's in both.

Each store answers ``check`` (apply an arrival, return the library's ``Decision``) and ``read``
(the current state), blocking and async. The async calls never block the event loop: Redis
through ``redis.asyncio`` (a client per event loop), SQLite in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from pyrate_limiter import GCRA, Decision, Rate, StateStore
from pyrate_limiter.abstracts.algorithm import State, StateAlgorithm

from airflow_provider_xai import secrets
from airflow_provider_xai.exceptions import XAIConfigurationError, XAIConnectionError

T = TypeVar("T")
#: The one algorithm of every shared limit (pyrate-limiter's GCRA: a token bucket kept as one
#: timestamp per key). Stateless, so one instance serves all.
ALGORITHM = GCRA()
#: How long Redis keeps an idle key. Longer than any cool-down or token debt it may hold
#: (cool-downs are capped at a minute), so an expiry never forgets one.
STATE_TTL_MS = 10 * 60 * 1000
#: How long a process waits for another process's SQLite transaction (they take microseconds).
SQLITE_BUSY_TIMEOUT = 30.0


class SQLiteStateStore(StateStore):
    """One key's limiter state in a shared SQLite file (pyrate-limiter's ``StateStore``)."""

    is_async = False

    def __init__(self, db: SQLiteStates, key: str) -> None:
        self.db, self.key = db, key

    def _load(self, cursor: sqlite3.Cursor, algorithm: StateAlgorithm, rates: list[Rate]) -> State:
        row = cursor.execute("SELECT state FROM xai_rate_limit WHERE key = ?", (self.key,)).fetchone()
        values = row[0].split(",") if row else []
        return algorithm.decode(values) if len(values) == len(rates) else algorithm.initial(rates)

    def check(self, algorithm: StateAlgorithm, rates: list[Rate], now: int, weight: int) -> Decision:
        with self.db.transaction() as cursor:
            state, decision = algorithm.step(rates, self._load(cursor, algorithm, rates), now, weight)
            if decision.allowed:
                cursor.execute(
                    "INSERT INTO xai_rate_limit (key, state) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET state = excluded.state",
                    (self.key, ",".join(str(int(v)) for v in state)),
                )
            return decision

    def read(self, algorithm: StateAlgorithm, rates: list[Rate]) -> State:
        with self.db.transaction() as cursor:
            return self._load(cursor, algorithm, rates)

    def reset(self) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM xai_rate_limit WHERE key = ?", (self.key,))


class SQLiteStates:
    """The embedded store: one SQLite file shared by the processes of one machine.

    One connection per process (reopened after a fork, as Celery's prefork workers do), used by
    one thread at a time. The file must be on a local disk (SQLite's locking is unreliable on
    network file systems); Redis is the store for many machines.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._stores: dict[str, SQLiteStateStore] = {}
        os.register_at_fork(after_in_child=self._after_fork)
        with self.transaction():  # fail now, naming the field, if the file cannot be used
            pass

    def describe(self) -> str:
        return f"embedded store {self.path}"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            try:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=OFF")  # limiter state: losing it in an OS crash is harmless
                conn.execute("CREATE TABLE IF NOT EXISTS xai_rate_limit (key TEXT PRIMARY KEY, state TEXT NOT NULL)")
            except (OSError, sqlite3.Error) as exc:
                raise XAIConfigurationError(
                    f"rate_limit_path {self.path!r} cannot hold the shared rate limits: {exc}"
                ) from None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction (``BEGIN IMMEDIATE``: other processes wait for its end)."""
        with self._lock:
            cursor = self._connect().cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            except sqlite3.Error as exc:  # locked past the timeout, disk full, file removed...
                raise XAIConnectionError(f"xAI rate-limit {self.describe()} is unusable: {exc}") from None
            finally:
                cursor.close()

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock and no connection (neither may cross a fork)."""
        self._lock, self._conn = threading.Lock(), None

    def _store(self, key: str) -> SQLiteStateStore:
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = SQLiteStateStore(self, key)
        return store

    def check(self, key: str, rates: list[Rate], now: int, weight: int) -> Decision:
        return self._store(key).check(ALGORITHM, rates, now, weight)

    def read(self, key: str, rates: list[Rate]) -> State:
        return self._store(key).read(ALGORITHM, rates)

    async def acheck(self, key: str, rates: list[Rate], now: int, weight: int) -> Decision:
        return await asyncio.to_thread(self.check, key, rates, now, weight)

    async def aread(self, key: str, rates: list[Rate]) -> State:
        return await asyncio.to_thread(self.read, key, rates)


class RedisStates:
    """The Redis store: pyrate-limiter's ``RedisStateStore`` per key, for many machines.

    :param options: ``redis.Redis`` keyword arguments (host, port, db, username, password,
        ssl), read from an Airflow connection; the password is never logged nor put in an error.
    :param conn_id: the Airflow connection they came from (for messages).
    """

    def __init__(self, options: Mapping[str, Any], conn_id: str) -> None:
        try:
            import redis.asyncio  # noqa: F401  (the optional 'redis' extra)
        except ImportError:
            raise XAIConfigurationError(
                "rate_limit_store 'redis' needs the redis package: pip install 'airflow-provider-xai[redis]'"
            ) from None
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        # A short retry: the transport's own retry loop retries a failed store call with backoff.
        self._options = {"retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), **options}
        self.conn_id = conn_id
        # (client, its StateStore per key): one for blocking calls in this process, one per loop.
        self._sync: tuple[Any, dict[str, StateStore]] | None = None
        self._pid = 0
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, dict[str, StateStore]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock and new clients (neither may cross a fork)."""
        self._lock, self._sync, self._async = threading.Lock(), None, weakref.WeakKeyDictionary()

    def describe(self) -> str:
        return f"Redis store at {self._options.get('host')}:{self._options.get('port')} (connection {self.conn_id!r})"

    def _fail(self, exc: Exception) -> XAIConnectionError:
        detail = secrets.scrub(f"{type(exc).__name__}: {exc}")
        return XAIConnectionError(f"xAI rate-limit {self.describe()} failed: {detail}")

    def _sync_store(self, key: str) -> StateStore:
        """The blocking client's store for ``key`` (a new client after a fork)."""
        with self._lock:
            if self._sync is None or self._pid != os.getpid():
                import redis

                self._sync, self._pid = (redis.Redis(**self._options), {}), os.getpid()
            return self._store(self._sync, key)

    def _async_store(self, key: str) -> StateStore:
        """The running event loop's client's store for ``key`` (redis.asyncio binds to a loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pair = self._async.get(loop)
            if pair is None:
                import redis.asyncio

                pair = self._async[loop] = (redis.asyncio.Redis(**self._options), {})
            return self._store(pair, key)

    @staticmethod
    def _store(pair: tuple[Any, dict[str, StateStore]], key: str) -> StateStore:
        from pyrate_limiter import RedisStateStore

        client, stores = pair
        store = stores.get(key)
        if store is None:
            store = stores[key] = RedisStateStore(client, key, ttl_ms=STATE_TTL_MS)
        return store

    def _guarded(self, operation: Callable[[], Any]) -> Any:
        import redis

        try:
            return operation()
        except redis.RedisError as exc:
            raise self._fail(exc) from None

    def check(self, key: str, rates: list[Rate], now: int, weight: int) -> Decision:
        decision: Any = self._guarded(lambda: self._sync_store(key).check(ALGORITHM, rates, now, weight))
        return decision  # type: ignore[no-any-return]

    def read(self, key: str, rates: list[Rate]) -> State:
        state: Any = self._guarded(lambda: self._sync_store(key).read(ALGORITHM, rates))
        return state  # type: ignore[no-any-return]

    async def acheck(self, key: str, rates: list[Rate], now: int, weight: int) -> Decision:
        import redis

        try:
            decision: Decision = await self._async_store(key).check(ALGORITHM, rates, now, weight)  # type: ignore[misc]
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        return decision

    async def aread(self, key: str, rates: list[Rate]) -> State:
        import redis

        try:
            state: State = await self._async_store(key).read(ALGORITHM, rates)  # type: ignore[misc]
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        return state


States = SQLiteStates | RedisStates




_OPEN: dict[tuple[Any, ...], States] = {}
_OPEN_LOCK = threading.Lock()


def redis_options(conn: Any, conn_id: str) -> dict[str, Any]:
    """``redis.Redis`` arguments from an Airflow connection (as the Redis provider reads one:
    host, port, login, password, and ``db``/``ssl`` in the extras or the schema)."""
    if conn is None or not conn.host:
        raise XAIConfigurationError(
            f"rate_limit_redis_conn_id {conn_id!r}: no such Airflow connection, or it has no host"
        )
    extra = conn.extra_dejson or {}
    try:
        db = int(extra.get("db", conn.schema or 0))
        port = int(conn.port or 6379)
    except (TypeError, ValueError):
        raise XAIConfigurationError(
            f"rate_limit_redis_conn_id {conn_id!r}: port and db must be integers"
        ) from None
    ssl = extra.get("ssl") in (True, "true", "True", "1", 1)
    return {"host": conn.host, "port": port, "db": db, "username": conn.login or None,
            "password": conn.password or None, "ssl": ssl}


def open_states(store: str, path: str, redis_conn_id: str | None, redis_conn: Any = None) -> States:
    """The process's one store object for these settings (shared by every hook)."""
    if store == "redis":
        assert redis_conn_id is not None
        options = redis_options(redis_conn, redis_conn_id)
        secrets.register(options["password"])
        key: tuple[Any, ...] = ("redis", redis_conn_id, tuple(sorted(options.items())))
    else:
        key = ("embedded", os.path.abspath(path))
    with _OPEN_LOCK:
        states = _OPEN.get(key)
        if states is None:
            states = _OPEN[key] = RedisStates(options, redis_conn_id) if store == "redis" else SQLiteStates(path)  # type: ignore[arg-type]
        return states


__all__ = ["ALGORITHM", "RedisStates", "SQLiteStateStore", "SQLiteStates", "States", "open_states", "redis_options"]
