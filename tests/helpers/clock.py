"""A fake wall clock for the shared rate limiter's tests: time moves only when it sleeps."""

from __future__ import annotations

import time


class FakeClock:
    """Wall-clock seconds that only move when the limiter sleeps (sync or async)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.slept: list[float] = []
        self.async_sleeps = 0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.async_sleeps += 1
        self.sleep(seconds)
