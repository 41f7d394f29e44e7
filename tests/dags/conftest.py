"""Real DAG runs: a fresh metadata DB, the example DAG folder, and the local xAI server."""

from __future__ import annotations

from typing import Any

from tests.conftest import REPO

DAGS_FOLDER = REPO / "example_dags"


def run_inline_dag(dag: Any) -> Any:
    """``dag.test()`` a DAG built inside a test (serialized first, as Airflow 3 requires)."""
    import os

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
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
