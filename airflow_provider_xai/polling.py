"""Every wait of the provider (deferred completions, batches, the usage sensor's task states),
sync or in the triggerer, makes the same decision after each poll: keep polling, finish, or give
up. :class:`Poller` is that decision, I/O-free; :func:`poll` and :func:`apoll` are the two thin
loops around it.

The same tolerance everywhere: a transient failure (dropped connection, timeout, 429, 5xx,
after the hook's own retries) never ends a wait by itself; the poll is retried with growing
backoff, and only ``max_failures`` transient failures in a row, or one permanent failure (a
401, a 404...), give up. The schedule is a fixed rate: the interval counts from the start of the
previous poll, so a slow poll does not stretch the wait.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from airflow_provider_xai.pipeline.errors import is_retryable

T = TypeVar("T")
#: Transient poll failures in a row tolerated before a wait gives up.
DEFAULT_MAX_POLL_FAILURES = 10
#: Longest pause between polls after failures (the backoff doubles from the poll interval).
MAX_FAILURE_BACKOFF = 300.0
#: The part of the first interval a pick-up-bound wait (``within_interval``) polls first in: the
#: rest leaves room for that poll's own round trip.
FIRST_POLL_SPAN = 0.9
#: The part of an interval a pick-up-bound wait polls early by, besides the last poll's time:
#: room for a busy event loop waking it a little late (25 ms of a 1 s interval).
PICKUP_MARGIN = 0.025


class Action(enum.Enum):
    WAIT = "wait"
    FINISH = "finish"
    TIMEOUT = "timeout"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class Step:
    """What to do after one poll: wait ``delay`` seconds and poll again, or stop."""

    action: Action
    delay: float = 0.0


@dataclass
class Poller:
    """The decision of one wait. ``end_time`` is wall-clock (epoch seconds) so that a restarted
    triggerer keeps the deadline; None waits without a deadline."""

    interval: float
    end_time: float | None = None
    max_failures: int = DEFAULT_MAX_POLL_FAILURES
    transient: Callable[[BaseException], bool] = is_retryable
    clock: Callable[[], float] = time.time
    failures: int = 0
    #: The interval bounds the pick-up (the triggers' promise): what becomes ready just after one
    #: poll was answered is seen within one interval, so each poll starts early by the time the
    #: last one took (and :data:`PICKUP_MARGIN`), the first within :data:`FIRST_POLL_SPAN` of one.
    within_interval: bool = False
    _started: float = field(default=0.0, repr=False)

    def first_delay(self) -> float:
        """A random point of the first interval, so that waits started together (hundreds of
        tasks deferred at once) do not all poll in the same loop iteration."""
        span = min(self.interval, self._remaining()) * (FIRST_POLL_SPAN if self.within_interval else 1.0)
        return random.uniform(0, max(0.0, span))

    def begin(self) -> None:
        """Mark the start of a poll (the next one is due an interval later)."""
        self._started = self.clock()

    def on_result(self, done: bool) -> Step:
        """The poll answered: finish, or wait for the next poll."""
        self.failures = 0
        if done:
            return Step(Action.FINISH)
        if not self.within_interval or not self._started:
            return self._wait(self.interval)
        took = min(max(self.clock() - self._started, 0.0), self.interval / 2)
        return self._wait(self.interval * (1 - PICKUP_MARGIN) - took)

    def on_failure(self, exc: BaseException) -> Step:
        """The poll failed: back off and poll again, or give up."""
        if not self.transient(exc):
            return Step(Action.GIVE_UP)
        self.failures += 1
        if self.failures >= self.max_failures:
            return Step(Action.GIVE_UP)
        return self._wait(min(self.interval * 2 ** (self.failures - 1), max(self.interval, MAX_FAILURE_BACKOFF)))

    def _remaining(self) -> float:
        return float("inf") if self.end_time is None else self.end_time - self.clock()

    def _wait(self, delay: float) -> Step:
        remaining = self._remaining()
        if remaining <= 0:
            return Step(Action.TIMEOUT)
        elapsed = self.clock() - self._started if self._started else 0.0
        return Step(Action.WAIT, max(0.0, min(delay - elapsed, remaining)))


class ProgressLog:
    """Logs a wait's progress when it changes, and each tolerated poll failure. The logger is
    fetched when there is something to log (see ``XAITransport``: hundreds of waits start in
    one loop iteration)."""

    def __init__(self, get_log: Callable[[], logging.Logger | Any], what: str) -> None:
        self.get_log, self.what, self.last = get_log, what, ""

    def update(self, progress: str) -> None:
        if progress != self.last:
            self.last = progress
            self.get_log().info("%s: %s", self.what, progress)

    def failure(self, exc: BaseException, failures: int) -> None:
        self.get_log().warning("Polling %s failed (%d in a row): %s; will poll again", self.what, failures, exc)


@dataclass
class Outcome(Generic[T]):
    """How a wait ended: ``FINISH`` with the last value, ``TIMEOUT``, or ``GIVE_UP`` with the error."""

    action: Action
    value: T | None = None
    error: BaseException | None = None

    def finished(self) -> T | None:
        """The last value of a wait that finished; raises the error of one that gave up; None
        for one that reached its deadline (the caller says what that means)."""
        if self.action is Action.GIVE_UP and self.error is not None:
            raise self.error
        return self.value if self.action is Action.FINISH else None


def _after_poll(
    poller: Poller,
    value: T | None,
    error: BaseException | None,
    done: Callable[[T], bool],
    on_value: Callable[[T], None] | None,
    on_failure: Callable[[BaseException, int], None] | None,
) -> Step:
    """The decision after one poll, with the callers' progress and failure reports."""
    if error is not None:
        step = poller.on_failure(error)
        if step.action is Action.WAIT and on_failure is not None:
            on_failure(error, poller.failures)
        return step
    fetched = cast(T, value)  # fetch returned without error: this is its value
    if on_value is not None:
        on_value(fetched)
    return poller.on_result(done(fetched))


def poll(
    poller: Poller,
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    on_value: Callable[[T], None] | None = None,
    on_failure: Callable[[BaseException, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome[T]:
    """Poll ``fetch`` until ``done(value)``, the deadline, or ``poller`` gives up (blocking)."""
    value: T | None = None
    while True:
        poller.begin()
        error: BaseException | None = None
        try:
            value = fetch()
        except Exception as exc:
            error = exc
        step = _after_poll(poller, value, error, done, on_value, on_failure)
        if step.action is not Action.WAIT:
            return Outcome(step.action, value, error)
        sleep(step.delay)


async def apoll(
    poller: Poller,
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    on_value: Callable[[T], None] | None = None,
    on_failure: Callable[[BaseException, int], None] | None = None,
    spread_start: bool = False,
) -> Outcome[T]:
    """Async :func:`poll` (for triggers); ``spread_start`` first waits :meth:`Poller.first_delay`."""
    if spread_start:
        await asyncio.sleep(poller.first_delay())
    value: T | None = None
    while True:
        poller.begin()
        error: BaseException | None = None
        try:
            value = await fetch()
        except Exception as exc:
            error = exc
        step = _after_poll(poller, value, error, done, on_value, on_failure)
        if step.action is not Action.WAIT:
            return Outcome(step.action, value, error)
        await asyncio.sleep(step.delay)
