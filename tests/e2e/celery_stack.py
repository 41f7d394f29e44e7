"""A CeleryExecutor deployment for end-to-end tests: Redis broker, PostgreSQL metadata DB.

``celery_deployment`` starts, in order: a password-protected Redis (the local server kit's
``redis_server``) and PostgreSQL (``tests/helpers/services.py``),
``airflow db migrate``, the api-server, scheduler, dag-processor, triggerer and two Celery
workers (``worker-1``, ``worker-2``, each with ``WORKER_CONCURRENCY`` slots). Every task
instance records the worker that ran it in ``hostname`` (``worker_name.py``), so a test
can tell which worker ran what. The dag-processor reads two DAG bundles: the example DAGs and
``tests/e2e/scale_dags``. Everything is stopped cleanly at the end, Airflow first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_xai.testing.redis_server import RedisServer, redis_server
from tests.conftest import REPO
from tests.e2e import worker_name
from tests.e2e.conftest import DAGS_FOLDER, AirflowStack
from tests.e2e.waiting import file_sizes, wait_while_moving
from tests.helpers.services import PostgresServer

WORKERS = ("worker-1", "worker-2")
WORKER_CONCURRENCY = 4
SCALE_DAGS_FOLDER = REPO / "tests" / "e2e" / "scale_dags"


def bundles(*folders: tuple[str, Path]) -> str:
    """``[dag_processor] dag_bundle_config_list``: one local bundle per (name, folder)."""
    return json.dumps([
        {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
         "kwargs": {"path": str(folder), "refresh_interval": 0}}
        for name, folder in folders
    ])


def celery_settings(postgres: PostgresServer, redis: RedisServer) -> dict[str, str]:
    """Airflow settings for CeleryExecutor on ``redis`` with its metadata DB on ``postgres``."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(len(WORKERS) * WORKER_CONCURRENCY),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://:{redis.password}@{redis.host}:{redis.port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundles(
            ("examples", DAGS_FOLDER), ("scale", SCALE_DAGS_FOLDER)
        ),
    }


def start_worker(stack: AirflowStack, name: str) -> None:
    stack.start(
        name, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
        str(WORKER_CONCURRENCY), "--skip-serve-logs", "--without-gossip", "--without-mingle",
        env={
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{worker_name.__name__}.worker_hostname",
            worker_name.ENV_VAR: name,
        },
    )


def wait_workers_ready(stack: AirflowStack) -> None:
    """Wait until each Celery worker has said it is ready to take tasks."""

    def ready() -> bool:
        stack.check_alive()
        return all(f"{name}@" in stack.log(name) and " ready." in stack.log(name) for name in WORKERS)

    wait_while_moving(ready, lambda: file_sizes(*map(stack.log_path, WORKERS)), "the Celery workers")


@dataclass(frozen=True)
class CeleryDeployment:
    stack: AirflowStack
    postgres: PostgresServer
    redis: RedisServer


@contextmanager
def celery_deployment(home: Path) -> Iterator[CeleryDeployment]:
    """The whole deployment, running and healthy; stopped (Airflow, then the servers) on exit."""
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    with redis_server() as redis:
        postgres = PostgresServer()
        stack: AirflowStack | None = None
        try:
            postgres.start()
            stack = AirflowStack(home / "airflow", celery_settings(postgres, redis))
            stack.serve()
            stack.start_scheduling()
            for name in WORKERS:
                start_worker(stack, name)
            stack.wait_healthy("scheduler", "triggerer", "dag_processor")
            wait_workers_ready(stack)
            yield CeleryDeployment(stack, postgres, redis)
        finally:
            if stack is not None:
                stack.stop_all()
            postgres.stop()
