"""The released artefacts, built once per session: sdist -> wheel -> a clean virtual environment.

Fixtures (registered in ``tests/conftest.py``):

* ``dist``: the sdist, built from the checkout with the project's build backend (hatchling, from
  ``[build-system] requires``), and the wheel built *from that sdist*;
* ``installed``: that wheel installed with ``-c constraints.txt`` into a fresh venv in a
  temporary directory, run with no ``PYTHONPATH`` and nothing of the checkout's environment, and
  a migrated Airflow home of its own. The release tests and the docs' newcomer test share it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

#: Generous per-command limits: a loaded 2-core machine slows these down a lot.
INSTALL_TIMEOUT = 1200
COMMAND_TIMEOUT = 600


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything pointing at the checkout or its test settings."""
    dropped = ("AIRFLOW", "_AIRFLOW", "XAI_", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


def run(
    cmd: Sequence[str | Path], log: Path, *, cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT
) -> str:
    """Run ``cmd`` to completion with its output in ``log``; fail with the output's tail."""
    with log.open("wb") as out:
        proc = subprocess.run(
            [str(c) for c in cmd],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    output = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{output[-4000:]}"
    return output


def pip(python: Path, *args: str | Path) -> list[str | Path]:
    """This interpreter's pip, installing into the environment of ``python`` (pip ``--python``)."""
    return [sys.executable, "-m", "pip", "--python", python, *args]


def wheel_install(python: Path, wheel: Path) -> list[str | Path]:
    """The one command that installs the wheel, pinned by the project's constraints."""
    return pip(python, "install", "--quiet", "--no-compile", "-c", REPO / "constraints.txt", wheel)


def _build_requires() -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return ["hatchling"]
    with (REPO / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["build-system"]["requires"])


@dataclass
class Dist:
    sdist: Path
    wheel: Path


@dataclass
class Installed:
    """A clean venv holding only the wheel and its dependencies, and a place to run in."""

    tmp: Path
    bin: Path
    env: dict[str, str]
    package_dir: Path
    wheel: Path

    def run(self, name: str, *args: str | Path, env: dict[str, str] | None = None) -> str:
        return run(args, self.tmp / f"{name}.log", cwd=self.tmp, env=env or self.env)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist (built from the checkout) and the wheel (built from the sdist)."""
    tmp = tmp_path_factory.mktemp("xai-release-build")
    out = tmp / "dist"
    env = clean_env()
    builder = tmp / "build-env"
    run([sys.executable, "-m", "venv", "--without-pip", builder], tmp / "venv.log", cwd=tmp, env=env)
    python = builder / "bin" / "python"
    run(pip(python, "install", "--quiet", *_build_requires()), tmp / "build-env.log", cwd=tmp, env=env)
    run(
        [python, "-c", "import sys; from hatchling.build import build_sdist; build_sdist(sys.argv[1])", out],
        tmp / "sdist.log",
        cwd=REPO,
        env=env,
    )
    (sdist,) = out.glob("*.tar.gz")
    run(
        pip(python, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", out, sdist),
        tmp / "wheel.log",
        cwd=tmp,
        env=env,
    )
    (wheel,) = out.glob("*.whl")
    return Dist(sdist=sdist, wheel=wheel)


@pytest.fixture(scope="session")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel installed into a fresh venv outside the repository, and a migrated Airflow DB.

    The venv (some 270 MB) is removed afterwards; the command logs stay with pytest's tmp dirs."""
    tmp = tmp_path_factory.mktemp("xai-release-venv")
    assert REPO not in tmp.parents
    venv = tmp / "venv"
    env = clean_env()
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp / "venv.log", cwd=tmp, env=env)
    python = venv / "bin" / "python"
    run(wheel_install(python, dist.wheel), tmp / "install.log", cwd=tmp, env=env, timeout=INSTALL_TIMEOUT)
    (tmp / "dags").mkdir()
    run_env = clean_env(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        AIRFLOW_HOME=str(tmp / "airflow-home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(tmp / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
    )
    located = run(
        [python, "-c", "import airflow_provider_xai as p; print(p.__file__)"],
        tmp / "where.log",
        cwd=tmp,
        env=run_env,
    )
    package_dir = Path(located.strip().splitlines()[-1]).parent
    assert venv in package_dir.parents, f"imported from {package_dir}, not from the venv"
    box = Installed(tmp=tmp, bin=venv / "bin", env=run_env, package_dir=package_dir, wheel=dist.wheel)
    try:
        box.run("db-migrate", box.bin / "airflow", "db", "migrate")
        yield box
    finally:
        shutil.rmtree(venv, ignore_errors=True)
