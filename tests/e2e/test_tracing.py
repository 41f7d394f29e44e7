"""OpenTelemetry spans from a real deployment: ``[traces] otel_on`` and the standard ``OTEL_*``
variables send every Airflow process's spans over OTLP/HTTP to a small collector in this test.

``example_xai_chat`` runs under a real scheduler (LocalExecutor), dag-processor and triggerer.
Each xAI request's span must arrive with its parent being the task span the task runner made
(``worker.<task>``) in the same trace, or for the deferred answer the triggerer's
``trigger.<task>`` span; carry the task identity, tokens and cost; and hold neither the key nor
anything of the prompts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_xai.testing.runner import XAIServer
from tests.e2e.conftest import AirflowStack, put_xai_connection
from tests.e2e.test_deployment import DEFERRED_POLLS, DEFERRED_TASK, parsed_examples, trigger, watch, xcom
from tests.e2e.waiting import TEST_TIMEOUT, wait_while_moving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT)]
DAG_ID = "example_xai_chat"


class Collector:
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) keeping every span."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest,
                    ExportTraceServiceResponse,
                )

                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
                with collector.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend(scope.spans)
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def snapshot(self) -> list[Any]:
        with self.lock:
            return list(self.spans)


def attributes(span: Any) -> dict[str, Any]:
    """A protobuf span's attributes as plain values."""
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[kv.key] = getattr(value, kind) if kind else None
    return out


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    collector = Collector()
    collector.thread.start()
    try:
        yield collector
    finally:
        collector.server.shutdown()


@pytest.fixture(scope="module")
def traced_stack(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[AirflowStack]:
    """Airflow with tracing on, exporting to ``collector``; the api-server up."""
    stack = AirflowStack(tmp_path_factory.mktemp("airflow-tracing-home"))
    stack.env.update(
        AIRFLOW__TRACES__OTEL_ON="True",
        OTEL_SERVICE_NAME="airflow-e2e",
        OTEL_TRACES_EXPORTER="otlp_proto_http",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",  # export every 0.2 s, not 5 s
    )
    try:
        stack.serve()
        yield stack
    finally:
        stack.stop_all()


def test_spans_of_a_real_deployment_nest_under_airflow_task_spans(
    traced_stack: AirflowStack, collector: Collector, e2e_xai: XAIServer
) -> None:
    stack = traced_stack
    e2e_xai.reset()
    e2e_xai.configure(deferred_pending_polls=DEFERRED_POLLS)
    with stack.client() as api:
        put_xai_connection(api, e2e_xai)
        stack.start("scheduler", "scheduler", "--skip-serve-logs")
        stack.start("dag-processor", "dag-processor")
        stack.start("triggerer", "triggerer", "--skip-serve-logs")
        stack.wait_healthy("scheduler", "triggerer", "dag_processor")
        assert DAG_ID in parsed_examples(api, stack)
        run_id = trigger(api, DAG_ID)
        states, seen, _ = watch(api, stack, {DAG_ID: run_id}, DAG_ID, DEFERRED_TASK)
        assert states == {DAG_ID: "success"} and "deferred" in seen, (states, seen)
        usage = {task: xcom(api, DAG_ID, run_id, task, "xai_usage") for task in ("plain_prompt", DEFERRED_TASK)}

    def chat_spans() -> list[Any]:
        return [s for s in collector.snapshot() if attributes(s).get("gen_ai.operation.name") == "chat"]

    def arrived() -> bool:
        spans = chat_spans()
        ids = {s.span_id for s in collector.snapshot()}
        # 9 requests: plain, tip, facts, 3 translations, the decorator, the deferred submission
        # and its collection; and every parent span exported too (a task span ends after them)
        return len(spans) >= 9 and all(s.parent_span_id in ids for s in spans)

    wait_while_moving(arrived, lambda: len(collector.snapshot()), "the xAI spans and their parents to arrive")
    spans = collector.snapshot()
    by_id = {s.span_id: s for s in spans}
    chats = chat_spans()
    parents = {s.span_id: by_id[s.parent_span_id] for s in chats}

    in_tasks = [s for s in chats if parents[s.span_id].name.startswith("worker.")]
    for span in in_tasks:
        task_span, a = parents[span.span_id], attributes(span)
        assert span.trace_id == task_span.trace_id
        assert a["airflow.dag_run.run_id"] == run_id
        for key in ("airflow.dag_id", "airflow.task_id", "airflow.task_instance.map_index"):
            assert a[key] == attributes(task_span)[key], key
    tasks = {(attributes(s)["airflow.task_id"], attributes(s)["airflow.task_instance.map_index"]) for s in in_tasks}
    assert {("plain_prompt", -1), ("translate", 0), ("translate", 1), ("translate", 2)} <= tasks
    assert {("travel_tip", -1), ("city_facts", -1), ("name_the_dag", -1), (DEFERRED_TASK, -1)} <= tasks

    plain = next(s for s in in_tasks if attributes(s)["airflow.task_id"] == "plain_prompt")
    assert attributes(plain)["gen_ai.response.id"] == usage["plain_prompt"]["completion_id"]
    assert attributes(plain)["xai.cost_usd"] == usage["plain_prompt"]["cost_usd"]

    # The deferred answer was collected in the triggerer: under its trigger span, same trace.
    (collected,) = [s for s in chats if parents[s.span_id].name.startswith("trigger.")]
    trigger_span = parents[collected.span_id]
    assert attributes(trigger_span)["airflow.task_id"] == DEFERRED_TASK
    assert collected.trace_id == plain.trace_id  # the DAG run's one trace
    assert attributes(collected)["gen_ai.response.id"] == usage[DEFERRED_TASK]["completion_id"]
    assert attributes(collected)["gen_ai.usage.input_tokens"] == usage[DEFERRED_TASK]["prompt_tokens"]

    everything = "\n".join(str(s) for s in spans)
    assert e2e_xai.api_key not in everything
    assert "Lisbon" not in everything  # no prompt or answer without the opt-in
    print(f"{len(spans)} spans received, {len(chats)} of them xAI requests:\n{tree(spans)}")


def tree(spans: list[Any]) -> str:
    """The spans as an indented tree (printed with ``-s``; the docs show one)."""
    children: dict[bytes, list[Any]] = {}
    ids = {s.span_id for s in spans}
    for span in sorted(spans, key=lambda s: s.start_time_unix_nano):
        children.setdefault(span.parent_span_id if span.parent_span_id in ids else b"", []).append(span)
    lines: list[str] = []

    def walk(parent: bytes, depth: int) -> None:
        for span in children.get(parent, []):
            a = attributes(span)
            usage = f"  in={a['gen_ai.usage.input_tokens']} out={a['gen_ai.usage.output_tokens']}" if (
                "gen_ai.usage.input_tokens" in a) else ""
            lines.append(f"{'  ' * depth}{span.name}{usage}")
            walk(span.span_id, depth + 1)

    walk(b"", 0)
    return "\n".join(lines)
