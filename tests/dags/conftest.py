"""Real DAG runs: a fresh metadata DB, the example DAG folder, and the local xAI server.

Every test here that passes is also checked for error-level log lines: an example DAG that
runs green must not log an error, a critical message or a traceback on the way (a newcomer
reading ``make demo``'s logs cannot tell a harmless error line from a real one). The check
reads the output pytest captured during the test (stdout, stderr and log records), so a test
that reads its output with ``capsys``/``capfd`` must print it again for the check to see it.
With capture disabled (``-s``) there is nothing to check.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import pytest

from tests.conftest import REPO

DAGS_FOLDER = REPO / "example_dags"

#: Error-level lines as Airflow 3 and pytest print them: structlog's console renderer
#: (``2026-01-01T00:00:00Z [error    ] ...``), JSON log lines, stdlib formats (pytest's
#: ``ERROR    logger:file.py:1 ...``, ``... ERROR - ...``) and tracebacks.
ERROR_LINE = re.compile(
    r"^(?:\S+\s+)?\[(?:error|critical|fatal|exception)\s*\]"
    r"|\"level\":\s*\"(?:error|critical|fatal)\""
    r"|^(?:ERROR|CRITICAL)\s"
    r"|\s(?:ERROR|CRITICAL) - "
    r"|Traceback \(most recent call last\)",
    re.MULTILINE,
)


ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def error_lines(text: str) -> list[str]:
    """The lines of ``text`` logged at error level or above, and traceback headers."""
    return [line for line in ANSI_COLOUR.sub("", text).splitlines() if ERROR_LINE.search(line)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail a passing test whose run logged an error-level line (see the module docstring)."""
    report = yield
    if report.when != "call" or not report.passed:
        return report
    captured = "\n".join(text for name, text in report.sections if name.endswith(" call"))
    found = error_lines(captured)
    if found:
        report.outcome = "failed"
        report.longrepr = "error-level lines logged during a green run:\n" + "\n".join(
            line[:500] for line in found
        )
    return report


def sync_inline_dag(dag: Any) -> None:
    """Bag a DAG built outside a DAG folder and write it serialized to the DB, as the
    dag-processor does (its checks fail here: cycles, task ids, what does not serialize)."""
    import os

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def run_inline_dag(dag: Any) -> Any:
    """``dag.test()`` a DAG built inside a test (serialized first, as Airflow 3 requires)."""
    sync_inline_dag(dag)
    return dag.test()


def run_dag(dagbag: Any, dag_id: str, **kwargs: Any) -> Any:
    """``dag.test()`` one example DAG; returns the DagRun."""
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, dagbag.import_errors
    return dag.test(**kwargs)


def xcom_values(dag_run: Any, task_id: str, key: str = "return_value") -> dict[int, Any]:
    """XCom values of one task in a run, by map index."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key, map_indexes=None
            )
        ).all()
        return {row.map_index: XComModel.deserialize_value(row) for row in rows}


def task_states(dag_run: Any) -> dict[tuple[str, int], str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    return {(t, m): str(s.value if hasattr(s, "value") else s) for t, m, s in rows}
