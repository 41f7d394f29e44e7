"""Spend control's shared state, in the rate limiter's store: budgets and cached values.

Every worker of a team reserves against the same budgets: each operation is atomic for every
process sharing the store, one SQLite transaction (the embedded store's file) or one Redis
script. A budget key holds one integer, what is committed to it in its period (nano-USD or
tokens): reservations not yet settled, and what settled calls billed.

- :meth:`SpendStore.reserve`: add each amount to its key, only if no key would pass its limit
  (``force``: add anyway, an approved overspend); answers the keys' values either way;
- :meth:`SpendStore.settle`: add a correction (the billed amount minus the reservation);
- :meth:`SpendStore.read`: the keys' values;
- :meth:`SpendStore.cached` / :meth:`SpendStore.cache`: a cached text (the live price table,
  token counts) and a lease, so that one worker refreshes a stale value while the others use
  what is there;
- :meth:`SpendStore.cache` / :meth:`SpendStore.take`: a text kept for one reader, who removes it
  in the same operation (a reservation held for an answer collected later).

Stored values are read leniently: one that is no count reads as 0, is reset, logged and counted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from airflow_provider_xai.ratelimit.store import States

log = logging.getLogger(__name__)
#: The largest value a budget key may hold (a stored value above it is corruption): 2**53,
#: what a Redis script's numbers hold exactly.
MAX_VALUE = 2**53
#: How long a key written without an expiry is kept (ten years).
KEEP_UNDATED = 10 * 366 * 86400.0
#: Seconds a worker holds the right to refresh a stale cached value.
LEASE_SECONDS = 30.0


class Entry(NamedTuple):
    """One budget key of an operation: the amount to add (a correction may be negative), the
    key's limit, and when the key may be forgotten (epoch seconds: after its period; 0: kept)."""

    key: str
    amount: int
    limit: int = MAX_VALUE
    expires: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """What a reservation answered: whether it was made, and each key's value after it (or,
    when refused, as it stands)."""

    granted: bool
    values: tuple[int, ...]


