"""The xAI usage page's data: SQL aggregation over a real SQLite metadata DB, and its API's auth.

The expected numbers come from :func:`usage_summary.summarize` over exactly the records the
counting rule keeps, so every total, breakdown and run row must equal the sum of the records.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_xai.usage import TICKS_PER_USD, UsageRecord, combine
from airflow_provider_xai.usage_summary import Totals, summarize
from tests.helpers.auth import DENIED_DAG, RESTRICTED_USER
from tests.helpers.usage_xcoms import RunUsage, TaskUsage, add_dags, insert_runs, record

DAY = 86400.0
FIRST = date(2026, 3, 1)
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()
_ids = itertools.count()


@pytest.fixture
def session(airflow_db: None) -> Iterator[Any]:
    from airflow.utils.session import create_session

    with create_session() as session:
        yield session


def unique(name: str) -> str:
    """DAG ids of one test, apart from every other test's rows in the shared DB."""
    return f"{name}_{next(_ids)}"


def rnd_record(rng: random.Random, dag_id: str, run_id: str, task_id: str, **kw: Any) -> dict[str, Any]:
    prompt, completion, reasoning = rng.randint(1, 5000), rng.randint(0, 900), rng.choice([0, 0, 120])
    source = rng.choice(["xai", "estimate", "unknown"])
    tools = rng.choice([{}, {}, {"web_search_calls": rng.randint(1, 3)}, {"x_search_calls": 1, "web_search_calls": 2}])
    return record(
        dag_id, run_id, task_id,
        timestamp=kw.pop("timestamp", T0 + rng.randint(0, 6) * DAY + rng.random() * 3600),
        model=rng.choice(["grok-4.3", "grok-3-mini", "grok-4-1-fast-reasoning"]),
        prompt_tokens=prompt, completion_tokens=completion, reasoning_tokens=reasoning,
        cached_tokens=rng.randint(0, prompt), total_tokens=prompt + completion + reasoning,
        cost_usd=None if source == "unknown" else rng.randint(1, 10**8) / TICKS_PER_USD, cost_source=source,
        kind="responses" if tools else "chat", server_side_tool_usage=tools,
        num_server_side_tools_used=sum(tools.values()), num_sources_used=rng.randint(0, 2) if tools else 0,
        **kw,
    )


def scenario(rng: random.Random, dags: list[str]) -> tuple[list[RunUsage], list[UsageRecord]]:
    """Runs in every shape the provider writes, and the records that must be counted."""
    runs, counted = [], []
    for dag_id in dags:
        for n in range(3):
            run_id = f"manual__{n}"
            run = RunUsage(dag_id, run_id)
            # Retried task: the ledger holds both attempts; xai_usage (the latest) is in it too.
            retried = [rnd_record(rng, dag_id, run_id, "summarise", try_number=t) for t in (1, 1, 2)]
            run.tasks.append(TaskUsage(dag_id, run_id, "summarise", retried))
            # Mapped task: one ledger per map index.
            for index in range(2):
                mapped = [rnd_record(rng, dag_id, run_id, "classify", map_index=index)]
                run.tasks.append(TaskUsage(dag_id, run_id, "classify", mapped, map_index=index))
                counted += [UsageRecord.from_dict(r) for r in mapped]
            # No ledger (a writer without one): the single xai_usage record counts.
            single = rnd_record(rng, dag_id, run_id, "legacy")
            run.tasks.append(TaskUsage(dag_id, run_id, "legacy", None, latest=single))
            # Batch: folded records in the ledger only, no xai_usage.
            parts = [UsageRecord.from_dict(rnd_record(rng, dag_id, run_id, "batch")) for _ in range(4)]
            folded = [r.to_dict() for r in combine(parts, "batch_1")]
            for item in folded:
                item.update(dag_id=dag_id, run_id=run_id, task_id="batch", timestamp=T0 + 2 * DAY)
            run.tasks.append(TaskUsage(dag_id, run_id, "batch", folded, with_latest=False))
            runs.append(run)
            counted += [UsageRecord.from_dict(r) for r in (*retried, single, *folded)]
    return runs, counted


def expect(t: Totals) -> dict[str, Any]:
    return {
        "requests": t.requests,
        **t.counts,
        "cost_ticks": t.cost_ticks,
        "unpriced_requests": t.unpriced_requests,
    }


def picked(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("requests", *Totals().counts, "cost_ticks", "unpriced_requests")}


