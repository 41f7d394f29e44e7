"""10. Responses first: the worker-slot time of a deferrable agentic call, and prompt-cache
routing.

10a runs one ``XAIResponsesOperator`` with web search and code execution against the bundled
local server, whose tools take ``tool_latency`` seconds: deferrable (the worker sends the
request, keeps the response id from the first event, and defers) against the same task not
deferred (the worker waits for the whole answer), alternating, in the same process. The figure
is the worker-slot seconds of the deferrable call over those of the plain one; the absolute
seconds and the tool latency are in the details.

10b and 10c replay the chat example's mapped ``translate`` task (three instances with one system
prompt) over several "daily runs" against the local server with eight cache servers (a request
without a routing key lands on any of them, as at xAI): the share of prompt tokens served from
the cache with the provider's default routing key, and with routing turned off.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks.common import CONN_ENV, Figure, apply_env, connection, local_server, median

TOOL_LATENCY = 3.0
SYSTEM = "Translate the user's text to French. Reply with the translation only."
TEXTS = ["Good morning", "The pipeline finished", "Budget exceeded"]


class _TI:
    """What an operator's ``execute`` reads of a task instance outside Airflow."""

    dag_id, task_id, run_id, map_index, try_number = "bench", "bench", "run", -1, 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _configure(base_url: str, **config: Any) -> None:
    import httpx

    root = base_url.removesuffix("/v1")
    httpx.post(f"{root}/_control/reset", json={}, timeout=10).raise_for_status()
    httpx.post(f"{root}/_control/config", json=config, timeout=10).raise_for_status()


def _slot_seconds(deferrable: bool) -> float:
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_xai import tools
    from airflow_provider_xai.operators.responses import XAIResponsesOperator

    task = XAIResponsesOperator(
        task_id="research",
        prompt="How much did lithium cost this month? Compute the change with code.",
        tools=[tools.web_search(), tools.code_interpreter()],
        deferrable=deferrable,
        poll_interval=1,
    )
    started = time.perf_counter()
    try:
        task.execute({"ti": _TI()})  # type: ignore[arg-type]
    except TaskDeferred:
        pass  # the worker slot is free from here
    finally:
        task.hook.close()
    return time.perf_counter() - started


def _cache_share(routed: bool, runs: int) -> float:
    from airflow_provider_xai.operators.chat import XAIChatOperator

    cached = prompt = 0
    for _ in range(runs):
        for text in TEXTS:
            ti = _TI()
            task = XAIChatOperator(task_id="translate", system_prompt=SYSTEM, prompt=text,
                                   prompt_cache_key=None if routed else False)  # fmt: skip
            task.execute({"ti": ti})  # type: ignore[arg-type]
            task.hook.close()
            cached += ti.pushed["xai_usage"]["cached_tokens"]
            prompt += ti.pushed["xai_usage"]["prompt_tokens"]
    return cached / prompt


def run(quick: bool = False) -> list[Figure]:
    import os

    rounds, runs = (2, 3) if quick else (5, 10)
    with local_server() as base_url:
        os.environ[CONN_ENV] = json.dumps(connection(base_url))
        _configure(base_url, tool_latency=TOOL_LATENCY)
        deferred, plain = [], []
        for _ in range(rounds):
            deferred.append(_slot_seconds(True))
            plain.append(_slot_seconds(False))
        shares = {}
        for routed in (True, False):
            _configure(base_url, cache_servers=8)
            shares[routed] = _cache_share(routed, runs)
    server = "bundled FastAPI server (own process)"
    slot = {
        "tool_latency_s": TOOL_LATENCY,
        "deferrable_slot_s_rounds": [round(x, 3) for x in deferred],
        "plain_slot_s_rounds": [round(x, 3) for x in plain],
        "deferrable_slot_s": round(median(deferred), 3),
        "plain_slot_s": round(median(plain), 3),
    }
    cache = {"cache_servers": 8, "instances": len(TEXTS), "runs": runs,
             "routed_share": round(shares[True], 3), "unrouted_share": round(shares[False], 3)}  # fmt: skip
    return [
        Figure(
            "10a_deferrable_agent_slot",
            "worker-slot seconds, deferrable Responses call with tools / the same call not deferred",
            round(median(deferred) / median(plain), 3),
            None,
            server=server,
            detail=slot,
        ),
        Figure(
            "10b_cache_share_routed",
            "prompt share served from cache, chat example's mapped task, default routing key",
            round(shares[True], 3),
            None,
            unit="share",
            server=server,
            detail=cache,
        ),
        Figure(
            "10c_cache_share_unrouted",
            "prompt share served from cache, same task with prompt_cache_key=False",
            round(shares[False], 3),
            None,
            unit="share",
            server=server,
            detail=cache,
        ),
    ]


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
