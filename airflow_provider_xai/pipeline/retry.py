"""The retry decision: I/O-free, so the sync and async loops (and stream restarts) share it.

One small loop per path asks :meth:`RetryPolicy.delay` after each failed attempt and either
sleeps that long or re-raises. The decision follows xAI's and the OpenAI SDK's practice: retry
connection failures, timeouts and 408/409/429/5xx/529 (never exhausted credits), honour a
sensible ``retry-after``, and fall back to capped, jittered exponential backoff when the server
sends none, an unreadable one or one beyond the cap (rather than giving up).

A hand-written loop and not tenacity's ``Retrying``: setting that up costs about 25-35 us per
call, as much as the rest of the hook's own per-call work (see docs/benchmarks.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_xai.pipeline.errors import is_retryable

#: Longest ``retry-after`` honoured; a longer one falls back to capped backoff.
MAX_RETRY_AFTER = 60.0


def backoff(attempt: int, base: float, cap: float) -> float:
    """Jittered exponential backoff before retry ``attempt`` (1-based): in [0.5, 1] x
    ``min(cap, base * 2 ** (attempt - 1))``."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait; :meth:`delay` is the whole decision."""

    max_retries: int
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    retryable: Callable[[BaseException], bool] = is_retryable

    def delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait before retry ``attempt`` (1-based) after ``exc``, or None to give up."""
        if attempt > self.max_retries or not self.retryable(exc):
            return None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER:
            return float(retry_after)
        return backoff(attempt, self.backoff_base, self.backoff_cap)
