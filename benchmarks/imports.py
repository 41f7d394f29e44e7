"""3. DAG-parse cost: importing the provider's operator, sensor and decorator modules.

Each run is a fresh ``python -X importtime`` that imports ``airflow.sdk`` (the baseline every
DAG file pays) and then the provider modules. The figure is the median, over runs, of the
time spent in the provider imports' own subtrees (everything ``-X importtime`` nests under the
``airflow_provider_xai...`` top-level entries, so Airflow modules that only the provider pulls
in, such as ``airflow.sdk.bases.decorator``, count against it); the wall time of the provider
imports after ``import airflow.sdk`` in the same process is shown beside it. Subtracting two
separate processes' totals is not used: ``import airflow.sdk`` alone varies by hundreds of
milliseconds between runs on a shared machine, which would drown a ~10 ms difference.
The subtree must not contain anything heavy: the testing server (FastAPI, uvicorn), the HTTP
stack (httpx, httpx-sse, tenacity) or the hook and schema modules that build pydantic models.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Figure, apply_env, bench_env, median

EXPECTED = [
    "airflow_provider_xai.operators.chat",
    "airflow_provider_xai.operators.vision",
    "airflow_provider_xai.sensors.usage",
    "airflow_provider_xai.decorators.xai",
]
HEAVY = (
    "fastapi",
    "uvicorn",
    "starlette",
    "airflow_provider_xai.testing",
    "httpx",
    "httpx_sse",
    "httpcore",
    "tenacity",
    "openai",
    "airflow_provider_xai.hooks",
    "airflow_provider_xai.schemas",
    "airflow_provider_xai.triggers",
)


def provider_modules() -> tuple[list[str], list[str]]:
    """(present, missing): the expected modules plus any other operator/sensor/decorator module."""
    found = set()
    for package in ("operators", "sensors", "decorators"):
        for path in (REPO / "airflow_provider_xai" / package).glob("*.py"):
            if path.stem != "__init__":
                found.add(f"airflow_provider_xai.{package}.{path.stem}")
    present = [m for m in EXPECTED if m in found] + sorted(found - set(EXPECTED))
    return present, [m for m in EXPECTED if m not in found]


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """``-X importtime`` lines as (level, self_us, cumulative_us, module)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "| imported package" in line:
            continue
        self_us, cum_us, name = line[len("import time:") :].split("|", 2)
        stripped = name.rstrip()
        label = stripped.lstrip()
        rows.append(((len(stripped) - len(label) - 1) // 2, int(self_us), int(cum_us), label))
    return rows


def subtrees(rows: list[tuple[int, int, int, str]], prefix: str) -> tuple[int, dict[str, int]]:
    """Cumulative µs of top-level entries starting with ``prefix``, and every module (self µs)
    inside those subtrees (importtime prints children before their parent)."""
    total, modules, pending = 0, {}, []
    for level, self_us, cum_us, name in rows:
        if level > 0:
            pending.append((name, self_us))
            continue
        if name.startswith(prefix):
            total += cum_us
            modules[name] = self_us
            modules.update(pending)
        pending = []
    return total, modules


def _run(modules: list[str]) -> tuple[list[tuple[int, int, int, str]], dict[str, float]]:
    """One fresh ``python -X importtime``: import airflow.sdk, then the modules, timing both."""
    code = (
        "import time, json; t0 = time.perf_counter(); import airflow.sdk; t1 = time.perf_counter()\n"
        + "".join(f"import {m}\n" for m in modules)
        + "t2 = time.perf_counter(); print(json.dumps({'sdk_ms': (t1 - t0) * 1e3, 'added_ms': (t2 - t1) * 1e3}))"
    )
    env = bench_env()
    # Installed packages have their bytecode cached; measure that, not compiling sources
    # (PYTHONDONTWRITEBYTECODE may be set in a dev shell). The prefix keeps .pyc out of the repo.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "xai-bench-pycache")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"import failed: {modules}\n{proc.stderr[-2000:]}")
    return parse_importtime(proc.stderr), json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Figure]:
    present, missing = provider_modules()
    rounds = 3 if quick else 7
    _run(present)  # write the .pyc files once so no measured run pays for compiling
    added, wall_added, sdk = [], [], []
    module_times: dict[str, list[int]] = defaultdict(list)
    for _ in range(rounds):
        rows, times = _run(present)
        sub, modules = subtrees(rows, "airflow_provider_xai")
        added.append(sub / 1000)
        wall_added.append(times["added_ms"])
        sdk.append(times["sdk_ms"])
        for name, self_us in modules.items():
            module_times[name].append(self_us)
    heavy = sorted(m for m in module_times if m.startswith(HEAVY))
    own = {m: median(v) / 1000 for m, v in module_times.items() if m.startswith("airflow_provider_xai")}
    pulled = {
        m: median(v) / 1000 for m, v in module_times.items() if not m.startswith("airflow_provider_xai")
    }
    detail: dict[str, Any] = {
        "imported": present,
        "missing": missing,
        "rounds": rounds,
        "provider_subtree_ms_runs": [round(x, 1) for x in added],
        "wall_ms_after_airflow_sdk_runs": [round(x, 1) for x in wall_added],
        "import_airflow_sdk_ms": round(median(sdk), 1),
        "provider_modules_self_ms": {k: round(v, 2) for k, v in sorted(own.items())},
        "other_modules_pulled_in_ms": {
            k: round(v, 2) for k, v in sorted(pulled.items(), key=lambda kv: -kv[1])
        },
    }
    return [
        Figure(
            "3a_dag_parse_import",
            "import operator/sensor/decorator modules on top of airflow.sdk",
            median(added),
            30.0,
            unit="ms",
            server="no server (fresh interpreters, -X importtime)",
            detail=detail,
        ),
        Figure(
            "3b_heavy_imports_at_parse",
            "heavy modules in the provider's parse-time import subtree",
            float(len(heavy)),
            0.0,
            unit="modules",
            server="-",
            detail={"heavy": heavy, "checked_prefixes": list(HEAVY)},
        ),
    ]


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
