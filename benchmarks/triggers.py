"""What the trigger benchmarks (6: deferred completions, 11b/11c: video jobs) share: many
triggers' ``run()`` on one event loop, as the triggerer runs them, beside a ticker coroutine
that records the longest gap between its 10 ms wake-ups (the longest time the loop was
blocked, plus the 10 ms), and each trigger's event time, for the pick-up delay after its job
became ready on the server. A full garbage collection runs before the triggers start: the
garbage of submitting the jobs (done by workers, not the triggerer) is not theirs to collect.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.common import Figure, median

TICK = 0.010


async def run_on_one_loop(ids: Sequence[str], make: Callable[[str], Any]) -> dict[str, Any]:
    """Run ``make(id).run()`` for every id on this loop; event times, statuses and loop gaps."""
    picked: dict[str, float] = {}
    statuses: dict[str, str] = {}
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def drive(request_id: str) -> None:
        async for event in make(request_id).run():
            picked[request_id] = time.monotonic()
            statuses[request_id] = event.payload["status"]

    gc.collect()  # the setup's garbage (submitting the jobs) is not the triggerer's to collect
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(TICK * 3)  # the ticker's first gaps are before any trigger starts
    started = time.monotonic()
    await asyncio.gather(*(drive(i) for i in ids))
    done.set()
    await tick
    return {"picked": picked, "statuses": statuses, "gaps": gaps, "started": started}


def pickup_delays(result: dict[str, Any], ready_at: dict[str, float]) -> list[float]:
    """Each job's event time after it became ready (or after the triggers started, if later:
    no poller can see it earlier)."""
    return [result["picked"][i] - max(ready_at[i], result["started"]) for i in ready_at if i in result["picked"]]


def loop_figures(
    keys: tuple[str, str], what: str, result: dict[str, Any], delays: list[float], poll_interval: float,
    server: str,
) -> list[Figure]:  # fmt: skip
    """The loop-gap and pick-up figures of one run (targets: 100 ms, one poll interval)."""
    gaps = result["gaps"]
    ok = sum(s == "success" for s in result["statuses"].values())
    over = sum(d > poll_interval for d in delays)
    detail = {
        "triggers": len(result["statuses"]),
        "poll_interval_s": poll_interval,
        "ticker_interval_s": TICK,
        "succeeded": ok,
        "max_loop_gap_ms": round(max(gaps) * 1e3, 1),
        "p99_loop_gap_ms": round(sorted(gaps)[int(len(gaps) * 0.99)] * 1e3, 1),
        "gaps_over_100ms": sum(g > 0.1 for g in gaps),
        "pickup_delay_s_median": round(median(delays), 3),
        "pickup_delay_s_max": round(max(delays), 3),
        "picked_later_than_one_interval": over,
    }
    return [
        Figure(keys[0], f"{what} on one loop: longest gap between 10 ms ticks", max(gaps) * 1e3, 100.0,
               unit="ms", server=server, detail=detail),
        Figure(keys[1], f"{what}: slowest pick-up after ready (or the triggers start) / poll interval",
               max(delays) / poll_interval, 1.0, server=server,
               detail={"succeeded": ok, "picked_later_than_one_interval": over}),
    ]  # fmt: skip
