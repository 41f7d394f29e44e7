"""Waiting for rate-limit capacity in the triggerer (operators/capacity.py) against the local xAI
server and a real embedded store (an SQLite file in tmp_path), on the real clock.

Other callers' bookings are made straight in the store, so a task's slot is about a second away
without waiting for anything. The task's first call then reserves its slot (one store
operation), reads the learned resume lead (one more), sends nothing and defers until the lead
before the slot; back on a worker it notes how long its return took (one store operation) and
sends with that slot (no reservation). A slot its task no longer needs is given back: the next
caller gets it (``at + 1 us``, the same second).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_xai import secrets
from airflow_provider_xai.exceptions import XAIConnectionError, XAIValidationError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.capacity import (
    CAPACITY_STATE_KEY,
    MAX_DEFERRALS,
    RESUME_METHOD,
    SEND_AHEAD,
)
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.operators.responses import XAIResponsesOperator
from airflow_provider_xai.ratelimit.held import Reservation
from airflow_provider_xai.ratelimit.lead import LEAD_FLOOR
from airflow_provider_xai.ratelimit.limiter import SharedRateLimiter
from airflow_provider_xai.ratelimit.slots import Update, decode
from airflow_provider_xai.triggers.capacity import XAIRateLimitSlotTrigger
from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger
from tests.helpers.context import FakeStateStore, FakeTI, make_context
from tests.helpers.limits import counted_operations, raw_value

MODEL = "grok-4.3"
RPS = 10  # slots about 0.1 s apart
BOOKED = 10  # slots other callers hold: a new one is about a second away
LONG = 40  # about 4 s: a slot still to come after a few steps, on a busy machine
DEFER_AFTER = 0.3
LEAD = 0.5  # back on the "worker" (this process) in time, even on a busy machine


@pytest.fixture
def limited(xai_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the xAI connection at the local server with a shared limit; returns a setter for
    other extras (a later try may run with other settings)."""

    def connect(**extra: Any) -> None:
        # The task goes back to a worker to send (the tests of sending from the triggerer, the
        # default, turn it on).
        extra = {"rate_limit_requests_per_second": RPS, "rate_limit_path": str(tmp_path / "limits.sqlite"),
                 "rate_limit_defer_after": DEFER_AFTER, "rate_limit_resume_lead": LEAD,
                 "rate_limit_send_in_triggerer": False, **extra}
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(**extra))

    connect()
    return connect


def limiter() -> SharedRateLimiter:
    hook = XAIHook()
    found = hook.rate_limit.limiter(hook.settings)
    assert found is not None
    return found


def book(count: int = BOOKED) -> int:
    """Book ``count`` slots for other callers; the last one's time (us)."""
    lim = limiter()
    at = 0
    for _ in range(count):
        update = Update(lim.now_us(), slot=True, spacing=lim.spacing_us, depth=lim.depth_us)
        at = lim.states.update(lim.key(f"model:{MODEL}"), update).at
    return at


def next_slot() -> int:
    """The slot the next caller would get (booking it)."""
    return book(1)


def chat(**kwargs: Any) -> XAIChatOperator:
    kwargs.setdefault("task_id", "ask")
    kwargs.setdefault("prompt", "Say hello.")
    return XAIChatOperator(model=MODEL, max_tokens=256, **kwargs)


def posts(server: Any) -> list[Any]:
    return [e for e in server.journal if e.method == "POST" and e.status != 404]


def sent_at(entry: Any) -> float:
    """When the server (a thread of this process, on its monotonic clock) got a request, as
    epoch seconds."""
    return entry.time + time.time() - time.monotonic()


def tokens_after(held: Reservation) -> int:
    """Tokens the store holds past ``held``'s slot (its own reservation, until given back)."""
    lim = limiter()
    (_, empty, _), _ = decode(raw_value(lim.states, held.key), lim.now_us())
    tpm = lim.config.tokens_per_minute
    assert tpm is not None
    return round((empty - held.at) * tpm / 60_000_000)


