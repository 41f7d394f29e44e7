"""Every Python block of the docs outside the newcomer's path runs (``tests/docs/snippets.py``).

A renamed or removed operator argument, import path or helper that a page still uses fails here,
naming the page and line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
import pytest

from tests.dags.conftest import sync_inline_dag
from tests.docs.pages import SNIPPET_PAGES, evaluate, fence_languages, name
from tests.docs.snippets import SNIPPETS

PYTHON_PAGES = [page for page in SNIPPET_PAGES if "python" in fence_languages(page)]
#: The connections the pages' blocks read besides ``xai_default`` (the ``xai_server`` fixture's).
CONNECTIONS = {"AIRFLOW_CONN_SILO_MCP": '{"conn_type": "generic", "password": "Bearer docs-test"}'}


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=name)
def test_the_python_blocks_of_a_page_run(
    page: Path, xai_server: Any, airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import DAG

    for variable, value in CONNECTIONS.items():
        monkeypatch.setenv(variable, value)
    page_dag = DAG(
        dag_id="docs_" + "_".join(page.with_suffix("").parts[-2:]).replace("-", "_"),
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1),
    )
    document = SNIPPETS.parse(page)
    document.namespace.update(xai_server=xai_server, page_dag=page_dag, dags_folder=tmp_path, ran=[])
    environ = dict(os.environ)
    try:
        evaluate(document)
    finally:  # a block may set variables (docs/testing.md points AIRFLOW_CONN_XAI_DEFAULT elsewhere)
        os.environ.clear()
        os.environ.update(environ)
    if page_dag.tasks:
        sync_inline_dag(page_dag)
    print(f"{name(page)}: ran {', '.join(document.namespace['ran'])}")
    assert document.namespace["ran"]
