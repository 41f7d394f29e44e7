"""``python -m airflow_provider_xai.testing.demo``: where it looks for the example DAGs.

(Running them is covered by ``test_wheel.py`` from an installed wheel and by ``make demo``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

import airflow_provider_xai
from airflow_provider_xai.testing import demo
from tests.conftest import REPO


def test_default_is_the_copy_inside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XAI_DEMO_DAGS_FOLDER", raising=False)
    package = Path(airflow_provider_xai.__file__).resolve().parent
    assert package / "example_dags" == demo.PACKAGED_DAGS
    assert demo._parse_args([]).dags_folder == demo.PACKAGED_DAGS


def test_folder_from_the_environment_or_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XAI_DEMO_DAGS_FOLDER", str(tmp_path))
    assert demo._parse_args([]).dags_folder == tmp_path
    args = demo._parse_args(["--dags-folder", "example_dags", "example_xai_chat"])
    assert args.dags_folder == Path("example_dags") and args.dag_ids == ["example_xai_chat"]


def test_a_folder_without_examples_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main(["--dags-folder", str(tmp_path)]) == 2
    assert "--dags-folder example_dags" in capsys.readouterr().err


def test_an_unknown_dag_id_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--dags-folder", str(REPO / "example_dags"), "example_xai_nope"]) == 2
    assert "example_xai_nope" in capsys.readouterr().err