def deferred(task: Any, store: FakeStateStore, event: dict[str, Any] | None = None) -> TaskDeferred:
    """Run ``task`` (resume it with ``event``) and expect it to defer."""
    context = make_context(FakeTI(), store)
    with pytest.raises(TaskDeferred) as info:
        task.execute_after_capacity(context, event) if event is not None else task.execute(context)
    return info.value


def event_of(deferral: TaskDeferred, fired_at: float | None = None, **changed: Any) -> dict[str, Any]:
    """The event the deferral's trigger yields (fired now, or at ``fired_at``), without waiting."""
    trigger = deferral.trigger
    assert isinstance(trigger, XAIRateLimitSlotTrigger)
    fired = time.time() if fired_at is None else fired_at
    return {**trigger.carry, "status": "slot", "fired_at": fired, "slot": trigger.slot, **changed}


def carried(deferral: TaskDeferred) -> dict[str, Any]:
    assert isinstance(deferral.trigger, XAIRateLimitSlotTrigger)
    return deferral.trigger.carry


def held_of(store: FakeStateStore) -> Reservation:
    held = Reservation.decode(store.data[CAPACITY_STATE_KEY]["value"])
    assert held is not None
    return held


def fire(trigger: XAIRateLimitSlotTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first())


def test_a_far_slot_waits_in_the_triggerer_and_the_task_sends_with_it(limited: Any, xai_server: Any) -> None:
    last_booked = book()
    store = FakeStateStore()
    lim = limiter()
    with counted_operations(lim.states) as operations:
        deferral = deferred(chat(), store)
    trigger = deferral.trigger
    assert isinstance(trigger, XAIRateLimitSlotTrigger) and deferral.method_name == RESUME_METHOD
    held = held_of(store)
    assert operations() == 2 and held.at == last_booked + lim.spacing_us  # the slot, the lead's read
    assert held == Reservation.decode(trigger.slot) and store.data[CAPACITY_STATE_KEY]["inputs"]
    assert trigger.moment == pytest.approx(held.at / 1e6 - LEAD)
    assert posts(xai_server) == []  # nothing sent before the slot

    event = fire(trigger)
    assert event["status"] == "slot" and event["fired_at"] >= trigger.moment
    ti = FakeTI()
    with counted_operations(lim.states) as operations:
        answer = chat().execute_after_capacity(make_context(ti, store), event)
    assert answer and operations() == 1  # its return noted; sent with the held slot: no new reservation
    assert len(lim.returns()) == 1
    (sent,) = posts(xai_server)
    assert sent_at(sent) >= held.at / 1e6 - 0.005  # not before its slot
    assert next_slot() == held.at + lim.spacing_us  # nobody else was given that slot
    record = ti.pushed["xai_usage"]
    assert record["deferred_s"] > 0.3 and 0 <= record["waited_s"] <= LEAD
    assert CAPACITY_STATE_KEY not in store.data


