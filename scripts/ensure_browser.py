"""Find, or else install, the Chromium or Chrome that the browser test drives; print its path.

``make test`` runs ``python scripts/ensure_browser.py`` before pytest and hands the printed path
to the tests as ``XAI_E2E_CHROMIUM`` (``tests/e2e/conftest.py`` reads it). Status goes to stderr,
one line per step; stdout holds only the path. In order:

1. ``XAI_E2E_CHROMIUM`` when it is set: that browser, or a failure if it does not run.
2. A Chromium or Chrome already on the machine: ``chromium``, ``chromium-browser``,
   ``google-chrome``, ``google-chrome-stable`` or ``chrome`` on ``PATH``, or the macOS apps.
3. Playwright's own downloaded Chromium (``python -m playwright install chromium``), if present.
4. Otherwise install one: Debian's ``chromium`` with apt-get when we are root or have
   passwordless sudo (``apt-get update`` only if the install cannot find the package), then
   Playwright's installer when its download host answers.
5. Otherwise one line saying why none could be had, and exit status 1.

A browser counts only if ``<browser> --version`` succeeds (Ubuntu's ``chromium-browser``
without snapd, for one, is a stub that does not). When one is there, this costs one
``--version`` call: nothing is updated or downloaded.

``decide`` is the whole policy, a pure function of the facts it is given; ``LiveMachine``
gathers those facts lazily, so a machine that has a browser is never probed for the rest.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

if not __package__:  # run as `python scripts/ensure_browser.py`: import `scripts` from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts import apt_install
from scripts.apt_install import APT, SUDO_APT, AptMachine, LiveApt, apt_method, last_error

ENV_VAR = "XAI_E2E_CHROMIUM"
PATH_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
APP_PATHS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
PLAYWRIGHT = "playwright"
APT_PACKAGE = "chromium"
PLAYWRIGHT_INSTALL = ("-m", "playwright", "install", "--no-shell", "chromium")
PREFIX = "ensure_browser: "
NOT_FOUND = "no Chromium or Chrome found"
HINT = f"install Chromium or Google Chrome, or set {ENV_VAR} to one"


# --- the policy ----------------------------------------------------------------------------


class Machine(AptMachine, Protocol):
    """What ``decide`` needs to know; each fact is read only when the decision gets to it."""

    @property
    def override(self) -> str | None:
        """The value of XAI_E2E_CHROMIUM, if set (non-empty)."""

    @property
    def override_works(self) -> bool: ...

    @property
    def system_browser(self) -> str | None:
        """The first working Chromium or Chrome on PATH or in the usual app locations."""

    @property
    def playwright_browser(self) -> str | None:
        """Playwright's downloaded Chromium, when it is installed and runs."""

    @property
    def playwright_installer(self) -> bool:
        """The ``playwright`` Python package is importable (it brings the installer)."""

    @property
    def playwright_download_host(self) -> str: ...

    @property
    def playwright_download_reachable(self) -> bool: ...


@dataclass(frozen=True)
class Use:
    """Use this executable."""

    path: str


@dataclass(frozen=True)
class Install:
    """Try these install methods in order (``APT``, ``SUDO_APT``, ``PLAYWRIGHT``) until one works."""

    methods: tuple[str, ...]


@dataclass(frozen=True)
class Fail:
    """Nothing to use and nothing to try: ``line`` says why, on one line."""

    line: str


def decide(machine: Machine) -> Use | Install | Fail:
    """What to do on ``machine``: use a browser, try installing one, or fail with one line."""
    if machine.override is not None:
        if machine.override_works:
            return Use(machine.override)
        return Fail(
            f"{ENV_VAR}={machine.override} is not a Chromium or Chrome that runs "
            f"(`{machine.override} --version` failed); unset it or point it at one"
        )
    found = machine.system_browser or machine.playwright_browser
    if found:
        return Use(found)

    methods: list[str] = []
    why_not: list[str] = []
    method, why = apt_method(machine)
    methods += [method] if method else []
    why_not += [why] if why else []
    if not machine.playwright_installer:
        why_not.append("the playwright package is not installed (make test installs it)")
    elif machine.playwright_download_reachable:
        methods.append(PLAYWRIGHT)
    else:
        why_not.append(f"Playwright's download host {machine.playwright_download_host} is unreachable")
    if methods:
        return Install(tuple(methods))
    return Fail(f"no Chromium or Chrome found and none can be installed ({'; '.join(why_not)}): {HINT}")


def install_failed(errors: Sequence[str]) -> Fail:
    """The one line for when every install method was tried and none left a working browser."""
    return Fail(f"no Chromium or Chrome found and installing one failed ({'; '.join(errors)}): {HINT}")


