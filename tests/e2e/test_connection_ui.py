"""The xAI connection form in the real Airflow 3.3 UI, driven in headless Chromium.

Log in (simple auth manager), Admin > Connections > Add, type "xAI": the API key is a masked
input and the provider's fields are there. Fill and save it, press Test (the hook runs inside
the api-server against the local xAI server) and see success; change the key to a wrong one
and see xAI's reason. The key never shows in the page, the REST API or any Airflow file.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai.testing.runner import XAIServer
from tests.conftest import REPO
from tests.e2e.conftest import AirflowStack
from tests.e2e.waiting import TEST_TIMEOUT

# The timeout covers the shared Airflow stack's start when this test is the first to need it.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(TEST_TIMEOUT)]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = REPO / "docs" / "img" / "xai-connection-form.png"
CONN_ID = "xai_default"
WRONG_KEY = "xai-not-the-right-key-42"


@pytest.fixture
def page(chromium: str, airflow_stack: AirflowStack) -> Iterator[Any]:
    """A fresh headless page in the browser ``chromium`` names (checked before Airflow starts)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def send_unset_port_as_unset(route: Any) -> None:
    """Work around an Airflow 3.3.2 UI bug so the Test button can reach the hook.

    The connection list's Test button posts ``port: Number(connection.port)``, i.e. ``0`` for a
    connection without a port; the api-server then finds "the host or port to test differs
    from the stored connection" and answers 400 ("Bad Request" in the toast) before any
    provider code runs. Dropping that ``0`` is the body the UI means to send.
    """
    body = json.loads(route.request.post_data or "{}")
    if body.get("port") == 0:
        del body["port"]
    route.continue_(post_data=json.dumps(body))


def field_input(dialog: Any, label: str) -> Any:
    """The input of the form field labelled ``label`` (Airflow's extra-field labels do not
    always point at their input, so look inside the field group instead of by ``for=``)."""
    group = dialog.locator('[data-scope="field"][data-part="root"]').filter(
        has=dialog.page.locator("label", has_text=label)
    )
    return group.locator("input, textarea").first


def still_screenshot(dialog: Any) -> bytes:
    """The dialog at rest: no focus ring, no hover, transitions finished (stable bytes)."""
    dialog.page.evaluate("document.activeElement && document.activeElement.blur()")
    dialog.page.mouse.move(0, 0)
    dialog.page.wait_for_timeout(400)
    return bytes(dialog.screenshot(animations="disabled", caret="hide"))


def compose_screenshot(page: Any, panels: list[bytes], path: Path) -> None:
    """Place dialog screenshots side by side in one PNG (rendered by the same browser)."""
    images = "".join(f'<img src="data:image/png;base64,{base64.b64encode(p).decode()}">' for p in panels)
    page.set_viewport_size({"width": 2400, "height": 1600})  # room for the whole strip
    page.set_content(
        "<html><body style='margin:0'><div id='shots' style='display:inline-flex;gap:24px;"
        f"padding:24px;align-items:flex-start;background:#d8dde6'>{images}</div></body></html>"
    )
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth)")
    page.locator("#shots").screenshot(path=str(path), animations="disabled")


def api_key_checks(server: XAIServer, status: int) -> list[Any]:
    return [e for e in server.requests("/api-key", "GET") if e.status == status]


