"""Waiting for rate-limit capacity in the triggerer instead of a worker.

A prompt task (chat, Responses, vision, ``@task.xai``, branch) on a connection with a shared
rate limit asks its first limited call (``RateLimitLayer.expect``) to be withdrawn rather than
sleep when its slot is more than ``rate_limit_defer_after`` seconds away (and more than the
resume lead). The call has then reserved its slot (one store operation) and sent nothing. The
task:

1. keeps the reservation in the task state store, with the fingerprint of the call's body,
   and in the trigger, whose event brings it back;
2. defers to :class:`~airflow_provider_xai.triggers.capacity.XAIRateLimitSlotTrigger` until
   ``rate_limit_resume_lead`` seconds before the slot, holding no worker slot;
3. back on a worker (:func:`resume`), runs again: its first limited call sends with the held
   reservation instead of taking a new slot (if the body is the same; else the reservation is
   given back and a new slot taken). Back later than its slot, it takes the next free one and
   may defer again (at most :data:`MAX_DEFERRALS` times per try), with a lead grown by the time
   it took to come back.

A task cleared or killed while deferred gives its slot back: the trigger's ``on_kill`` (Airflow
3.3) gives the slot and its tokens; the task's next try, finding the reservation in the task
state store, gives the slot alone (the trigger may have given the tokens already) and never
sends with it. Short waits stay in the worker, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.operators.base import TaskState

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.connection.rate_limits import RateLimitConfig
    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.operators.base import XAIBaseOperator
    from airflow_provider_xai.ratelimit.held import CapacityWait, Reservation

#: The task state store key of a reservation kept while the task waits in the triggerer.
CAPACITY_STATE_KEY = "xai_rate_limit_slot"
#: Deferrals for capacity per try; past them the task waits in the worker.
MAX_DEFERRALS = 3
#: A lead grown after a late return: this many times the time the return took.
LEAD_MARGIN = 1.5
RESUME_METHOD = "execute_after_capacity"


@dataclass
class Resume:
    """What a task brings back from waiting in the triggerer (read leniently)."""

    held: Reservation | None
    inputs: str | None
    deferrals: int
    lead: float
    #: Seconds from the trigger firing to this resume (None: unknown).
    came_back: float | None = None
    taken: bool = False

    @classmethod
    def of(cls, event: Any) -> Resume:
        """From the trigger's event (``XAIRateLimitSlotTrigger``)."""
        from airflow_provider_xai.ratelimit.held import Reservation

        data: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
        fired, inputs, deferrals, lead = (data.get(name) for name in ("fired_at", "inputs", "deferrals", "lead"))
        return cls(
            held=Reservation.decode(data.get("slot")),
            inputs=inputs if isinstance(inputs, str) else None,
            deferrals=deferrals if isinstance(deferrals, int) and not isinstance(deferrals, bool) else MAX_DEFERRALS,
            lead=float(lead) if _seconds(lead) else 0.0,
            came_back=max(0.0, time.time() - fired) if _seconds(fired) else None,
        )


_RESUMING: ContextVar[Resume | None] = ContextVar("xai_capacity_resume", default=None)


def resume(op: XAIBaseOperator, context: Context, event: Any) -> Any:
    """The task is back on a worker shortly before its slot: run it again with the slot."""
    back = Resume.of(event)
    if back.came_back is not None:
        op.log.info(
            "Back on a worker %.1fs after the triggerer let the task go (resume lead %.1fs)",
            back.came_back, back.lead,
        )
    if back.held is None:
        op.log.warning("xAI rate-limit slot of this task unreadable after its deferral; taking a new one")
    token = _RESUMING.set(back)
    try:
        return op.execute(context)
    finally:
        _RESUMING.reset(token)


def within_capacity(op: XAIBaseOperator, context: Context, send: Callable[[Context], Any]) -> Any:
    """``send(context)`` with the task's first limited call allowed to wait in the triggerer
    (see the module docstring)."""
    hook = op.hook
    try:
        config = hook.settings.rate_limit
    except XAIError:  # the call itself says what is wrong, in its order
        return send(context)
    back = _RESUMING.get()
    if config is None or hook.rate_limit.served or (back is not None and back.taken):
        return send(context)
    from airflow_provider_xai.ratelimit.held import CapacityWait
    from airflow_provider_xai.ratelimit.layer import FirstCall

    state = TaskState(context, CAPACITY_STATE_KEY, op.log, "xAI rate-limit slot")
    if back is None:
        _give_back_leftover(hook, state)
    else:
        back.taken = True
    deferrals = back.deferrals if back is not None else 0
    lead = _lead(config, back)
    defer_after = max(config.defer_after, lead) if config.defer_after and deferrals < MAX_DEFERRALS else None
    held = back.held if back is not None else None
    first = FirstCall(defer_after, held, back.inputs if back is not None else None)
    hook.rate_limit.expect(first)
    deferring = False
    try:
        return send(context)
    except CapacityWait as wait:
        deferring = True
        _defer(op, state, wait, lead, deferrals + 1)
    finally:
        hook.rate_limit.expect(None)
        if held is not None and not deferring:
            if not first.held_outcome:  # no limited call came (bad input...): not needed
                _release(hook, held, tokens=True)
            state.clear()


def _lead(config: RateLimitConfig, back: Resume | None) -> float:
    """How long before its slot the task is handed back: the connection's lead, grown by the
    time an earlier return of this try took."""
    lead = config.resume_lead
    if back is not None:
        lead = max(lead, back.lead, LEAD_MARGIN * (back.came_back or 0.0))
    return lead


def _defer(op: XAIBaseOperator, state: TaskState, wait: CapacityWait, lead: float, deferrals: int) -> None:
    from airflow_provider_xai.triggers.capacity import XAIRateLimitSlotTrigger

    held = wait.reservation
    slot = held.encode()
    state.set(slot, wait.inputs)  # kept before deferring: a next try finds it and gives it back
    op.log.info(
        "xAI rate limit: the next slot is %.1fs away; waiting for it in the triggerer (back %.1fs before it)",
        wait.wait, lead,
    )
    carry = {"inputs": wait.inputs, "deferrals": deferrals, "lead": lead}
    op.defer(
        trigger=XAIRateLimitSlotTrigger(held.at / 1e6 - lead, slot, op.xai_conn_id, carry),
        method_name=RESUME_METHOD,
    )


def _give_back_leftover(hook: XAIHook, state: TaskState) -> None:
    """A reservation an earlier try kept (it was cleared, or died, while it waited): the slot
    is given back, never sent with (its trigger may have given it away already)."""
    from airflow_provider_xai.ratelimit.held import Reservation

    value, _ = state.entry()
    if value is None:
        return
    held = Reservation.decode(value)
    if held is None:
        state.skipped(1, "not a rate-limit reservation")
    else:
        _release(hook, held, tokens=False)
    state.clear()


def _release(hook: XAIHook, held: Reservation, *, tokens: bool) -> None:
    try:
        limiter = hook.rate_limit.limiter(hook.settings)
    except XAIError as exc:  # the store is down: the slot stays a gap
        hook.log.warning("Could not give back an xAI rate-limit slot: %s", exc)
        return
    if limiter is not None:
        limiter.release(held, tokens=tokens)


def _seconds(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11


__all__ = ["CAPACITY_STATE_KEY", "MAX_DEFERRALS", "RESUME_METHOD", "resume", "within_capacity"]