def report(session: Any, dag_ids: set[str], first: date = FIRST, last: date | None = None) -> dict[str, Any]:
    from airflow_provider_xai.dashboard.query import Window, usage_report

    return usage_report(session, dag_ids, Window(first, last or first + timedelta(days=9)))


def test_totals_and_breakdowns_equal_the_sum_of_the_counted_records(session: Any) -> None:
    rng = random.Random(7)
    dags = [unique("sum_a"), unique("sum_b")]
    runs, counted = scenario(rng, dags)
    insert_runs(session, runs)
    got = report(session, set(dags))

    everything = summarize(counted)
    assert picked(got["totals"]) == expect(everything.totals)
    assert got["totals"]["records"] == len(counted)
    assert got["totals"]["cost_usd"] == everything.totals.cost_usd
    assert got["totals"]["cache_hit_share"] == round(
        everything.totals.cached_tokens / everything.totals.prompt_tokens, 4
    ) and 0 < got["totals"]["cache_hit_share"] <= 1
    estimated = sum(round(r.cost_usd * TICKS_PER_USD) for r in counted if r.cost_source == "estimate")
    assert got["totals"]["estimate_ticks"] == estimated

    for model, totals in everything.by_model.items():
        assert picked(next(g for g in got["by_model"] if g["model"] == model)) == expect(totals)
    assert len(got["by_model"]) == len(everything.by_model)
    for dag_id in dags:
        mine = [r for r in counted if r.dag_id == dag_id]
        assert picked(next(g for g in got["by_dag"] if g["dag_id"] == dag_id)) == expect(summarize(mine).totals)
        for task_id, totals in summarize(mine).by_task.items():
            row = next(g for g in got["by_task"] if (g["dag_id"], g["task_id"]) == (dag_id, task_id))
            assert picked(row) == expect(totals)
        for run in {r.run_id for r in mine}:
            row = next(g for g in got["runs"] if (g["dag_id"], g["run_id"]) == (dag_id, run))
            assert picked(row) == expect(summarize([r for r in mine if r.run_id == run]).totals)
    # Most expensive first.
    assert [r["cost_ticks"] for r in got["runs"]] == sorted((r["cost_ticks"] for r in got["runs"]), reverse=True)

    for kind in ("chat", "responses"):
        mine = [r for r in counted if r.kind == kind]
        assert picked(next(g for g in got["by_kind"] if g["kind"] == kind)) == expect(summarize(mine).totals)
    tools = summarize(counted).totals.server_side_tool_usage
    assert {t["tool"]: t["calls"] for t in got["tools"]} == tools

    # Per day (UTC, from each record's own timestamp), per DAG.
    for row in got["daily"]:
        day = [
            r for r in counted
            if r.dag_id == row["dag_id"]
            and datetime.fromtimestamp(r.timestamp, timezone.utc).date().isoformat() == row["day"]
        ]
        assert picked(row) == expect(summarize(day).totals)
    assert sum(row["records"] for row in got["daily"]) == len(counted)


def test_the_window_keeps_records_by_their_own_day(session: Any) -> None:
    dag_id = unique("window")
    stamps = [T0 - 1, T0, T0 + DAY - 0.001, T0 + DAY, T0 + 3 * DAY]
    ledger = [record(dag_id, "r", "t", timestamp=s, total_tokens=10 ** i) for i, s in enumerate(stamps)]
    insert_runs(session, [RunUsage(dag_id, "r", [TaskUsage(dag_id, "r", "t", ledger)])])

    one_day = report(session, {dag_id}, FIRST, FIRST)
    assert one_day["totals"]["total_tokens"] == 10 + 100  # T0 and just before midnight
    assert [(d["day"], d["total_tokens"]) for d in one_day["daily"]] == [("2026-03-01", 110)]
    assert one_day["window"]["days"] == ["2026-03-01"]
    two_days = report(session, {dag_id}, FIRST, FIRST + timedelta(days=1))
    assert two_days["totals"]["total_tokens"] == 1110
    day_before = FIRST - timedelta(days=1)
    assert report(session, {dag_id}, day_before, day_before)["totals"]["total_tokens"] == 1