def _count(value: Any) -> int | None:
    """A stored budget value, or None when it is no count."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VALUE:
        return None
    return value


class SpendStore:
    """Budgets and cached values on one of the rate limiter's stores (``States``)."""

    garbled = 0

    def __init__(self, states: States) -> None:
        self.states = states

    def describe(self) -> str:
        return self.states.describe()

    def _garbled(self, key: str) -> None:
        self.garbled += 1
        log.warning(
            "xAI spend control: %s held an unreadable value under %s; it was reset", self.describe(), key
        )

    # --- budgets -------------------------------------------------------------------------------
    def reserve(self, entries: Sequence[Entry], force: bool = False) -> Verdict:
        """Add every amount, or none when a key would pass its limit (unless ``force``). An
        amount written without an expiry is kept :data:`KEEP_UNDATED`; a zero amount without one
        (a read) writes nothing, so reading a key never lengthens its life."""
        forever = time.time() + KEEP_UNDATED
        entries = [e if e.expires or not e.amount else e._replace(expires=forever) for e in entries]
        return (
            self._sqlite_reserve(entries, force)
            if _is_sqlite(self.states)
            else self._redis_reserve(entries, force)
        )

    def settle(self, entries: Sequence[Entry]) -> None:
        """Add each correction (never below zero)."""
        if entries:
            self.reserve([e._replace(limit=MAX_VALUE) for e in entries], force=True)

    def read(self, keys: Sequence[str]) -> tuple[int, ...]:
        """The keys' values (0 for a key never written)."""
        return self.reserve([Entry(key, 0) for key in keys], force=True).values

    def scan(self, prefix: str) -> dict[str, int]:
        """Every key starting with ``prefix`` and its value (one that is no count is skipped)."""
        found: dict[str, Any] = {}
        if _is_sqlite(self.states):
            with self.states.transaction() as cursor:  # type: ignore[union-attr]
                _tables(cursor)
                rows = cursor.execute(
                    "SELECT key, committed FROM xai_budget WHERE key >= ? AND key < ? AND expires >= ?",
                    (prefix, prefix + "\uffff", time.time()),
                ).fetchall()
                found = dict(rows)
        else:
            import redis

            try:
                client = self.states.script(_RESERVE).registered_client  # type: ignore[union-attr]
                keys = [k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=f"{prefix}*")]
                found = dict(zip(keys, client.mget(keys), strict=True)) if keys else {}
            except redis.RedisError as exc:
                raise self.states.failure(exc) from None  # type: ignore[union-attr]
        out = {}
        for key, value in found.items():
            if (count := _count(value)) is None:
                self._garbled(key)
            else:
                out[key] = count
        return out

    def _sqlite_reserve(self, entries: Sequence[Entry], force: bool) -> Verdict:
        with self.states.transaction() as cursor:  # type: ignore[union-attr]
            _tables(cursor)
            now = time.time()
            held = []
            for entry in entries:
                row = cursor.execute(_SELECT_BUDGET, (entry.key, now)).fetchone()
                value = _count(row[0]) if row else 0
                if value is None:
                    self._garbled(entry.key)
                    value = 0
                held.append(value)
            granted = force or all(v + e.amount <= e.limit for v, e in zip(held, entries, strict=True))
            if not granted:
                return Verdict(False, tuple(held))
            after = tuple(max(0, v + e.amount) for v, e in zip(held, entries, strict=True))
            for value, entry in zip(after, entries, strict=True):
                if entry.amount or entry.expires:
                    cursor.execute(_UPSERT_BUDGET, (entry.key, value, entry.expires))
            if held and now - _last_sweep.get(id(self.states), 0.0) > 3600:
                _last_sweep[id(self.states)] = now
                cursor.execute("DELETE FROM xai_budget WHERE expires < ?", (now,))
                cursor.execute("DELETE FROM xai_cache WHERE expires < ?", (now,))
        return Verdict(True, after)

    def _redis_reserve(self, entries: Sequence[Entry], force: bool) -> Verdict:
        import redis

        args: list[Any] = [int(force), int(time.time() * 1000)]
        for entry in entries:
            args += [entry.amount, entry.limit, int(entry.expires * 1000)]
        try:
            reply = self.states.script(_RESERVE)(keys=[e.key for e in entries], args=args)  # type: ignore[union-attr]
        except redis.RedisError as exc:
            raise self.states.failure(exc) from None  # type: ignore[union-attr]
        granted, garbled, *values = (int(v) for v in reply)
        for _ in range(garbled):
            self._garbled("a budget key")
        return Verdict(bool(granted), tuple(values))

    # --- cached values -----------------------------------------------------------------------------
    def cached(self, key: str, fresh_for: float) -> tuple[str | None, bool]:
        """The text cached under ``key`` (None: none) and whether the caller should refresh it:
        it is missing or older than ``fresh_for`` seconds, and no other worker holds the lease
        to refresh it (the caller now does, for :data:`LEASE_SECONDS`)."""
        now = time.time()
        if _is_sqlite(self.states):
            with self.states.transaction() as cursor:  # type: ignore[union-attr]
                _tables(cursor)
                row = cursor.execute("SELECT value, lease FROM xai_cache WHERE key = ?", (key,)).fetchone()
                value, lease = (row[0], row[1]) if row else (None, 0.0)
                value = value if isinstance(value, str) and value else None
                written = _stamp(value)
                stale = written is None or now - written > fresh_for
                refresh = stale and not (isinstance(lease, int | float) and lease > now)
                if refresh:
                    cursor.execute(_LEASE, (key, value or "", now + LEASE_SECONDS))
            return value, refresh
        return self._redis_cached(key, fresh_for, now)

    def _redis_cached(self, key: str, fresh_for: float, now: float) -> tuple[str | None, bool]:
        import redis

        try:
            client = self.states.script(_RESERVE).registered_client  # type: ignore[union-attr]
            raw = client.get(key)
            value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None
            written = _stamp(value)
            refresh = (written is None or now - written > fresh_for) and bool(
                client.set(f"{key}:lease", "1", nx=True, px=int(LEASE_SECONDS * 1000))
            )
        except redis.RedisError as exc:
            raise self.states.failure(exc) from None  # type: ignore[union-attr]
        return value, refresh

    def cache(self, key: str, value: str, keep_for: float) -> None:
        """Cache ``value`` (a JSON object with ``"written_at"``) for ``keep_for`` seconds at least;
        the lease ends."""
        if _is_sqlite(self.states):
            with self.states.transaction() as cursor:  # type: ignore[union-attr]
                _tables(cursor)
                cursor.execute(_CACHE, (key, value, time.time() + max(keep_for, 1.0)))
            return
        import redis

        try:
            client = self.states.script(_RESERVE).registered_client  # type: ignore[union-attr]
            client.set(key, value, px=int(max(keep_for, 1.0) * 1000))
            client.delete(f"{key}:lease")
        except redis.RedisError as exc:
            raise self.states.failure(exc) from None  # type: ignore[union-attr]


    def take(self, key: str) -> str | None:
        """The text kept under ``key``, removed in the same operation (None: none, or taken)."""
        if _is_sqlite(self.states):
            with self.states.transaction() as cursor:  # type: ignore[union-attr]
                _tables(cursor)
                row = cursor.execute("SELECT value FROM xai_cache WHERE key = ?", (key,)).fetchone()
                cursor.execute("DELETE FROM xai_cache WHERE key = ?", (key,))
            return row[0] if row and isinstance(row[0], str) and row[0] else None
        import redis

        try:
            client = self.states.script(_RESERVE).registered_client  # type: ignore[union-attr]
            with client.pipeline(transaction=True) as pipe:
                raw, _ = pipe.get(key).delete(key).execute()
        except redis.RedisError as exc:
            raise self.states.failure(exc) from None  # type: ignore[union-attr]
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) and raw else None


