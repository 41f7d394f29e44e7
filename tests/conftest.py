"""Test environment: an isolated AIRFLOW_HOME set before Airflow is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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

pytest_plugins = ["airflow_provider_xai.testing.pytest_plugin"]
