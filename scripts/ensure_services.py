"""Find, or else install, the Redis and PostgreSQL servers that tests start; print where they are.

The Celery deployment test (``make test-scale``) starts a Redis broker and a PostgreSQL
metadata database of its own on loopback, and the shared rate limiter's tests start a Redis.
This prints, one per line on stdout, shell assignments for ``eval``::

    XAI_TEST_REDIS_SERVER=/usr/bin/redis-server
    XAI_TEST_PG_BIN=/usr/lib/postgresql/15/bin

Status goes to stderr, one line per step. For each server, in order:

1. Its variable when set: that program (or directory), or a failure if it does not run.
2. One already on the machine: ``redis-server`` on ``PATH`` or in the usual places; the
   PostgreSQL server binaries (``initdb``, ``postgres``, ``pg_isready``, ``createdb``) in the
   newest ``/usr/lib/postgresql/<version>/bin`` (Debian, Ubuntu), beside ``postgres`` or
   ``initdb`` on ``PATH``, or in ``pg_config --bindir``.
3. Otherwise install what is missing with one ``apt-get install`` (Debian's ``redis-server``,
   ``postgresql``) when we are root or have passwordless sudo.
4. Otherwise one line saying why, and exit status 1.

When both are there this costs a ``--version`` call each: nothing is updated or installed.
``decide`` is the whole policy, a pure function of the facts it is given; ``LiveMachine``
gathers them lazily.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

if not __package__:  # run as `python scripts/ensure_services.py`: import `scripts` from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts import apt_install
from scripts.apt_install import AptMachine, LiveApt, apt_method

PREFIX = "ensure_services: "
#: What the PostgreSQL tests run from its bin directory.
PG_PROGRAMS = ("initdb", "postgres", "pg_isready", "createdb")


@dataclass(frozen=True)
class Service:
    """A server the tests start: the variable naming it, what it is, Debian's package for it,
    and what its variable must point at."""

    env_var: str
    what: str
    apt_package: str
    wanted: str


REDIS = Service("XAI_TEST_REDIS_SERVER", "redis-server", "redis-server", "a redis-server that runs")
POSTGRES = Service(
    "XAI_TEST_PG_BIN",
    "PostgreSQL server",
    "postgresql",
    f"a directory whose {', '.join(PG_PROGRAMS)} run (e.g. /usr/lib/postgresql/15/bin)",
)
SERVICES = (REDIS, POSTGRES)


# --- the policy ----------------------------------------------------------------------------


class Machine(AptMachine, Protocol):
    """What ``decide`` needs to know; each fact is read only when the decision gets to it."""

    def override(self, service: Service) -> str | None:
        """The value of the service's variable, if set (non-empty)."""

    def override_works(self, service: Service) -> bool: ...

    def found(self, service: Service) -> str | None:
        """A working copy already on the machine."""


@dataclass(frozen=True)
class Use:
    """Use these: environment variable -> path."""

    paths: dict[str, str]


@dataclass(frozen=True)
class Install:
    """Install ``packages`` with ``method`` (``APT`` or ``SUDO_APT``); ``found`` is already here."""

    method: str
    packages: tuple[str, ...]
    found: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    """Nothing to use and nothing to try: ``line`` says why, on one line."""

    line: str


def hint(services: Iterable[Service]) -> str:
    return "; ".join(
        f"install Debian's {s.apt_package} (apt-get install {s.apt_package}) or set {s.env_var}"
        for s in services
    )


def decide(machine: Machine) -> Use | Install | Fail:
    """What to do on ``machine``: use what is there, install what is missing, or fail in one line."""
    found: dict[str, str] = {}
    missing: list[Service] = []
    for service in SERVICES:
        override = machine.override(service)
        if override is not None:
            if not machine.override_works(service):
                return Fail(
                    f"{service.env_var}={override} is not {service.wanted}; unset it or point it at one"
                )
            found[service.env_var] = override
        elif path := machine.found(service):
            found[service.env_var] = path
        else:
            missing.append(service)
    if not missing:
        return Use(found)
    method, why_not = apt_method(machine)
    if method is None:
        names = " and ".join(s.what for s in missing)
        return Fail(f"no {names} found and none can be installed ({why_not}): {hint(missing)}")
    return Install(method, tuple(s.apt_package for s in missing), found)


def install_failed(error: str, missing: Sequence[Service]) -> Fail:
    """The one line for when the install did not leave a working server."""
    names = " and ".join(s.what for s in missing)
    return Fail(f"no {names} found and installing failed ({error}): {hint(missing)}")


