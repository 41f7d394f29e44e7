"""README.md and docs/getting-started.md, followed step by step from the built wheel.

Every block a user is meant to type runs, in order, in one terminal session in the clean venv
of the release tests (``installed``) with a fresh ``AIRFLOW_HOME``, against the bundled local
xAI server that the pages themselves start; output the pages show is checked
(``tests/docs/newcomer.py`` says how, and what the session types differently from a user).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docs.newcomer import NEWCOMER, Flow, substitutions
from tests.docs.pages import NEWCOMER_PAGES, evaluate, fence_languages, name
from tests.docs.shell import Shell
from tests.e2e.waiting import TEST_TIMEOUT
from tests.helpers.release import Installed, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT)]


@pytest.mark.parametrize("page", NEWCOMER_PAGES, ids=name)
def test_a_newcomer_follows_the_page(page: Path, installed: Installed, tmp_path: Path) -> None:
    assert set(fence_languages(page)) <= {"bash", "python", "text"}, "a block this test cannot run"
    env = clean_env(PATH=f"{installed.bin}{os.pathsep}{os.environ['PATH']}", AIRFLOW_HOME=str(tmp_path / "airflow"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    shell = Shell(cwd=workdir, env=env, log=tmp_path / "session.log")
    flow = Flow(shell=shell, home=tmp_path / "airflow", workdir=workdir, subs=substitutions(installed))
    document = NEWCOMER.parse(page)
    document.namespace["flow"] = flow
    try:
        evaluate(document)
    finally:
        shell.close()
    print(f"{name(page)}: ran {', '.join(flow.ran)}")
    assert any(step.startswith("output:") for step in flow.ran)
