"""The usage page's budgets and forecast against actual, end to end in one process: a real call
to the local xAI server reserves and settles against declared budgets in the real spend store
(the embedded SQLite file), its ``xai_forecast`` is stored as XCom in a real metadata DB, and
the page's JSON (through its FastAPI app and Airflow's auth) shows both."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_xai.connection.spend import NANO
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.spend.budgets import expiry_of, key_of
from airflow_provider_xai.spend.store import Entry
from tests.helpers.auth import RESTRICTED_USER
from tests.helpers.context import FakeTI, make_context
from tests.helpers.usage_xcoms import RunUsage, TaskUsage, insert_runs
from tests.unit import test_dashboard
from tests.unit.test_dashboard import bearer, unique

#: The page's app (with the deny-one-DAG auth manager) and a metadata DB session: fixtures.
api, session = test_dashboard.api, test_dashboard.session

API = tuple[Any, dict[str, str], list[str]]
IN_FLIGHT = 250_000_000  # nano-USD: a call reserved and not yet answered


def declare(monkeypatch: pytest.MonkeyPatch, server: Any, store: Path, budgets: list[dict[str, Any]]) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT", server.connection_json(rate_limit_path=str(store), budgets=budgets)
    )


def forecast_xcom(dag_id: str, calls: Any) -> RunUsage:
    run_id = unique("spend_run")
    task = TaskUsage(dag_id, run_id, "chat", None, with_latest=False, others=[("xai_forecast", calls)])
    return RunUsage(dag_id, run_id, [task])


def test_the_page_shows_what_each_budget_committed_and_each_forecast_beside_its_bill(
    api: API, session: Any, xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client, tokens, (denied, allowed) = api
    budgets = [
        {"name": "team", "scope": "team", "usd": 5},
        {"name": "allowed", "scope": f"dag:{allowed}", "period": "monthly", "tokens": 10**6},
        {"name": "denied", "scope": f"dag:{denied}", "usd": 1},
    ]
    declare(monkeypatch, xai_server, tmp_path / "spend.sqlite", budgets)
    ti = FakeTI(dag_id=allowed)
    XAIChatOperator(task_id="chat", prompt="Count to three.", max_tokens=50, deferrable=False).execute(
        make_context(ti)
    )
    (calls,) = ti.values("xai_forecast")
    (call,) = calls
    assert call["actual_usd"] and call["actual_usd"] < call["forecast"]["cost_usd"]  # settled below the worst case
    # Another call in flight: reserved against the team's budget, not settled yet.
    hook = XAIHook()
    team = hook.settings.spend.budgets[0]
    now = time.time()
    hook.spend.store(hook.settings).reserve([Entry(key_of(team, now), IN_FLIGHT, team.limit, expiry_of(team, now))])

    before = client.get(
        "/api/forecasts", headers=bearer(tokens["admin"]), params=[("dag_id", allowed), ("dag_id", denied)]
    ).json()["totals"]
    old = forecast_xcom(allowed, [{**call, "actual_usd": 9.0}])  # before the page's 30 days
    insert_runs(session, [old], when=datetime.now(timezone.utc) - timedelta(days=40))
    insert_runs(session, [forecast_xcom(allowed, calls), forecast_xcom(denied, calls)])
    session.commit()

    # --- budgets ------------------------------------------------------------------------------------
    admin = client.get("/api/budgets", headers=bearer(tokens["admin"]))
    assert admin.status_code == 200, admin.text
    body = admin.json()
    assert body["error"] is None and body["store"] == f"embedded store {tmp_path / 'spend.sqlite'}"
    rows = {b["name"]: b for b in body["budgets"]}
    assert set(rows) == {"team", "allowed", "denied"}
    committed = (math.ceil(call["actual_usd"] * NANO) + IN_FLIGHT) / NANO  # the bill, and the call in flight
    assert rows["team"]["committed"] == committed
    assert rows["team"]["remaining"] == (5 * NANO - committed * NANO) / NANO
    assert rows["team"]["used_share"] == round(committed / 5, 4) and rows["team"]["over"] is False
    assert rows["allowed"]["committed"] == call["actual_tokens"] > 0  # a token budget, settled to the bill
    assert rows["allowed"]["remaining"] == 10**6 - call["actual_tokens"]
    assert rows["denied"]["committed"] == 0  # the call was not the denied DAG's
    assert 0 <= rows["team"]["elapsed_share"] <= 1 and rows["allowed"]["period"] == "monthly"
    analyst = client.get("/api/budgets", headers=bearer(tokens[RESTRICTED_USER])).json()
    assert {b["name"] for b in analyst["budgets"]} == {"team", "allowed"}  # not the unreadable DAG's

    # --- forecast against actual ----------------------------------------------------------------------
    got = client.get("/api/forecasts", headers=bearer(tokens[RESTRICTED_USER]), params={"dag_id": allowed})
    assert got.status_code == 200, got.text
    report = got.json()
    (row,) = report["calls"]  # not the run before the window, nor the denied DAG's
    assert (row["dag_id"], row["task_id"], row["model"]) == (allowed, "chat", call["forecast"]["model"])
    assert row["forecast_usd"] == call["forecast"]["cost_usd"] and row["actual_usd"] == call["actual_usd"]
    assert row["ratio"] == round(call["actual_usd"] / call["forecast"]["cost_usd"], 4) < 1
    assert row["actual_tokens"] == call["actual_tokens"] and row["forecast_tokens"] == call["forecast"]["total_tokens"]
    totals = report["totals"]
    assert (totals["compared"], totals["actual_usd"], totals["forecast_usd"]) == (
        1, call["actual_usd"], call["forecast"]["cost_usd"]
    )  # fmt: skip
    hidden = client.get("/api/forecasts", headers=bearer(tokens[RESTRICTED_USER]), params={"dag_id": denied})
    assert hidden.json()["calls"] == [] and denied not in hidden.text
    both = client.get(
        "/api/forecasts", headers=bearer(tokens["admin"]), params=[("dag_id", allowed), ("dag_id", denied)]
    ).json()["totals"]
    # the denied DAG is an example DAG other tests of the session may have run: only ours are counted here
    assert both["compared"] - before["compared"] == 2
    assert both["actual_usd"] - before["actual_usd"] == pytest.approx(2 * call["actual_usd"], abs=1e-12)


def test_a_store_that_cannot_be_opened_is_a_message_not_a_failed_page(
    api: API, xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client, tokens, _ = api
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    declare(monkeypatch, xai_server, blocker / "spend.sqlite", [{"scope": "team", "usd": 5}])
    got = client.get("/api/budgets", headers=bearer(tokens["admin"]))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["budgets"] == [] and body["error"].startswith("The spend store could not be read: ")
    assert "a-file" in body["error"] and xai_server.api_key not in got.text
    assert client.get("/api/usage", headers=bearer(tokens["admin"])).status_code == 200


def test_without_a_connection_the_budgets_say_why(api: API, monkeypatch: pytest.MonkeyPatch) -> None:
    client, tokens, _ = api
    monkeypatch.delenv("AIRFLOW_CONN_XAI_DEFAULT", raising=False)
    body = client.get("/api/budgets", headers=bearer(tokens["admin"])).json()
    assert body["conn_id"] == "xai_default" and body["budgets"] == []
    assert "No xAI API key" in body["error"]


def test_the_new_routes_need_a_login_and_answer_json(api: API) -> None:
    client, _, _ = api
    for path in ("/api/budgets", "/api/forecasts"):
        response = client.get(path)
        assert response.status_code == 401 and response.headers["content-type"] == "application/json", path