def version_key(path: str) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> ``(15,)``, so that 16 sorts above 9.6."""
    match = re.search(r"/(\d+(?:\.\d+)*)/bin/?$", path)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def pg_bin_candidates(
    debian_dirs: Iterable[str], which: Callable[[str], str | None], pg_config_bindir: str | None
) -> list[str]:
    """PostgreSQL bin directories to try, in order, without duplicates: Debian's, newest
    first; those of ``postgres`` and ``initdb`` on PATH; ``pg_config --bindir``."""
    ordered = sorted(debian_dirs, key=version_key, reverse=True)
    ordered += [os.path.dirname(p) for p in (which("postgres"), which("initdb")) if p]
    ordered += [pg_config_bindir] if pg_config_bindir else []
    return list(dict.fromkeys(ordered))


def redis_candidates(which: Callable[[str], str | None], is_file: Callable[[str], bool]) -> list[str]:
    """``redis-server`` executables present, in order of preference, without duplicates."""
    usual = ("/usr/bin/redis-server", "/usr/local/bin/redis-server", "/opt/homebrew/bin/redis-server")
    return list(dict.fromkeys(p for p in (which("redis-server"), *usual) if p and is_file(p)))


def shell_lines(paths: dict[str, str]) -> str:
    """``NAME=value`` lines, values quoted for the shell, in the services' order."""
    return "".join(
        f"{s.env_var}={shlex.quote(paths[s.env_var])}\n" for s in SERVICES if s.env_var in paths
    )


# --- the facts of this machine -------------------------------------------------------------


def redis_works(path: str) -> bool:
    return apt_install.runs(path, "--version")


def pg_bin_works(directory: str) -> bool:
    """``directory`` holds the programs the tests run, and ``postgres --version`` works."""
    programs = [os.path.join(directory, name) for name in PG_PROGRAMS]
    return all(os.access(p, os.X_OK) for p in programs) and apt_install.runs(programs[1], "--version")


def pg_config_bindir() -> str | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    ok, output = apt_install.run_quietly([pg_config, "--bindir"])
    return output.strip() if ok and output.strip() else None


WORKS: dict[Service, Callable[[str], bool]] = {REDIS: redis_works, POSTGRES: pg_bin_works}


def candidates(service: Service) -> list[str]:
    if service is REDIS:
        return redis_candidates(shutil.which, os.path.isfile)
    return pg_bin_candidates(glob.glob("/usr/lib/postgresql/*/bin"), shutil.which, pg_config_bindir())


class LiveMachine(LiveApt):
    """The facts of the machine this runs on, each computed on first use."""

    def override(self, service: Service) -> str | None:
        return os.environ.get(service.env_var) or None

    @functools.cache  # noqa: B019 (one short-lived machine per run)
    def override_works(self, service: Service) -> bool:
        override = self.override(service)
        return override is not None and WORKS[service](override)

    @functools.cache  # noqa: B019
    def found(self, service: Service) -> str | None:
        return next(filter(WORKS[service], candidates(service)), None)


# --- doing it ------------------------------------------------------------------------------

say = apt_install.sayer(PREFIX)


def ensure_services() -> Use | Fail:
    """Find both servers, or install what is missing and find it; never raises for a missing one."""
    decision = decide(LiveMachine())
    if not isinstance(decision, Install):
        return decision
    missing = [s for s in SERVICES if s.env_var not in decision.found]
    names = " and ".join(s.what for s in missing)
    error = apt_install.install_with_apt(
        decision.packages, decision.method == apt_install.SUDO_APT, f"no {names} found", say
    )
    if error is not None:
        return install_failed(error, missing)
    after = LiveMachine()
    paths = dict(decision.found)
    for service in missing:
        path = after.found(service)
        if path is None:
            return install_failed(f"apt-get finished but no working {service.what} appeared", missing)
        say(f"installed: {path}")
        paths[service.env_var] = path
    return Use(paths)


def find(service: Service) -> str | None:
    """A working copy of ``service`` already on this machine (its variable first); installs nothing."""
    machine = LiveMachine()
    if machine.override(service) is not None:
        return machine.override(service) if machine.override_works(service) else None
    return machine.found(service)


def main() -> int:
    result = ensure_services()
    if isinstance(result, Fail):
        say(result.line)
        return 1
    print(shell_lines(result.paths), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