def test_waits_for_capacity_and_429s_are_summed_by_dag_and_model(session: Any) -> None:
    first, second = unique("waits_a"), unique("waits_b")
    ledger = [
        record(first, "r", "t", timestamp=T0, waited_s=1.25, deferred_s=30.0, rate_limited=1),
        record(first, "r", "t", timestamp=T0 + 1, waited_s=0.5, deferred_s=12.5),
        record(first, "r", "u", timestamp=T0 + 2, model="grok-3-mini", waited_s=4.0, rate_limited=2),
        record(second, "r", "t", timestamp=T0 + 3),
    ]
    old = {k: v for k, v in record(second, "r", "v", timestamp=T0 + 4).items() if k not in ("waited_s", "rate_limited")}
    insert_runs(session, [
        RunUsage(first, "r", [TaskUsage(first, "r", "t", ledger[:2]), TaskUsage(first, "r", "u", ledger[2:3])]),
        RunUsage(second, "r", [TaskUsage(second, "r", "t", ledger[3:]), TaskUsage(second, "r", "v", [old])]),
    ])
    got = report(session, {first, second})
    waits = [(g["dag_id"], g["model"], g["waited_s"], g["deferred_s"], g["rate_limited"]) for g in got["waits"]]
    assert waits == [
        (first, "grok-3-mini", 4.0, 0.0, 2),
        (first, "grok-4.3", 1.75, 42.5, 1),
        (second, "grok-4.3", 0.0, 0.0, 0),  # records without the fields (written before them) read as 0
    ]
    totals = got["totals"]
    assert (totals["waited_s"], totals["deferred_s"], totals["rate_limited"]) == (5.75, 42.5, 3)


def test_only_the_given_dags_are_read(session: Any) -> None:
    rng = random.Random(3)
    seen, hidden = unique("seen"), unique("hidden")
    runs, counted = scenario(rng, [seen, hidden])
    insert_runs(session, runs)

    got = report(session, {seen})
    assert {g["dag_id"] for g in got["by_dag"]} == {seen}
    assert {r["dag_id"] for r in got["runs"]} == {seen}
    assert picked(got["totals"]) == expect(summarize([r for r in counted if r.dag_id == seen]).totals)
    nothing = report(session, set())
    assert nothing["totals"]["records"] == 0 and nothing["runs"] == [] and nothing["daily"] == []


def test_over_budget_runs_are_listed_and_marked_even_when_cheap(session: Any) -> None:
    from airflow_provider_xai.dashboard import query

    dag_id = unique("budget")
    runs = []
    for n in range(query.TOP_RUNS + 5):
        cost = (n + 1) / 1000
        ledger = [record(dag_id, f"r{n}", "t", timestamp=T0, total_tokens=100, cost_usd=cost, cost_source="xai")]
        runs.append(RunUsage(dag_id, f"r{n}", [TaskUsage(dag_id, f"r{n}", "t", ledger)]))
    # The cheapest run went over its (tiny) budget; the sensor's return value is never counted.
    runs[0].summary = {"totals": {"total_tokens": 999}, "budget": {"status": "exceeded", "max_cost_usd": 0.0005,
                                                                    "over_cost_usd": 0.0005, "message": "over"}}
    runs[1].summary = {"budget": {"status": "ok"}}
    insert_runs(session, runs)

    got = report(session, {dag_id})
    assert [r["run_id"] for r in got["exceeded_runs"]] == ["r0"]
    listed = {r["run_id"]: r for r in got["runs"]}
    assert len(listed) == query.TOP_RUNS + 1 and "r0" in listed
    assert listed["r0"]["budget"]["max_cost_usd"] == 0.0005
    assert all(r["budget"] is None for name, r in listed.items() if name != "r0")
    assert got["totals"]["total_tokens"] == 100 * len(runs)


