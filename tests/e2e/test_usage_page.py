"""The "xAI usage" page in the real Airflow 3.3 UI, driven in headless Chromium.

Two example DAGs run for real (``airflow dags test`` against the local xAI server) into the
shared e2e metadata DB. A second api-server on it uses a small test auth manager
(``tests/helpers/auth.py``: user ``analyst`` may not read ``example_xai_usage``). Logged out,
the page and its data answer 401 with nothing in them. Logged in as admin, "xAI usage" is in
the navigation, and the numbers on the page equal the sum of the usage records in the DB (read
here with plain SQL, not the page's code); runs link to their Airflow pages. As ``analyst``
the denied DAG's usage is nowhere on the page and the totals are the other DAGs' sum. The
screenshots in docs/ are taken from this page, light and dark.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_xai.testing.runner import XAIServer
from tests.conftest import REPO
from tests.e2e.conftest import AirflowStack, free_port, put_xai_connection
from tests.e2e.test_connection_ui import CHROMIUM_ARGS
from tests.e2e.waiting import TEST_TIMEOUT
from tests.helpers.auth import DENIED_DAG, RESTRICTED_USER

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(TEST_TIMEOUT)]

EXAMPLES = ("example_xai_usage", "example_xai_search")
SCREENSHOTS = {scheme: REPO / "docs" / "img" / f"xai-usage-{scheme}.png" for scheme in ("light", "dark")}


@dataclass
class PageServer:
    """The api-server with the test auth manager, on the shared e2e DB."""

    url: str
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def usage_runs(airflow_stack: AirflowStack, airflow_api: Any, e2e_xai: XAIServer) -> tuple[str, ...]:
    """Real runs of the example DAGs that write usage (in-process ``airflow dags test``)."""
    put_xai_connection(airflow_api, e2e_xai)
    for dag_id in EXAMPLES:
        airflow_stack.run(f"dags-test-{dag_id}", "dags", "test", dag_id)
    return EXAMPLES


@pytest.fixture(scope="module")
def page_server(airflow_stack: AirflowStack, usage_runs: tuple[str, ...]) -> Iterator[PageServer]:
    stack = AirflowStack(airflow_stack.home)  # same AIRFLOW_HOME and DB, its own port and processes
    passwords = stack.home / "usage-page-passwords.json"
    stack.env.update(
        AIRFLOW__CORE__AUTH_MANAGER="tests.helpers.auth.DenyOneDagAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"admin:admin,{RESTRICTED_USER}:viewer",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    stack.api_port = free_port()
    try:
        stack.start("usage-page-api", "api-server", "--host", "127.0.0.1", "--port", str(stack.api_port))
        stack.wait_healthy()
        yield PageServer(stack.api_url, json.loads(passwords.read_text()))
    finally:
        stack.stop_all()


def expected_totals(home: Path, dag_ids: set[str], since: float) -> dict[str, dict[str, int]]:
    """Per DAG: the sum of its usage records in the DB, by the counting rule, with plain SQL."""
    db = sqlite3.connect(home / "airflow.db")
    try:
        rows = db.execute("SELECT dag_run_id, task_id, map_index, key, dag_id, value FROM xcom "
                          "WHERE key IN ('xai_usage_ledger', 'xai_usage')").fetchall()
    finally:
        db.close()
    ledgers = {(r[0], r[1], r[2]) for r in rows if r[3] == "xai_usage_ledger"}
    out: dict[str, dict[str, int]] = {}
    for run, task, index, key, dag_id, value in rows:
        if dag_id not in dag_ids or (key == "xai_usage" and (run, task, index) in ledgers):
            continue
        loaded = json.loads(value)
        for record in loaded if isinstance(loaded, list) else [loaded]:
            if record["timestamp"] < since:
                continue
            sums = out.setdefault(dag_id, {"requests": 0, "total_tokens": 0, "ticks": 0, "tools": 0})
            sums["requests"] += record.get("requests", 1)
            sums["total_tokens"] += record["total_tokens"]
            sums["ticks"] += round((record["cost_usd"] or 0) * 10**10)
            sums["tools"] += record.get("num_server_side_tools_used", 0)
    return out


def add(groups: list[dict[str, int]]) -> dict[str, int]:
    return {name: sum(g[name] for g in groups) for name in ("requests", "total_tokens", "ticks", "tools")}


@pytest.fixture
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(browser: Any, server: PageServer, user: str, scheme: str = "light") -> Any:
    page = browser.new_page(viewport={"width": 1440, "height": 1500}, color_scheme=scheme)
    page.set_default_timeout(60_000)
    page.goto(f"{server.url}/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(server.passwords[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/")
    return page


def open_usage_page(page: Any) -> Any:
    """Click "xAI usage" in the UI's navigation; the page's frame once its data is drawn."""
    page.get_by_role("link", name="xAI usage").click()
    page.wait_for_url("**/plugin/xai-usage")
    frame = page.frame_locator("iframe")
    frame.locator("body[data-loaded=true]").wait_for()
    return frame


def check_numbers(frame: Any, totals: dict[str, int], per_dag: dict[str, dict[str, int]]) -> None:
    from playwright.sync_api import expect

    expect(frame.locator("#total-tokens")).to_have_text(f"{totals['total_tokens']:,}")
    expect(frame.locator("#total-requests")).to_have_text(f"{totals['requests']:,}")
    expect(frame.locator("#total-cost")).to_have_text(f"${totals['ticks'] / 10**10:.6f}")
    expect(frame.locator("#total-tools")).to_have_text(f"{totals['tools']:,}")
    for dag_id, sums in per_dag.items():
        row = frame.locator(f"#by-dag tr[data-dag-id='{dag_id}']")
        expect(row.locator("td.tokens")).to_have_text(f"{sums['total_tokens']:,}")
        expect(row.locator("td.cost")).to_contain_text(f"${sums['ticks'] / 10**10:.6f}")


def test_usage_page_shows_the_records_sums_to_whom_may_read_them(
    browser: Any, page_server: PageServer, airflow_stack: AirflowStack, e2e_xai: XAIServer, tmp_path: Path
) -> None:
    import httpx
    from playwright.sync_api import expect

    base = page_server.url
    # --- logged out: nothing -------------------------------------------------------------------
    for path in ("/xai-usage/", "/xai-usage/api/usage"):
        response = httpx.get(base + path, timeout=60)
        assert response.status_code == 401, (path, response.text)
        assert "totals" not in response.text and "example_xai" not in response.text

    since = datetime.combine(datetime.now(timezone.utc).date() - timedelta(days=29), datetime.min.time(),
                             timezone.utc).timestamp()
    per_dag = expected_totals(airflow_stack.home, _dag_ids(airflow_stack), since)
    assert set(EXAMPLES) <= set(per_dag), per_dag

    # --- admin: every DAG; numbers equal the records' sums --------------------------------------
    shots = {}
    for scheme in ("light", "dark"):
        page = log_in(browser, page_server, "admin", scheme)
        frame = open_usage_page(page)
        check_numbers(frame, add(list(per_dag.values())), per_dag)
        link = frame.locator(f"#runs tr[data-dag-id='{DENIED_DAG}'] a").first
        run_id = frame.locator(f"#runs tr[data-dag-id='{DENIED_DAG}']").first.get_attribute("data-run-id")
        assert link.get_attribute("href") == f"{base}/dags/{DENIED_DAG}/runs/{quote(run_id, safe='')}"
        expect(frame.locator("#tools")).to_contain_text("web_search_calls")
        expect(frame.locator("#by-kind")).to_contain_text("Responses")
        expect(frame.locator("#waits")).to_contain_text(EXAMPLES[0])  # waiting for capacity, by DAG and model
        expect(frame.locator("#wait-split")).to_contain_text("429(s)")
        assert e2e_xai.api_key not in page.content() and e2e_xai.api_key not in frame.locator("body").inner_html()
        shots[scheme] = tmp_path / f"{scheme}.png"
        page.wait_for_timeout(300)  # the charts' first paint
        page.screenshot(path=str(shots[scheme]), animations="disabled")
        if scheme == "light":
            link.click()  # the run's page in the Airflow UI (the link targets the top window)
            page.wait_for_url(f"**/dags/{DENIED_DAG}/runs/**")
            expect(page.get_by_text(run_id).first).to_be_visible()
        page.close()

    # --- analyst: the denied DAG is nowhere; totals are the other DAGs' -------------------------
    page = log_in(browser, page_server, RESTRICTED_USER)
    frame = open_usage_page(page)
    allowed = {d: s for d, s in per_dag.items() if d != DENIED_DAG}
    check_numbers(frame, add(list(allowed.values())), allowed)
    assert DENIED_DAG not in frame.locator("body").inner_html()
    expect(frame.locator("#dag option")).to_have_count(len(allowed) + 1)
    page.close()

    for scheme, shot in shots.items():
        png = shot.read_bytes()
        width, height = struct.unpack(">II", png[16:24])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and width >= 1440 and height >= 1000, (width, height)
        target = SCREENSHOTS[scheme]
        if os.environ.get("XAI_UPDATE_SCREENSHOTS") == "1" or not target.exists():
            target.write_bytes(png)


def _dag_ids(stack: AirflowStack) -> set[str]:
    with stack.client() as api:
        return {d["dag_id"] for d in api.get("/dags", params={"limit": 100}).json()["dags"]}