def test_a_far_slot_is_sent_by_the_triggerer_and_the_task_resumes_with_the_answer(
    limited: Any, xai_server: Any
) -> None:
    """The default: the trigger sends the request at the held slot, so the time Airflow takes to
    run the task again costs no slot; the task records the answer as if it had sent it."""
    limited(rate_limit_send_in_triggerer=True)
    last_booked = book()
    store = FakeStateStore()
    lim = limiter()
    with counted_operations(lim.states) as operations:
        deferral = deferred(chat(), store)
    trigger = deferral.trigger
    assert isinstance(trigger, XAIRateLimitSlotTrigger) and trigger.request is not None
    held = held_of(store)
    assert operations() == 1 and held.at == last_booked + lim.spacing_us  # the slot; no lead to read
    assert trigger.moment == pytest.approx(held.at / 1e6 - SEND_AHEAD)
    assert trigger.request["path"] == "responses" and "Authorization" not in json.dumps(trigger.request)
    assert posts(xai_server) == []

    event = fire(XAIRateLimitSlotTrigger(**trigger.serialize()[1]))  # as the triggerer makes it
    assert event["status"] == "answered" and event["slot"] == trigger.slot
    (sent,) = posts(xai_server)
    assert sent_at(sent) >= held.at / 1e6 - 0.005  # at its slot, not before
    assert next_slot() == held.at + lim.spacing_us  # the held slot was used, no other taken

    ti = FakeTI()
    answer = chat().execute_after_capacity(make_context(ti, store), event)
    assert isinstance(answer, str) and answer and json.dumps(answer)[1:-1] in event["answer"]
    assert len(posts(xai_server)) == 1  # the worker sent nothing
    record = ti.pushed["xai_usage"]
    assert record["total_tokens"] > 0 and record["deferred_s"] > 0.5 and record["waited_s"] == 0
    assert record["request_id"] == event["request_id"]
    assert CAPACITY_STATE_KEY not in store.data


def test_a_request_the_triggerer_could_not_send_takes_a_new_slot(limited: Any, xai_server: Any) -> None:
    limited(rate_limit_send_in_triggerer=True)
    book()
    store = FakeStateStore()
    deferral = deferred(chat(), store)
    held = held_of(store)
    event = event_of(deferral, status="failed", error="xAI API error 503")
    again = deferred(chat(), store, event)  # the held slot was spent: a new one, far away again
    assert held_of(store).at > held.at and carried(again)["deferrals"] == 2
    assert isinstance(again.trigger, XAIRateLimitSlotTrigger) and again.trigger.request is not None
    assert posts(xai_server) == []


#: A budget for the DAG of ``make_context``'s task.
DAG_BUDGET = json.dumps([{"scope": "dag:test_dag", "period": "daily", "usd": 5}])


@pytest.mark.parametrize(
    ("task", "extra"),
    [
        pytest.param(lambda: chat(max_cost_usd=1.0), {}, id="under a cost cap"),
        pytest.param(lambda: chat(), {"budgets": DAG_BUDGET}, id="under its DAG's budget"),
        pytest.param(lambda: chat(prompt="x" * 70_000), {}, id="a body over 64 KiB"),
        pytest.param(lambda: chat(prompt=f"Call with {secrets.register('mcp-token-5f3a9c')}"), {}, id="a secret"),
    ],
)
def test_a_task_the_triggerer_may_not_send_for_goes_back_to_a_worker(
    limited: Any, xai_server: Any, task: Callable[[], XAIChatOperator], extra: dict[str, Any]
) -> None:
    """A capped or budgeted call is checked in the worker before it is sent; a large body would
    travel in the trigger: both are handed back before their slot instead."""
    limited(rate_limit_send_in_triggerer=True, **extra)
    book(30)
    deferral = deferred(task(), FakeStateStore())
    assert isinstance(deferral.trigger, XAIRateLimitSlotTrigger) and deferral.trigger.request is None
    assert fire_now(deferral.trigger)["status"] == "slot"
    assert [e.path for e in posts(xai_server) if "tokenize" not in e.path] == []  # (a cap counts the prompt)


def test_a_request_xai_refuses_in_the_triggerer_comes_back_as_failed(limited: Any, xai_server: Any) -> None:
    limited(rate_limit_send_in_triggerer=True)
    book()
    deferral = deferred(chat(), FakeStateStore())
    assert isinstance(deferral.trigger, XAIRateLimitSlotTrigger) and deferral.trigger.request is not None
    kwargs = deferral.trigger.serialize()[1]
    kwargs["request"] = {**kwargs["request"], "body": {**kwargs["request"]["body"], "model": "grok-no-such-model"}}
    event = fire(XAIRateLimitSlotTrigger(**kwargs))
    assert event["status"] == "failed" and "grok-no-such-model" in event["error"] and "answer" not in event


