"""Every example DAG file parses (DagBag) with zero import errors and yields its DAG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.dags.conftest import DAGS_FOLDER

EXAMPLES = sorted(DAGS_FOLDER.glob("example_*.py"))


def test_example_dags_parse_without_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert EXAMPLES, f"no example DAGs in {DAGS_FOLDER}"
    # One DAG per file, named after the file, tagged as an xAI example.
    by_file = {Path(dag.fileloc).name: dag_id for dag_id, dag in dagbag.dags.items()}
    assert by_file == {p.name: p.stem for p in EXAMPLES}
    for dag_id in by_file.values():
        dag = dagbag.get_dag(dag_id)
        assert {"example", "xai"} <= set(dag.tags), dag_id
        assert dag.tasks, dag_id


def test_example_dags_import_no_heavy_modules_at_parse() -> None:
    """Operators import the hook lazily, so parsing an example never pulls in httpx clients."""
    code = (
        "import runpy, sys\n"
        f"for path in {[str(p) for p in EXAMPLES]!r}:\n"
        "    runpy.run_path(path)\n"
        "print(sorted(m for m in ('airflow_provider_xai.hooks.xai', 'httpx_sse') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
