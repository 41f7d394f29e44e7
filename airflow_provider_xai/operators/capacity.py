"""Waiting for rate-limit capacity in the triggerer instead of a worker.

A prompt task (chat, Responses, vision, ``@task.xai``, branch) on a connection with a shared
rate limit asks its first limited call (``RateLimitLayer.expect``) to be withdrawn rather than
sleep when its slot is more than ``rate_limit_defer_after`` seconds away (and more than the
resume lead). The call has then reserved its slot (one store operation) and sent nothing. The
task:

1. keeps the reservation in the task state store, with the fingerprint of the call's body,
   and in the trigger, whose event brings it back;
2. defers to :class:`~airflow_provider_xai.triggers.capacity.XAIRateLimitSlotTrigger`, holding
   no worker slot. The trigger sends the request itself at the slot when it may
   (``rate_limit_send_in_triggerer``, on by default; a call under a cost cap or a budget, whose
   budget is checked in the worker before it is sent, and a request the layer does not hand
   over, see ``_LimitedCall._handed_over``, are sent from the worker): the task resumes with
   the answer and records it as if it had sent it, so no slot is lost to the time Airflow takes
   to run the task again. Else the task is handed back its resume lead before the slot. The
   lead is learned
   (:mod:`airflow_provider_xai.ratelimit.lead`): about the time this deployment takes to run a
   deferred task again, from the returns the connection's tasks noted in the shared store, at
   most ``rate_limit_resume_lead`` (the lead before any is measured);
3. back on a worker (:func:`resume`), runs again: its first limited call reads the answer the
   triggerer got, or sends with the held reservation instead of taking a new slot (if the body
   is the same; else the reservation is given back and a new slot taken). Back later than its
   slot (past the limiter's ``LATE_US``: sending then could put more than the limit in a
   second), it takes the next free one and may defer again (at
   most :data:`MAX_DEFERRALS` times per try), with the lead learned from the returns so far.
   The task notes how long it took from the trigger firing to its call coming to the held slot
   (one store operation, after the request), for the tasks after it.

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
    from airflow_provider_xai.pipeline.replies import Reply
    from airflow_provider_xai.ratelimit.held import CapacityWait, Reservation
    from airflow_provider_xai.ratelimit.layer import FirstCall

#: The task state store key of a reservation kept while the task waits in the triggerer.
CAPACITY_STATE_KEY = "xai_rate_limit_slot"
#: Deferrals for capacity per try; past them the task waits in the worker.
MAX_DEFERRALS = 3
RESUME_METHOD = "execute_after_capacity"
#: A trigger that sends the request fires this long before the slot (its hook then sleeps to
#: the slot's microsecond): time to open the connection.
SEND_AHEAD = 1.0


@dataclass
class Resume:
    """What a task brings back from waiting in the triggerer (read leniently)."""

    held: Reservation | None
    inputs: str | None
    deferrals: int
    #: The lead the task was handed back with.
    lead: float
    #: Seconds from the trigger firing to this resume (None: unknown).
    came_back: float | None = None
    #: When the trigger fired (epoch seconds; None: unknown).
    fired_at: float | None = None
    #: The answer the triggerer got, sending the task's request at its slot (None: it did not).
    answer: Reply | None = None
    #: Why the triggerer could not send it ("": it was not asked to, or did).
    failed: str = ""
    taken: bool = False

    @classmethod
    def of(cls, event: Any) -> Resume:
        """From the trigger's event (``XAIRateLimitSlotTrigger``)."""
        from airflow_provider_xai.ratelimit.held import Reservation

        data: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
        fired, inputs, deferrals, lead = (data.get(name) for name in ("fired_at", "inputs", "deferrals", "lead"))
        status = data.get("status")
        return cls(
            held=Reservation.decode(data.get("slot")),
            inputs=inputs if isinstance(inputs, str) else None,
            deferrals=deferrals if isinstance(deferrals, int) and not isinstance(deferrals, bool) else MAX_DEFERRALS,
            lead=float(lead) if _seconds(lead) else 0.0,
            came_back=max(0.0, time.time() - fired) if _seconds(fired) else None,
            fired_at=float(fired) if _seconds(fired) else None,
            answer=_answer_of(data) if status == "answered" else None,
            failed=str(data.get("error") or "the triggerer could not send it") if status == "failed" else "",
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
    if back.failed:
        op.log.warning("The triggerer could not send the xAI request (%s); sending it from this worker", back.failed)
    elif back.held is None:
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
    defer_after = config.defer_after if config.defer_after and deferrals < MAX_DEFERRALS else None
    held = back.held if back is not None and not back.failed else None  # a failed send spent it
    first = FirstCall(defer_after, held, back.inputs if back is not None else None)
    if config.send_in_triggerer:  # asked once the task runs within its budgets (they name it)
        first.hand_over = lambda: not _under_spend_control(op)
    first.answer = back.answer if back is not None else None
    lead = first.lead = ResumeLead(hook, config, back.fired_at if back is not None else None, first)
    hook.rate_limit.expect(first)
    deferring = False
    try:
        return send(context)
    except CapacityWait as wait:
        deferring = True
        _defer(op, state, wait, lead, deferrals + 1)
    finally:
        hook.rate_limit.expect(None)
        if back is not None:  # this return noted (after the request), for the tasks after it
            _noted(op, back, lead)
        if held is not None and not deferring:
            if not first.held_outcome:  # no limited call came (bad input...): not needed
                _release(hook, held, tokens=True)
            elif first.answer is not None and first.held_outcome != "answered":
                op.log.warning("The answer the triggerer got was for other inputs than this try's: not used")
            state.clear()


class ResumeLead:
    """How long before its slot the task would be handed back: learned from the connection's
    recent returns (:func:`~airflow_provider_xai.ratelimit.lead.learned_lead`), read from the
    store once per try, when first needed. A task back from the triggerer notes its own return
    with that read: the seconds from its trigger firing (``fired_at``) to its first call coming
    to the held slot (``first.reached``), all the lead must cover. The store unusable:
    ``rate_limit_resume_lead``."""

    def __init__(
        self, hook: XAIHook, config: RateLimitConfig, fired_at: float | None = None, first: FirstCall | None = None
    ) -> None:
        self.hook, self.config, self.fired_at, self.first = hook, config, fired_at, first
        self.value: float | None = None
        #: The recent returns it was learned from (seconds, oldest first).
        self.returns: list[float] = []

    @property
    def came_back(self) -> float | None:
        """Seconds from the trigger firing to the call coming to its held slot (None: unknown,
        or no call came)."""
        reached = self.first.reached if self.first is not None else None
        if self.fired_at is None or reached is None:
            return None
        return max(0.0, reached - self.fired_at)

    def __call__(self) -> float:
        if self.value is None:
            self.value = self._learned()
        return self.value

    def _learned(self) -> float:
        from airflow_provider_xai.ratelimit.lead import learned_lead

        try:
            limiter = self.hook.rate_limit.limiter(self.hook.settings)
            self.returns = limiter.returns(self.came_back) if limiter is not None else []
        except XAIError as exc:  # the store is down: the call says so; the connection's lead
            self.hook.log.warning("Could not read the learned xAI resume lead: %s", exc)
            return self.config.resume_lead
        return learned_lead(self.returns, self.config.resume_lead)


def _noted(op: XAIBaseOperator, back: Resume, lead: ResumeLead) -> None:
    """Note this return, once its call came to the held slot (``lead()``: one store operation,
    none more when the lead was read already). One that came after its slot has lost it: say
    so, and when most returns are slower than the connection's ceiling, what to change."""
    from airflow_provider_xai.ratelimit.lead import quantile
    from airflow_provider_xai.ratelimit.limiter import LATE_US

    took = lead.came_back
    if took is None:
        return
    value = lead()
    first = lead.first
    if back.held is None or first is None or first.reached is None or first.held_outcome != "used":
        return
    if first.reached - back.held.at / 1e6 <= LATE_US / 1e6:
        return
    ceiling = lead.config.resume_lead
    slow = bool(lead.returns) and quantile(lead.returns, 0.5) > ceiling
    op.log.info(
        "Came to its slot %.1fs after the triggerer let the task go, later than its %.1fs lead: the slot "
        "passed and it took the next free one (resume lead now %.1fs)%s",
        took, back.lead, value,
        f"; most returns take longer than rate_limit_resume_lead ({ceiling:g}s): consider raising it" if slow else "",
    )


def _defer(op: XAIBaseOperator, state: TaskState, wait: CapacityWait, lead: ResumeLead, deferrals: int) -> None:
    from airflow_provider_xai.triggers.capacity import XAIRateLimitSlotTrigger

    held = wait.reservation
    slot = held.encode()
    state.set(slot, wait.inputs)  # kept before deferring: a next try finds it and gives it back
    request = wait.request.to_dict() if wait.request is not None else None
    if request is not None:  # sent by the trigger: no lead to read
        ahead = SEND_AHEAD
        op.log.info("xAI rate limit: the next slot is %.1fs away; the triggerer sends the request then", wait.wait)
    else:
        ahead = lead()
        op.log.info(
            "xAI rate limit: the next slot is %.1fs away; waiting for it in the triggerer (back %.1fs before it)",
            wait.wait, ahead,
        )  # fmt: skip
    carry = {"inputs": wait.inputs, "deferrals": deferrals, "lead": ahead}
    op.defer(
        trigger=XAIRateLimitSlotTrigger(held.at / 1e6 - ahead, slot, op.xai_conn_id, carry, request),
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


def _under_spend_control(op: XAIBaseOperator) -> bool:
    """Whether the task's calls are under a cost cap or a budget (the spend layer's task, set
    for the task's calls): checked in the worker before a call is sent, so never handed to the
    triggerer (its budget could be spent by then)."""
    spend = op.hook.spend
    if spend.task is None:
        return True
    try:
        return spend.controls(spend.budgets(op.hook.settings))
    except XAIError:  # the call says what is wrong
        return True


def _answer_of(data: Mapping[str, Any]) -> Reply | None:
    """The answer the triggerer got, as the reply the call reads (None: none readable)."""
    import httpx

    from airflow_provider_xai.pipeline.replies import Reply

    answer, request_id = data.get("answer"), data.get("request_id")
    if not isinstance(answer, str):
        return None
    headers = httpx.Headers({"x-request-id": request_id} if isinstance(request_id, str) else {})
    return Reply(200, headers, answer.encode("utf-8"))


def _seconds(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11


__all__ = ["CAPACITY_STATE_KEY", "MAX_DEFERRALS", "RESUME_METHOD", "resume", "within_capacity"]
