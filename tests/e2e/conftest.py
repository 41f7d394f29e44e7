"""Real Airflow processes for end-to-end tests.

One temporary ``AIRFLOW_HOME`` (SQLite, LocalExecutor) per test session: ``airflow db migrate``,
then ``airflow api-server`` on a free loopback port; the deployment test adds a scheduler,
dag-processor and triggerer. Airflow processes run as subprocesses with a clean environment
(none of the in-process test settings leak in), each in its own process group so that it and
its children are stopped by id in ``finally`` blocks. The local xAI server runs in a thread of
the test process with a random API key, so searching logs and pages for the key is meaningful.
Waits follow progress (``tests/e2e/waiting.py``), so a loaded machine slows them, not fails them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai.testing.runner import XAIServer
from airflow_provider_xai.testing.state import ServerState
from scripts import ensure_browser
from tests.conftest import REPO
from tests.e2e.waiting import file_sizes, wait_while_moving
from tests.helpers.services import free_port

AIRFLOW = Path(sys.executable).with_name("airflow")
DAGS_FOLDER = REPO / "example_dags"


class AirflowStack:
    """Airflow CLI processes sharing one AIRFLOW_HOME; ``stop_all`` ends every one of them."""

    def __init__(self, home: Path, settings: Mapping[str, str] | None = None) -> None:
        """``settings``: more environment for every process (``AIRFLOW__SECTION__KEY`` values)."""
        self.home = home
        self.api_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # Nothing from the test process's Airflow settings (unit-test mode, its own
        # AIRFLOW_HOME, connections) reaches the real deployment.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "XAI_"))}
        env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__TEST_CONNECTION="Enabled",
            AIRFLOW__CORE__PARALLELISM="8",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            # Log servers are unused (logs are local files); keep their ports off the defaults.
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
            PYTHONUNBUFFERED="1",
            XAI_EXAMPLE_DATA=f"file://{home}/example-data",  # example_xai_batch writes here
        )
        env.update(settings or {})
        self.env = env

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.out"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def run(self, name: str, *args: str) -> str:
        """Run ``airflow <args>`` to completion, waiting while it writes output; its output."""
        self.start(name, *args)
        proc = self.procs[name]
        wait_while_moving(
            lambda: proc.poll() is not None,
            lambda: file_sizes(self.log_path(name)),
            f"airflow {' '.join(args)} to finish",
        )
        del self.procs[name]
        assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{self.log(name)}"
        return self.log(name)

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        """Start ``airflow <args>`` in the background, output to ``$AIRFLOW_HOME/<name>.out``;
        ``env`` adds to this process's environment only."""
        assert name not in self.procs, f"{name} already started"
        with self.log_path(name).open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [str(AIRFLOW), *args],
                env={**self.env, **(env or {})},
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def serve(self) -> None:
        """Migrate the metadata DB and start the api-server; return once it is healthy."""
        self.run("db-migrate", "db", "migrate")
        self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        self.wait_healthy()

    def start_scheduling(self) -> None:
        """Start the scheduler, dag-processor and triggerer (stop them with ``stop_scheduling``)."""
        self.start("scheduler", "scheduler", "--skip-serve-logs")
        self.start("dag-processor", "dag-processor")
        self.start("triggerer", "triggerer", "--skip-serve-logs")

    def stop_scheduling(self) -> None:
        for name in ("triggerer", "dag-processor", "scheduler"):
            self.stop(name)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = self.log(name)[-3000:]
                raise AssertionError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def stop(self, name: str, grace: float = 15.0) -> None:
        """SIGTERM the process group we started, then SIGKILL it if it is still there."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)  # the group id is the pid: start_new_session=True
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                # children (executor workers, task runners) may outlive the leader briefly
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            time.sleep(0.5)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json())

    def wait_healthy(self, *components: str) -> None:
        """Wait until the api-server answers and each named component reports ``healthy``,
        as long as the health report changes or the processes write output."""
        names = ("metadatabase", *components)
        report: dict[str, Any] = {}

        def ok() -> bool:
            self.check_alive()
            health = self.health()
            report.update({c: health[c]["status"] for c in names})
            return all(status == "healthy" for status in report.values())

        def moved() -> tuple[Any, ...]:
            return tuple(report.items()), file_sizes(*map(self.log_path, self.procs))

        wait_while_moving(ok, moved, f"Airflow health {components or '(api-server)'} on {self.api_url}")

    def admin_password(self) -> str:
        return str(
            json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        )

    def client(self) -> httpx.Client:
        """An httpx client for ``/api/v2`` with an admin bearer token from ``/auth/token``."""
        response = httpx.post(
            f"{self.api_url}/auth/token",
            json={"username": "admin", "password": self.admin_password()},
            timeout=30,
        )
        response.raise_for_status()
        token = response.json()["access_token"]
        return httpx.Client(
            base_url=f"{self.api_url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def files_containing(self, needle: str, *more: Path) -> list[Path]:
        """Files under AIRFLOW_HOME (process output, task and trigger logs, the DB) and the
        directories ``more`` holding ``needle``."""
        data = needle.encode()
        hits = []
        for root in (self.home, *more):
            for path in root.rglob("*"):
                if path.is_file() and data in path.read_bytes():
                    hits.append(path)
        return hits


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium or Chrome the browser test drives: ``XAI_E2E_CHROMIUM`` (``make test`` sets
    it from ``scripts/ensure_browser.py``, which installs one when the machine has none), else one
    already on this machine. Without one the test errors at setup with one line; never a skip."""
    path = ensure_browser.find_browser()
    if path is not None:
        return path
    override = os.environ.get(ensure_browser.ENV_VAR)
    if override:
        pytest.fail(
            f"{ensure_browser.ENV_VAR}={override} is not a Chromium or Chrome that runs; "
            "unset it or point it at one",
            pytrace=False,
        )
    pytest.fail(
        "no Chromium or Chrome for the browser test: run `make test` (it installs one) "
        f"or `.venv/bin/python scripts/ensure_browser.py`, or set {ensure_browser.ENV_VAR}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def e2e_xai() -> Iterator[XAIServer]:
    """A local xAI server for the real deployment, with keys (API, management) that appear
    nowhere else, kept across ``reset()``."""
    management_key = f"xai-e2e-management-{secrets.token_hex(12)}"
    state = ServerState(f"xai-e2e-{secrets.token_hex(12)}", management_key=management_key)
    server = XAIServer(state=state).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """A migrated SQLite metadata DB and a running ``airflow api-server`` on loopback."""
    stack = AirflowStack(tmp_path_factory.mktemp("airflow-e2e-home"))
    try:
        stack.serve()
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="session")
def airflow_api(airflow_stack: AirflowStack) -> Iterator[httpx.Client]:
    with airflow_stack.client() as client:
        yield client


def put_connection(api: httpx.Client, conn_id: str, **fields: Any) -> None:
    """(Re)create the Airflow connection ``conn_id`` with ``fields`` through the REST API."""
    response = api.delete(f"/connections/{conn_id}")
    assert response.status_code in (204, 404), response.text
    response = api.post("/connections", json={"connection_id": conn_id, **fields})
    assert response.status_code == 201, response.text


def put_xai_connection(
    api: httpx.Client, server: XAIServer, conn_id: str = "xai_default", **extra: Any
) -> None:
    """(Re)create ``conn_id`` in the metadata DB, pointing at ``server`` (its API, and its
    Management API with the management key), through the REST API; ``extra`` adds to (or
    overrides) its extras."""
    put_connection(
        api,
        conn_id,
        conn_type="xai",
        host=server.base_url,
        password=server.api_key,
        extra=json.dumps({"default_model": "grok-4.3", "timeout": 60, "max_retries": 2,
                          **server.management_extra(), **extra}),
    )