def _is_sqlite(states: States) -> bool:
    return hasattr(states, "transaction")


def _stamp(value: str | None) -> float | None:
    """When a cached JSON value was written (``written_at``), or None."""
    try:
        written = json.loads(value)["written_at"] if value else None
    except (ValueError, TypeError, KeyError):
        return None
    return float(written) if isinstance(written, int | float) and not isinstance(written, bool) else None


_last_sweep: dict[int, float] = {}
_CREATED: set[tuple[int, int]] = set()
_SELECT_BUDGET = "SELECT committed FROM xai_budget WHERE key = ? AND expires >= ?"
_UPSERT_BUDGET = (
    "INSERT INTO xai_budget (key, committed, expires) VALUES (?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET committed = excluded.committed, expires = MAX(expires, excluded.expires)"
)
_LEASE = (
    "INSERT INTO xai_cache (key, value, expires, lease) VALUES (?, ?, 0, ?) "
    "ON CONFLICT(key) DO UPDATE SET lease = excluded.lease"
)
_CACHE = (
    "INSERT INTO xai_cache (key, value, expires, lease) VALUES (?, ?, ?, 0) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires, lease = 0"
)


def _tables(cursor: Any) -> None:
    """Create spend control's tables in the store's file (once per connection)."""
    marker = (os.getpid(), id(cursor.connection))
    if marker in _CREATED:
        return
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS xai_budget (key TEXT PRIMARY KEY, committed, expires REAL NOT NULL) WITHOUT ROWID"
    )
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS xai_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL, "
        "lease REAL NOT NULL) WITHOUT ROWID"
    )
    _CREATED.add(marker)


#: KEYS: budget keys. ARGV: force (1/0), now (ms), then per key amount, limit, expires (ms).
#: Returns {granted, garbled, value...}: the values after (granted) or as they stand (refused).
_RESERVE = """
local force, now = ARGV[1] == '1', tonumber(ARGV[2])
local held, garbled = {}, 0
for i, key in ipairs(KEYS) do
  local stored = redis.pcall('GET', key)
  local n = 0
  if type(stored) == 'string' then
    n = tonumber(stored)
    if not n or n < 0 or n > 9007199254740992 or n ~= math.floor(n) then n = 0; garbled = garbled + 1 end
  elseif stored ~= false then
    garbled = garbled + 1
  end
  held[i] = n
end
local granted = force
if not granted then
  granted = true
  for i = 1, #KEYS do
    local base = 2 + (i - 1) * 3
    if held[i] + tonumber(ARGV[base + 1]) > tonumber(ARGV[base + 2]) then granted = false end
  end
end
local out = {granted and 1 or 0, garbled}
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 3
  local value = held[i]
  if granted then
    value = math.max(0, held[i] + tonumber(ARGV[base + 1]))
    local expires = tonumber(ARGV[base + 3])
    if tonumber(ARGV[base + 1]) ~= 0 or expires > 0 then
      local ttl = math.max(expires - now, 1000)
      local left = redis.call('PTTL', key)
      redis.call('SET', key, string.format('%.0f', value), 'PX', math.max(ttl, left))
    end
  end
  out[#out + 1] = value
end
return out
"""


__all__ = ["LEASE_SECONDS", "MAX_VALUE", "Entry", "SpendStore", "Verdict"]
