"""xAI-style rate limits of the local server: requests per second and tokens per minute.

xAI limits each team's traffic per model on two sliding windows: requests in the last second
and tokens billed in the last minute (prompt, completion, reasoning and cached tokens all
count); past either, it answers 429. ``ServerRateLimiter`` keeps both windows per (API key
fingerprint, model). ``admit`` is one atomic step under a lock (no awaits), so concurrent
requests on the server's event loop, or on several threads, never over-admit. Tokens are
charged after the answer is built, from its billed usage, so requests already admitted may
overshoot the token budget as they do on xAI. Refused requests take no room in the windows.
The clock is injectable so the window logic is unit-tested without sleeping.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

#: Window lengths in seconds, by limit.
REQUESTS_WINDOW = 1.0
TOKENS_WINDOW = 60.0
#: Names of the two limits (journal ``rate_limited`` values and ``/_control/state`` counters).
REQUESTS_PER_SECOND = "requests_per_second"
TOKENS_PER_MINUTE = "tokens_per_minute"

LimitKey = tuple[str, str]  # (key fingerprint, model id)


def key_fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible name for an API key (for windows and the journal)."""
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RateLimitRefusal:
    """Why a request was refused and how long until the window lets the next one in."""

    limit: str  # REQUESTS_PER_SECOND or TOKENS_PER_MINUTE
    model: str
    allowed: int
    retry_after: float  # seconds until the window frees (> 0)

    @property
    def message(self) -> str:
        unit = "requests per second" if self.limit == REQUESTS_PER_SECOND else "tokens per minute"
        return (f"Rate limit exceeded for model {self.model}: {self.allowed} {unit}. "
                "Please slow down and retry later.")

    def headers(self) -> dict[str, str]:
        """``retry-after`` (whole seconds, rounded up, as HTTP defines it) and the exact
        ``retry-after-ms`` (rounded up), so a client that waits either is let in."""
        ms = max(1, math.ceil(self.retry_after * 1000))
        return {"retry-after": str(math.ceil(ms / 1000)), "retry-after-ms": str(ms)}


class ServerRateLimiter:
    """Sliding windows per (key fingerprint, model); thread-safe, clock injectable."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[LimitKey, deque[float]] = {}
        self._tokens: dict[LimitKey, deque[tuple[float, int]]] = {}
        self._token_sums: Counter[LimitKey] = Counter()
        self.refused: Counter[str] = Counter()  # by limit name

    def admit(self, key: LimitKey, rps: int, tpm: int) -> RateLimitRefusal | None:
        """Count one request against ``key`` unless a limit (0 = off) is reached; then return
        the ``RateLimitRefusal`` (and count it) without taking room in the windows."""
        with self._lock:
            now = self._clock()
            requests = self._expire(key, now)
            refusal: RateLimitRefusal | None = None
            if tpm and self._token_sums[key] >= tpm:
                wait = self._tokens_free_in(key, tpm, now)
                refusal = RateLimitRefusal(TOKENS_PER_MINUTE, key[1], tpm, wait)
            elif rps and len(requests) >= rps:
                wait = requests[len(requests) - rps] + REQUESTS_WINDOW - now
                refusal = RateLimitRefusal(REQUESTS_PER_SECOND, key[1], rps, wait)
            if refusal is not None:
                self.refused[refusal.limit] += 1
                return refusal
            requests.append(now)
            return None

    def charge(self, key: LimitKey, tokens: int) -> None:
        """Add the tokens an answer billed to ``key``'s minute window."""
        if tokens <= 0:
            return
        with self._lock:
            self._tokens.setdefault(key, deque()).append((self._clock(), tokens))
            self._token_sums[key] += tokens

    def tokens_in_window(self, key: LimitKey) -> int:
        """Tokens billed to ``key`` in the last minute."""
        with self._lock:
            self._expire(key, self._clock())
            return self._token_sums[key]

    def reset(self) -> None:
        """Forget every window and the refusal counts."""
        with self._lock:
            self._requests.clear()
            self._tokens.clear()
            self._token_sums.clear()
            self.refused.clear()

    def _expire(self, key: LimitKey, now: float) -> deque[float]:
        """Drop what left the windows by ``now``; returns ``key``'s request window."""
        requests = self._requests.setdefault(key, deque())
        while requests and requests[0] + REQUESTS_WINDOW <= now:
            requests.popleft()
        tokens = self._tokens.get(key)
        while tokens and tokens[0][0] + TOKENS_WINDOW <= now:
            self._token_sums[key] -= tokens.popleft()[1]
        return requests

    def _tokens_free_in(self, key: LimitKey, tpm: int, now: float) -> float:
        """Seconds until enough charged tokens leave the window to bring it under ``tpm``."""
        total = self._token_sums[key]
        for at, tokens in self._tokens[key]:
            total -= tokens
            if total < tpm:
                return at + TOKENS_WINDOW - now
        raise AssertionError("unreachable: the window's sum reached the limit")
