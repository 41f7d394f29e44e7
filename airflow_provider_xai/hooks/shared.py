"""One :class:`XAIHook` per connection and event loop, shared by the triggers that wait on it.

A triggerer runs hundreds of triggers on one event loop. With a hook each, every trigger would
read the connection, build an httpx client (~2 ms of CPU) and open TCP connections of its own,
and the hundreds of objects each brings would push the loop into long garbage collections. The
triggers of one connection share one hook instead: its settings, read once for all of them, and
one pool of :data:`POOL_SIZE` connections, which at most that many polls use at a time (the others
wait their turn here, in order: httpcore's pool would look over every waiting request and every
connection each time one frees, which at hundreds of waiting polls stalls the loop for seconds).
The last trigger to finish closes the loop's client. New triggers use a shared hook for at most
:data:`MAX_AGE` seconds, so a changed connection (a rotated key) is read again by the triggers
deferred after the change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import httpx

from airflow_provider_xai.hooks.xai import XAIHook

T = TypeVar("T")
#: Seconds a shared hook is handed to new triggers (those already using it keep it).
MAX_AGE = 300.0
#: Connections of a shared hook's pool, and polls in flight at a time. A poll takes a few
#: milliseconds, so hundreds of triggers polling every second keep one or two busy; httpcore
#: checks every pooled connection (a system call each) on every request, so fewer is cheaper.
POOL_SIZE = 4


class SharedHook:
    """The hook the triggers of one connection share on one event loop."""

    def __init__(self, xai_conn_id: str) -> None:
        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        self.hook = XAIHook(xai_conn_id=xai_conn_id, client_kwargs={"limits": limits})
        self.made = time.monotonic()
        self.users = 0
        self.turns = asyncio.Semaphore(POOL_SIZE)
        self.settings_read = asyncio.Lock()

    async def call(self, fetch: Callable[[XAIHook], Awaitable[T]]) -> T:
        """One request (a poll) through the shared pool, when a connection is free."""
        async with self.turns:
            return await fetch(self.hook)


_HOOKS: dict[tuple[str, int], SharedHook] = {}


@asynccontextmanager
async def shared_hook(xai_conn_id: str) -> AsyncIterator[SharedHook]:
    """The running loop's shared hook of ``xai_conn_id``, for as long as the caller waits."""
    key = (xai_conn_id, id(asyncio.get_running_loop()))
    shared = _HOOKS.get(key)
    if shared is None or time.monotonic() - shared.made > MAX_AGE:
        shared = _HOOKS[key] = SharedHook(xai_conn_id)
    shared.users += 1
    try:
        async with shared.settings_read:  # the connection is read once, not by every trigger
            await shared.hook.aget_settings()
        yield shared
    finally:
        shared.users -= 1
        if shared.users == 0:
            if _HOOKS.get(key) is shared:
                del _HOOKS[key]
            await shared.hook.aclose()


__all__ = ["MAX_AGE", "POOL_SIZE", "SharedHook", "shared_hook"]
