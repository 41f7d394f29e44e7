"""The shared client-side rate limit: every worker of a team paces itself through one store.

xAI limits each team's key per model in requests per second and tokens per minute, and answers
429 past them. A connection that sets ``rate_limit_requests_per_second`` and/or
``rate_limit_tokens_per_minute`` (or only a store: cool-downs and the batch pacer are then still
shared) gets a :class:`SharedRateLimiter`; the transport runs each request attempt through
:meth:`SharedRateLimiter.guard` (or ``aguard``), which, for requests that name a model:

1. charges the estimated tokens (:func:`estimate_tokens`) and one request, waiting while
   either limit is spent; the requests limit also carries the shared cool-down;
2. after a 429 sets that cool-down for every worker (the server's ``retry-after`` when given,
   else the retry backoff, at most a minute) and gives the error the remaining cool-down as its
   ``retry_after``; after any other error answer gives the tokens back (nothing was billed);
3. after a success corrects the charge with the real ``usage.total_tokens``.

The algorithm is pyrate-limiter's GCRA (a token bucket kept as one timestamp per key), in the
store of ``rate_limit_store.py``. Requests are paced smoothly (burst 1: one request every
``1/R`` s, so no window of any alignment sees more than R); tokens may be spent a minute's
budget at once (one request may be large). Keys hold a fingerprint of the API key, never the
key. The decisions are written once, as generators of store operations (:class:`Check`,
:class:`Read`, :class:`Sleep`) run by a blocking and an async driver.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from airflow_provider_xai.connection.rate_limits import RateLimitConfig
from airflow_provider_xai.exceptions import XAIAPIError, XAIError, XAIRateLimitError
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.pipeline.retry import MAX_RETRY_AFTER
from airflow_provider_xai.ratelimit.tokens import TappedStream, billed_tokens, estimate_tokens

if TYPE_CHECKING:
    from pyrate_limiter import Decision, Rate

    from airflow_provider_xai.connection.settings import ClientSettings
    from airflow_provider_xai.ratelimit.store import States

T = TypeVar("T")
log = logging.getLogger(__name__)
#: Longest shared cool-down: the longest ``retry-after`` the hook's retries honour.
MAX_COOLDOWN = MAX_RETRY_AFTER
#: xAI's Batch API accepts 100 add-requests calls per 30 s per team; paced 1 % slower, smoothly.
BATCH_CALLS, BATCH_PERIOD_MS = 100, 30_300


def fingerprint(api_key: str) -> str:
    """What identifies a key in the store: 16 hex digits of its SHA-256, never the key."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]


# --- store operations and the decisions over them -----------------------------------------------
@dataclass(frozen=True)
class Check:
    """Apply an arrival of ``weight`` at ``now`` (ms) to ``key``; answered with a Decision."""

    key: str
    rates: list[Rate]
    now: int
    weight: int


@dataclass(frozen=True)
class Read:
    """Read ``key``'s state; answered with the state tuple."""

    key: str
    rates: list[Rate]


@dataclass(frozen=True)
class Sleep:
    seconds: float


Steps = Generator["Check | Read | Sleep", Any, T]


@dataclass
class Plan:
    """One request's keys and its token estimate."""

    requests_key: str
    tokens_key: str
    tokens: int
    charged: int = 0
    rate_limited: int = 0