def test_xai_connection_form_save_and_test_in_the_browser(
    page: Any,
    airflow_stack: AirflowStack,
    airflow_api: httpx.Client,
    e2e_xai: XAIServer,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    key = e2e_xai.api_key
    assert airflow_api.delete(f"/connections/{CONN_ID}").status_code in (204, 404)
    base = airflow_stack.api_url

    # --- log in with the generated admin password, then Admin > Connections > Add ----------
    page.goto(f"{base}/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(airflow_stack.admin_password())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Connections").click()
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Connection ID").fill(CONN_ID)
    conn_type = dialog.get_by_role("combobox")
    conn_type.click()
    conn_type.fill("xAI")
    page.get_by_role("option", name="xAI", exact=True).click()

    # --- the form the provider declared ---------------------------------------------------
    api_key = dialog.get_by_label("API Key")
    expect(api_key).to_have_attribute("type", "password")
    expect(api_key).to_have_attribute("placeholder", "xai-...")
    expect(dialog.get_by_label("Base URL")).to_have_attribute("placeholder", "https://api.x.ai/v1")
    for hidden in ("Login", "Port", "Schema"):
        expect(dialog.locator("label", has_text=hidden)).to_have_count(0)
    api_key.fill(key)
    # Base URL left empty, as for the real xAI API: that is the form the docs show.
    panels = [still_screenshot(dialog)]

    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    default_model = field_input(dialog, "Default model")
    timeout = field_input(dialog, "Read timeout (seconds)")
    deadline = field_input(dialog, "Request deadline (seconds)")
    max_retries = field_input(dialog, "Max retries")
    expect(default_model).to_be_visible()
    expect(timeout).to_have_attribute("role", "spinbutton")
    expect(timeout).to_have_attribute("aria-valuemin", "1")
    expect(deadline).to_have_attribute("role", "spinbutton")
    expect(max_retries).to_have_attribute("role", "spinbutton")
    expect(max_retries).to_have_attribute("aria-valuemax", "20")
    expect(field_input(dialog, "Price overrides (JSON)")).to_be_visible()
    default_model.fill("grok-4.3")
    timeout.fill("30")
    max_retries.fill("1")
    panels.append(still_screenshot(dialog))

    # Point this connection at the local server, then save.
    dialog.get_by_role("button", name="Standard Fields", exact=True).click()
    dialog.get_by_label("Base URL").fill(e2e_xai.base_url)
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Connection has been successfully created")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=CONN_ID)
    expect(row).to_contain_text(e2e_xai.base_url)
    expect(dialog).to_have_count(0)  # closed: the typed key left the DOM with it
    assert key not in page.content()

    stored = airflow_api.get(f"/connections/{CONN_ID}")
    assert stored.status_code == 200 and key not in stored.text
    conn = stored.json()
    assert (conn["conn_type"], conn["host"], conn["password"]) == ("xai", e2e_xai.base_url, "***")
    assert json.loads(conn["extra"]) == {
        "default_model": "grok-4.3",
        "timeout": 30,
        "deadline": None,
        "max_retries": 1,
        "prices": None,
        "management_key": None,
        "management_base_url": None,
        "allow_insecure_http": None,
        # spend control's fields, left empty: no budget, prices cached an hour, forecasts as "auto"
        "budgets": None,
        "prices_ttl": None,
        "forecast_tokens": None,
        # the shared rate limit's fields, left empty: no client-side limit
        "rate_limit_requests_per_second": None,
        "rate_limit_tokens_per_minute": None,
        "rate_limit_buckets": None,
        "rate_limit_store": None,
        "rate_limit_path": None,
        "rate_limit_redis_conn_id": None,
        "rate_limit_defer_after": None,
        "rate_limit_resume_lead": None,
        "rate_limit_send_in_triggerer": None,
    }

    # --- Test: the hook runs in the api-server against the local server --------------------
    page.route("**/api/v2/connections/test", send_unset_port_as_unset)
    before = len(api_key_checks(e2e_xai, 200))
    row.get_by_role("button", name="Test Connection").click()
    expect(page.get_by_text("Test Connection Successful")).to_be_visible()
    expect(page.get_by_text(f"Connected to {e2e_xai.base_url}")).to_be_visible()
    assert len(api_key_checks(e2e_xai, 200)) == before + 1
    assert key not in page.content()

    # --- a wrong key: Edit, replace the key, save, Test -> xAI's reason is shown -----------
    row.get_by_role("button", name="Edit Connection").click()
    edit = page.get_by_role("dialog")
    expect(edit.get_by_label("API Key")).to_have_attribute("type", "password")
    assert key not in page.content()  # the edit form holds the masked value, not the key
    edit.get_by_label("API Key").fill(WRONG_KEY)
    edit.get_by_role("button", name="Save").click()
    expect(edit).to_have_count(0)
    before = len(api_key_checks(e2e_xai, 400))
    row.get_by_role("button", name="Test Connection").click()
    expect(page.get_by_text("Test Connection Failed")).to_be_visible()
    expect(page.get_by_text("Incorrect API key provided")).to_be_visible()
    assert len(api_key_checks(e2e_xai, 400)) == before + 1
    assert WRONG_KEY not in page.content()  # xAI's message masks the key it was sent

    # --- the key is nowhere: REST (masked), page, api-server log, any file in AIRFLOW_HOME --
    assert airflow_api.get(f"/connections/{CONN_ID}").json()["password"] == "***"
    assert key not in page.content()
    assert "Application startup complete" in airflow_stack.log("api-server")
    assert airflow_stack.files_containing(key) == []

    # The docs' picture: refreshed when missing or on request (headless rendering differs by a
    # few anti-aliased pixels between runs, so rewriting it every run would churn git).
    shot = tmp_path / SCREENSHOT.name
    compose_screenshot(page, panels, shot)
    png = shot.read_bytes()
    width, height = struct.unpack(">II", png[16:24])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and width > 1600 and height > 900, (width, height)
    if os.environ.get("XAI_UPDATE_SCREENSHOTS") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)
