"""A private ``redis-server`` on a free loopback port, for tests and benchmarks.

The binary is ``XAI_TEST_REDIS_SERVER`` when set, else ``redis-server`` on PATH (Debian's
``redis-server`` package); a missing binary raises :class:`RedisServerMissing` with one clear
line, so a test fails (never skips) on a machine that lacks it. Nothing is saved to disk.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ENV_BINARY = "XAI_TEST_REDIS_SERVER"


class RedisServerMissing(RuntimeError):
    """No redis-server binary could be found."""


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    password: str

    def connection(self) -> dict[str, object]:
        """An Airflow connection (JSON form) for this server."""
        return {"conn_type": "redis", "host": self.host, "port": self.port, "password": self.password}


def redis_server_binary() -> str:
    binary = os.environ.get(ENV_BINARY) or shutil.which("redis-server")
    if not binary or not os.access(binary, os.X_OK):
        raise RedisServerMissing(
            "redis-server not found: install it (Debian: apt-get install redis-server) "
            f"or set {ENV_BINARY} to its path"
        )
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@contextmanager
def redis_server(password: str = "xai-test-redis-password", startup_timeout: float = 60.0) -> Iterator[RedisServer]:
    """Run redis-server on 127.0.0.1 (a free port) until the block ends."""
    binary = redis_server_binary()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="xai-redis-") as workdir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--requirepass", password],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + startup_timeout
            while not _answers(port):
                if process.poll() is not None:
                    detail = process.stderr.read().decode(errors="replace")[-500:] if process.stderr else ""
                    raise RuntimeError(f"redis-server exited with {process.returncode}: {detail}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {port} in {startup_timeout:g}s")
                time.sleep(0.05)
            yield RedisServer("127.0.0.1", port, password)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


__all__ = ["ENV_BINARY", "RedisServer", "RedisServerMissing", "redis_server", "redis_server_binary"]
