"""Running XAIBatchOperator in tests as the task runner does (execute, deferral, trigger,
execute_complete) in one task instance of one DAG run, and reading what it left."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_xai.operators.batch import XAIBatchOperator, batch_name_for
from airflow_provider_xai.operators.batch_inputs import split_request_id
from airflow_provider_xai.triggers.batch import XAIBatchTrigger

RUN_ID = "scheduled__2026-01-01T00:00:00+00:00"


class FakeTI:
    """What the operator and the usage ledger use of a task instance."""

    def __init__(self, try_number: int = 1, map_index: int = -1) -> None:
        self.dag_id, self.run_id, self.task_id = "nightly", RUN_ID, "classify"
        self.map_index, self.try_number = map_index, try_number
        self.xcoms: list[tuple[str, Any]] = []

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms.append((key, json.loads(json.dumps(value))))

    def pushed(self, key: str) -> list[Any]:
        return [v for k, v in self.xcoms if k == key]


class FakeStore(dict):
    """The Airflow 3.3 task state store: survives retries of one task instance."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def context(try_number: int = 1, store: FakeStore | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": FakeTI(try_number)}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def operator(tmp_path: Path, inputs: Any, **kwargs: Any) -> XAIBatchOperator:
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("output_path", f"file://{tmp_path}/out.jsonl")
    return XAIBatchOperator(task_id="classify", inputs=inputs, **kwargs)


async def first_event(trigger: XAIBatchTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("trigger ended without an event")


def run(op: XAIBatchOperator, ctx: dict[str, Any]) -> Any:
    """execute -> (deferral -> trigger -> execute_complete), like the task runner."""
    try:
        return op.execute(ctx)
    except TaskDeferred as deferred:
        assert deferred.method_name == "execute_complete"
        assert ctx["ti"].pushed("xai_batch_id"), "batch id must be in XCom before deferring"
        return op.execute_complete(ctx, asyncio.run(first_event(deferred.trigger)))


def lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]


def batch_posts(server: Any) -> int:
    return len([e for e in server.journal if e.method == "POST" and e.path.endswith("/v1/batches")])


def add_calls(server: Any) -> int:
    return len(server.requests("/requests", "POST"))


def name_of(op: XAIBatchOperator) -> str:
    """The batch name the operator gives its inputs in the test task instance."""
    sent = [p.request_id for p in op.prepare_requests() if p.refused is None]
    return batch_name_for("nightly", RUN_ID, "classify", -1, sent, op.submit_as)


def by_custom_id(batch: Any) -> dict[str, Any]:
    """The local server's requests of a batch by custom id (their names carry a fingerprint)."""
    return {split_request_id(rid)[0]: request for rid, request in batch.requests.items()}
