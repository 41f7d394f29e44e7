"""7. What the OpenTelemetry spans cost per call: nothing measurable with no tracer provider
(Airflow's ``[traces] otel_on`` off, the default), a few tens of microseconds with one.

7a times what the transport adds to every request when nothing is traced (the tracing layer's
``scope`` deciding there is no provider, so the call gets no scope) in a tight loop. 7b and 7c
time ``XAIHook.chat`` against the minimal responder with spans off (no provider) and on (an SDK
``TracerProvider`` with a ``BatchSpanProcessor``, as Airflow sets one up, exporting to an exporter
that drops them, so the collector's cost is not counted), in interleaved blocks of 20 calls as
benchmark 1 does; the provider is switched between blocks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import (
    API_KEY,
    CHAT_BODY,
    CONN_ENV,
    Figure,
    apply_env,
    connection,
    median,
    ratios,
    responder,
)
from benchmarks.overhead import measure

LOOP = 200_000


def off_cost_us() -> list[float]:
    """Microseconds per request that the tracing layer adds with no provider, five rounds: the
    transport asks it for a scope on every call (None when nothing is traced)."""
    from airflow_provider_xai.connection.settings import settings_from_connection
    from airflow_provider_xai.endpoints import chat as chat_api
    from airflow_provider_xai.pipeline.layers import Exchange
    from airflow_provider_xai.tracing.layer import TracingLayer
    from airflow_provider_xai.tracing.spans import tracing_on

    os.environ["XAI_API_KEY"] = API_KEY  # settings without a connection: the key is all they need
    settings = settings_from_connection(None, "xai_default")
    assert not tracing_on()
    layer, exchange = TracingLayer(), Exchange(chat_api.chat(None, CHAT_BODY), settings, CHAT_BODY)
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(LOOP):
            assert layer.scope(exchange) is None
        rounds.append((time.perf_counter() - t0) / LOOP * 1e6)
    return rounds


def _provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Dropped(SpanExporter):
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

    exporter = Dropped()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter


def on_off(calls: int, rounds: int) -> dict[str, Any]:
    from opentelemetry import trace

    from airflow_provider_xai.hooks.xai import XAIHook

    provider, exporter = _provider()
    with responder() as base_url:
        os.environ[CONN_ENV] = json.dumps(connection(base_url))
        hook = XAIHook()

        def spans_off() -> Any:
            trace._TRACER_PROVIDER = None  # what a process without otel_on has
            return hook.chat(CHAT_BODY)

        def spans_on() -> Any:
            trace._TRACER_PROVIDER = provider
            return hook.chat(CHAT_BODY)

        for call in (spans_off, spans_on):
            for _ in range(20):
                call()
        data = measure({"hook": spans_on, "off": spans_off}, calls, rounds)
    provider.shutdown()
    data["spans_exported"] = exporter.spans
    return data


def run(quick: bool = False) -> list[Figure]:
    off = off_cost_us()
    data = on_off(*((400, 4) if quick else (2000, 5)))
    on_wall, off_wall = data["wall"]["hook"], data["wall"]["off"]
    added = [(a - b) * 1e6 for a, b in zip(on_wall, off_wall, strict=True)]
    detail = {
        "us_per_call_wall": {"on": round(median(on_wall) * 1e6, 1), "off": round(median(off_wall) * 1e6, 1)},
        "us_per_call_cpu": {
            "on": round(median(data["cpu"]["hook"]) * 1e6, 1),
            "off": round(median(data["cpu"]["off"]) * 1e6, 1),
        },
        "on_over_off_rounds": [round(x, 3) for x in ratios(on_wall, off_wall)],
        "added_us_rounds": [round(x, 1) for x in added],
        "calls_per_contender": data["calls_per_contender"],
        "spans_exported": data["spans_exported"],
    }
    server = "minimal asyncio responder (own process)"
    return [
        Figure(
            "7a_tracing_off_cost",
            "what tracing adds per request with no tracer provider (tight loop)",
            round(median(off), 3),
            2.0,
            unit="us",
            detail={"us_rounds": [round(x, 3) for x in off], "loop": LOOP},
        ),
        Figure(
            "7b_spans_on_vs_off",
            "per-call time, XAIHook.chat with spans on (SDK provider, batch processor) / off",
            median(ratios(on_wall, off_wall)),
            None,
            server=server,
            detail=detail,
        ),
        Figure(
            "7c_spans_on_added",
            "microseconds a span adds to one XAIHook.chat call",
            round(median(added), 1),
            None,
            unit="us",
            server=server,
            detail=detail,
        ),
    ]


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
