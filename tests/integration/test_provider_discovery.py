"""Airflow discovers the provider: entry point, provider info, UI form metadata, CLI."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from airflow_provider_xai import __version__
from airflow_provider_xai.get_provider_info import get_provider_info

REPO = Path(__file__).resolve().parents[2]


def _project() -> dict[str, Any]:
    """``[project]`` of pyproject.toml (tomllib from Python 3.11, tomli before)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    return dict(tomllib.loads((REPO / "pyproject.toml").read_text())["project"])


def test_provider_info_validates_against_airflow_schema() -> None:
    from airflow.providers_manager import _create_provider_info_schema_validator

    _create_provider_info_schema_validator().validate(get_provider_info())


def test_provider_info_keys_and_values_are_ones_provider_yaml_allows() -> None:
    """Airflow's provider.yaml schema (additionalProperties: false) knows every key we send, and
    each value validates; its build-time keys (state, source-date-epoch) are not provider info."""
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider.yaml.schema.json").read_text())
    schema["required"] = [k for k in schema["required"] if k not in ("state", "source-date-epoch")]
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_and_version_follow_pyproject() -> None:
    project, info = _project(), get_provider_info()
    assert info["package-name"] == project["name"]
    assert info["versions"][0] == project["version"] == __version__


def test_versions_are_the_changelog_releases_newest_first() -> None:
    released = re.findall(r"^## (\d+\.\d+\.\d+) ", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert get_provider_info()["versions"] == released
    assert released == sorted(released, key=Version, reverse=True)


def test_the_integration_links_xais_documentation() -> None:
    (integration,) = get_provider_info()["integrations"]
    assert integration["external-doc-url"] == "https://docs.x.ai/"


def test_every_listed_module_and_class_imports() -> None:
    info = get_provider_info()
    modules = [
        m
        for section in ("hooks", "operators", "sensors", "triggers")
        for e in info.get(section, [])
        for m in e["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    for dotted in [info["connection-types"][0]["hook-class-name"], info["task-decorators"][0]["class-name"]]:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), dotted


def test_hook_meta_service_returns_the_xai_form() -> None:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}["xai"]
    assert meta.hook_name == "xAI"
    standard = meta.standard_fields
    assert standard is not None
    assert standard.password.title == "API Key"
    assert standard.host.title == "Base URL"
    assert standard.host.placeholder == "https://api.x.ai/v1"
    assert standard.login.hidden and standard.port.hidden and standard.url_schema.hidden
    extra = meta.extra_fields or {}
    assert {"default_model", "timeout", "max_retries"} <= {k.rsplit("__", 1)[-1] for k in extra}


def _json_output(stdout: str) -> Any:
    """The JSON document in a CLI's stdout (Airflow may print log lines before it)."""
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("[")))


def _airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_cli_lists_provider_and_tests_connection(xai_server: Any) -> None:
    env = {**os.environ, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    providers = _airflow("providers", "list", "-o", "json", env=env)
    assert "airflow-provider-xai" in {p["package_name"] for p in _json_output(providers.stdout)}
    hooks = _airflow("providers", "hooks", "-o", "json", env=env)
    xai = [h for h in _json_output(hooks.stdout) if h.get("connection_type") == "xai"]
    assert xai and xai[0]["class"] == "airflow_provider_xai.hooks.xai.XAIHook"
    tested = _airflow("connections", "test", "xai_default", env=env)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Connection success" in tested.stdout or "success" in tested.stdout.lower()
    assert xai_server.api_key not in tested.stdout + tested.stderr
    assert [e.path for e in xai_server.journal] == ["/v1/api-key", "/management/v1/collections"]  # both free
