"""The shared client-side rate limit: every worker of a team reserves its slots in one store.

xAI limits each team's key per model in requests per second and tokens per minute, and answers
429 past them. A connection that sets ``rate_limit_requests_per_second`` and/or
``rate_limit_tokens_per_minute`` (or only a store: cool-downs and the batch pacer are then still
shared) gets a :class:`SharedRateLimiter`. Around each request attempt of a call that names a
model, the rate-limit layer calls:

1. :meth:`~SharedRateLimiter.plan` once per call: its store key and the tokens it reserves;
2. :meth:`~SharedRateLimiter.acquire` before each attempt: one store operation reserves the
   next request slot and the tokens together (``slots.py``: a reservation never refuses, it
   says when to go), then the caller sleeps until that moment. No polling; a slot is never
   lost nor given twice. A task's first call may instead withdraw with its reservation when
   the slot is far away (:class:`~airflow_provider_xai.ratelimit.held.CapacityWait`), wait in
   the triggerer, and come back with it (``held``: no store operation);
3. after an error answer :meth:`~SharedRateLimiter.failed`: a 429 sets the cool-down every
   worker's next slot waits out (the server's ``retry-after`` when sane, else the retry
   backoff, at most a minute) and gives the error what remains of it as ``retry_after``; any
   other error gives the tokens back (nothing was billed);
4. after a billed answer :meth:`~SharedRateLimiter.settle`: the tokens are corrected to the
   billed amount, bounded (one answer is charged at most a minute's budget, as xAI's window
   forgets it after a minute) and never failing the answer. A debt is written at once (one
   store operation); tokens given back ride on the next store operation of the key.

So a call costs one store operation (on SQLite usually one compare-and-set statement, else a
transaction; one Redis round trip), plus one
when its answer billed more tokens than it reserved, or was a 429, or it woke too late.

Request slots are ``(1 s + JITTER_ALLOWANCE_US) / R`` apart, so R + 1 consecutive requests span
more than a second even when the first reaches xAI a little later than the last; a caller that
wakes more than ``LATE_US`` after its slot (a busy machine) takes the next free slot instead of
crowding the ones after it. Keys hold a fingerprint of the API key, never the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_xai.connection.rate_limits import RateLimitConfig
from airflow_provider_xai.exceptions import XAIAPIError, XAIError, XAIRateLimitError
from airflow_provider_xai.pipeline.retry import MAX_RETRY_AFTER
from airflow_provider_xai.ratelimit.held import CapacityWait, DeferRule, Reservation
from airflow_provider_xai.ratelimit.slots import SECOND_US, Outcome, Update

if TYPE_CHECKING:
    from airflow_provider_xai.connection.settings import ClientSettings
    from airflow_provider_xai.ratelimit.store import States

T = TypeVar("T")
log = logging.getLogger(__name__)
#: Longest shared cool-down: the longest ``retry-after`` the hook's retries honour.
MAX_COOLDOWN = MAX_RETRY_AFTER
#: The longest server ``retry-after`` an error keeps for the task's retry; a longer one is not
#: believed (the error then carries the shared cool-down).
MAX_SERVER_DELAY = 24 * 3600.0
#: Added to every second's worth of request slots: an arrival may be delayed this much more
#: than the one R slots later (a busy worker, the network) and xAI's one-second window still
#: sees at most R. Costs 2.4 % of the rate.
JITTER_ALLOWANCE_US = 25_000
#: A caller that wakes later than this after its slot (a busy machine) would crowd the slots
#: after it: it takes the next free slot instead. Half the allowance; the other half is for the
#: way to xAI.
LATE_US = JITTER_ALLOWANCE_US // 2
#: A sleep that ends this close to its slot (microseconds) is not slept again (see
#: ``SharedRateLimiter.sleep_until``).
WAKE_SLACK_US = 10
MINUTE_US = 60 * SECOND_US
#: xAI's Batch API accepts 100 add-requests calls per 30 s per team; paced 1 % slower, smoothly.
BATCH_CALLS, BATCH_PERIOD_US = 100, 30_300_000


def slot_spacing_us(requests_per_second: float) -> int:
    """Microseconds between two request slots at a limit of ``requests_per_second``."""
    return math.ceil((SECOND_US + JITTER_ALLOWANCE_US) / requests_per_second)


def fingerprint(api_key: str) -> str:
    """What identifies a key in the store: 16 hex digits of its SHA-256, never the key."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]


@dataclass
class Plan:
    """What one call charges: its model's store key and the tokens each attempt reserves
    (0 without a tokens limit). ``charged``: the tokens the store holds for it now."""

    key: str
    tokens: int
    charged: int = 0