# --- the API: login and authorization --------------------------------------------------------------
@pytest.fixture
def api(session: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, str], list[str]]]:
    """The page's app with the deny-one-DAG auth manager; bearer headers for admin and analyst."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from airflow_provider_xai.dashboard.app import create_app

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.helpers.auth.DenyOneDagAuthManager")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"admin:admin,{RESTRICTED_USER}:viewer")
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    manager = airflow_app.init_auth_manager()
    dags = [DENIED_DAG, unique("allowed")]
    add_dags(session, dags)
    session.commit()
    tokens = {
        name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
        for name, role in (("admin", "admin"), (RESTRICTED_USER, "viewer"))
    }
    with TestClient(create_app()) as client:
        yield client, tokens, dags
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_anonymous_requests_get_401_and_no_data(api: tuple[Any, dict[str, str], list[str]]) -> None:
    client, _, dags = api
    for path in ("/", "/api/usage", f"/api/usage?dag_id={dags[1]}"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert "totals" not in response.text and dags[1] not in response.text
    page = client.get("/")
    assert "Log in" in page.text and page.headers["content-type"].startswith("text/html")
    assert client.get("/api/usage", headers=bearer("not-a-jwt")).status_code == 403
    # The chart library is a static asset with no data: served to anyone, offline.
    chart = client.get("/static/chart.umd.min.js")
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]


def test_a_user_sees_only_the_dags_the_auth_manager_lets_them_read(
    api: tuple[Any, dict[str, str], list[str]], session: Any
) -> None:
    client, tokens, (denied, allowed) = api
    rng = random.Random(11)
    runs, counted = scenario(rng, [denied, allowed])
    for run in runs:
        run.run_id = run.run_id + f"_{next(_ids)}"  # DENIED_DAG's id is fixed: keep run ids fresh
        for task in run.tasks:
            task.run_id = run.run_id
    insert_runs(session, runs)
    session.commit()
    params = {"start": FIRST.isoformat(), "end": (FIRST + timedelta(days=9)).isoformat()}
    mine = {run.run_id for run in runs}

    admin = client.get("/api/usage", params=params, headers=bearer(tokens["admin"])).json()
    assert {denied, allowed} <= {g["dag_id"] for g in admin["by_dag"]}
    assert {denied, allowed} <= set(admin["dags"])

    analyst = client.get("/api/usage", params=params, headers=bearer(tokens[RESTRICTED_USER]))
    assert analyst.status_code == 200
    body = analyst.json()
    assert denied not in analyst.text
    assert allowed in body["dags"] and denied not in body["dags"]
    assert {g["dag_id"] for g in body["by_dag"]} == {allowed}
    ours = [g for g in body["runs"] if g["run_id"] in mine]
    assert ours and all(g["dag_id"] == allowed for g in ours)
    allowed_totals = summarize([r for r in counted if r.dag_id == allowed]).totals
    assert picked(next(g for g in body["by_dag"] if g["dag_id"] == allowed)) == expect(allowed_totals)

    # A DAG filter narrows what the user may read; it never widens it.
    asked = client.get("/api/usage", params={**params, "dag_id": denied}, headers=bearer(tokens[RESTRICTED_USER]))
    assert asked.status_code == 200 and asked.json()["totals"]["records"] == 0 and denied not in asked.text
    narrowed = client.get("/api/usage", params={**params, "dag_id": allowed}, headers=bearer(tokens["admin"])).json()
    assert {g["dag_id"] for g in narrowed["by_dag"]} == {allowed}
    assert picked(narrowed["totals"]) == expect(allowed_totals)


def test_bad_ranges_are_refused_naming_the_field(api: tuple[Any, dict[str, str], list[str]]) -> None:
    client, tokens, _ = api
    headers = bearer(tokens["admin"])
    backwards = client.get("/api/usage", params={"start": "2026-03-05", "end": "2026-03-01"}, headers=headers)
    assert backwards.status_code == 422 and "start" in backwards.text
    too_long = client.get("/api/usage", params={"start": "2024-01-01", "end": "2026-03-01"}, headers=headers)
    assert too_long.status_code == 422 and "366 days" in too_long.text
    assert client.get("/api/usage", params={"start": "yesterday"}, headers=headers).status_code == 422


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"end": "0001-01-01"}, "end"),  # issue 27: the default start would be before year 1
        ({"start": "9999-12-31", "end": "9999-12-31"}, "start"),  # ... or the window end after 9999
        ({"end": "9999-12-31"}, "end"),
        ({"start": "0001-01-01", "end": "0001-01-02"}, "start"),
        ({"start": "1969-12-31", "end": "1970-01-01"}, "start"),
        ({"start": "2026-02-30"}, "start"),
        ({"end": "10000-01-01"}, "end"),
        ({"dag_id": "d" * 251}, "dag_id"),
        ([("dag_id", f"d{n}") for n in range(1001)], "dag_id"),
    ],
)
def test_every_query_parameter_is_range_checked_with_a_422_naming_it(
    api: tuple[Any, dict[str, str], list[str]], params: Any, named: str
) -> None:
    client, tokens, _ = api
    response = client.get("/api/usage", params=params, headers=bearer(tokens["admin"]))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert (detail.startswith(f"{named}:") if isinstance(detail, str) else detail[0]["loc"] == ["query", named])


def test_the_widest_windows_allowed_answer(api: tuple[Any, dict[str, str], list[str]]) -> None:
    from airflow_provider_xai.dashboard.app import FIRST_DAY, LAST_DAY

    client, tokens, _ = api
    for first, last in ((FIRST_DAY, FIRST_DAY), (LAST_DAY, LAST_DAY), (FIRST_DAY, FIRST_DAY + timedelta(days=365))):
        params = {"start": first.isoformat(), "end": last.isoformat()}
        got = client.get("/api/usage", params=params, headers=bearer(tokens["admin"]))
        assert got.status_code == 200 and got.json()["window"]["first"] == first.isoformat(), got.text
    early = client.get("/api/usage", params={"end": "1970-01-05"}, headers=bearer(tokens["admin"]))
    assert early.status_code == 200 and early.json()["window"]["first"] == "1969-12-07"
    for filter_ in ([("dag_id", f"d{n}") for n in range(1000)], {"dag_id": "d" * 250}):
        dags = client.get("/api/usage", params=filter_, headers=bearer(tokens["admin"]))
        assert dags.status_code == 200 and dags.json()["selected_dags"] == []


def test_a_foreign_value_under_a_usage_key_is_skipped_and_counted_not_a_500(
    api: tuple[Any, dict[str, str], list[str]], session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, tokens, (_, allowed) = api
    run_id = f"foreign_{next(_ids)}"
    good = [record(allowed, run_id, t, timestamp=T0 + n, total_tokens=40, cost_usd=0.25, cost_source="xai")
            for n, t in enumerate(("good", "mixed"))]
    tasks = [
        TaskUsage(allowed, run_id, "good", [good[0]]),
        TaskUsage(allowed, run_id, "text", None, latest="done: 3 rows"),  # what issue 27 saw
        TaskUsage(allowed, run_id, "serialized", None, latest=json.dumps("done: 3 rows")),
        TaskUsage(allowed, run_id, "number", None, latest=3),
        TaskUsage(allowed, run_id, "mixed", [good[1], "x", 5, {**good[1], "cost_usd": 1e308},
                                             {**good[1], "total_tokens": -4}, {**good[1], "cost_usd": float("nan")}]),
    ]
    run = RunUsage(allowed, run_id, tasks, summary="over budget!")  # a foreign summary too
    insert_runs(session, [run])
    session.commit()
    day = FIRST.isoformat()
    with caplog.at_level("WARNING", logger="airflow_provider_xai.dashboard.query"):
        response = client.get("/api/usage", params={"start": day, "end": day, "dag_id": allowed},
                              headers=bearer(tokens["admin"]))
    assert response.status_code == 200, response.text
    body = response.json()
    ours = next(r for r in body["runs"] if r["run_id"] == run_id)
    assert (ours["records"], ours["total_tokens"], ours["cost_usd"]) == (2, 80, 0.5)
    assert body["skipped_records"] == 1 + 1 + 1 + 5 + 1  # text, text in text, number, 5 items, summary
    assert "skipped 9 stored value(s)" in caplog.text


# --- the plugin ---------------------------------------------------------------------------------------
PLUGIN_PROBE = (
    "import sys\n"
    "from airflow_provider_xai.dashboard.plugin import XAIUsagePlugin as P\n"
    "print('PROBE', len(P.fastapi_apps), len(P.external_views), 'airflow_provider_xai.dashboard.app' in sys.modules)\n"
)


@pytest.mark.parametrize(("setting", "expected"), [(None, "PROBE 1 1 False"), ("False", "PROBE 0 0 False")])
def test_the_plugin_is_on_by_default_off_by_config_and_imports_no_web_code(
    setting: str | None, expected: str, tmp_path: Any
) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__XAI__")}
    env.update(AIRFLOW_HOME=str(tmp_path), PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    if setting is not None:
        env["AIRFLOW__XAI__USAGE_PAGE"] = setting
    out = subprocess.run([sys.executable, "-c", PLUGIN_PROBE], env=env, capture_output=True, text=True, check=True)
    assert expected in out.stdout.splitlines(), out.stdout + out.stderr


LOADER_PROBE = (
    "from airflow import plugins_manager\n"
    "plugins, errors = plugins_manager._get_plugins()\n"
    "print('LOADED', sorted(p.name for p in plugins), 'ERRORS', errors)\n"
)


@pytest.mark.parametrize("lazy", ["True", "False"])
def test_airflow_loads_the_page_once_without_a_plugin_import_error(lazy: str, tmp_path: Any) -> None:
    """Loaded by the entry point under either discovery mode; eager provider discovery must not
    find it a second time (which Airflow reports as a plugin import error in the UI)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__XAI__")}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS=lazy)
    out = subprocess.run([sys.executable, "-c", LOADER_PROBE], env=env, capture_output=True, text=True, check=True)
    assert "LOADED ['xai_usage'] ERRORS {}" in out.stdout.splitlines(), out.stdout + out.stderr
