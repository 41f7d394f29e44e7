"""Where the shared rate limits live: an SQLite file (one machine) or Redis (many machines).

Both stores answer one operation, ``update(key, Update) -> Outcome`` (blocking) and
``aupdate`` (async), which applies the reservation transition of ``slots.py`` atomically for
every process sharing the store: on SQLite by one compare-and-set statement or one transaction
(``sqlite_store.py``), on Redis in one round trip (``redis_store.py``). :func:`open_states`
gives each process one store object per settings, shared by every hook.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from airflow_provider_xai import secrets
from airflow_provider_xai.exceptions import XAIConfigurationError
from airflow_provider_xai.ratelimit.redis_store import RedisStates
from airflow_provider_xai.ratelimit.sqlite_store import SQLiteStates

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


__all__ = ["RedisStates", "SQLiteStates", "States", "open_states", "redis_options"]
