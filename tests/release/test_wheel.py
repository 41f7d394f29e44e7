"""The released artefacts work on their own: sdist -> wheel -> a clean virtual environment.

The sdist, the wheel built from it and the clean venv it is installed into are the session's
``dist`` and ``installed`` fixtures (``tests/helpers/release.py``). There, with the working
directory in a temporary directory and no ``PYTHONPATH`` (the checkout is not importable), this
runs what a newcomer would: ``airflow providers list``, the connection form
metadata (``HookMetaService``), ``python -m airflow_provider_xai.testing``, an example DAG
copied out of the installed package under ``airflow dags test`` against that local server, and
the packaged demo (``python -m airflow_provider_xai.testing.demo``) for the vision example,
whose sample images must come from the installed package too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import REPO
from tests.helpers.release import COMMAND_TIMEOUT, Dist, Installed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

EXAMPLE_DAGS = sorted(p.name for p in (REPO / "example_dags").glob("example_*.py"))
SAMPLE_IMAGES = sorted(
    p.name for p in (REPO / "example_dags" / "sample_images").iterdir() if p.suffix in {".png", ".jpg"}
)


def test_sdist_holds_what_a_build_needs(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    needed = {
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "airflow_provider_xai/__init__.py",
        "airflow_provider_xai/get_provider_info.py",
        "airflow_provider_xai/py.typed",
        "airflow_provider_xai/testing/demo.py",
        *(f"example_dags/{name}" for name in EXAMPLE_DAGS),
        *(f"example_dags/sample_images/{name}" for name in SAMPLE_IMAGES),
    }
    assert needed <= names, sorted(needed - names)
    assert not {n for n in names if n.startswith((".venv/", "site/", "tests/")) or "__pycache__" in n}


def test_wheel_ships_the_package_and_the_example_dags(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as whl:
        names = set(whl.namelist())
        (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        declared = whl.read(entry_points).decode()
        assert "apache_airflow_provider" in declared
        # The usage page's plugin loads through this entry point with Airflow's default config.
        assert "[airflow.plugins]" in declared and "airflow_provider_xai.dashboard.plugin:XAIUsagePlugin" in declared
        # The page's static assets, the chart library and its licence included (no CDN).
        static = REPO / "airflow_provider_xai" / "dashboard" / "static"
        assert {"chart.umd.min.js", "chart.js-LICENSE.md", "index.html", "dashboard.js", "dashboard.css"} <= {
            p.name for p in static.iterdir()
        }
        for path in static.iterdir():
            assert whl.read(f"airflow_provider_xai/dashboard/static/{path.name}") == path.read_bytes(), path.name
        for name in EXAMPLE_DAGS:  # the packaged copy is the checkout's example_dags/, unchanged
            packaged = whl.read(f"airflow_provider_xai/example_dags/{name}")
            assert packaged == (REPO / "example_dags" / name).read_bytes(), name
        for name in SAMPLE_IMAGES:
            assert f"airflow_provider_xai/example_dags/sample_images/{name}" in names
    top_level = {n.split("/", 1)[0] for n in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"airflow_provider_xai"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_airflow_lists_the_provider_its_connection_form_and_usage_page(installed: Installed) -> None:
    listed = installed.run("providers-list", installed.bin / "airflow", "providers", "list", "-o", "json")
    providers = json.loads(next(line for line in listed.splitlines() if line.startswith("[")))
    assert "airflow-provider-xai" in {p["package_name"] for p in providers}

    script = (
        "import json\n"
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}\n"
        "print('HOOK_META ' + json.dumps(meta['xai'].model_dump(mode='json')))\n"
    )
    output = installed.run("hook-meta", installed.bin / "python", "-c", script)
    meta = json.loads(next(line for line in output.splitlines() if line.startswith("HOOK_META "))[10:])
    assert meta["hook_name"] == "xAI"
    assert meta["hook_class_name"] == "airflow_provider_xai.hooks.xai.XAIHook"
    standard = meta["standard_fields"]
    assert standard["password"]["title"] == "API Key"
    assert standard["host"] == {"hidden": False, "title": "Base URL", "placeholder": "https://api.x.ai/v1"}
    assert standard["login"]["hidden"] and standard["port"]["hidden"]
    assert {"default_model", "timeout", "max_retries"} <= set(meta["extra_fields"])

    # The usage page's plugin, with Airflow's default (lazy) provider discovery.
    listed = installed.run("plugins", installed.bin / "airflow", "plugins", "-o", "json")
    plugins = json.loads(listed[listed.index("[") :])
    (usage,) = (p for p in plugins if p["name"] == "xai_usage")
    assert usage["fastapi_apps"][0]["url_prefix"] == "/xai-usage"
    assert usage["external_views"][0]["url_route"] == "xai-usage"


@pytest.fixture
def local_server(installed: Installed) -> Iterator[tuple[str, str]]:
    """``python -m airflow_provider_xai.testing --port 0`` from the venv: its root URL and connection."""
    log = installed.tmp / "local-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(installed.bin / "python"), "-m", "airflow_provider_xai.testing", "--port", "0"],
            cwd=installed.tmp,
            env=installed.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while not (match := re.search(r"^export AIRFLOW_CONN_XAI_DEFAULT='(.*)'$", log.read_text(), re.M)):
            assert proc.poll() is None, f"the local server exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the local server did not start:\n{log.read_text()}"
            time.sleep(0.2)
        yield match.group(1), log.read_text()
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: start_new_session=True
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert proc.wait(60) in (0, -signal.SIGTERM), log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_local_server_answers_and_an_example_dag_runs_against_it(
    installed: Installed, local_server: tuple[str, str]
) -> None:
    connection, banner = local_server
    conn = json.loads(connection)
    base_url, key = conn["host"], conn["password"]
    assert f"Local xAI server: {base_url}" in banner
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{base_url}/api-key", headers=auth, timeout=30).status_code == 200
    models = httpx.get(f"{base_url}/models", headers=auth, timeout=30)
    assert models.status_code == 200 and models.json()["data"]

    # The DAG file comes out of the installed package, not the checkout.
    shutil.copy(installed.package_dir / "example_dags" / "example_xai_chat.py", installed.tmp / "dags")
    output = installed.run(
        "dags-test-chat",
        installed.bin / "airflow",
        "dags",
        "test",
        "example_xai_chat",
        env={**installed.env, "AIRFLOW_CONN_XAI_DEFAULT": connection},
    )
    assert "state=success" in output and "state=failed" not in output, output[-4000:]
    journal = httpx.get(f"{base_url.removesuffix('/v1')}/_control/journal", timeout=30).json()
    chats = [e for e in journal if e["path"] == "/v1/chat/completions"]
    assert chats and all(e["status"] == 200 for e in chats)
    assert all(e["headers"]["user-agent"].startswith("airflow-provider-xai/") for e in chats)


def test_packaged_demo_runs_the_vision_example_with_its_sample_images(installed: Installed) -> None:
    """No ``--dags-folder``: the demo finds the example DAGs and their images inside the package."""
    demo = installed.tmp / "demo"
    output = installed.run(
        "demo-vision",
        installed.bin / "python",
        "-m",
        "airflow_provider_xai.testing.demo",
        "example_xai_vision",
        env={**installed.env, "XAI_DEMO_DIR": str(demo)},
    )
    assert "=== example_xai_vision: success" in output, output[-4000:]
    assert '{"dags_failed": 0}' in output
    log = (demo / "example_xai_vision.log").read_text()
    # Every sample image was described, read from the installed package's copy.
    for name in SAMPLE_IMAGES:
        assert f"{installed.package_dir}/example_dags/sample_images/{name}" in log, name
