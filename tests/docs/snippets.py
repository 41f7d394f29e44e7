"""The Python blocks of a page, run in-process by Sybil (``test_snippets.py``).

A page is one Sybil document: its blocks run in order in one namespace, so a later block may use
an earlier one's names, as a reader reads them. The namespace starts with ``xai_server``, the
local server fixture that the pages' test examples use, and ``page_dag``: every block runs
inside that DAG, as the lines of one DAG file would, and the test then bags and serializes it as
the dag-processor does.

A block that is a whole DAG file is saved into a DAG folder of its own instead, imported by a
``DagBag`` as ``airflow dags test`` would (no import error; every ``xcom_pull(task_ids=...)``
names a task of the DAG) and run with ``dag.test()`` against the local server: it must succeed.

``<!-- skip: next -->`` (Sybil's own marker) leaves the next block out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sybil import Example, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from tests.dags.conftest import run_inline_dag
from tests.docs.pages import is_dag_file

_PULL = re.compile(r"xcom_pull\(\s*task_ids\s*=\s*['\"]([^'\"]+)['\"]")
_EXEC = PythonEvaluator()


def pulled_task_ids(dag: Any) -> set[str]:
    """The task ids that the DAG's templated fields pull XComs from."""
    found: set[str] = set()
    for task in dag.tasks:
        for field in task.template_fields:
            found.update(_PULL.findall(str(getattr(task, field, ""))))
    return found


def run_dag_file(example: Example) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder: Path = example.namespace["dags_folder"] / f"{Path(example.path).stem}_{example.line}"
    folder.mkdir(parents=True)
    (folder / "dag.py").write_text(example.parsed)
    bag = DagBag(dag_folder=str(folder))
    assert not bag.import_errors, bag.import_errors
    assert bag.dags, "the block defines no DAG"
    for dag in bag.dags.values():
        missing = pulled_task_ids(dag) - set(dag.task_ids)
        assert not missing, f"{dag.dag_id} pulls XComs of tasks it does not have: {sorted(missing)}"
        dag_run = run_inline_dag(dag)
        assert dag_run.state == "success", f"{dag.dag_id}: {dag_run.state}"
    example.namespace["ran"].append(f"dag:{example.line}")


def run_python(example: Example) -> None:
    if is_dag_file(example.parsed):
        run_dag_file(example)
        return
    with example.namespace["page_dag"]:
        _EXEC(example)
    example.namespace["ran"].append(f"python:{example.line}")


SNIPPETS = Sybil(parsers=[CodeBlockParser("python", run_python), SkipParser()])
