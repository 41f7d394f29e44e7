"""The shared rate limit as a layer of the pipeline: a slot before each attempt, the 429
cool-down shared after one, the token charge settled to the billed amount after the answer.

It applies to calls whose endpoint declaration charges a bucket and whose body names a model:

- ``"model"``: on connections that set a client-side limit (``rate_limit_*`` extras); the
  charge is the declaration's token estimate;
- a family xAI limits on its own (``"images"`` 5 requests/s, ``"videos"`` 1 request/s, see
  ``ClientSettings.bucket_rates``; the ``rate_limit_buckets`` extra overrides them): one slot per
  request, through the connection's store (the embedded one when it sets none).

The limiter itself (its store and algorithm) is :mod:`airflow_provider_xai.ratelimit.limiter`;
it is opened on first use, from the settings the call was sent with (blocking, or in a worker
thread on the async path).

An operator may ask something of its task's first limited call (:meth:`RateLimitLayer.expect`,
a :class:`FirstCall`): to be withdrawn (:class:`~airflow_provider_xai.ratelimit.held.CapacityWait`)
rather than sleep when its slot is far away, and to send with a slot it held while it waited in
the triggerer instead of taking a new one. The layer notes on the exchange how long the call
waited for capacity, in a worker and deferred (its answer's usage record says so), and settles
the tokens from the answer's billed count (:func:`~airflow_provider_xai.usage.billed_tokens`),
without making the record for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_xai import secrets
from airflow_provider_xai.connection.rate_limits import RateLimitConfig, default_path
from airflow_provider_xai.exceptions import XAIAPIError, XAIRateLimitError
from airflow_provider_xai.pipeline.layers import Exchange, Layer, Scope
from airflow_provider_xai.pipeline.retry import backoff
from airflow_provider_xai.ratelimit.held import CapacityWait, DeferRule, HandedOver
from airflow_provider_xai.task_state import fingerprint
from airflow_provider_xai.usage import billed_tokens

if TYPE_CHECKING:
    from airflow_provider_xai.connection.settings import ClientSettings
    from airflow_provider_xai.pipeline.replies import Reply
    from airflow_provider_xai.ratelimit.held import Reservation
    from airflow_provider_xai.ratelimit.limiter import Plan, SharedRateLimiter

R = TypeVar("R")
#: The largest request body handed to the triggerer (it travels in the trigger's kwargs): a
#: larger one, an inlined image say, is sent from the worker.
MAX_HANDED_OVER_BYTES = 64 * 1024


@dataclasses.dataclass
class FirstCall:
    """What an operator asks of its task's first limited call.

    :param defer_after: withdraw the call (raise ``CapacityWait``) instead of sleeping when its
        slot is more than this many seconds away (None: sleep whatever the wait).
    :param held: a reservation kept for the task while it waited (None: take a slot).
    :param inputs: the fingerprint of the body ``held`` was made for; a call with another body
        (the task's inputs changed) gives it back and takes a new slot.
    :param lead: how long before its slot a withdrawn call's task would be handed back (read
        only when the slot is further away than ``defer_after``): a slot within it is slept for.
    :param hand_over: asked when the call may be withdrawn: whether the task lets the triggerer
        send it at its slot; the withdrawn call then carries its request
        (``CapacityWait.request``) when it can travel there (:meth:`_LimitedCall._handed_over`).
    :param answer: the answer to ``held``'s request, made in the triggerer at its slot: read
        instead of sending, when the body is the one ``inputs`` names.
    """

    defer_after: float | None = None
    held: Reservation | None = None
    inputs: str | None = None
    lead: Callable[[], float] | None = None
    hand_over: Callable[[], bool] | None = None
    answer: Reply | None = None
    #: What became of ``held``: "" (no limited call came), "used", "answered" (in the
    #: triggerer) or "given back".
    held_outcome: str = ""
    #: When the call came to ``held`` (the limiter's clock, epoch seconds; None: it never did).
    reached: float | None = None


class RateLimitLayer(Layer):
    """The connection's shared rate limit around every call that charges it.

    :param get_connection: blocking connection lookup (for ``rate_limit_redis_conn_id``).
    :param aget_connection: async connection lookup.
    :param backoff_base: the cool-down after a 429 that came without ``retry-after`` starts
        here and doubles up to ``backoff_cap`` (the hook's own retry backoff).
    """

    def __init__(
        self,
        get_connection: Callable[[str], Any],
        aget_connection: Callable[[str], Awaitable[Any]],
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
    ) -> None:
        self._get_connection = get_connection
        self._aget_connection = aget_connection
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self._limiter: SharedRateLimiter | None = None
        self._buckets: dict[str, SharedRateLimiter] = {}
        self._first: FirstCall | None = None
        self._first_lock = threading.Lock()
        #: Limited calls planned through this layer (an operator asks only of the first one).
        self.served = 0

    def release_waiting(self) -> int:
        """Give back the slots calls through this layer are sleeping until (a task being
        killed); how many."""
        limiters = [*self._buckets.values(), *([self._limiter] if self._limiter is not None else [])]
        return sum(limiter.release_waiting() for limiter in limiters)

    def expect(self, first: FirstCall | None) -> None:
        """Ask ``first`` of the next limited call through this layer (None: nothing)."""
        with self._first_lock:
            self._first = first

    def _take_first(self) -> FirstCall | None:
        self.served += 1  # only ever compared with 0
        if self._first is None:  # the usual case: no lock taken
            return None
        with self._first_lock:
            first, self._first = self._first, None
            return first

    def limiter(self, settings: ClientSettings) -> SharedRateLimiter | None:
        """The connection's limiter (None without a client-side limit), opened on first use."""
        config = settings.rate_limit
        if config is not None and self._limiter is None:
            from airflow_provider_xai.ratelimit.limiter import build_limiter

            redis = self._get_connection(config.redis_conn_id) if config.redis_conn_id else None
            self._limiter = build_limiter(settings, redis)
        return self._limiter

    async def alimiter(self, settings: ClientSettings) -> SharedRateLimiter | None:
        """Async :meth:`limiter` (the store is opened in a worker thread)."""
        config = settings.rate_limit
        if config is not None and self._limiter is None:
            from airflow_provider_xai.ratelimit.limiter import build_limiter

            redis = await self._aget_connection(config.redis_conn_id) if config.redis_conn_id else None
            self._limiter = await asyncio.to_thread(build_limiter, settings, redis)
        return self._limiter

    def bucket_limiter(self, settings: ClientSettings, bucket: str) -> SharedRateLimiter:
        """The limiter of ``bucket`` (its requests per second, no token limit) on the
        connection's store, opened on first use."""
        if bucket not in self._buckets:
            from airflow_provider_xai.ratelimit.limiter import build_limiter

            config = _bucket_config(settings, bucket)
            redis = self._get_connection(config.redis_conn_id) if config.redis_conn_id else None
            self._buckets[bucket] = build_limiter(dataclasses.replace(settings, rate_limit=config), redis)
        return self._buckets[bucket]

    async def abucket_limiter(self, settings: ClientSettings, bucket: str) -> SharedRateLimiter:
        """Async :meth:`bucket_limiter` (the store is opened in a worker thread)."""
        if bucket not in self._buckets:
            from airflow_provider_xai.ratelimit.limiter import build_limiter

            config = _bucket_config(settings, bucket)
            redis = await self._aget_connection(config.redis_conn_id) if config.redis_conn_id else None
            limiter = await asyncio.to_thread(build_limiter, dataclasses.replace(settings, rate_limit=config), redis)
            self._buckets.setdefault(bucket, limiter)
        return self._buckets[bucket]

    def scope(self, exchange: Exchange) -> Scope | None:
        endpoint, settings, model = exchange.call.endpoint, exchange.settings, exchange.model
        if endpoint.bucket is None or model is None:
            return None
        if endpoint.bucket == "model":
            if settings.rate_limit is None:
                return None
            tokens = endpoint.estimate(exchange.body) if endpoint.estimate is not None else 0
            return _LimitedCall(self, exchange, model, tokens, self.limiter, self.alimiter)
        bucket = endpoint.bucket
        if not settings.bucket_rates.get(bucket):
            return None
        return _LimitedCall(
            self, exchange, f"{bucket}:{model}", 0,
            lambda s: self.bucket_limiter(s, bucket), lambda s: self.abucket_limiter(s, bucket), asks=False,
        )  # fmt: skip


def _bucket_config(settings: ClientSettings, bucket: str) -> RateLimitConfig:
    """A bucket's limit: its requests per second, on the connection's store (else the embedded
    one at its default path)."""
    base = settings.rate_limit or RateLimitConfig(path=default_path())
    return dataclasses.replace(base, requests_per_second=settings.bucket_rates[bucket], tokens_per_minute=None)


class _LimitedCall(Scope):
    """One call's charge: a slot per attempt, the cool-down after a 429, the settlement after
    the answer. The plan is made when the first attempt opens the limiter."""

    def __init__(
        self,
        layer: RateLimitLayer,
        exchange: Exchange,
        key: str,
        tokens: int,
        open_limiter: Callable[[ClientSettings], SharedRateLimiter | None],
        aopen_limiter: Callable[[ClientSettings], Awaitable[SharedRateLimiter | None]],
        asks: bool = True,
    ) -> None:
        self.layer, self.exchange, self.key, self.tokens = layer, exchange, key, tokens
        #: The task's first call may be asked of this one (the connection's own limit: the
        #: slot a task holds while it waits in the triggerer is of that limiter).
        self.asks = asks
        self.open_limiter, self.aopen_limiter = open_limiter, aopen_limiter
        self.limiter: SharedRateLimiter | None = None
        self.plan: Plan | None = None
        self.first: FirstCall | None = None
        #: This request, when its task may hand it to the triggerer (see ``_handed_over``).
        self.request: HandedOver | None = None

    def _planned(self, limiter: SharedRateLimiter | None) -> Plan | None:
        if limiter is not None and self.plan is None:
            self.limiter = limiter
            self.plan = limiter.plan(self.key, self.tokens)
            if self.plan is not None and self.asks:
                self.first = self.layer._take_first()
        return self.plan

    def _asked(self) -> tuple[Reservation | None, DeferRule | None, Reservation | None]:
        """What the task asks of this attempt (only of its call's first one): the reservation
        to send with, when the call is withdrawn rather than sleep, and a held reservation to
        give back (it was made for another body: the task's inputs changed)."""
        first, self.first = self.first, None
        if first is None:
            return None, None, None
        defer = None
        if first.defer_after is not None:
            # A request the triggerer will send needs no resume lead: the task is not back
            # on a worker to send it (the lead is read, a store operation, only otherwise).
            self.request = self._handed_over() if first.hand_over is not None and first.hand_over() else None
            defer = DeferRule(first.defer_after, None if self.request is not None else first.lead)
        held = first.held
        if held is None:
            return None, defer, None
        assert self.limiter is not None
        first.reached = self.limiter.clock()
        if first.inputs != self._inputs():
            first.held_outcome = "given back"
            return None, defer, held
        self.exchange.deferred_s = max(0.0, first.reached - held.since)
        if first.answer is not None:  # the triggerer sent it at the held slot: read its answer
            first.held_outcome, self.exchange.supplied = "answered", first.answer
            assert self.plan is not None
            self.plan.charged = held.tokens  # the held slot's tokens are this call's charge
            return held, None, None
        first.held_outcome = "used"
        return held, defer, None

    def _inputs(self) -> str:
        return fingerprint(self.exchange.body)

    def _handed_over(self) -> HandedOver | None:
        """This request, for the triggerer to send at its slot, when it may: a whole answer (not
        a stream, not a download) to a JSON body of at most :data:`MAX_HANDED_OVER_BYTES`,
        neither holding a registered secret (an MCP server's authorization, say), as the
        trigger's kwargs are stored with the task."""
        call, body = self.exchange.call, self.exchange.body
        if call.read is None or call.url or not isinstance(body, dict):
            return None
        headers = dict(call.headers or {})
        try:
            text = json.dumps([body, headers])
        except (TypeError, ValueError):
            return None
        if len(text) > MAX_HANDED_OVER_BYTES or secrets.scrub(text) != text:
            return None
        sent, headers = json.loads(text)
        return HandedOver(call.endpoint.method, call.target, sent, headers)

    def _backoff(self, exc: XAIAPIError) -> float:
        return backoff(self.exchange.rate_limited + 1, self.layer.backoff_base, self.layer.backoff_cap)

    def attempt(self, send: Callable[[], R]) -> R:
        plan = self._planned(self.open_limiter(self.exchange.settings))
        if plan is None or self.limiter is None:
            return send()
        held, defer, stale = self._asked()
        if stale is not None:
            self.limiter.release(stale)
        if self.exchange.supplied is None:  # else answered in the triggerer: nothing to send
            try:
                self.exchange.waited_s += self.limiter.acquire(plan, held, defer)
            except CapacityWait as wait:
                wait.inputs, wait.request = self._inputs(), self.request
                raise
        try:
            return send()
        except XAIAPIError as exc:
            self.limiter.failed(plan, exc, self._backoff(exc))
            raise

    async def aattempt(self, send: Callable[[], Awaitable[R]]) -> R:
        plan = self._planned(await self.aopen_limiter(self.exchange.settings))
        if plan is None or self.limiter is None:
            return await send()
        held, defer, stale = self._asked()
        if stale is not None:
            await self.limiter.arelease(stale)
        if self.exchange.supplied is None:
            try:
                self.exchange.waited_s += await self.limiter.aacquire(plan, held, defer)
            except CapacityWait as wait:
                wait.inputs, wait.request = self._inputs(), self.request
                raise
        try:
            return await send()
        except XAIAPIError as exc:
            await self.limiter.afailed(plan, exc, self._backoff(exc))
            raise

    def retried(self, exc: BaseException, attempt: int, wait: float) -> None:
        if isinstance(exc, XAIRateLimitError):  # the retry sleeps in the worker for capacity
            self.exchange.waited_s += wait

    def answered(self) -> None:
        if self.plan is not None and self.limiter is not None:
            self.limiter.settle(self.plan, billed_tokens(self.exchange.answer))

    async def aanswered(self) -> None:
        if self.plan is not None and self.limiter is not None:
            await self.limiter.asettle(self.plan, billed_tokens(self.exchange.answer))


__all__ = ["FirstCall", "RateLimitLayer"]