def fire_now(trigger: XAIRateLimitSlotTrigger) -> dict[str, Any]:
    trigger.moment = time.time()
    return fire(trigger)


def test_a_near_slot_is_waited_for_in_the_worker(limited: Any, xai_server: Any) -> None:
    book(2)  # about 0.2 s away: under rate_limit_defer_after
    ti = FakeTI()
    assert chat().execute(make_context(ti, FakeStateStore()))
    assert len(posts(xai_server)) == 1 and 0.1 < ti.pushed["xai_usage"]["waited_s"] < DEFER_AFTER + 0.1
    assert ti.pushed["xai_usage"]["deferred_s"] == 0


def test_deferral_off_waits_in_the_worker_whatever_the_wait(limited: Any, xai_server: Any) -> None:
    limited(rate_limit_defer_after=0)
    book()
    ti = FakeTI()
    assert chat().execute(make_context(ti, FakeStateStore()))
    assert ti.pushed["xai_usage"]["waited_s"] > 0.8 and len(posts(xai_server)) == 1


def test_changed_inputs_give_the_held_slot_back_and_take_a_new_one(limited: Any, xai_server: Any) -> None:
    book(LONG)
    store = FakeStateStore()
    deferral = deferred(chat(prompt="Say hello."), store)
    held = held_of(store)
    # Resumed with another prompt (an upstream task re-ran): the slot is given back, and the
    # new call books the same second again (it was the last one booked), then waits for it.
    again = deferred(chat(prompt="Say goodbye."), store, event_of(deferral))
    new = held_of(store)
    assert new.at == held.at + 1 and carried(again)["inputs"] != carried(deferral)["inputs"]
    assert carried(again)["deferrals"] == 2 and posts(xai_server) == []


def test_a_next_try_gives_a_leftover_slot_back_and_never_sends_with_it(limited: Any, xai_server: Any) -> None:
    book()
    store = FakeStateStore()
    deferred(chat(), store)
    held = held_of(store)
    # The task was cleared while it waited; its next try runs without deferral.
    limited(rate_limit_defer_after=0)
    ti = FakeTI()
    assert chat().execute(make_context(ti, store))
    (sent,) = posts(xai_server)
    assert sent_at(sent) >= (held.at + 1) / 1e6 - 0.005  # a slot of its own: the one given back
    assert next_slot() == held.at + 1 + limiter().spacing_us
    assert CAPACITY_STATE_KEY not in store.data and ti.pushed["xai_usage"]["deferred_s"] == 0


def test_bad_input_on_resume_gives_the_slot_and_its_tokens_back(limited: Any, xai_server: Any) -> None:
    limited(rate_limit_tokens_per_minute=100_000)
    book(LONG)
    store = FakeStateStore()
    deferral = deferred(chat(), store)
    held = held_of(store)
    assert tokens_after(held) == pytest.approx(held.tokens, abs=1) and held.tokens > 0
    with pytest.raises(XAIValidationError, match="temperature"):
        bad = chat(request_kwargs={"temperature": 7})
        bad.execute_after_capacity(make_context(FakeTI(), store), event_of(deferral))
    assert posts(xai_server) == [] and CAPACITY_STATE_KEY not in store.data
    assert tokens_after(held) == 0 and next_slot() == held.at + 1
    assert limiter().returns() == []  # no call came to the slot: no return to learn from


def test_the_trigger_gives_the_slot_back_when_the_task_is_cleared(limited: Any) -> None:
    limited(rate_limit_tokens_per_minute=100_000)
    book(LONG)
    store = FakeStateStore()
    trigger = deferred(chat(), store).trigger
    held = held_of(store)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_xai.triggers.capacity.XAIRateLimitSlotTrigger"
    asyncio.run(XAIRateLimitSlotTrigger(**kwargs).on_kill())
    assert tokens_after(held) == 0 and next_slot() == held.at + 1


