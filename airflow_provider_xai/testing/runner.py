"""``XAIServer``: run the local xAI server with uvicorn in a background thread."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_xai.testing.state import (
    DEFAULT_API_KEY,
    Chaos,
    Fault,
    JournalEntry,
    ServerState,
)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback(host: str, allow_non_loopback: bool = False) -> None:
    """Raise ``ValueError`` for a non-loopback ``host`` unless ``allow_non_loopback``."""
    if not allow_non_loopback and not is_loopback(host):
        raise ValueError(
            f"refusing non-loopback host {host!r}: the local xAI server is a test double "
            "(allow it with allow_non_loopback=True, or --allow-non-loopback on the command line)"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket (``port=0`` picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP so asyncio enables TCP_NODELAY on accepted connections (else ~40 ms each)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def make_uvicorn_server(state: ServerState, path_prefix: str = "") -> Any:
    """A configured ``uvicorn.Server`` for ``create_app(state, path_prefix)``."""
    import uvicorn

    from airflow_provider_xai.testing.server import create_app

    config = uvicorn.Config(
        create_app(state, path_prefix), log_level="warning", lifespan="off", loop="asyncio",
        http="h11", ws="none", access_log=False, timeout_graceful_shutdown=2,
        log_config=None,  # leave the host process's logging configuration alone
    )
    return uvicorn.Server(config)


class XAIServer:
    """A local xAI-compatible server on a loopback port, for tests.

    ``with XAIServer() as server: httpx.get(server.base_url + "/models", ...)``. A host that
    is not loopback raises ``ValueError`` unless ``allow_non_loopback=True``. Other keyword
    arguments are config fields (``state.CONFIG_FIELDS``), e.g. ``rate_limit_rps=5``.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        path_prefix: str = "",
        *,
        state: ServerState | None = None,
        allow_non_loopback: bool = False,
        **config: Any,
    ) -> None:
        check_loopback(host, allow_non_loopback)
        self.state = state if state is not None else ServerState(api_key=api_key)
        self.state.configure(**config)
        self.host = host
        self.path_prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self._requested_port = port
        self._port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> XAIServer:
        """Start serving in a daemon thread; returns once connections are accepted."""
        if self._thread is not None:
            return self
        sock = bind_socket(self.host, self._requested_port)
        self._port = sock.getsockname()[1]
        self._server = make_uvicorn_server(self.state, self.path_prefix)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="xai-local-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("local xAI server failed to start")
            time.sleep(0.005)
        with socket.create_connection((self.host, self.port), timeout=timeout):
            pass
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and join its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        self._thread = None
        self._server = None

    def __enter__(self) -> XAIServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- addresses ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` + path prefix (control endpoints live under it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path_prefix}"

    @property
    def base_url(self) -> str:
        """The API base URL (``.../v1``), what clients use as ``base_url``."""
        return f"{self.root_url}/v1"

    @property
    def management_key(self) -> str:
        return self.state.management_key

    @property
    def management_url(self) -> str:
        """The Management API's base URL (collections), what ``management_base_url`` holds."""
        return f"{self.root_url}/management"

    def management_extra(self) -> dict[str, str]:
        """The connection extras that reach this server's Management API with its key."""
        return {"management_key": self.management_key, "management_base_url": self.management_url}

    def connection_json(self, **extra: Any) -> str:
        """Airflow connection (JSON form) for ``AIRFLOW_CONN_XAI_DEFAULT``."""
        conn: dict[str, Any] = {"conn_type": "xai", "host": self.base_url,
                                "password": self.api_key}
        if extra:
            conn["extra"] = extra
        return json.dumps(conn)

    def connection_uri(self, **extra: Any) -> str:
        """Airflow connection URI (host = ``base_url``), encoded like Airflow's ``get_uri``."""
        protocol, rest = self.base_url.split("://", 1)
        uri = f"xai://{protocol}://:{quote(self.api_key, safe='')}@{quote(rest, safe='')}"
        if extra:
            uri += "/?" + urlencode({"__extra__": json.dumps(extra)})
        return uri

    # -- state helpers ----------------------------------------------------------------
    def enqueue(self, fault: Fault, times: int = 1) -> None:
        self.state.enqueue(fault, times)

    def set_chaos(self, chaos: Chaos | None) -> None:
        self.state.set_chaos(chaos)

    def configure(self, **values: Any) -> None:
        self.state.configure(**values)

    def reset(self) -> None:
        self.state.reset()

    @property
    def journal(self) -> list[JournalEntry]:
        return self.state.journal

    @property
    def rate_limited(self) -> dict[str, int]:
        """Requests refused with 429 by the rate limits, by limit name."""
        return self.state.rate_limited

    def requests(
        self, path_suffix: str | None = None, method: str | None = None
    ) -> list[JournalEntry]:
        return self.state.requests(path_suffix, method)
