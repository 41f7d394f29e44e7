"""6. Deferred polling: 500 ``XAIDeferredCompletionTrigger.run()`` generators on one event loop.

This is what the triggerer does: one asyncio loop runs every trigger's ``run()``. A ticker
coroutine sleeping 10 ms records the longest gap between its wake-ups (the longest time the
loop was blocked, plus the 10 ms); each trigger's event time is compared with the moment its
completion became ready on the server, against the poll interval.

The server is the minimal responder (own process) with time-based readiness like xAI's: each
deferred completion is ready a seeded 0.5-2.5 s after submission. The bundled FastAPI server
counts polls instead of time (``deferred_pending_polls``), so "ready" would only be defined
by the poll that found it, and at 500 polls/s on this machine its own CPU would be measured.
Readiness and pick-up times share ``CLOCK_MONOTONIC`` across processes (Linux).

Completions that became ready while the 500 requests were still being submitted (before the
triggers started) are timed from the triggers' start: no poller can see them earlier.
The trigger itself starts polling at a random point of its first interval and then polls at a
fixed rate, so 500 triggers deferred together do not all poll in the same loop iteration.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from benchmarks.common import CHAT_BODY, CONN_ENV, Figure, apply_env, connection, responder
from benchmarks.triggers import loop_figures, pickup_delays, run_on_one_loop

TRIGGERS = 500
POLL_INTERVAL = 1.0


async def _submit(n: int) -> list[str]:
    from airflow_provider_xai.hooks.xai import XAIHook

    hook = XAIHook()
    semaphore = asyncio.Semaphore(32)

    async def one() -> str:
        async with semaphore:
            return await hook.astart_deferred(CHAT_BODY)

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await hook.aclose()


def measure(base_url: str) -> dict[str, Any]:
    import httpx

    os.environ[CONN_ENV] = json.dumps(connection(base_url))
    from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger

    ids = asyncio.run(_submit(TRIGGERS))
    make = lambda i: XAIDeferredCompletionTrigger(request_id=i, poll_interval=POLL_INTERVAL)  # noqa: E731
    result = asyncio.run(run_on_one_loop(ids, make))
    root = base_url.rsplit("/v1", 1)[0]
    served = httpx.get(f"{root}/_bench/deferred", timeout=30).json()
    return {**result, "delays": pickup_delays(result, {i: served[i]["ready_at"] for i in ids}), "ids": ids}


def run(quick: bool = False) -> list[Figure]:
    with responder(ready_min=0.5, ready_max=2.5) as base_url:
        data = measure(base_url)
    server = "minimal asyncio responder, time-based readiness (own process)"
    figures = loop_figures(("6a_deferred_loop_gap", "6b_deferred_pickup"), "500 deferred triggers", data,
                           data["delays"], POLL_INTERVAL, server)  # fmt: skip
    return figures


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
