"""Waits and threads against the local xAI server: edges 4 (a deferred wait survives transient
failures; a task retry re-attaches), 5 (two trigger copies polling one request id) and 11
(``chat_many`` from two threads on one hook)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_xai.exceptions import XAIDeferredExpiredError, XAIError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.chat import DEFERRED_REQUEST_KEY, XAIChatOperator
from airflow_provider_xai.testing import Fault
from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger
from tests.helpers.context import FakeStateStore, FakeTI, make_context
from tests.integration.test_chat_operator import run_trigger

MESSAGES = [{"role": "user", "content": "hello"}]


def deferred_posts(server: Any) -> int:
    return sum(1 for e in server.journal if e.method == "POST" and e.path.endswith("chat/completions"))


def test_4_deferred_wait_keeps_polling_through_an_outage(xai_server: Any) -> None:
    xai_server.configure(deferred_pending_polls=2)
    request_id = XAIHook().start_deferred(messages=MESSAGES)
    # An outage longer than the hook's own retries (max_retries=2: three 503s per poll), twice.
    xai_server.enqueue(Fault(status=503, message="down", path="/v1/chat/deferred-completion"), times=6)
    event = run_trigger(XAIDeferredCompletionTrigger(request_id, poll_interval=0.01))
    assert event["status"] == "success", event
    statuses = [e.status for e in xai_server.journal if "deferred-completion" in e.path]
    assert statuses.count(503) == 6 and statuses[-1] == 200


def test_4_permanent_poll_failure_ends_the_wait_at_once(xai_server: Any) -> None:
    request_id = XAIHook().start_deferred(messages=MESSAGES)
    xai_server.enqueue(Fault(status=401, message="key revoked", path="/v1/chat/deferred-completion"))
    event = run_trigger(XAIDeferredCompletionTrigger(request_id, poll_interval=0.01))
    assert event["status"] == "error" and event["http_status"] == 401


def test_4_task_retry_reattaches_to_the_stored_request(xai_server: Any) -> None:
    xai_server.configure(deferred_pending_polls=1)  # the second try's poll: pending; the third: ready
    store = FakeStateStore()
    op = XAIChatOperator(task_id="t", prompt="hello", deferrable=True, poll_interval=0.01)
    with pytest.raises(TaskDeferred) as first_try:
        op.execute(make_context(FakeTI(try_number=1), store))
    request_id = first_try.value.trigger.request_id
    assert store.data[DEFERRED_REQUEST_KEY]["value"] == request_id
    # The first try's wait failed (e.g. the triggerer lost it); the retry must not pay again.
    with pytest.raises(TaskDeferred) as second_try:
        op.execute(make_context(FakeTI(try_number=2), store))
    assert second_try.value.trigger.request_id == request_id
    assert deferred_posts(xai_server) == 1
    # Once the answer is ready, a third try collects it without deferring.
    ti = FakeTI(try_number=3)
    answer = op.execute(make_context(ti, store))
    assert isinstance(answer, str) and answer
    assert ti.pushed["xai_usage"]["total_tokens"] > 0
    assert deferred_posts(xai_server) == 1
    assert DEFERRED_REQUEST_KEY not in store.data  # collected: forgotten


def test_4_retry_submits_anew_when_the_stored_request_is_gone(xai_server: Any) -> None:
    store = FakeStateStore({DEFERRED_REQUEST_KEY: "collected-long-ago"})
    op = XAIChatOperator(task_id="t", prompt="hello", deferrable=True, poll_interval=0.01)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context(FakeTI(try_number=2), store))
    assert deferred.value.trigger.request_id != "collected-long-ago"
    assert store.data[DEFERRED_REQUEST_KEY]["value"] == deferred.value.trigger.request_id
    assert deferred_posts(xai_server) == 1


def test_5_duplicate_trigger_that_meets_404_does_not_report_first(xai_server: Any) -> None:
    """Two copies poll one request id: one collects the answer, the other then gets 404 and
    must stay silent (Airflow cancels it once the task resumed with the first copy's answer)."""
    xai_server.configure(deferred_pending_polls=3)
    request_id = XAIHook().start_deferred(messages=MESSAGES)

    async def race() -> tuple[dict[str, Any], bool]:
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def copy() -> None:
            trigger = XAIDeferredCompletionTrigger(request_id, poll_interval=0.01, expired_grace=3600)
            async for event in trigger.run():
                await events.put(event.payload)

        copies = [asyncio.create_task(copy()) for _ in range(2)]
        first = await events.get()
        # Wait until the losing copy has met its 404 (progress, not a fixed delay).
        while not any(e.status == 404 for e in xai_server.journal if "deferred-completion" in e.path):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # let the losing copy act on its 404
        silent = events.empty()
        for task in copies:
            task.cancel()
        await asyncio.gather(*copies, return_exceptions=True)
        return first, silent

    first, silent = asyncio.run(race())
    assert first["status"] == "success"
    assert silent, "the copy that met 404 reported before the grace period"


def test_5_a_really_expired_request_is_reported_after_the_grace(xai_server: Any) -> None:
    event = run_trigger(XAIDeferredCompletionTrigger("no-such-id", poll_interval=0.01, expired_grace=0.01))
    assert event["status"] == "expired"
    with pytest.raises(XAIDeferredExpiredError):
        XAIChatOperator(task_id="t", prompt="x").execute_complete(make_context(), event)


def test_11_chat_many_from_two_threads_on_one_hook(xai_server: Any) -> None:
    xai_server.configure(latency=0.02)
    hook = XAIHook()
    results: dict[str, list[Any]] = {}

    def fan_out(name: str, width: int) -> None:
        requests = [{"messages": [{"role": "user", "content": f"{name}-{i}"}]} for i in range(24)]
        try:
            results[name] = hook.chat_many(requests, max_concurrency=width)
        except Exception as exc:  # recorded so the assertion shows it
            results[name] = [exc]

    threads = [threading.Thread(target=fan_out, args=(n, w)) for n, w in (("a", 4), ("b", 32))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("a", "b"):
        failures = [r for r in results[name] if isinstance(r, Exception | XAIError)]
        assert not failures, f"{name}: {failures[:2]}"
        assert len(results[name]) == 24
    # The hook's own pooled clients are untouched by either fan-out, and still usable.
    assert hook.chat(messages=MESSAGES).text


def test_11_fan_out_neither_replaces_nor_closes_another_loops_client(xai_server: Any) -> None:
    """A fan-out runs on pools of its own: the client another event loop (another thread's)
    holds on the same hook stays the same object, open, before and after it."""
    hook = XAIHook()
    other_loop = asyncio.new_event_loop()
    try:
        client = other_loop.run_until_complete(hook.get_async_conn())
        results = hook.chat_many([{"messages": MESSAGES}] * 3, max_concurrency=2)
        assert all(not isinstance(r, XAIError) for r in results)
        assert other_loop.run_until_complete(hook.get_async_conn()) is client
        assert not client.is_closed
        assert other_loop.run_until_complete(hook.achat(messages=MESSAGES)).text
    finally:
        other_loop.run_until_complete(hook.aclose())
        other_loop.close()
