"""The policy of ``scripts/ensure_browser.py``: which browser is used or how one is installed,
given what the machine has. Facts are faked; nothing is run or installed."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from scripts import ensure_browser
from scripts.ensure_browser import APT, PLAYWRIGHT, SUDO_APT, Fail, Install, Use, decide

CHROMIUM = "/usr/bin/chromium"
PW_CHROME = "/home/dev/.cache/ms-playwright/chromium-1255/chrome-linux64/chrome"


@dataclass
class Facts:
    """A fake machine that records which facts ``decide`` read."""

    override: str | None = None
    override_works: bool = False
    system_browser: str | None = None
    playwright_browser: str | None = None
    apt_get: bool = True
    root: bool = False
    passwordless_sudo: bool = False
    playwright_installer: bool = True
    playwright_download_host: str = "cdn.playwright.dev"
    playwright_download_reachable: bool = False
    read: set[str] = field(default_factory=set)

    def __getattribute__(self, name: str) -> Any:
        if name in {f.name for f in fields(Facts)} - {"read"}:
            object.__getattribute__(self, "read").add(name)
        return object.__getattribute__(self, name)


def test_a_browser_on_the_machine_is_used_and_nothing_else_is_probed() -> None:
    facts = Facts(system_browser=CHROMIUM, root=True, playwright_download_reachable=True)
    assert decide(facts) == Use(CHROMIUM)
    assert facts.read == {"override", "system_browser"}  # no sudo, Playwright or network probe


def test_playwrights_downloaded_browser_is_used_when_there_is_no_system_one() -> None:
    facts = Facts(playwright_browser=PW_CHROME, root=True)
    assert decide(facts) == Use(PW_CHROME)
    assert not facts.read & {"apt_get", "root", "passwordless_sudo", "playwright_download_reachable"}


def test_the_system_browser_wins_over_playwrights() -> None:
    assert decide(Facts(system_browser=CHROMIUM, playwright_browser=PW_CHROME)) == Use(CHROMIUM)


def test_a_working_override_is_used_before_anything_is_looked_up() -> None:
    facts = Facts(override="/opt/chrome/chrome", override_works=True, system_browser=CHROMIUM)
    assert decide(facts) == Use("/opt/chrome/chrome")
    assert facts.read == {"override", "override_works"}


def test_a_broken_override_fails_rather_than_falling_back() -> None:
    decision = decide(Facts(override="/nope/chrome", system_browser=CHROMIUM, root=True))
    assert isinstance(decision, Fail)
    assert decision.line.startswith("XAI_E2E_CHROMIUM=/nope/chrome is not a Chromium or Chrome that runs")
    assert "\n" not in decision.line


@pytest.mark.parametrize(
    ("apt_get", "root", "sudo", "reachable", "methods"),
    [
        (True, True, False, False, (APT,)),
        (True, True, True, True, (APT, PLAYWRIGHT)),  # apt first, Playwright if apt fails
        (True, False, True, False, (SUDO_APT,)),
        (True, False, True, True, (SUDO_APT, PLAYWRIGHT)),
        (True, False, False, True, (PLAYWRIGHT,)),  # a developer without sudo
        (False, True, False, True, (PLAYWRIGHT,)),  # no apt (macOS, Fedora)
    ],
)
def test_install_methods(apt_get: bool, root: bool, sudo: bool, reachable: bool, methods: tuple[str]) -> None:
    facts = Facts(apt_get=apt_get, root=root, passwordless_sudo=sudo, playwright_download_reachable=reachable)
    assert decide(facts) == Install(methods)


def test_root_does_not_ask_sudo() -> None:
    facts = Facts(root=True)
    decide(facts)
    assert "passwordless_sudo" not in facts.read


@pytest.mark.parametrize(
    ("facts", "reasons"),
    [
        (
            Facts(),
            "apt-get needs root or passwordless sudo; "
            "Playwright's download host cdn.playwright.dev is unreachable",
        ),
        (
            Facts(apt_get=False, playwright_installer=False),
            "no apt-get here; the playwright package is not installed (make test installs it)",
        ),
    ],
)
def test_one_line_when_nothing_can_work(facts: Facts, reasons: str) -> None:
    decision = decide(facts)
    assert decision == Fail(
        f"no Chromium or Chrome found and none can be installed ({reasons}): "
        "install Chromium or Google Chrome, or set XAI_E2E_CHROMIUM to one"
    )


def test_one_line_when_every_install_failed() -> None:
    failed = ensure_browser.install_failed(
        ["apt-get install chromium: E: Unable to locate package chromium", "python -m playwright: boom"]
    )
    assert failed.line == (
        "no Chromium or Chrome found and installing one failed (apt-get install chromium: E: Unable "
        "to locate package chromium; python -m playwright: boom): install Chromium or Google Chrome, "
        "or set XAI_E2E_CHROMIUM to one"
    )


def test_candidates_in_order_of_preference() -> None:
    on_path = {"google-chrome": "/usr/bin/google-chrome", "chromium": CHROMIUM, "chrome": CHROMIUM}
    apps = {"/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"}
    found = ensure_browser.candidates(on_path.get, apps.__contains__)
    assert found == [CHROMIUM, "/usr/bin/google-chrome", *apps]


def test_download_urls_from_playwrights_dry_run() -> None:
    output = """Chrome for Testing 159.0.8154.6 (playwright chromium v1255)
  Install location:    /root/.cache/ms-playwright/chromium-1255
  Download url:        https://cdn.playwright.dev/builds/cft/159.0.8154.6/linux64/chrome-linux64.zip

