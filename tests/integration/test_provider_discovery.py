"""Airflow discovers the provider: entry point, provider info, UI form metadata, CLI."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_xai.get_provider_info import get_provider_info


def test_provider_info_validates_against_airflow_schema() -> None:
    from airflow.providers_manager import _create_provider_info_schema_validator

    _create_provider_info_schema_validator().validate(get_provider_info())


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
    assert [e.path for e in xai_server.journal] == ["/v1/api-key"]
