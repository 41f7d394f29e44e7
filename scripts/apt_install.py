"""Installing Debian packages for the test suite: the part ``ensure_browser.py`` and
``ensure_services.py`` share.

Whether apt-get can be used here (present, and we are root or have passwordless sudo) is one
decision, :func:`apt_method`; :func:`install_with_apt` runs ``apt-get install`` (with
``apt-get update`` first only if the install cannot find a package) and returns the reason it
failed, on one line, or ``None``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

APT = "apt-get"
SUDO_APT = "sudo apt-get"


class AptMachine(Protocol):
    """The facts :func:`apt_method` reads, each only when it gets to it."""

    @property
    def apt_get(self) -> bool: ...

    @property
    def root(self) -> bool: ...

    @property
    def passwordless_sudo(self) -> bool: ...


def apt_method(machine: AptMachine) -> tuple[str | None, str | None]:
    """``(APT or SUDO_APT, None)`` when apt-get can install here, else ``(None, why not)``."""
    if not machine.apt_get:
        return None, "no apt-get here"
    if machine.root:
        return APT, None
    if machine.passwordless_sudo:
        return SUDO_APT, None
    return None, "apt-get needs root or passwordless sudo"


class LiveApt:
    """The apt facts of the machine this runs on, each computed on first use."""

    @functools.cached_property
    def apt_get(self) -> bool:
        return shutil.which("apt-get") is not None

    @functools.cached_property
    def root(self) -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0

    @functools.cached_property
    def passwordless_sudo(self) -> bool:
        if shutil.which("sudo") is None:
            return False
        try:
            probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
        return probe.returncode == 0


def runs(*argv: str) -> bool:
    """``argv`` exits 0 (e.g. ``path --version``: the program can start at all)."""
    try:
        result = subprocess.run(
            list(argv), capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def last_error(output: str) -> str:
    """The line of a tool's output that says what went wrong (apt's ``E:`` lines first)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or ["no output"])[-1]


def run_quietly(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[bool, str]:
    """Run a command with its output captured: (succeeded, output)."""
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            check=False,
        )
    except OSError as error:
        return False, str(error)
    return result.returncode == 0, result.stdout + result.stderr


def install_with_apt(packages: Sequence[str], sudo: bool, why: str, say: Callable[[str], None]) -> str | None:
    """``apt-get install packages``, with ``apt-get update`` first only if the install fails;
    ``None`` on success, else the reason. ``why`` opens the one status line it says."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    prefix = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"] if sudo else []
    install = [*prefix, "apt-get", "install", "-y", "-qq", *packages]
    who = "with sudo" if sudo else "as root"
    names = " and ".join(packages)
    say(f"{why}; installing Debian's {names} ({who}): {' '.join(install)}")
    ok, output = run_quietly(install, env)
    if ok:
        return None
    say(f"apt-get install failed ({last_error(output)}); running apt-get update and trying again")
    ok, output = run_quietly([*prefix, "apt-get", "update", "-qq"], env)
    if ok:
        ok, output = run_quietly(install, env)
    return None if ok else f"apt-get install {' '.join(packages)}: {last_error(output)}"


def sayer(prefix: str) -> Callable[[str], None]:
    """A function printing one status line to stderr, after ``prefix``."""

    def say(line: str) -> None:
        print(prefix + line, file=sys.stderr, flush=True)

    return say