def candidates(which: Callable[[str], str | None], is_file: Callable[[str], bool]) -> list[str]:
    """Browser executables present, in order of preference, without duplicates."""
    found: list[str] = []
    for name in PATH_NAMES:
        path = which(name)
        if path and path not in found:
            found.append(path)
    found.extend(path for path in APP_PATHS if is_file(path) and path not in found)
    return found


def download_urls(dry_run_output: str) -> list[str]:
    """The URLs Playwright would download Chromium from, read from ``install --dry-run``."""
    return re.findall(r"Download (?:url|fallback \d+):\s*(\S+)", dry_run_output)


# --- the facts of this machine -------------------------------------------------------------


def runs(path: str) -> bool:
    """``path --version`` exits 0 (the browser can start at all)."""
    return apt_install.runs(path, "--version")


class LiveMachine(LiveApt):
    """The facts of the machine this runs on, each computed on first use."""

    @functools.cached_property
    def override(self) -> str | None:
        return os.environ.get(ENV_VAR) or None

    @functools.cached_property
    def override_works(self) -> bool:
        return self.override is not None and runs(self.override)

    @functools.cached_property
    def system_browser(self) -> str | None:
        return next(filter(runs, candidates(shutil.which, os.path.isfile)), None)

    @functools.cached_property
    def playwright_browser(self) -> str | None:
        if not self.playwright_installer:
            return None
        code = (
            "from playwright.sync_api import sync_playwright\n"
            "with sync_playwright() as p: print(p.chromium.executable_path)"
        )
        try:
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        path = result.stdout.strip()
        return path if result.returncode == 0 and path and os.path.isfile(path) and runs(path) else None

    @functools.cached_property
    def playwright_installer(self) -> bool:
        try:
            import playwright  # noqa: F401
        except ImportError:
            return False
        return True

    @functools.cached_property
    def _download_urls(self) -> list[str]:
        try:
            result = subprocess.run(
                [sys.executable, *PLAYWRIGHT_INSTALL[:3], "--dry-run", *PLAYWRIGHT_INSTALL[3:]],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return []
        return download_urls(result.stdout)

    @functools.cached_property
    def playwright_download_host(self) -> str:
        urls = self._download_urls
        return urllib.parse.urlsplit(urls[0]).netloc if urls else "(unknown)"

    @functools.cached_property
    def playwright_download_reachable(self) -> bool:
        """One of Playwright's download URLs answers a HEAD request (proxies from the env apply).
        If its dry run names none, let the installer itself try."""
        import urllib.error
        import urllib.request  # not at the top: most runs never get here, and it is slow to import

        urls = self._download_urls
        if not urls:
            return True
        for url in urls:
            try:
                with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10):
                    return True
            except urllib.error.HTTPError as error:
                if error.code < 400:
                    return True
            except (OSError, ValueError):
                continue
        return False


# --- doing it ------------------------------------------------------------------------------

say = apt_install.sayer(PREFIX)


def install_with_playwright() -> str | None:
    """Playwright's own Chromium download; ``None`` on success, else the reason."""
    command = " ".join(["python", *PLAYWRIGHT_INSTALL])
    say(f"no Chromium or Chrome found; downloading Playwright's Chromium: {command}")
    ok, output = apt_install.run_quietly([sys.executable, *PLAYWRIGHT_INSTALL])
    return None if ok else f"{command}: {last_error(output)}"


INSTALLERS: dict[str, Callable[[], str | None]] = {
    APT: lambda: apt_install.install_with_apt([APT_PACKAGE], False, NOT_FOUND, say),
    SUDO_APT: lambda: apt_install.install_with_apt([APT_PACKAGE], True, NOT_FOUND, say),
    PLAYWRIGHT: install_with_playwright,
}


def ensure_browser() -> Use | Fail:
    """Find a browser, or install one and find it; never raises for a missing browser."""
    decision = decide(LiveMachine())
    if not isinstance(decision, Install):
        return decision
    errors: list[str] = []
    for method in decision.methods:
        error = INSTALLERS[method]()
        if error is None:
            after = LiveMachine()
            found = after.system_browser or after.playwright_browser
            if found:
                say(f"installed: {found}")
                return Use(found)
            error = f"{method} finished but no working Chromium or Chrome appeared"
            if method == PLAYWRIGHT:  # its browser needs system libraries it does not bring
                error += " (missing system libraries? `python -m playwright install-deps chromium`)"
        errors.append(error)
    return install_failed(errors)


def find_browser() -> str | None:
    """A working browser already on this machine (XAI_E2E_CHROMIUM first); installs nothing."""
    machine = LiveMachine()
    if machine.override is not None:
        return machine.override if machine.override_works else None
    return machine.system_browser or machine.playwright_browser


def main() -> int:
    result = ensure_browser()
    if isinstance(result, Fail):
        say(result.line)
        return 1
    print(result.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