@dataclass
class SharedRateLimiter:
    """The shared limits of one API key, through ``states`` (see the module docstring)."""

    config: RateLimitConfig
    states: States
    key_fingerprint: str
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    requests_rate: list[Rate] = field(init=False)
    tokens_rate: list[Rate] = field(init=False)

    def __post_init__(self) -> None:
        from pyrate_limiter import Rate

        rps = self.config.requests_per_second
        # Without a requests limit the key still carries the cool-down: a rate no client
        # reaches (a million a second, as many at once).
        self.requests_rate = [Rate(round(rps * 1000), 10**6, burst=1) if rps else Rate(10**9, 10**6, burst=10**6)]
        tpm = self.config.tokens_per_minute
        self.tokens_rate = [Rate(tpm, 60_000)] if tpm else []

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def key(self, scope: str) -> str:
        """A store key of this API key (its fingerprint): ``scope`` is e.g. ``model:requests``."""
        return f"xai-rate-limit:{self.key_fingerprint}:{scope}"

    def plan(self, body: Any) -> Plan | None:
        """The keys and estimate of a request (None for requests that name no model)."""
        model = body.get("model") if isinstance(body, Mapping) else None
        if not isinstance(model, str):
            return None
        tokens = estimate_tokens(body) if self.tokens_rate and ("messages" in body or "input" in body) else 0
        return Plan(self.key(f"{model}:requests"), self.key(f"{model}:tokens"), tokens)

    # --- decisions (generators of store operations) ---------------------------------------------
    def _acquire(self, plan: Plan) -> Steps[None]:
        """Wait for the tokens (a whole minute's budget at most), then for a request slot."""
        if plan.tokens:
            plan.charged = min(plan.tokens, self.tokens_rate[0].burst)
            yield from self._take(plan.tokens_key, self.tokens_rate, plan.charged)
        yield from self._take(plan.requests_key, self.requests_rate, 1)

    def _take(self, key: str, rates: list[Rate], weight: int) -> Steps[None]:
        while True:
            decision: Decision = yield Check(key, rates, self.now_ms(), weight)
            if decision.allowed:
                return
            wait = max(decision.retry_after_ms or 0, 1) / 1000
            if wait >= 1:  # worth a line in the task log: the task is not stuck
                log.info("Waiting %.1fs for the shared xAI rate limit %s", wait, key.split(":", 2)[2])
            yield Sleep(wait)

    def _force(self, key: str, rates: list[Rate], weight: int) -> Steps[None]:
        """Charge ``weight`` even past the limit (a debt the next requests wait out).

        GCRA's step admits nothing past the limit, so each piece (at most a burst) is dated at
        the first moment the limit would admit it: the state then moves on by exactly that
        much. A negative ``weight`` gives units back (never below an empty bucket).
        """
        now, burst = self.now_ms(), rates[0].burst
        while weight:
            piece = min(weight, burst)
            for _ in range(8):  # another process may move the state between two checks
                decision: Decision = yield Check(key, rates, now, piece)
                if decision.allowed or decision.retry_after_ms is None:
                    break
                now += decision.retry_after_ms
            weight -= piece

    def _settle(self, plan: Plan, used: int | None) -> Steps[None]:
        """Correct the charged estimate by the real usage (None: give it all back)."""
        delta = (used or 0) - plan.charged
        plan.charged = used or 0
        if plan.tokens and delta:
            yield from self._force(plan.tokens_key, self.tokens_rate, delta)

    def _cool_down(self, plan: Plan, exc: XAIRateLimitError, backoff: float) -> Steps[None]:
        """Share a 429: the requests key admits nothing before the cool-down ends; the error
        carries what remains of the shared cool-down."""
        wait = exc.retry_after if exc.retry_after is not None else backoff
        until = self.now_ms() + int(min(max(wait, 0.0), MAX_COOLDOWN) * 1000)
        # A whole burst arriving one emission before ``until``: the next request is admitted at
        # ``until`` (to the millisecond), unless the key is already busy for longer.
        rate = self.requests_rate[0]
        arrival = until - math.ceil(_emission_us(rate) / 1000)
        yield Check(plan.requests_key, self.requests_rate, arrival, rate.burst)
        state = yield Read(plan.requests_key, self.requests_rate)
        yield from self._settle(plan, None)
        # What remains of the shared cool-down, or the server's own longer delay (past the cap).
        exc.retry_after = max(self._free_in(state), exc.retry_after or 0.0)

    def _free_in(self, state: Any) -> float:
        """Seconds until the requests key admits a request, from its state: GCRA admits one
        when ``now >= TAT - (burst - 1) * emission`` (TAT in microseconds)."""
        rate = self.requests_rate[0]
        free_at_us = int(state[0]) - (rate.burst - 1) * _emission_us(rate)
        return max(0.0, free_at_us / 1e6 - self.now_ms() / 1000)

    def remaining_cooldown(self, model: str) -> Steps[float]:
        """Seconds until ``model``'s requests key admits again (0 when free)."""
        state = yield Read(self.key(f"{model}:requests"), self.requests_rate)
        return self._free_in(state)

    def _attempt_outcome(self, plan: Plan, outcome: Any, backoff: Callable[[int], float]) -> Steps[None]:
        if isinstance(outcome, XAIRateLimitError):
            plan.rate_limited += 1
            yield from self._cool_down(plan, outcome, backoff(plan.rate_limited))
        elif isinstance(outcome, XAIAPIError):
            yield from self._settle(plan, None)
        elif (
            isinstance(outcome, Reply)
            and plan.tokens
            and outcome.status_code == 200
            and (used := billed_tokens(outcome)) is not None
        ):
            yield from self._settle(plan, used)

    # --- drivers ---------------------------------------------------------------------------------
    def run(self, steps: Steps[T]) -> T:
        """Run a decision with blocking store calls and sleeps."""
        answer: Any = None
        try:
            while True:
                op = steps.send(answer)
                if isinstance(op, Sleep):
                    self.sleep(op.seconds)
                    answer = None
                elif isinstance(op, Check):
                    answer = self.states.check(op.key, op.rates, op.now, op.weight)
                else:
                    answer = self.states.read(op.key, op.rates)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def arun(self, steps: Steps[T]) -> T:
        """Run a decision without blocking the event loop."""
        answer: Any = None
        try:
            while True:
                op = steps.send(answer)
                if isinstance(op, Sleep):
                    await self.asleep(op.seconds)
                    answer = None
                elif isinstance(op, Check):
                    answer = await self.states.acheck(op.key, op.rates, op.now, op.weight)
                else:
                    answer = await self.states.aread(op.key, op.rates)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # --- what the transport calls ------------------------------------------------------------------
    def guard(self, body: Any, attempt: Callable[[], T], backoff: Callable[[int], float]) -> Callable[[], T]:
        """``attempt`` (one request) behind the shared limits; ``backoff(n)`` is the wait after
        the n-th 429 that came without a ``retry-after``."""
        plan = self.plan(body)
        if plan is None:
            return attempt

        def limited() -> T:
            self.run(self._acquire(plan))
            try:
                result = attempt()
            except XAIAPIError as exc:
                with _store_failures_logged():
                    self.run(self._attempt_outcome(plan, exc, backoff))
                raise
            if isinstance(result, httpx.Response):
                self._tap(plan, result)
            else:
                with _store_failures_logged():
                    self.run(self._attempt_outcome(plan, result, backoff))
            return result

        return limited

    def aguard(
        self, body: Any, attempt: Callable[[], Awaitable[T]], backoff: Callable[[int], float]
    ) -> Callable[[], Awaitable[T]]:
        """Async :meth:`guard`."""
        plan = self.plan(body)
        if plan is None:
            return attempt

        async def limited() -> T:
            await self.arun(self._acquire(plan))
            try:
                result = await attempt()
            except XAIAPIError as exc:
                with _store_failures_logged():
                    await self.arun(self._attempt_outcome(plan, exc, backoff))
                raise
            if isinstance(result, httpx.Response):
                self._tap(plan, result)
            else:
                with _store_failures_logged():
                    await self.arun(self._attempt_outcome(plan, result, backoff))
            return result

        return limited

    def _tap(self, plan: Plan, response: httpx.Response) -> None:
        """Correct an event stream's charge when it is closed, from the usage it carried (a
        stream that brought none keeps the estimate: what it cost is unknown)."""
        if not plan.tokens:
            return

        def settle(used: int | None) -> None:
            if used is not None:
                with _store_failures_logged():
                    self.run(self._settle(plan, used))

        async def asettle(used: int | None) -> None:
            if used is not None:
                with _store_failures_logged():
                    await self.arun(self._settle(plan, used))

        response.stream = TappedStream(response.stream, settle, asettle)

    # --- what the rate-limit layer calls (ratelimit/layer.py) -------------------------------------
    def plan_for(self, model: str | None, tokens: int) -> Plan | None:
        """What one call charges: its model's request and token keys (None without a model)."""
        if model is None:
            return None
        return Plan(self.key(f"{model}:requests"), self.key(f"{model}:tokens"), tokens if self.tokens_rate else 0)

    def acquire(self, plan: Plan) -> None:
        """Before each attempt: wait for the tokens and a request slot."""
        self.run(self._acquire(plan))

    async def aacquire(self, plan: Plan) -> None:
        await self.arun(self._acquire(plan))

    def failed(self, plan: Plan, exc: XAIAPIError, backoff: float) -> None:
        """After an error answer: a 429 shares its cool-down, any other gives the tokens back."""
        with _store_failures_logged():
            self.run(self._attempt_outcome(plan, exc, lambda _n: backoff))

    async def afailed(self, plan: Plan, exc: XAIAPIError, backoff: float) -> None:
        with _store_failures_logged():
            await self.arun(self._attempt_outcome(plan, exc, lambda _n: backoff))

    def settle(self, plan: Plan, used: int | None) -> None:
        """After a billed answer: correct the charged estimate to ``used`` (never raises)."""
        if plan.tokens and used is not None:
            with _store_failures_logged():
                self.run(self._settle(plan, used))

    async def asettle(self, plan: Plan, used: int | None) -> None:
        if plan.tokens and used is not None:
            with _store_failures_logged():
                await self.arun(self._settle(plan, used))

    def batch_pacer(self) -> SharedPacer:
        """The Batch API's add-requests pace (100 calls per 30 s per team), shared."""
        return SharedPacer(self)


