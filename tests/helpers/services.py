"""A PostgreSQL server of the test's own: loopback, a free port, a temporary directory.

The binaries come from ``XAI_TEST_PG_BIN`` (``make`` sets it, with ``XAI_TEST_REDIS_SERVER``,
from ``scripts/ensure_services.py``, which installs them when missing), else from the machine; a
test without them fails at setup with one line, never skips. The server runs in a process group
of its own, is waited on by its progress (``tests/e2e/waiting.py``) and is shut down cleanly
with a fast shutdown (``SIGINT``) before its directory goes. (A Redis of the test's own comes
from ``airflow_provider_xai.testing.redis_server``.)

PostgreSQL refuses to run as root (``initdb: error: cannot be run as root``), so as root the
cluster is made and run as an unprivileged account (``postgres`` when the machine has one, else
``nobody``) in a directory of its own under the system temp dir (pytest's are root-only).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from scripts import ensure_services
from scripts.ensure_services import POSTGRES, Service
from tests.e2e.waiting import file_sizes, wait_while_moving

#: PostgreSQL settings for a throwaway cluster: loopback TCP only, no durability.
PG_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def program(service: Service) -> str:
    """The service's program (or bin directory), or fail the test with one line."""
    found = ensure_services.find(service)
    if found is not None:
        return found
    override = os.environ.get(service.env_var)
    why = f"{service.env_var}={override} is not {service.wanted}" if override else f"no {service.what} here"
    pytest.fail(
        f"{why}: run `.venv/bin/python scripts/ensure_services.py` (it installs one) or set {service.env_var}",
        pytrace=False,
    )


class _Server:
    """A server process in its own process group, its output in ``log``."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], **kwargs: Any) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **kwargs,
            )

    def _wait_ready(self, ready: Any, what: str) -> None:
        def done() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{what} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            return bool(ready())

        wait_while_moving(done, lambda: file_sizes(self.log), f"{what} on port {self.port}", interval=0.2)

    def _stop(self, sig: int, what: str) -> None:
        """Send ``sig`` to the server and wait while it shuts down; SIGKILL only if it stalls."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            wait_while_moving(
                lambda: proc.poll() is not None, lambda: file_sizes(self.log), f"{what} to stop", stall=60
            )
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class PostgresServer(_Server):
    """A fresh PostgreSQL cluster on 127.0.0.1 with a database ``airflow`` owned by the
    superuser ``airflow`` (trust authentication: loopback only, and gone after the test)."""

    user = "airflow"
    database = "airflow"

    def __init__(self, bin_dir: str | None = None) -> None:
        self.bin_dir = Path(bin_dir or program(POSTGRES))
        self.run_as = _unprivileged_account() if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="xai-test-pg-"))
        super().__init__(self.root / "postgres.log")
        self.data = self.root / "data"
        if self.run_as is not None:
            os.chown(self.root, self.run_as.pw_uid, self.run_as.pw_gid)

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg2)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _as_owner(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}

    def _run(self, name: str, *args: str, owner: bool = False) -> None:
        argv = [str(self.bin_dir / name), *args]
        kwargs = self._as_owner() if owner else {}
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                                cwd=self.root, **kwargs)
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}"

    def ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", "postgres"], stdin=subprocess.DEVNULL, check=False,
        )
        return result.returncode == 0

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", owner=True)
        settings = [arg for name, value in PG_SETTINGS.items() for arg in ("-c", f"{name}={value}")]
        self._spawn([str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port), *settings],
                    cwd=self.root, **self._as_owner())
        self._wait_ready(self.ready, "postgres")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)
        return self

    def stop(self) -> None:
        try:
            self._stop(signal.SIGINT, "postgres")  # SIGINT: fast shutdown (roll back, checkpoint, exit)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise AssertionError("running as root and the machine has neither a postgres nor a nobody account")
