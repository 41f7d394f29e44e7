"""Shared pieces of the benchmark suite: figures, rounds, servers in subprocesses, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
API_KEY = "xai-bench-key-0123456789"
CONN_ENV = "AIRFLOW_CONN_XAI_DEFAULT"
CHAT_BODY: dict[str, Any] = {
    "model": "grok-4.3",
    "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Say hello to the benchmark."},
    ],
}
#: The same conversation as a Responses API request (``POST /v1/responses``).
RESPONSES_BODY: dict[str, Any] = {
    "model": CHAT_BODY["model"],
    "input": [dict(m) for m in CHAT_BODY["messages"]],
}


@dataclass
class Figure:
    """One measured figure beside its target (``op``: ``<=``, ``<`` or ``>=``)."""

    key: str
    name: str
    value: float | None
    target: float | None
    unit: str = "x"
    op: str = "<="
    server: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def passed(self) -> bool | None:
        if self.error is not None or self.value is None:
            return False
        if self.target is None:
            return None
        compare = {"<=": float.__le__, "<": float.__lt__, ">=": float.__ge__}[self.op]
        return bool(compare(float(self.value), float(self.target)))

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "info"}[self.passed]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "verdict": self.verdict}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def alternate(rounds: int, contenders: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run every contender once per round, rotating the order each round; collect the results."""
    names = list(contenders)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(contenders[name]())
    return out


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-round ratios ``a[i] / b[i]`` (same round = same machine conditions)."""
    return [x / y for x, y in zip(a, b, strict=True)]


def bench_env(conn: dict[str, Any] | None = None) -> dict[str, str]:
    """Environment for benchmark processes: a throwaway AIRFLOW_HOME and the xAI connection."""
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(Path(tempfile.gettempdir()) / "xai-bench-airflow-home"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    env.pop("XAI_API_KEY", None)
    if conn is not None:
        env[CONN_ENV] = json.dumps(conn)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def apply_env(conn: dict[str, Any] | None = None) -> None:
    """Set :func:`bench_env` in this process (before Airflow is first imported)."""
    os.environ.update(bench_env(conn))


def connection(base_url: str, **extra: Any) -> dict[str, Any]:
    conn: dict[str, Any] = {"conn_type": "xai", "host": base_url, "password": API_KEY}
    if extra:
        conn["extra"] = extra
    return conn


@contextlib.contextmanager
def _process(args: list[str], pattern: str, timeout: float = 60.0) -> Iterator[str]:
    """Start a server process and yield the first stdout match of ``pattern`` (its address)."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=bench_env(), cwd=REPO
    )
    try:
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"server exited early: {' '.join(args)}")
            if match := re.search(pattern, line):
                yield match.group(1)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {' '.join(args)}")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def responder(
    latency: float = 0.0, ready_min: float = 1.0, ready_max: float = 3.0, video_bytes: int = 0
) -> Iterator[str]:
    """The minimal responder (``benchmarks/responder.py``) in its own process; yields ``.../v1``."""
    args = [sys.executable, "-m", "benchmarks.responder", "--latency", str(latency)]
    args += ["--ready-min", str(ready_min), "--ready-max", str(ready_max), "--video-bytes", str(video_bytes)]
    with _process(args, r"^port (\d+)") as port:
        yield f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def local_server(stream_interval: float = 0.0, latency: float = 0.0) -> Iterator[str]:
    """The bundled FastAPI server (``python -m airflow_provider_xai.testing``) in its own process."""
    args = [sys.executable, "-m", "airflow_provider_xai.testing", "--port", "0", "--api-key", API_KEY]
    args += ["--stream-interval", str(stream_interval), "--latency", str(latency)]
    with _process(args, r"Local xAI server: (\S+)") as base_url:
        yield base_url


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """High-water RSS of this process (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_child(module: str, *args: str, conn: dict[str, Any] | None = None, timeout: float = 120) -> Any:
    """Run ``python -m module args`` in a fresh interpreter; parse the JSON on its last stdout line."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=bench_env(conn),
        cwd=REPO,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    cpu_model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu_model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    packages = [
        "airflow-provider-xai",
        "apache-airflow",
        "httpx",
        "httpcore",
        "h11",
        "httpx-sse",
        "pydantic",
        "pydantic-core",
        "tenacity",
        "openai",
        "fastapi",
        "uvicorn",
        "pyinstrument",
    ]
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "load_average_at_start": load,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in packages},
    }
