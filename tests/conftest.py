"""Test environment: an isolated AIRFLOW_HOME set before Airflow is imported."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="xai-airflow-home-"))
REPO = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "example_dags")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
os.environ.pop("XAI_API_KEY", None)
for _name in list(os.environ):
    if _name.startswith("AIRFLOW_CONN_XAI"):
        del os.environ[_name]

#: The local xAI server's fixtures, and the built wheel in a clean venv (``dist``, ``installed``).
pytest_plugins = ["airflow_provider_xai.testing.pytest_plugin", "tests.helpers.release"]

if "MUTANT_UNDER_TEST" in os.environ:  # under `make mutate` (mutmut): one pytest process runs the
    from hypothesis import HealthCheck, settings  # same tests again and again, so the same examples

    settings.register_profile(
        "mutmut",
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.differing_executors, HealthCheck.too_slow],
    )
    settings.load_profile("mutmut")


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """A fresh metadata DB, created once per test session."""
    from airflow.utils import db

    db.resetdb()
    yield


@pytest.fixture(scope="session")
def dagbag(airflow_db: None) -> Any:
    """The example DAGs, parsed once."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "example_dags"))
