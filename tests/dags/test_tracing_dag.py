"""example_xai_chat under dag.test() with tracing on: every xAI request is a child span of
Airflow's own task span (or, for the deferred poll, of the triggerer's trigger span).

``dag.test()`` runs a task's ``run()`` without the task runner's ``main()``, which is where a
real worker opens the task span (``_make_task_span``), and runs a trigger without the
triggerer's ``_make_trigger_span``. Both are wrapped here around exactly what they wrap in
production, with Airflow's own functions, and spans go to an in-memory exporter.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.dags.conftest import run_dag, task_states, xcom_values
from tests.helpers.spans import memory_spans

IDENTITY = (
    "airflow.dag_id",
    "airflow.task_id",
    "airflow.dag_run.run_id",
    "airflow.task_instance.map_index",
    "airflow.task_instance.try_number",
)


@pytest.fixture
def airflow_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An in-memory tracer provider, and Airflow's task and trigger spans around dag.test()'s runs."""
    from airflow.jobs.triggerer_job_runner import _make_trigger_span
    from airflow.sdk.definitions import dag as dag_module
    from airflow.sdk.execution_time import task_runner

    run, run_inline_trigger = task_runner.run, dag_module._run_inline_trigger

    def run_in_task_span(ti: Any, context: Any, log: Any) -> Any:
        fields = ("dag_id", "task_id", "run_id", "try_number", "map_index")
        startup = SimpleNamespace(ti=SimpleNamespace(context_carrier=None, **{f: getattr(ti, f) for f in fields}))
        with task_runner._make_task_span(startup):  # as task_runner.main() does
            return run(ti, context, log)

    def trigger_in_trigger_span(trigger: Any, ti: Any) -> Any:
        with _make_trigger_span(ti=None, trigger_id=1, name=type(trigger).__name__):  # as the triggerer does
            return run_inline_trigger(trigger, ti)

    monkeypatch.setattr(task_runner, "run", run_in_task_span)
    monkeypatch.setattr(dag_module, "_run_inline_trigger", trigger_in_trigger_span)
    with memory_spans(monkeypatch) as exporter:
        yield exporter


def test_each_xai_request_is_a_child_of_its_task_span(
    dagbag: Any, xai_server: Any, airflow_spans: InMemorySpanExporter
) -> None:
    dr = run_dag(dagbag, "example_xai_chat")
    assert set(task_states(dr).values()) == {"success"}
    spans = airflow_spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    chats = [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, span.name
        return by_id[span.parent.span_id]

    in_tasks = [s for s in chats if parent(s).name.startswith("worker.")]
    for span in in_tasks:
        task_span = parent(span)
        identity = {k: (span.attributes or {}).get(k) for k in IDENTITY}
        assert identity == {k: (task_span.attributes or {}).get(k) for k in IDENTITY}
        assert identity["airflow.dag_run.run_id"] == dr.run_id
        assert span.context.trace_id == task_span.context.trace_id
    tasks = {((s.attributes or {})["airflow.task_id"], (s.attributes or {})["airflow.task_instance.map_index"])
             for s in in_tasks}  # fmt: skip
    assert {("translate", 0), ("translate", 1), ("translate", 2), ("plain_prompt", -1)} <= tasks
    assert {("deferred_haiku", -1), ("city_facts", -1), ("travel_tip", -1), ("name_the_dag", -1)} <= tasks
    assert parent(next(s for s in in_tasks if (s.attributes or {})["airflow.task_id"] == "translate")).name in {
        "worker.translate[0]", "worker.translate[1]", "worker.translate[2]"
    }  # fmt: skip

    # The deferred answer was collected by the trigger: one span under the trigger's span.
    (collected,) = [s for s in chats if parent(s).name == "trigger.XAIDeferredCompletionTrigger"]
    assert (collected.attributes or {})["gen_ai.usage.output_tokens"] > 0

    # Every billed answer's span carries the tokens and cost of its usage record.
    answered = {(s.attributes or {}).get("gen_ai.response.id"): s.attributes or {} for s in chats}
    for task_id in ("plain_prompt", "travel_tip", "city_facts", "translate", "deferred_haiku"):
        for usage in xcom_values(dr, task_id, "xai_usage").values():
            span = answered[usage["completion_id"]]
            assert span["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
            assert span["gen_ai.usage.output_tokens"] == usage["completion_tokens"] + usage["reasoning_tokens"]
            assert span["xai.cost_usd"] == usage["cost_usd"] and span["xai.cost_source"] == usage["cost_source"]
    assert xai_server.api_key not in "\n".join(s.to_json() for s in spans)
