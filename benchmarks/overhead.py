"""1. Per-call client overhead: XAIHook.chat vs bare pooled httpx vs the openai SDK, and
XAIHook.create_response (Responses API) vs bare pooled httpx.

The contenders of a comparison send the same body to the same server, sequentially, each with
a warm pooled connection. A round runs every contender for the same number of calls in interleaved blocks
of 20 (so a burst of load from a neighbour hits all three alike); the figure is the median of
the per-round ratios. Against the minimal responder the server answers from prepared bytes,
so the time measured is almost all client work; the same comparison against the bundled
FastAPI server is shown too, where that server's ~1-2 ms per request dilutes the differences.

1d measures the Responses API the same way, in its own interleaved rounds against the same
responder, which answers ``POST /v1/responses`` with a prepared finished response (a reasoning
item, a message with one ``output_text`` part, full usage, the echoed request configuration).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    API_KEY,
    CHAT_BODY,
    CONN_ENV,
    RESPONSES_BODY,
    Figure,
    apply_env,
    connection,
    local_server,
    median,
    ratios,
    responder,
)

BLOCK = 20


def _warm(contenders: dict[str, Callable[[], Any]]) -> dict[str, Callable[[], Any]]:
    for call in contenders.values():  # connect, import lazily-loaded modules, fill caches
        for _ in range(20):
            call()
    return contenders


def _bare(base_url: str) -> Any:
    import httpx

    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=600)


def _clients(base_url: str) -> dict[str, Callable[[], Any]]:
    import openai

    from airflow_provider_xai.hooks.xai import XAIHook

    os.environ[CONN_ENV] = json.dumps(connection(base_url))
    hook = XAIHook()
    bare = _bare(base_url)
    sdk = openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=2)

    def via_hook() -> Any:
        return hook.chat(CHAT_BODY)

    def via_bare() -> Any:
        response = bare.post("chat/completions", json=CHAT_BODY)
        response.raise_for_status()
        return json.loads(response.content)

    def via_openai() -> Any:
        return sdk.chat.completions.create(**CHAT_BODY)

    return _warm({"hook": via_hook, "bare_httpx": via_bare, "openai": via_openai})


def _responses_clients(base_url: str) -> dict[str, Callable[[], Any]]:
    """``hook.create_response`` vs a bare pooled ``httpx.Client``, both answered alike."""
    from airflow_provider_xai.hooks.xai import XAIHook

    os.environ[CONN_ENV] = json.dumps(connection(base_url))
    hook = XAIHook()
    bare = _bare(base_url)

    def via_hook() -> Any:
        return hook.create_response(RESPONSES_BODY)

    def via_bare() -> Any:
        response = bare.post("responses", json=RESPONSES_BODY)
        response.raise_for_status()
        return json.loads(response.content)

    got, raw = via_hook(), via_bare()  # both read the same answer, not an error
    expected = raw["output"][1]["content"][0]["text"]
    if got.text != expected or got.usage is None or got.usage.total_tokens != raw["usage"]["total_tokens"]:
        raise RuntimeError(f"create_response read {got.text!r}, usage {got.usage!r}; expected {expected!r}")
    return _warm({"hook": via_hook, "bare_httpx": via_bare})


def measure(contenders: dict[str, Callable[[], Any]], calls: int, rounds: int) -> dict[str, Any]:
    """Wall and CPU seconds per call for each contender, per round."""
    names = list(contenders)
    per_round = max(BLOCK, calls // rounds)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        w = dict.fromkeys(names, 0.0)
        c = dict.fromkeys(names, 0.0)
        for b in range(per_round // BLOCK):
            shift = (r + b) % len(names)
            for name in names[shift:] + names[:shift]:
                call = contenders[name]
                t0, c0 = time.perf_counter(), time.thread_time()
                for _ in range(BLOCK):
                    call()
                w[name] += time.perf_counter() - t0
                c[name] += time.thread_time() - c0
        done = per_round // BLOCK * BLOCK
        for name in names:
            wall[name].append(w[name] / done)
            cpu[name].append(c[name] / done)
    return {"wall": wall, "cpu": cpu, "calls_per_contender": rounds * (per_round // BLOCK * BLOCK)}


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    wall, cpu = data["wall"], data["cpu"]
    out = {
        "calls_per_contender": data["calls_per_contender"],
        "rounds": len(wall["hook"]),
        "us_per_call_wall": {k: round(median(v) * 1e6, 1) for k, v in wall.items()},
        "us_per_call_cpu": {k: round(median(v) * 1e6, 1) for k, v in cpu.items()},
    }
    for other in [n for n in wall if n != "hook"]:
        short = other.removesuffix("_httpx")
        out[f"hook_over_{short}_rounds"] = [round(x, 3) for x in ratios(wall["hook"], wall[other])]
        out[f"hook_over_{short}_cpu"] = round(median(ratios(cpu["hook"], cpu[other])), 3)
    return out


def run(quick: bool = False) -> list[Figure]:
    calls, rounds = (400, 4) if quick else (2000, 5)
    with responder() as base_url:
        lean = measure(_clients(base_url), calls, rounds)
        responses = measure(_responses_clients(base_url), calls, rounds)
    with local_server() as base_url:
        fastapi = measure(_clients(base_url), calls // 5, 3)
    lean_s, fast_s, resp_s = _summary(lean), _summary(fastapi), _summary(responses)
    server = "minimal asyncio responder (own process)"
    return [
        Figure(
            "1a_hook_vs_bare_httpx",
            "per-call time, XAIHook.chat / bare pooled httpx.post+json.loads",
            median(lean_s["hook_over_bare_rounds"]),
            1.15,
            server=server,
            detail=lean_s,
        ),
        Figure(
            "1b_hook_vs_openai",
            "per-call time, XAIHook.chat / openai SDK chat.completions.create",
            median(lean_s["hook_over_openai_rounds"]),
            1.0,
            op="<",
            server=server,
            detail=lean_s,
        ),
        Figure(
            "1c_hook_vs_bare_fastapi",
            "same as 1a against the bundled FastAPI server (server cost dilutes it)",
            median(fast_s["hook_over_bare_rounds"]),
            None,
            server="bundled FastAPI server (own process)",
            detail=fast_s,
        ),
        Figure(
            "1d_responses_hook_vs_bare_httpx",
            "per-call time, XAIHook.create_response / bare pooled httpx.post+json.loads",
            median(resp_s["hook_over_bare_rounds"]),
            1.15,
            server=server,
            detail=resp_s,
        ),
    ]


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