FFmpeg (playwright ffmpeg v1013)
  Install location:    /root/.cache/ms-playwright/ffmpeg-1013
  Download url:        https://cdn.playwright.dev/dbazure/download/playwright/builds/ffmpeg/1013/ffmpeg-linux.zip
  Download fallback 1: https://playwright.download.prss.microsoft.com/builds/ffmpeg/1013/ffmpeg-linux.zip
"""
    assert ensure_browser.download_urls(output) == [
        "https://cdn.playwright.dev/builds/cft/159.0.8154.6/linux64/chrome-linux64.zip",
        "https://cdn.playwright.dev/dbazure/download/playwright/builds/ffmpeg/1013/ffmpeg-linux.zip",
        "https://playwright.download.prss.microsoft.com/builds/ffmpeg/1013/ffmpeg-linux.zip",
    ]


def test_last_error_prefers_apts_error_lines() -> None:
    apt = "Reading package lists...\nE: Unable to locate package chromium\nW: something else\n"
    assert ensure_browser.last_error(apt) == "E: Unable to locate package chromium"
    assert ensure_browser.last_error("one\ntwo\n") == "two"
    assert ensure_browser.last_error("") == "no output"


def fake_run(
    monkeypatch: pytest.MonkeyPatch, machines: list[Facts], outcomes: dict[str, str | None]
) -> list[str]:
    """Make ``ensure_browser()`` see ``machines`` one after the other (before and after each
    install) and its installers return ``outcomes``; the installers called, in order."""
    called: list[str] = []
    monkeypatch.setattr(ensure_browser, "LiveMachine", lambda: machines.pop(0))
    for method, outcome in outcomes.items():
        monkeypatch.setitem(
            ensure_browser.INSTALLERS, method, lambda m=method, o=outcome: called.append(m) or o
        )
    return called


def test_apt_failing_falls_back_to_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    machines = [Facts(root=True, playwright_download_reachable=True), Facts(playwright_browser=PW_CHROME)]
    called = fake_run(monkeypatch, machines, {APT: "apt-get install chromium: E: no", PLAYWRIGHT: None})
    assert ensure_browser.ensure_browser() == Use(PW_CHROME)
    assert called == [APT, PLAYWRIGHT]


def test_a_successful_install_stops_there(monkeypatch: pytest.MonkeyPatch) -> None:
    machines = [Facts(root=True, playwright_download_reachable=True), Facts(system_browser=CHROMIUM)]
    called = fake_run(monkeypatch, machines, {APT: None, PLAYWRIGHT: None})
    assert ensure_browser.ensure_browser() == Use(CHROMIUM)
    assert called == [APT]


def test_an_install_that_leaves_no_browser_counts_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    called = fake_run(monkeypatch, [Facts(root=True), Facts()], {APT: None})
    result = ensure_browser.ensure_browser()
    assert called == [APT]
    assert isinstance(result, Fail)
    assert "(apt-get finished but no working Chromium or Chrome appeared)" in result.line


def test_main_prints_the_path_or_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_run(monkeypatch, [Facts(system_browser=CHROMIUM), Facts(apt_get=False)], {})
    assert ensure_browser.main() == 0
    assert capsys.readouterr() == (f"{CHROMIUM}\n", "")
    assert ensure_browser.main() == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("ensure_browser: no Chromium or Chrome found")
