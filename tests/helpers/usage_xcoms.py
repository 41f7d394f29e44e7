"""Usage XComs in a real Airflow metadata DB, written as the provider writes them.

A task instance's ``xai_usage_ledger`` (every record of every attempt) and ``xai_usage`` (its
latest record), and a run's ``xai_usage_summary`` when its usage sensor found it over budget:
the same JSON values the Task Execution API stores. Rows are bulk-inserted (DAG run, task
instance, XCom) so the dashboard tests and its 100,000-record benchmark share one writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_provider_xai.sensors.usage import XCOM_SUMMARY_KEY
from airflow_provider_xai.usage import XCOM_LEDGER_KEY, XCOM_USAGE_KEY, UsageRecord


@dataclass
class TaskUsage:
    """The usage XComs of one task instance. ``xai_usage`` is ``latest``, by default the ledger's
    last record (as ``UsageLedger.record`` leaves them); ``with_latest=False`` writes none (as
    ``UsageLedger.record_many`` does for a batch)."""

    dag_id: str
    run_id: str
    task_id: str
    ledger: list[dict[str, Any]] | None
    map_index: int = -1
    latest: dict[str, Any] | None = None
    with_latest: bool = True
    #: Other XComs of the task instance, ``(key, value)`` (``xai_forecast``, ...).
    others: list[tuple[str, Any]] = field(default_factory=list)

    def xcoms(self) -> list[tuple[str, Any]]:
        latest = self.latest if self.latest is not None else (self.ledger or [None])[-1]
        latest = latest if self.with_latest else None
        out: list[tuple[str, Any]] = []
        if self.ledger is not None:
            out.append((XCOM_LEDGER_KEY, self.ledger))
        if latest is not None:
            out.append((XCOM_USAGE_KEY, latest))
        return out + self.others


@dataclass
class RunUsage:
    dag_id: str
    run_id: str
    tasks: list[TaskUsage] = field(default_factory=list)
    summary: dict[str, Any] | None = None  # the sensor's xai_usage_summary, when over budget


def record(
    dag_id: str,
    run_id: str,
    task_id: str,
    *,
    timestamp: float,
    model: str = "grok-4.3",
    map_index: int = -1,
    try_number: int = 1,
    **counts: Any,
) -> dict[str, Any]:
    """A usage record as the ledger stores it (``UsageRecord.to_dict``)."""
    return UsageRecord(
        model=model,
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        timestamp=timestamp,
        **counts,
    ).to_dict()


def insert_runs(session: Any, runs: Sequence[RunUsage], *, when: datetime | None = None) -> None:
    """Insert the DAG runs, their task instances and their usage XComs (flushes, no commit)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import insert, select, tuple_

    when = when or datetime.now(timezone.utc)
    session.execute(
        insert(DagRun.__table__),
        [
            {"dag_id": r.dag_id, "run_id": r.run_id, "run_type": "manual", "state": "success", "run_after": when}
            for r in runs
        ],
    )
    ids: dict[tuple[str, str], int] = {}
    keys = [(r.dag_id, r.run_id) for r in runs]
    for chunk in _chunks(keys, 500):
        stmt = select(DagRun.dag_id, DagRun.run_id, DagRun.id).where(tuple_(DagRun.dag_id, DagRun.run_id).in_(chunk))
        ids.update({(d, r): i for d, r, i in session.execute(stmt)})
    tasks = [t for r in runs for t in r.tasks]
    session.execute(
        insert(TaskInstance.__table__),
        [
            {"dag_id": t.dag_id, "run_id": t.run_id, "task_id": t.task_id, "map_index": t.map_index,
             "pool": "default_pool", "state": "success", "try_number": 1}
            for t in tasks
        ],
    )
    xcoms = [
        {"dag_run_id": ids[(t.dag_id, t.run_id)], "dag_id": t.dag_id, "run_id": t.run_id, "task_id": t.task_id,
         "map_index": t.map_index, "key": key, "value": value, "timestamp": when}
        for t in tasks
        for key, value in t.xcoms()
    ]
    for r in runs:
        if r.summary is not None:
            sensor = TaskUsage(r.dag_id, r.run_id, "xai_usage", None)
            session.execute(insert(TaskInstance.__table__), [
                {"dag_id": r.dag_id, "run_id": r.run_id, "task_id": sensor.task_id, "map_index": -1,
                 "pool": "default_pool", "state": "failed", "try_number": 1}
            ])
            xcoms.append({"dag_run_id": ids[(r.dag_id, r.run_id)], "dag_id": r.dag_id, "run_id": r.run_id,
                          "task_id": sensor.task_id, "map_index": -1, "key": XCOM_SUMMARY_KEY,
                          "value": r.summary, "timestamp": when})
    for chunk in _chunks(xcoms, 5000):
        session.execute(insert(XComModel.__table__), list(chunk))
    session.flush()


def add_dags(session: Any, dag_ids: Iterable[str], bundle: str = "dags-folder") -> None:
    """DAG rows (the auth manager authorizes only DAGs the metadata DB knows), and their bundle."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel

    if session.get(DagBundleModel, bundle) is None:
        session.add(DagBundleModel(name=bundle))
        session.flush()  # before the DAGs that refer to it
    # Airflow 3.3 requires the partition mappers column; 3.2 has no such column
    newer = {"partition_mapper_info": {}} if hasattr(DagModel, "partition_mapper_info") else {}
    for dag_id in dag_ids:
        if session.get(DagModel, dag_id) is None:
            session.add(DagModel(dag_id=dag_id, bundle_name=bundle, timetable_type="", **newer))
    session.flush()


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
