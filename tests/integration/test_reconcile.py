"""Reconciliation with xAI's bill, and the balance sensor, against the local server's
Management API (its tick ledger is what it billed; its management key, not the API key)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai.exceptions import XAIAuthenticationError, XAIConfigurationError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.operators.reconcile import XAIReconcileOperator
from airflow_provider_xai.sensors.balance import XAIBalanceSensor
from tests.helpers.context import FakeTI, make_context

TODAY = datetime.now(timezone.utc).date()


@pytest.fixture
def connected(xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    extra = {**xai_server.management_extra(), "rate_limit_path": str(tmp_path / "spend.sqlite")}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(**extra))
    return xai_server


def plant(server: Any, **bill: Any) -> None:
    """A bill the server writes as if a call had been made (outside Airflow, or another key)."""
    httpx.post(f"{server.root_url}/_control/billing", json=bill).raise_for_status()


def reconcile(**kwargs: Any) -> dict[str, Any]:
    op = XAIReconcileOperator(task_id="reconcile", first_day=TODAY.isoformat(), **kwargs)
    return op.execute(make_context())


def run_tasks(n: int) -> list[dict[str, Any]]:
    records = []
    for i in range(n):
        ti = FakeTI(task_id=f"t{i}")
        XAIChatOperator(task_id=f"t{i}", prompt=f"question {i}", max_tokens=20).execute(make_context(ti))
        records.append(ti.pushed["xai_usage"])
    return records


def test_what_airflow_recorded_matches_the_bill(connected: Any) -> None:
    records = run_tasks(3)
    result = reconcile()
    (row,) = result["rows"]
    assert row["model"] == "grok-4.3" and row["recorded_requests"] == 3
    assert row["recorded_usd"] == pytest.approx(sum(r["cost_usd"] for r in records), abs=1e-9)
    assert row["billed_usd"] == pytest.approx(row["recorded_usd"], abs=1e-9)
    assert result["differences"] == []


def test_images_video_and_speech_reconcile_with_the_bill(connected: Any, tmp_path: Path) -> None:
    """Media and voice calls are billed too: what the tasks recorded (xAI's cost for images and
    video, the voice price for speech) matches the bill per model."""
    from airflow_provider_xai.operators.images import XAIImageOperator
    from airflow_provider_xai.operators.video import XAIVideoOperator
    from airflow_provider_xai.operators.voice import XAITextToSpeechOperator

    folder = f"file://{tmp_path}/media"
    XAIImageOperator(task_id="shot", prompt="a mug", n=2, output_folder=folder).execute(make_context())
    XAIVideoOperator(task_id="clip", prompt="a boat", duration=2, output_folder=folder, deferrable=False,
                     poll_interval=0.01).execute(make_context())  # fmt: skip
    XAITextToSpeechOperator(task_id="say", text="The load is done. " * 10,
                            output_path=f"{folder}/say.mp3").execute(make_context())  # fmt: skip
    result = reconcile()
    rows = {row["model"]: row for row in result["rows"]}
    assert set(rows) == {"grok-imagine-image", "grok-imagine-video", "tts"}
    for row in rows.values():
        assert row["recorded_requests"] == 1 and row["billed_usd"] > 0
        assert row["billed_usd"] == pytest.approx(row["recorded_usd"], abs=1e-9)
    assert result["differences"] == []


def test_the_reconciliation_finds_a_planted_difference(connected: Any) -> None:
    run_tasks(2)
    plant(connected, model="grok-4.3", usd=0.25)  # this key, no task recorded it
    plant(connected, model="grok-3", usd=1.5, api_key_id="key-of-another-team-member")
    result = reconcile()
    by_model = {row["model"]: row for row in result["differences"]}
    assert set(by_model) == {"grok-4.3", "grok-3"}
    outside, other = by_model["grok-4.3"], by_model["grok-3"]
    assert outside["difference_usd"] == pytest.approx(0.25, abs=1e-6)
    assert outside["explanations"] == [
        "outside Airflow: $0.250000 billed to this key for calls no task recorded"
    ]
    assert other["other_keys_usd"] == pytest.approx(1.5) and other["billed_usd"] == 0
    assert other["explanations"][0].startswith("other keys: $1.500000")


def test_estimates_that_exceed_the_bill_are_explained(connected: Any) -> None:
    connected.configure(omit_cost=True)  # the provider estimates from prices; the ledger has the truth
    run_tasks(1)
    plant(connected, model="grok-4.3", usd=0.00001)
    (row,) = reconcile(tolerance_usd=0.00001)["differences"]
    assert row["difference_usd"] < 0 and row["explanations"][0].startswith("estimated: $")


def test_a_usage_answer_cut_short_is_said(connected: Any) -> None:
    connected.configure(usage_limit_reached=True)
    assert reconcile()["truncated"] is True


def test_bad_days_are_refused_before_any_request(connected: Any) -> None:
    with pytest.raises(ValueError, match="last_day"):
        reconcile(last_day=date(2000, 1, 1).isoformat())
    assert connected.journal == []


def test_the_management_api_refuses_the_api_key(connected: Any) -> None:
    team = XAIHook().get_team_id()
    answer = httpx.get(
        f"{connected.management_url}/v1/billing/teams/{team}/prepaid/balance",
        headers={"Authorization": f"Bearer {connected.api_key}"},
    )
    assert answer.status_code == 403 and connected.api_key not in answer.text


def test_the_balance_and_spend_agree_with_what_was_billed(connected: Any) -> None:
    connected.configure(prepaid_credit_usd=50.0, spending_limit_usd=100.0)
    plant(connected, model="grok-4.3", usd=12.34)
    hook = XAIHook()
    assert hook.get_prepaid_balance().credit_usd == pytest.approx(50.0 - 12.34)
    preview = hook.get_invoice_preview()
    assert preview.spent_usd == pytest.approx(12.34) and preview.spending_limit_usd == 100.0


def test_the_balance_sensor_holds_a_dag_when_credit_runs_low(connected: Any) -> None:
    connected.configure(prepaid_credit_usd=10.0, spending_limit_usd=100.0)
    sensor = XAIBalanceSensor(task_id="credit", min_credit_usd=5.0, max_spending_share=0.9)
    assert sensor.poke(make_context()).is_done
    plant(connected, model="grok-4.3", usd=6.0)
    held = sensor.poke(make_context())
    assert not held.is_done and held.xcom_value["credit_usd"] == pytest.approx(4.0)
    assert held.xcom_value["reasons"] == ["prepaid credit $4.00 is below $5.00"]


def test_the_balance_sensor_needs_the_management_key(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json())
    with pytest.raises(XAIConfigurationError, match="management_key"):
        XAIBalanceSensor(task_id="credit").poke(make_context())
    assert xai_server.journal == []  # refused before any request (not even GET /v1/api-key)


def test_a_wrong_management_key_is_refused_typed_and_masked(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "xai-management-wrong-key-000111"
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        xai_server.connection_json(management_key=wrong, management_base_url=xai_server.management_url),
    )
    with pytest.raises(XAIAuthenticationError) as err:
        XAIHook().get_prepaid_balance()
    assert wrong not in str(err.value) and wrong not in repr(err.value.__dict__)


def test_a_run_without_a_logical_date_reconciles_the_day_it_was_due(connected: Any) -> None:
    """Airflow 3 runs may have no logical date (no ``ds``): the default day is the run's."""
    from types import SimpleNamespace

    run_tasks(1)
    due = datetime.combine(TODAY, datetime.min.time(), timezone.utc).replace(hour=23, minute=30)
    context = {**make_context(), "logical_date": None, "dag_run": SimpleNamespace(run_after=due)}
    result = XAIReconcileOperator(task_id="reconcile").execute(context)
    assert result["first_day"] == result["last_day"] == TODAY.isoformat()
    assert result["rows"][0]["recorded_requests"] == 1
    earlier = {**context, "dag_run": SimpleNamespace(run_after=datetime(2026, 9, 2, 23, 30, tzinfo=timezone.utc))}
    assert XAIReconcileOperator(task_id="r").execute(earlier)["first_day"] == "2026-09-02"
