"""The error-line check that tests/dags/conftest.py applies to every green example DAG run."""

from __future__ import annotations

import pytest

from tests.dags.conftest import error_lines

ERRORS = [
    # The line the chat example used to log while iterating its mapped translations.
    "2026-11-28T19:59:05.402360Z [error    ] XCom not found                 [airflow.sdk.api.client]"
    " dag_id=example_xai_chat offset=3",
    "2026-11-28T19:59:05.402360Z [critical ] Task failed",
    "\x1b[2m2026-11-28T19:59:05Z\x1b[0m [\x1b[31m\x1b[1merror    \x1b[0m] coloured",
    '{"timestamp": "2026-11-28T19:59:05Z", "level": "error", "event": "boom"}',
    "ERROR    airflow.task:taskinstance.py:12 boom",
    "[2026-11-28 19:59:05,402] {taskinstance.py:12} ERROR - boom",
    "Traceback (most recent call last):",
    "╭──────────── Traceback (most recent call last) ────────────╮",
]
NOT_ERRORS = [
    "2026-11-28T19:59:05.402360Z [info     ] xAI usage: model=grok-4.3 prompt_tokens=21",
    "2026-11-28T19:59:05.402360Z [warning  ] Could not import graphviz.",
    "Label the log line as INFO, WARN or ERROR. Reply with the label only.",
    "{'label': 'ERROR', 'error_count': 0, 'errors': []}",
    "Grok (local) heard: connection reset by peer [error]",
    "INFO     airflow.sdk.definitions.dag:dag.py:1501 [DAG TEST] starting task_id=report",
]


@pytest.mark.parametrize("line", ERRORS)
def test_error_level_lines_are_found(line: str) -> None:
    assert error_lines(f"before\n{line}\nafter") != []


@pytest.mark.parametrize("line", NOT_ERRORS)
def test_other_lines_are_not(line: str) -> None:
    assert error_lines(line) == []
