"""9. The shared rate limiter's own cost: XAIHook.chat with a limit on each store / without one.

Three hooks call the same minimal responder sequentially, each on its own warm pooled
connection: one whose connection sets no limit, one with the embedded store (an SQLite file)
and one with Redis (a private ``redis-server`` on loopback). The limits (requests per second
and tokens per minute) are far above what one process reaches, so nothing waits: what is
measured is the limiter's work per call (the token estimate, one store operation reserving the
request slot and the tokens, settling the usage; the over-estimate given back rides on the next
call's operation). Interleaved blocks of 20 calls, as in benchmark 1; the figure is the median
of the per-round ratios. 9c/9d measure ``achat`` the same way (the embedded store's transaction
runs on the loop when the file is free at once, else in a worker thread; Redis on
``redis.asyncio``). Issue 25 asks 9a and 9c <= 1.2.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.common import CHAT_BODY, Figure, apply_env, connection, median, ratios, responder
from benchmarks.overhead import _warm, measure

#: Far above one process's pace, so the limiter never waits.
LIMITS = {"rate_limit_requests_per_second": 1_000_000, "rate_limit_tokens_per_minute": 1_000_000_000}


def _hooks(base_url: str, redis: Any, path: str) -> dict[str, Any]:
    from airflow_provider_xai.hooks.xai import XAIHook

    os.environ["AIRFLOW_CONN_XAI_PLAIN"] = json.dumps(connection(base_url))
    os.environ["AIRFLOW_CONN_XAI_EMBEDDED"] = json.dumps(connection(base_url, rate_limit_path=path, **LIMITS))
    os.environ["AIRFLOW_CONN_XAI_REDIS"] = json.dumps(
        connection(base_url, rate_limit_redis_conn_id="bench_redis", **LIMITS)
    )
    os.environ["AIRFLOW_CONN_BENCH_REDIS"] = json.dumps(redis.connection())
    return {name: XAIHook(f"xai_{name}") for name in ("plain", "embedded", "redis")}


def _sync(hooks: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    return _warm({("hook" if n == "plain" else n): (lambda h=h: h.chat(CHAT_BODY)) for n, h in hooks.items()})


def _async(hooks: dict[str, Any], loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[], Any]]:
    return _warm(
        {
            ("hook" if n == "plain" else n): (lambda h=h: loop.run_until_complete(h.achat(CHAT_BODY)))
            for n, h in hooks.items()
        }
    )


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    wall = data["wall"]
    out: dict[str, Any] = {
        "calls_per_contender": data["calls_per_contender"],
        "us_per_call_wall": {k: round(median(v) * 1e6, 1) for k, v in wall.items()},
    }
    for store in ("embedded", "redis"):
        out[f"{store}_over_none_rounds"] = [round(x, 3) for x in ratios(wall[store], wall["hook"])]
        out[f"{store}_added_us"] = round((median(wall[store]) - median(wall["hook"])) * 1e6, 1)
    return out


def run(quick: bool = False) -> list[Figure]:
    import tempfile

    from airflow_provider_xai.testing.redis_server import redis_server

    calls, rounds = (400, 4) if quick else (2000, 5)
    with responder() as base_url, redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        hooks = _hooks(base_url, redis, os.path.join(tmp, "limits.sqlite"))
        sync = _summary(measure(_sync(hooks), calls, rounds))
        loop = asyncio.new_event_loop()
        try:
            asynchronous = _summary(measure(_async(hooks, loop), calls, rounds))
        finally:
            loop.close()
    server = "minimal asyncio responder (own process); redis-server on loopback"
    figures = []
    for key, label, store, data, target in (
        ("9a", "chat", "embedded", sync, 1.2),
        ("9b", "chat", "redis", sync, 2.5),
        ("9c", "achat", "embedded", asynchronous, 1.2),
        ("9d", "achat", "redis", asynchronous, 2.5),
    ):
        figures.append(
            Figure(
                f"{key}_{label}_{store}_limiter_vs_none",
                f"per-call time, XAIHook.{label} with the {store} store's limits / no limit",
                median(data[f"{store}_over_none_rounds"]),
                target,
                server=server,
                detail=data,
            )
        )
    return figures


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
