"""The shared limit around one request attempt of today's transport, built only on the
limiter's public interface (plan / acquire / failed / settle), as the rate-limit layer will be.

The request body gives the model and the token estimate; an answer's or a stream's usage gives
the billed tokens. Goes away with ``SharedRateLimiter.guard`` when the layer replaces it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from airflow_provider_xai.exceptions import XAIAPIError, XAIRateLimitError
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.ratelimit.tokens import TappedStream, billed_tokens, estimate_tokens

if TYPE_CHECKING:
    from airflow_provider_xai.ratelimit.limiter import Plan, SharedRateLimiter

T = TypeVar("T")


def guard(
    limiter: SharedRateLimiter, body: Any, attempt: Callable[[], T], backoff: Callable[[int], float]
) -> Callable[[], T]:
    """``attempt`` behind ``limiter``; ``backoff(n)``: the wait after the n-th 429 without a
    ``retry-after``."""
    plan = _plan(limiter, body)
    if plan is None:
        return attempt
    backoffs = _backoffs(backoff)

    def limited() -> T:
        limiter.acquire(plan)
        try:
            result = attempt()
        except XAIAPIError as exc:
            limiter.failed(plan, exc, backoffs(exc))
            raise
        if isinstance(result, httpx.Response):
            _tap(limiter, plan, result)
        elif isinstance(result, Reply) and result.status_code == 200:
            limiter.settle(plan, billed_tokens(result))
        return result

    return limited


def aguard(
    limiter: SharedRateLimiter, body: Any, attempt: Callable[[], Awaitable[T]], backoff: Callable[[int], float]
) -> Callable[[], Awaitable[T]]:
    """Async :func:`guard`."""
    plan = _plan(limiter, body)
    if plan is None:
        return attempt
    backoffs = _backoffs(backoff)

    async def limited() -> T:
        await limiter.aacquire(plan)
        try:
            result = await attempt()
        except XAIAPIError as exc:
            await limiter.afailed(plan, exc, backoffs(exc))
            raise
        if isinstance(result, httpx.Response):
            _tap(limiter, plan, result)
        elif isinstance(result, Reply) and result.status_code == 200:
            await limiter.asettle(plan, billed_tokens(result))
        return result

    return limited


def _plan(limiter: SharedRateLimiter, body: Any) -> Plan | None:
    """The body's model, and its token estimate when tokens are limited and it has a prompt."""
    if not isinstance(body, Mapping):
        return None
    wants = limiter.config.tokens_per_minute and ("messages" in body or "input" in body)
    return limiter.plan(body.get("model"), estimate_tokens(body) if wants else 0)


def _tap(limiter: SharedRateLimiter, plan: Plan, response: httpx.Response) -> None:
    """Settle an event stream when it is closed, from the usage it carried (a stream that
    brought none keeps the estimate: what it cost is unknown)."""
    if limiter.config.tokens_per_minute:
        settle, asettle = functools.partial(limiter.settle, plan), functools.partial(limiter.asettle, plan)
        response.stream = TappedStream(response.stream, settle, asettle)


def _backoffs(backoff: Callable[[int], float]) -> Callable[[XAIAPIError], float]:
    """The backoff after each error of one call: ``backoff(n)`` after its n-th 429."""
    count = 0

    def after(exc: XAIAPIError) -> float:
        nonlocal count
        if not isinstance(exc, XAIRateLimitError):
            return 0.0
        count += 1
        return backoff(count)

    return after


__all__ = ["aguard", "guard"]