def test_a_killed_task_gives_back_the_slot_it_sleeps_for(limited: Any, xai_server: Any) -> None:
    limited(rate_limit_defer_after=0)
    last_booked = book(LONG)
    task = chat()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (task.execute(make_context(FakeTI(), FakeStateStore())), done.set()))
    thread.start()
    deadline = time.monotonic() + 10
    while not task.hook.rate_limit.release_waiting():  # on_kill's step, once the task sleeps
        assert time.monotonic() < deadline and thread.is_alive(), "the task never slept for its slot"
        time.sleep(0.005)
    assert next_slot() == last_booked + limiter().spacing_us + 1  # its slot, given back
    thread.join(10)
    assert done.is_set()


def test_a_late_return_takes_the_next_free_slot_and_defers_again_with_the_learned_lead(
    limited: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    limited(rate_limit_resume_lead=2.0)
    for _ in range(3):  # the deployment's earlier returns: the lead is learned from them
        limiter().returns(0.2)
    book()
    store = FakeStateStore()
    deferral = deferred(chat(), store)
    held = held_of(store)
    assert carried(deferral)["lead"] == pytest.approx(LEAD_FLOOR)  # 0.2 s + the margin, floored
    book()  # others book after it meanwhile
    while time.time() < held.at / 1e6 + 0.05:  # the task comes back after its slot passed
        time.sleep(0.01)
    came_back = 1.5
    again = deferred(chat(), store, event_of(deferral, fired_at=time.time() - came_back))
    assert held_of(store).at > held.at + 9 * limiter().spacing_us  # behind the later bookings
    # Its return (from the trigger firing to its call coming to the slot) is one of four noted:
    # the lead covers three in four (nearest rank), not it.
    *earlier, noted = limiter().returns()
    assert earlier == [0.2, 0.2, 0.2] and noted >= came_back
    assert carried(again)["deferrals"] == 2 and carried(again)["lead"] == pytest.approx(LEAD_FLOOR)
    assert "later than its 0.5s lead: the slot passed" in capsys.readouterr().out  # the task log says why
    assert again.trigger.moment == pytest.approx(held_of(store).at / 1e6 - carried(again)["lead"])
    # Most returns slow: the lead grows with them, up to the connection's rate_limit_resume_lead.
    for _ in range(4):
        limiter().returns(5.0)
    book()
    third = deferred(chat(), FakeStateStore())
    assert carried(third)["lead"] == 2.0


def test_a_slot_within_the_learned_lead_is_waited_for_in_the_worker(limited: Any, xai_server: Any) -> None:
    limited(rate_limit_resume_lead=3.0)
    limiter().returns(0.2)  # fast returns: the lead is 0.5 s, a slot a second away waits in the triggerer
    book()
    deferral = deferred(chat(), FakeStateStore())
    assert carried(deferral)["lead"] == LEAD_FLOOR and posts(xai_server) == []
    for _ in range(3):  # slower returns: the lead is 2.75 s, and a slot two seconds away is slept for
        limiter().returns(2.5)
    book()  # behind the first task's slot too
    ti = FakeTI()
    assert chat().execute(make_context(ti, FakeStateStore()))
    assert len(posts(xai_server)) == 1 and ti.pushed["xai_usage"]["waited_s"] > 0.5
    assert ti.pushed["xai_usage"]["deferred_s"] == 0


def test_an_unusable_store_for_the_lead_falls_back_to_the_connections_lead(
    limited: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limited(rate_limit_resume_lead=2.0)
    limiter().returns(0.2)  # would be a 0.5 s lead

    def down(*args: Any) -> list[float]:
        raise XAIConnectionError("the store is down")

    monkeypatch.setattr(SharedRateLimiter, "returns", down)
    book(LONG)
    deferral = deferred(chat(), FakeStateStore())
    assert carried(deferral)["lead"] == 2.0


def test_past_the_most_deferrals_the_task_waits_in_the_worker(limited: Any, xai_server: Any) -> None:
    book()
    store = FakeStateStore()
    deferral = deferred(chat(), store)
    event = event_of(deferral, deferrals=MAX_DEFERRALS)
    book()
    while time.time() < held_of(store).at / 1e6 + 0.05:
        time.sleep(0.01)
    ti = FakeTI()
    event["fired_at"] = time.time()
    assert chat().execute_after_capacity(make_context(ti, store), event)
    assert len(posts(xai_server)) == 1 and ti.pushed["xai_usage"]["waited_s"] > 0.5


def test_an_unreadable_slot_is_skipped_and_a_new_one_taken(limited: Any, xai_server: Any) -> None:
    ti = FakeTI()
    store = FakeStateStore({CAPACITY_STATE_KEY: {"value": json.dumps({"key": "x"}), "inputs": "y"}})
    assert chat().execute(make_context(ti, store)) and len(posts(xai_server)) == 1
    assert CAPACITY_STATE_KEY not in store.data


def test_a_responses_task_and_a_deferred_completion_wait_for_their_slot_first(limited: Any, xai_server: Any) -> None:
    book()
    store = FakeStateStore()
    task = XAIResponsesOperator(task_id="research", prompt="Summarise.", model=MODEL)
    deferral = deferred(task, store)
    event = fire(deferral.trigger)
    ti = FakeTI()
    assert XAIResponsesOperator(task_id="research", prompt="Summarise.", model=MODEL).execute_after_capacity(
        make_context(ti, store), event
    )
    assert ti.pushed["xai_usage"]["kind"] == "responses" and ti.pushed["xai_usage"]["deferred_s"] > 0

    book()
    store = FakeStateStore()
    deferral = deferred(chat(deferrable=True), store)
    assert isinstance(deferral.trigger, XAIRateLimitSlotTrigger)
    event = fire(deferral.trigger)
    # Back with its slot, the task submits the deferred completion, then waits for the answer.
    submitted = deferred(chat(deferrable=True), store, event)
    assert isinstance(submitted.trigger, XAIDeferredCompletionTrigger)
    assert CAPACITY_STATE_KEY not in store.data
    assert len(xai_server.requests("/chat/deferred-completion", method="POST")) + len(
        [e for e in posts(xai_server) if e.path.endswith("/chat/completions")]
    ) >= 1


def test_a_next_try_gives_back_the_slot_alone_never_its_tokens(limited: Any, xai_server: Any) -> None:
    """The trigger may have given the tokens back already (Airflow 3.3 calls its on_kill when
    the task is cleared): the next try gives back only the slot, which cannot be given twice."""
    limited(rate_limit_tokens_per_minute=100_000)
    book(LONG)
    store = FakeStateStore()
    deferred(chat(), store)
    held = held_of(store)
    with pytest.raises(XAIValidationError, match="temperature"):  # the next try stops before its call
        chat(request_kwargs={"temperature": 7}).execute(make_context(FakeTI(), store))
    assert tokens_after(held) == pytest.approx(held.tokens, abs=1)  # left to drain
    assert next_slot() == held.at + 1 and CAPACITY_STATE_KEY not in store.data
    assert posts(xai_server) == []


def test_a_held_slot_of_another_model_is_given_back(limited: Any, xai_server: Any) -> None:
    book(LONG)
    store = FakeStateStore()
    deferral = deferred(chat(), store)
    held = held_of(store)
    ti = FakeTI()
    # Resumed as a task on another model (its template rendered differently): a slot of its own.
    other = XAIChatOperator(task_id="ask", prompt="Say hello.", model="grok-3-mini", max_tokens=256)
    assert other.execute_after_capacity(make_context(ti, store), event_of(deferral))
    assert next_slot() == held.at + 1 and ti.pushed["xai_usage"]["model"] != MODEL
