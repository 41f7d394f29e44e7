"""The shared rate limit as a layer of the pipeline: a slot before each attempt, the 429
cool-down shared after one, the token charge settled to the billed amount after the answer.

It applies to calls whose endpoint declaration charges the ``"model"`` bucket and whose body
names a model, on connections that set a client-side limit (``rate_limit_*`` extras); the
charge is the declaration's token estimate. The limiter itself (its store and algorithm) is
:mod:`airflow_provider_xai.ratelimit.limiter`; it is opened on first use, from the settings the
call was sent with (blocking, or in a worker thread on the async path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_xai.exceptions import XAIAPIError, XAIRateLimitError
from airflow_provider_xai.pipeline.layers import Exchange, Layer, Scope
from airflow_provider_xai.pipeline.retry import backoff

if TYPE_CHECKING:
    from airflow_provider_xai.connection.settings import ClientSettings
    from airflow_provider_xai.ratelimit.limiter import Plan, SharedRateLimiter

R = TypeVar("R")


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

    def scope(self, exchange: Exchange) -> Scope | None:
        endpoint = exchange.call.endpoint
        if exchange.settings.rate_limit is None or endpoint.bucket != "model" or exchange.model is None:
            return None
        tokens = endpoint.estimate(exchange.body) if endpoint.estimate is not None else 0
        return _LimitedCall(self, exchange, tokens)


class _LimitedCall(Scope):
    """One call's charge: a slot per attempt, the cool-down after a 429, the settlement after
    the answer. The plan is made when the first attempt opens the limiter."""

    def __init__(self, layer: RateLimitLayer, exchange: Exchange, tokens: int) -> None:
        self.layer, self.exchange, self.tokens = layer, exchange, tokens
        self.limiter: SharedRateLimiter | None = None
        self.plan: Plan | None = None
        self.rate_limited = 0

    def _planned(self, limiter: SharedRateLimiter | None) -> Plan | None:
        if limiter is not None and self.plan is None:
            self.limiter = limiter
            self.plan = limiter.plan(self.exchange.model, self.tokens)
        return self.plan

    def _backoff(self, exc: XAIAPIError) -> float:
        if isinstance(exc, XAIRateLimitError):
            self.rate_limited += 1
        return backoff(max(self.rate_limited, 1), self.layer.backoff_base, self.layer.backoff_cap)

    def attempt(self, send: Callable[[], R]) -> R:
        plan = self._planned(self.layer.limiter(self.exchange.settings))
        if plan is None or self.limiter is None:
            return send()
        self.limiter.acquire(plan)
        try:
            return send()
        except XAIAPIError as exc:
            self.limiter.failed(plan, exc, self._backoff(exc))
            raise

    async def aattempt(self, send: Callable[[], Awaitable[R]]) -> R:
        plan = self._planned(await self.layer.alimiter(self.exchange.settings))
        if plan is None or self.limiter is None:
            return await send()
        await self.limiter.aacquire(plan)
        try:
            return await send()
        except XAIAPIError as exc:
            await self.limiter.afailed(plan, exc, self._backoff(exc))
            raise

    def answered(self) -> None:
        if self.plan is not None and self.limiter is not None:
            self.limiter.settle(self.plan, _billed_tokens(self.exchange))

    async def aanswered(self) -> None:
        if self.plan is not None and self.limiter is not None:
            await self.limiter.asettle(self.plan, _billed_tokens(self.exchange))


def _billed_tokens(exchange: Exchange) -> int | None:
    record = exchange.record
    return record.total_tokens if record is not None else None


__all__ = ["RateLimitLayer"]