@contextmanager
def _store_failures_logged() -> Iterator[None]:
    """What follows an answer (a correction, a cool-down) must never fail it: a billed answer
    would be lost and requested again. A store failure there is logged instead."""
    try:
        yield
    except XAIError as exc:
        log.warning("Could not update the shared xAI rate limit after an answer: %s", exc)


def _emission_us(rate: Rate) -> int:
    """Microseconds per unit of ``rate``, as pyrate-limiter's GCRA computes it."""
    return max(1, math.ceil(rate.interval * 1000 / rate.limit))


def build_limiter(settings: ClientSettings, redis_conn: Any = None) -> SharedRateLimiter:
    """The limiter of a connection whose ``rate_limit`` is set, on the process's store for it
    (``redis_conn``: the Airflow connection named by ``rate_limit_redis_conn_id``)."""
    from airflow_provider_xai.ratelimit.store import open_states

    config = settings.rate_limit
    assert config is not None
    states = open_states(config.store, config.path, config.redis_conn_id, redis_conn)
    return SharedRateLimiter(config, states, fingerprint(settings.api_key))


class SharedPacer:
    """``CallPacer``'s interface (``acquire`` returns the seconds waited) over the shared store."""

    def __init__(self, limiter: SharedRateLimiter) -> None:
        from pyrate_limiter import Rate

        self.limiter = limiter
        self.key = limiter.key("batch-add-requests")
        self.rates = [Rate(BATCH_CALLS, BATCH_PERIOD_MS, burst=1)]

    def acquire(self) -> float:
        started = self.limiter.clock()
        self.limiter.run(self.limiter._take(self.key, self.rates, 1))
        return max(0.0, self.limiter.clock() - started)


__all__ = ["SharedPacer", "SharedRateLimiter", "build_limiter", "fingerprint"]
