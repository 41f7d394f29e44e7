"""The Redis store: the shared limits for many machines, one round trip per update.

Each update is one ``EVALSHA`` of :data:`SCRIPT`, the Lua twin of ``slots.transition`` (the
same reading of the stored text, the same garbled-value rule, the same arithmetic; the tests
run one sequence of updates through both and compare). Redis runs a script atomically, so
concurrent workers never get the same slot. Blocking calls use one ``redis.Redis`` per process
(a new one after a fork), async calls one ``redis.asyncio.Redis`` per event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_xai import secrets
from airflow_provider_xai.exceptions import XAIConfigurationError, XAIConnectionError
from airflow_provider_xai.ratelimit.slots import HORIZON, Outcome, SlotStore, Update

#: How long Redis keeps a key after the last time it holds (its furthest slot, token debt or
#: cool-down) has passed: an idle key's state is empty by then anyway.
IDLE_TTL_MS = 10 * 60 * 1000

#: KEYS[1]: a key's "next,empty,cool" (see slots.py). ARGV: now, correction, cool_until, slot
#: (1/0), spacing, tokens, depth, HORIZON, IDLE_TTL_MS, release. Returns {at, cool_until, garbled}. Lua numbers are
#: doubles: exact for these integers (below 2**53); written back with %.0f, never %.14g.
SCRIPT = """
local now, correction, cool_until = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local slot, spacing, tokens, depth = ARGV[4] == '1', tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local horizon, idle, release = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local nxt, empty, cool, garbled = 0, 0, 0, 0
local stored = redis.pcall('GET', KEYS[1])
if type(stored) == 'string' then
  local a, b, c = string.match(stored, '^(%d+),(%d+),(%d+)$')
  a, b, c = tonumber(a), tonumber(b), tonumber(c)
  if a and math.max(a, b, c) <= now + horizon then nxt, empty, cool = a, b, c else garbled = 1 end
elseif stored ~= false then
  garbled = 1
end
empty = math.max(math.max(empty, now) + correction, now)
cool = math.max(cool, cool_until)
if release > now and nxt == release + spacing then nxt = release + 1 end
local at = now
if slot then
  at = math.max(now, nxt, cool, empty + tokens - depth)
  nxt = at + spacing
  empty = math.max(empty, at) + tokens
end
local ttl = math.ceil(math.max(nxt - now, empty - now, cool - now, 0) / 1000) + idle
redis.call('SET', KEYS[1], string.format('%.0f,%.0f,%.0f', nxt, empty, cool), 'PX', ttl)
return {at, cool, garbled}
"""


class RedisStates(SlotStore):
    """The Redis store.

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
        self._sync: dict[str, Any] = {}  # the blocking client's scripts by source, for the process in _pid
        self._pid = 0
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock and new clients (neither may cross a fork)."""
        self._lock, self._sync, self._async = threading.Lock(), {}, weakref.WeakKeyDictionary()

    def describe(self) -> str:
        return f"Redis store at {self._options.get('host')}:{self._options.get('port')} (connection {self.conn_id!r})"

    def failure(self, exc: Exception) -> XAIConnectionError:
        """The typed error of a failed round trip (the password scrubbed)."""
        detail = secrets.scrub(f"{type(exc).__name__}: {exc}")
        return XAIConnectionError(f"xAI rate-limit {self.describe()} failed: {detail}")

    def script(self, source: str = SCRIPT) -> Any:
        """A Lua script on this process's blocking client (a new client after a fork); other
        state sharing this store (spend control's budgets and caches) runs its own."""
        with self._lock:
            if self._pid != os.getpid():
                self._sync, self._pid = {}, os.getpid()
            found = self._sync.get(source)
            if found is None:
                import redis

                client = (
                    next(iter(self._sync.values())).registered_client if self._sync else redis.Redis(**self._options)
                )
                found = self._sync[source] = client.register_script(source)
            return found

    def ascript(self, source: str = SCRIPT) -> Any:
        """:meth:`script` on the running event loop's client (redis.asyncio binds to a loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            scripts = self._async.setdefault(loop, {})
            found = scripts.get(source)
            if found is None:
                import redis.asyncio

                client = (
                    next(iter(scripts.values())).registered_client if scripts else redis.asyncio.Redis(**self._options)
                )
                found = scripts[source] = client.register_script(source)
            return found

    def update(self, key: str, update: Update) -> Outcome:
        """Apply ``update`` to ``key`` in one round trip."""
        import redis

        try:
            reply = self.script()(keys=[key], args=_arguments(update))
        except redis.RedisError as exc:
            raise self.failure(exc) from None
        return self.counted(key, _outcome(reply))

    async def aupdate(self, key: str, update: Update) -> Outcome:
        """Async :meth:`update`."""
        import redis

        try:
            reply = await self.ascript()(keys=[key], args=_arguments(update))
        except redis.RedisError as exc:
            raise self.failure(exc) from None
        return self.counted(key, _outcome(reply))


def resume_returns(states: RedisStates, key: str, now_ms: int, new: str | None = None) -> list[Any]:
    """The entries of recent returns from the triggerer under ``key`` (``lead.py``), with
    ``new`` noted first when given: one round trip (a list, trimmed to the window, expiring
    when no return was noted for ``MAX_AGE_MS``)."""
    import redis

    from airflow_provider_xai.ratelimit.lead import MAX_AGE_MS, WINDOW

    try:
        with states.script().registered_client.pipeline(transaction=True) as pipe:
            if new is not None:
                pipe.rpush(key, new).ltrim(key, -WINDOW, -1).pexpire(key, MAX_AGE_MS)
            pipe.lrange(key, 0, -1)
            replies = pipe.execute()
    except redis.RedisError as exc:
        raise states.failure(exc) from None
    found = replies[-1]
    return list(found) if isinstance(found, list) else []


def _arguments(u: Update) -> list[int]:
    return [
        u.now, u.correction, u.cool_until, int(u.slot), u.spacing, u.tokens, u.depth, HORIZON, IDLE_TTL_MS, u.release,
    ]


def _outcome(reply: Sequence[Any]) -> Outcome:
    at, cool_until, garbled = (int(v) for v in reply)
    return Outcome(at, cool_until, bool(garbled))


__all__ = ["IDLE_TTL_MS", "SCRIPT", "RedisStates", "resume_returns"]
