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
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_xai.connection.rate_limits import RateLimitConfig, default_path
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
        self._buckets: dict[str, SharedRateLimiter] = {}

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
            lambda s: self.bucket_limiter(s, bucket), lambda s: self.abucket_limiter(s, bucket),
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
    ) -> None:
        self.layer, self.exchange, self.key, self.tokens = layer, exchange, key, tokens
        self.open_limiter, self.aopen_limiter = open_limiter, aopen_limiter
        self.limiter: SharedRateLimiter | None = None
        self.plan: Plan | None = None
        self.rate_limited = 0

    def _planned(self, limiter: SharedRateLimiter | None) -> Plan | None:
        if limiter is not None and self.plan is None:
            self.limiter = limiter
            self.plan = limiter.plan(self.key, self.tokens)
        return self.plan

    def _backoff(self, exc: XAIAPIError) -> float:
        if isinstance(exc, XAIRateLimitError):
            self.rate_limited += 1
        return backoff(max(self.rate_limited, 1), self.layer.backoff_base, self.layer.backoff_cap)

    def attempt(self, send: Callable[[], R]) -> R:
        plan = self._planned(self.open_limiter(self.exchange.settings))
        if plan is None or self.limiter is None:
            return send()
        self.limiter.acquire(plan)
        try:
            return send()
        except XAIAPIError as exc:
            self.limiter.failed(plan, exc, self._backoff(exc))
            raise

    async def aattempt(self, send: Callable[[], Awaitable[R]]) -> R:
        plan = self._planned(await self.aopen_limiter(self.exchange.settings))
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