@dataclass
class SharedRateLimiter:
    """The shared limits of one API key, through ``states`` (see the module docstring).

    Tokens given back (an over-estimate settled, an attempt that failed) are not written at
    once: they ride on this limiter's next store operation on the same key, so a call costs one
    store operation. A refund is never urgent (it only frees capacity) and an untaken one drains
    from the minute bucket on its own; a debt (an under-estimate) is written at once.
    """

    config: RateLimitConfig
    states: States
    key_fingerprint: str
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    spacing_us: int = field(init=False)  # between two request slots (0: no requests limit)
    depth_us: int = field(init=False)  # the tokens bucket: a minute's budget (0: no tokens limit)
    _refunds: dict[str, int] = field(init=False, default_factory=dict)  # us to give back, by key
    _sleepers: dict[object, Reservation] = field(init=False, default_factory=dict)  # slots slept for
    _model_keys: dict[str, str] = field(init=False, default_factory=dict)  # the store key of each model
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        rps = self.config.requests_per_second
        self.spacing_us = slot_spacing_us(rps) if rps else 0
        self.depth_us = MINUTE_US if self.config.tokens_per_minute else 0

    def now_us(self) -> int:
        return round(self.clock() * SECOND_US)

    def key(self, scope: str) -> str:
        """A store key of this API key (its fingerprint): ``scope`` is e.g. ``model:grok-4``."""
        return f"xai-rate-limit:{self.key_fingerprint}:{scope}"

    # --- what the rate-limit layer calls -------------------------------------------------------
    def plan(self, model: str | None, tokens: int) -> Plan | None:
        """What a call on ``model`` estimated at ``tokens`` charges (None: no model, no limit).
        A call reserves at most a minute's budget at once (the rest is settled after)."""
        if not isinstance(model, str) or not model:
            return None
        tpm = self.config.tokens_per_minute
        key = self._model_keys.get(model)
        if key is None:
            key = self._model_keys[model] = self.key(f"model:{model}")
        return Plan(key, min(max(tokens, 0), tpm) if tpm else 0)

    def acquire(self, plan: Plan, held: Reservation | None = None, defer: DeferRule | None = None) -> float:
        """Reserve the next slot and the tokens (one store operation), then sleep until it; the
        seconds slept. A caller that woke too late for its slot takes the next free one (a
        second operation).

        ``held``: a reservation kept for this call (a task back from waiting in the triggerer),
        used instead of a new one (no store operation); one of another key is given back.
        ``defer``: a slot further away than ``defer.after`` seconds (and than ``defer.lead()``)
        is not slept for: a :class:`CapacityWait` hands its reservation to the caller instead.
        """
        started = self.clock()
        at = self._held_slot(plan, held)
        if at is None:
            if held is not None:
                self.release(held)
            asked = self._reservation(plan)
            at = self._reserved(plan, self._apply(plan.key, asked))
            if at <= asked.now:  # the slot is now: nothing to wait for
                return self.clock() - started
        elif self._late(at):  # back later than its slot: the next free one
            at = self._apply(plan.key, self._again()).at
        defer_after = defer.after if defer is not None else None
        if (lead := self._lead_to_read(at, defer)) is not None:
            defer_after = max(defer_after or 0.0, lead())
        if (sleeper := self._sleeping(plan, at, held, defer_after)) is not None:
            try:
                self.sleep_until(at)
            finally:
                self._woke(sleeper)
        if self._late(at):
            self.sleep_until(self._apply(plan.key, self._again()).at)
        return self.clock() - started

    async def aacquire(self, plan: Plan, held: Reservation | None = None, defer: DeferRule | None = None) -> float:
        """Async :meth:`acquire`."""
        started = self.clock()
        at = self._held_slot(plan, held)
        if at is None:
            if held is not None:
                await self.arelease(held)
            asked = self._reservation(plan)
            at = self._reserved(plan, await self._aapply(plan.key, asked))
            if at <= asked.now:
                return self.clock() - started
        elif self._late(at):
            at = (await self._aapply(plan.key, self._again())).at
        defer_after = defer.after if defer is not None else None
        if (lead := self._lead_to_read(at, defer)) is not None:  # a store operation: in a thread
            defer_after = max(defer_after or 0.0, await asyncio.to_thread(lead))
        if (sleeper := self._sleeping(plan, at, held, defer_after)) is not None:
            try:
                await self.asleep_until(at)
            finally:
                self._woke(sleeper)
        if self._late(at):
            await self.asleep_until((await self._aapply(plan.key, self._again())).at)
        return self.clock() - started

    def returns(self, came_back: float | None = None) -> list[float]:
        """The recent times (seconds) tasks of this API key took to run again after their
        capacity trigger fired, oldest first, with ``came_back`` noted first when given (one
        store operation; ``ratelimit/lead.py``). Raises the store's error."""
        from airflow_provider_xai.ratelimit import lead, redis_store, sqlite_store

        now_ms = round(self.clock() * 1000)
        new = lead.entry(now_ms, came_back) if came_back is not None else None
        key = self.key("resume-lead")
        if isinstance(self.states, redis_store.RedisStates):
            entries = redis_store.resume_returns(self.states, key, now_ms, new)
        else:
            entries = sqlite_store.resume_returns(self.states, key, now_ms, new)
        return lead.recent(entries, now_ms)

    def release(self, held: Reservation, tokens: bool = True) -> None:
        """Give a slot that is still to come back, with its tokens unless ``tokens`` is False
        (a holder that cannot be sure nobody gave them back before). One store operation, none
        for a past slot; ``slots.py`` says what giving a slot back can mean. Never raises: a
        failure is logged."""
        if (update := self._giving_back(held, tokens)) is not None:
            with _logged("giving a slot back"):
                self._apply(held.key, update)

    async def arelease(self, held: Reservation, tokens: bool = True) -> None:
        """Async :meth:`release`."""
        if (update := self._giving_back(held, tokens)) is not None:
            with _logged("giving a slot back"):
                await self._aapply(held.key, update)

    def release_waiting(self) -> int:
        """Give back every slot a caller of this limiter is sleeping until (a task being
        killed); how many."""
        with self._lock:
            waiting = list(self._sleepers.values())
            self._sleepers.clear()
        for held in waiting:
            self.release(held)
        return len(waiting)

    def failed(self, plan: Plan, exc: XAIAPIError, backoff: float) -> None:
        """After an error answer: give the tokens back; share a 429's cool-down (one store
        operation) and set ``exc.retry_after`` to what remains of it."""
        if (update := self._failure(plan, exc, backoff)) is not None:
            outcome = None
            with _logged("a 429"):
                outcome = self._apply(plan.key, update)
            self._rate_limited(exc, update, outcome)

    async def afailed(self, plan: Plan, exc: XAIAPIError, backoff: float) -> None:
        """Async :meth:`failed`."""
        if (update := self._failure(plan, exc, backoff)) is not None:
            outcome = None
            with _logged("a 429"):
                outcome = await self._aapply(plan.key, update)
            self._rate_limited(exc, update, outcome)

    def settle(self, plan: Plan, used_tokens: int | None) -> None:
        """After a billed answer: correct the reserved tokens to ``used_tokens`` (None: unknown,
        the reservation stays). Never raises: a billed answer must not be lost."""
        with _logged("a billed answer"):
            if (update := self._correction(plan, used_tokens)) is not None:
                self._apply(plan.key, update)

    async def asettle(self, plan: Plan, used_tokens: int | None) -> None:
        """Async :meth:`settle`."""
        with _logged("a billed answer"):
            if (update := self._correction(plan, used_tokens)) is not None:
                await self._aapply(plan.key, update)

    def remaining_cooldown(self, model: str) -> float:
        """Seconds until ``model``'s shared 429 cool-down ends (0 when there is none)."""
        outcome = self._apply(self.key(f"model:{model}"), Update(self.now_us()))
        return max(0.0, self.left(outcome.cool_until))

    def left(self, at_us: int) -> float:
        """Seconds until ``at_us``, counted in whole microseconds as slots are (a slot at this
        microsecond is now: float rounding of the clock must not make it a sleep)."""
        return (at_us - self.now_us()) / SECOND_US

    def sleep_until(self, at_us: int) -> None:
        """Sleep until ``at_us`` (a slot's time). A sleep that ends early is slept again, unless
        it ends within :data:`WAKE_SLACK_US` of the slot: the epoch clock, a float, holds about a
        quarter of a microsecond, so a sleep that ended on the slot may read back a little short."""
        left, slack = self.left(at_us), 0.0
        while left > slack:
            self.sleep(left)
            left, slack = self.left(at_us), WAKE_SLACK_US / SECOND_US

    async def asleep_until(self, at_us: int) -> None:
        """Async :meth:`sleep_until`."""
        left, slack = self.left(at_us), 0.0
        while left > slack:
            await self.asleep(left)
            left, slack = self.left(at_us), WAKE_SLACK_US / SECOND_US

    # --- store operations: each carries the key's pending refunds ------------------------------
    def _give_back(self, key: str, us: int) -> None:
        if us:
            with self._lock:
                self._refunds[key] = self._refunds.get(key, 0) + us

    def _carrying(self, key: str, update: Update) -> tuple[Update, int]:
        """``update`` with ``key``'s pending refunds, and their amount (put back on failure)."""
        if not self._refunds:
            return update, 0
        with self._lock:
            carried = self._refunds.pop(key, 0)
        return (update._replace(correction=update.correction - carried) if carried else update), carried

    def _apply(self, key: str, update: Update) -> Outcome:
        update, carried = self._carrying(key, update)
        try:
            return self.states.update(key, update)
        except BaseException:
            self._give_back(key, carried)
            raise

    async def _aapply(self, key: str, update: Update) -> Outcome:
        update, carried = self._carrying(key, update)
        try:
            return await self.states.aupdate(key, update)
        except BaseException:
            self._give_back(key, carried)
            raise

    # --- the decisions, shared by the sync and async paths ---------------------------------------
    def _tokens_us(self, tokens: int) -> int:
        """``tokens`` as time in the minute bucket (exact opposites for opposite amounts)."""
        tpm = self.config.tokens_per_minute or 1
        return (1 if tokens >= 0 else -1) * -(-abs(tokens) * MINUTE_US // tpm)

    def _reservation(self, plan: Plan) -> Update:
        return Update(
            self.now_us(),
            slot=True,
            spacing=self.spacing_us,
            tokens=self._tokens_us(plan.tokens),
            depth=self.depth_us,
        )

    def _again(self) -> Update:
        """A request slot for a caller whose tokens are already reserved."""
        return Update(self.now_us(), slot=True, spacing=self.spacing_us, depth=self.depth_us)

    def _late(self, at_us: int) -> bool:
        """Whether this caller woke too late for its slot (then it takes the next free one)."""
        late = self.now_us() - at_us
        if self.spacing_us and late > LATE_US:
            log.debug("Woke %d us after a shared xAI rate-limit slot: taking the next one", late)
            return True
        return False

    def _reserved(self, plan: Plan, outcome: Outcome) -> int:
        """Note the reservation; the slot's time (us)."""
        plan.charged = plan.tokens
        return outcome.at

    def _held_slot(self, plan: Plan, held: Reservation | None) -> int | None:
        """The time of ``held`` when it is a slot of this call's key (its tokens then count as
        this call's charge); None when there is none or it is another key's."""
        if held is None or held.key != plan.key:
            return None
        plan.charged = held.tokens
        return held.at

    def reservation(self, plan: Plan, at: int, since: float | None = None) -> Reservation:
        """The slot at ``at`` booked for ``plan``, as a caller keeps it."""
        return Reservation(plan.key, at, plan.charged, self.spacing_us, self.clock() if since is None else since)

    def _lead_to_read(self, at: int, defer: DeferRule | None) -> Callable[[], float] | None:
        """``defer.lead`` when the slot at ``at`` is further away than ``defer.after`` (then a
        slot within the lead is slept for: waiting elsewhere could not bring the caller back in
        time); None when there is nothing to read."""
        if defer is None or defer.lead is None or self.left(at) <= defer.after:
            return None
        return defer.lead

    def _sleeping(self, plan: Plan, at: int, held: Reservation | None, defer_after: float | None) -> object | None:
        """Before sleeping until the slot at ``at``: withdraw instead when it is further away
        than ``defer_after``; else note it as slept for (given back if the task is killed) and
        return the note, for :meth:`_woke` (None: the slot is now, no sleep)."""
        wait = self.left(at)
        if wait <= 0:
            return None
        if defer_after is not None and wait > defer_after:
            raise CapacityWait(self.reservation(plan, at, held.since if held is not None else None), wait)
        if wait >= 1:  # worth a line in the task log: the task is not stuck
            log.info("Waiting %.1fs for the shared xAI rate limit %s", wait, plan.key.split(":", 2)[2])
        sleeper = object()
        with self._lock:
            self._sleepers[sleeper] = self.reservation(plan, at)
        return sleeper

    def _woke(self, sleeper: object) -> None:
        with self._lock:
            self._sleepers.pop(sleeper, None)

    def _giving_back(self, held: Reservation, tokens: bool) -> Update | None:
        now = self.now_us()
        if held.at <= now:  # the slot has passed: nothing left to give back
            return None
        refund = self._tokens_us(held.tokens) if tokens else 0
        return Update(now, correction=-refund, release=held.at, spacing=held.spacing)

    def _failure(self, plan: Plan, exc: XAIAPIError, backoff: float) -> Update | None:
        """Give the attempt's tokens back (nothing was billed); a 429's cool-down update: the
        server's ``retry-after`` when sane, else ``backoff``, at most :data:`MAX_COOLDOWN`."""
        self._give_back(plan.key, self._tokens_us(plan.charged))
        plan.charged = 0
        if not isinstance(exc, XAIRateLimitError):
            return None
        server = _delay(exc.retry_after, MAX_SERVER_DELAY)
        wait = min(server if server is not None else _delay(backoff, MAX_SERVER_DELAY) or 0.0, MAX_COOLDOWN)
        now = self.now_us()
        return Update(now, cool_until=now + int(wait * SECOND_US))

    def _rate_limited(self, exc: XAIAPIError, update: Update, outcome: Outcome | None) -> None:
        """A 429 carries what remains of the shared cool-down, or the server's longer delay."""
        until = outcome.cool_until if outcome is not None else update.cool_until
        remaining = max(0.0, self.left(until))
        exc.retry_after = max(remaining, _delay(exc.retry_after, MAX_SERVER_DELAY) or 0.0)

    def _correction(self, plan: Plan, used: int | None) -> Update | None:
        """Correct the reservation to ``used`` tokens: a refund is queued, a debt is the update
        returned (None: nothing to write now).

        A figure that is no count (negative, not an integer) is refused and logged; one past a
        minute's budget is charged as a minute's budget: xAI's window forgets an answer after a
        minute, so no single answer may lock the key out for longer.
        """
        tpm = self.config.tokens_per_minute
        if not tpm or used is None:
            return None
        if isinstance(used, bool) or not isinstance(used, int) or used < 0:
            log.warning("xAI reported %r tokens used: not a count, ignored (the estimate stays charged)", used)
            return None
        if used > tpm:
            log.warning("xAI billed %d tokens for one answer, more than a minute's budget: charged as %d", used, tpm)
            used = tpm
        delta = self._tokens_us(used) - self._tokens_us(plan.charged)
        plan.charged = used
        if delta < 0:
            self._give_back(plan.key, -delta)
        return Update(self.now_us(), correction=delta) if delta > 0 else None

    def batch_pacer(self) -> SharedPacer:
        """The Batch API's add-requests pace (100 calls per 30 s per team), shared."""
        return SharedPacer(self)


def _delay(value: Any, cap: float) -> float | None:
    """``value`` as seconds to wait when it is a sane number of them (finite, 0 to ``cap``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value <= cap else None


class _logged:
    """What follows an answer (a correction, a cool-down) must never fail it: a billed answer
    would be lost and requested again. A failure there is logged instead. (A class rather than
    a generator: every billed answer passes through it.)"""

    __slots__ = ("after",)

    def __init__(self, after: str) -> None:
        self.after = after

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, XAIError):
            log.warning("Could not update the shared xAI rate limit after %s: %s", self.after, exc)
        elif isinstance(exc, Exception):
            log.warning("Could not update the shared xAI rate limit after %s", self.after, exc_info=exc)
        else:
            return False  # no failure, or one that is not an error (KeyboardInterrupt...)
        return True


def build_limiter(settings: ClientSettings, redis_conn: Any = None) -> SharedRateLimiter:
    """The limiter of a connection whose ``rate_limit`` is set, on the process's store for it
    (``redis_conn``: the Airflow connection named by ``rate_limit_redis_conn_id``)."""
    from airflow_provider_xai.ratelimit.store import open_states

    config = settings.rate_limit
    assert config is not None
    states = open_states(config.store, config.path, config.redis_conn_id, redis_conn)
    return SharedRateLimiter(config, states, fingerprint(settings.api_key))


class SharedPacer:
    """``CallPacer``'s interface (``acquire`` returns the seconds waited) over the shared store:
    one reserved slot per call, ``BATCH_PERIOD_US / BATCH_CALLS`` apart."""

    def __init__(self, limiter: SharedRateLimiter) -> None:
        self.limiter = limiter
        self.key = limiter.key("batch-add-requests")
        self.spacing_us = -(-BATCH_PERIOD_US // BATCH_CALLS)

    def acquire(self) -> float:
        limiter = self.limiter
        started = limiter.clock()
        outcome = limiter.states.update(self.key, Update(limiter.now_us(), slot=True, spacing=self.spacing_us))
        limiter.sleep_until(outcome.at)
        return max(0.0, limiter.clock() - started)


__all__ = ["Plan", "SharedPacer", "SharedRateLimiter", "build_limiter", "fingerprint", "slot_spacing_us"]
