"""12. What a forecast costs a call under spend control (a ``max_cost_usd``), against the bundled
local server, which answers ``POST /v1/tokenize-text`` as xAI does.

Three ways to send the same-sized chat call, interleaved in rounds, each on a warm hook:

- ``none``: no cap and no budget: the forecast is a local estimate, no request;
- ``cached``: a cap, a prompt counted before (the count is cached per distinct text): the
  forecast priced from the cached count and the cached prices, no request;
- ``distinct``: a cap, a prompt never seen: one ``tokenize-text`` call before the chat call.

The figures are the added time per call (median of rounds, milliseconds) of ``cached`` and
``distinct`` over ``none``, and the tokenize requests per distinct prompt (the server's journal).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import time
from typing import Any

from benchmarks.common import API_KEY, CONN_ENV, Figure, apply_env, connection, local_server, median

MODEL = "grok-4-1-fast-non-reasoning"


def _hooks(base_url: str, store: str) -> dict[str, Any]:
    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.spend.layer import SpendTask

    os.environ[CONN_ENV] = json.dumps(connection(base_url, rate_limit_path=store))
    hooks = {}
    for name in ("none", "cached", "distinct"):
        hook = XAIHook()
        hook.spend.task = SpendTask(dag_id="bench", max_cost_usd=None if name == "none" else 1e6)
        hooks[name] = hook
    return hooks


def run(quick: bool = False) -> list[Figure]:
    import httpx

    calls, rounds = (40, 3) if quick else (200, 5)
    fresh = itertools.count()
    with local_server() as base_url, tempfile.TemporaryDirectory() as tmp:
        hooks = _hooks(base_url, os.path.join(tmp, "spend.sqlite"))

        def call(name: str) -> None:
            text = f"distinct prompt {next(fresh):08d}" if name == "distinct" else "the same prompt 00000000"
            hooks[name].chat(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": text}])

        for name in hooks:  # warm: pools, imports, the cached prompt and prices
            for _ in range(10):
                call(name)
        control = httpx.Client(base_url=base_url.removesuffix("/v1"))
        before = len(control.get("/_control/journal").json())
        seconds: dict[str, list[float]] = {name: [] for name in hooks}
        for _ in range(rounds):
            for name in hooks:
                start = time.perf_counter()
                for _ in range(calls):
                    call(name)
                seconds[name].append((time.perf_counter() - start) / calls)
        journal = control.get("/_control/journal").json()[before:]
    tokenized = sum(e["path"].endswith("tokenize-text") for e in journal)
    added = {name: median([(s - n) * 1000 for s, n in zip(seconds[name], seconds["none"], strict=True)])
             for name in ("cached", "distinct")}  # fmt: skip
    detail = {
        "ms_per_call": {k: round(median(v) * 1000, 3) for k, v in seconds.items()},
        "tokenize_requests": tokenized,
        "distinct_prompts": calls * rounds,
        "api_key_masked": API_KEY not in json.dumps(journal),
    }
    server = "bundled FastAPI local server (own process)"
    return [
        Figure("12a_forecast_cached_prompt_ms", "added time per call: cap, prompt counted before", added["cached"],
               0.5, unit="ms", server=server, detail=detail),
        Figure("12b_forecast_distinct_prompt_ms", "added time per call: cap, a prompt never seen (one tokenize)",
               added["distinct"], None, unit="ms", server=server, detail=detail),
        Figure("12c_tokenize_per_distinct_prompt", "tokenize requests per distinct prompt",
               tokenized / (calls * rounds), 1.0, unit="requests", server=server, detail=detail),
    ]  # fmt: skip


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
