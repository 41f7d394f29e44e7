"""A budget reservation held for an answer collected later (a deferred chat completion, a
deferrable Responses call, an image or video job): the worker that submits it reserves the
worst case and keeps the reservation under the call's id; the task that records the answer,
in another process (here: a fresh operator and hook), settles it to what xAI billed, once."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_xai import tools
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.operators.images import XAIImageOperator
from airflow_provider_xai.operators.responses import XAIResponsesOperator
from airflow_provider_xai.operators.video import XAIVideoOperator
from airflow_provider_xai.spend.layer import HELD_PREFIX
from tests.helpers.context import FakeStateStore, FakeTI, make_context
from tests.integration.test_spend_control import connect


def make(kind: str, folder: str) -> Any:
    """A fresh operator (its own hook and spend layer, as a resumed task in another process)."""
    if kind == "chat":
        return XAIChatOperator(task_id="t", prompt="Summarise the load.", api="chat", max_tokens=60,
                               deferrable=True, poll_interval=0.01)  # fmt: skip
    if kind == "responses":
        return XAIResponsesOperator(task_id="t", prompt="What changed?", tools=[tools.web_search()], max_turns=2,
                                    max_tokens=200, deferrable=True, poll_interval=0.01)  # fmt: skip
    if kind == "images":
        return XAIImageOperator(task_id="t", prompt="a mug", n=2, deferrable=True, poll_interval=0.01,
                                output_folder=folder)  # fmt: skip
    return XAIVideoOperator(task_id="t", prompt="a boat", duration=3, poll_interval=0.01, output_folder=folder)


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


def committed(op: Any) -> int:
    (state,) = op.hook.spend.budget_states(op.hook.settings)
    return int(state.committed)


def budget_expiry(op: Any) -> float:
    """When the embedded store forgets the daily budget's key (epoch seconds)."""
    states = op.hook.spend.store(op.hook.settings).states
    with states.transaction() as cursor:
        (expires,) = cursor.execute("SELECT expires FROM xai_budget WHERE key LIKE 'xai-budget:daily:%'").fetchone()
    return float(expires)


@pytest.mark.parametrize("kind", ["chat", "responses", "images", "video"])
def test_a_deferred_calls_reservation_settles_to_the_bill_in_the_resumed_task(
    kind: str, xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path, budgets=[{"name": "daily", "scope": "team", "usd": 5}])
    folder, store = f"file://{tmp_path}/media", FakeStateStore()
    first, submitting = make(kind, folder), FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        first.execute(make_context(submitting, store))
    reserved = committed(first)
    assert reserved > 0  # the worst case, held while the answer is made
    handle = submitting.pushed.get("xai_request_id") or submitting.pushed["xai_response_id"]
    kept, _ = first.hook.spend.store(first.hook.settings).cached(HELD_PREFIX + handle, fresh_for=3600)
    assert kept is not None and '"xai-budget:daily:' in kept and str(reserved) in kept
    event = asyncio.run(first_event(deferred.value.trigger))
    resumed, ti = make(kind, folder), FakeTI()
    getattr(resumed, deferred.value.method_name)(make_context(ti, store), event)
    cost = ti.pushed["xai_usage"]["cost_usd"]
    assert committed(resumed) == math.ceil(cost * 1e9) <= reserved  # settled to the bill
    assert budget_expiry(resumed) < time.time() + 4 * 86400  # the day's key is still forgotten in days
    resumed.hook.spend.settle_held(handle, _double(ti))
    assert committed(resumed) == math.ceil(cost * 1e9)  # settled once: a second settlement finds nothing


def _double(ti: FakeTI) -> Any:
    from airflow_provider_xai.usage import UsageRecord

    usage = dict(ti.pushed["xai_usage"])
    return UsageRecord.from_dict({**usage, "cost_usd": usage["cost_usd"] * 2})


def test_the_held_reservation_is_kept_under_the_calls_id(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path, budgets=[{"name": "daily", "scope": "team", "tokens": 10**6}])
    op, ti = make("chat", ""), FakeTI()
    with pytest.raises(TaskDeferred):
        op.execute(make_context(ti, FakeStateStore()))
    request_id = ti.pushed["xai_request_id"]
    kept = op.hook.spend.store(op.hook.settings).take(HELD_PREFIX + request_id)
    assert kept is not None and '"tokens"' in kept and str(committed(op)) in kept
    assert op.hook.spend.store(op.hook.settings).take(HELD_PREFIX + request_id) is None  # taken once


def test_a_batch_reserves_its_worst_case_and_settles_to_the_discounted_bill(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.helpers.batch import context, operator

    connect(xai_server, monkeypatch, tmp_path, budgets=[{"name": "daily", "scope": "team", "usd": 5}])
    prompts = [f"Summarise ticket {i}" for i in range(3)]
    op, ctx = operator(tmp_path, prompts, max_tokens=40, deferrable=True), context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    reserved = committed(op)
    assert reserved > 0  # three requests' worst case, no discount assumed
    resumed = operator(tmp_path, prompts, max_tokens=40, deferrable=True)
    summary = resumed.execute_complete(ctx, asyncio.run(first_event(deferred.value.trigger)))
    assert committed(resumed) == math.ceil(summary["usage"]["cost_usd"] * 1e9) < reserved / 2  # half price
    # A retry that re-attaches to the batch reserves nothing again.
    again = operator(tmp_path, prompts, max_tokens=40, deferrable=True)
    with pytest.raises(TaskDeferred):
        again.execute(context(try_number=2, store=ctx.get("task_state_store")))
    assert committed(again) == math.ceil(summary["usage"]["cost_usd"] * 1e9)


def test_a_batch_over_its_budget_is_refused_before_it_is_made(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_xai.exceptions import XAIOverBudgetError
    from tests.helpers.batch import context, operator

    connect(xai_server, monkeypatch, tmp_path, budgets=[{"name": "daily", "scope": "team", "tokens": 100}])
    with pytest.raises(XAIOverBudgetError, match="daily"):
        operator(tmp_path, ["Summarise ticket 1", "Summarise ticket 2"], max_tokens=40).execute(context())
    # Only the free look-up for a batch to re-attach to went out: nothing was made or added.
    assert [e.method for e in xai_server.journal if "/batches" in e.path] == ["GET"]
