"""The one poll decision (polling.py) on a fake clock: no sleeping, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_xai.exceptions import XAIAuthenticationError, XAIConnectionError, XAIServerError
from airflow_provider_xai.polling import MAX_FAILURE_BACKOFF, Action, Poller, Step, poll


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def transient() -> XAIServerError:
    return XAIServerError("busy", status=503)


def test_result_resets_failures_and_finishes() -> None:
    clock = Clock()
    poller = Poller(5.0, clock() + 100, clock=clock)
    poller.begin()
    assert poller.on_failure(transient()).action is Action.WAIT
    assert poller.failures == 1
    poller.begin()
    assert poller.on_result(False) == Step(Action.WAIT, 5.0)  # a whole interval: the poll took no time
    assert poller.failures == 0
    clock.now += 2  # a slow poll: the next one is still due an interval after this one began
    assert poller.on_result(False) == Step(Action.WAIT, 3.0)
    assert poller.on_result(True) == Step(Action.FINISH)


def test_the_wait_never_passes_the_deadline() -> None:
    clock = Clock()
    poller = Poller(5.0, clock() + 7, clock=clock)
    poller.begin()
    assert poller.on_result(False) == Step(Action.WAIT, 5.0)
    clock.now += 5
    poller.begin()
    assert poller.on_result(False) == Step(Action.WAIT, 2.0)  # only what is left
    clock.now += 2
    poller.begin()
    assert poller.on_result(False) == Step(Action.TIMEOUT)
    assert poller.on_failure(transient()) == Step(Action.TIMEOUT)


def test_transient_failures_back_off_then_give_up_after_the_limit() -> None:
    clock = Clock()
    poller = Poller(5.0, None, max_failures=4, clock=clock)
    delays = []
    for _ in range(3):
        poller.begin()
        step = poller.on_failure(XAIConnectionError("dropped"))
        assert step.action is Action.WAIT
        delays.append(step.delay)
    assert delays == [5.0, 10.0, 20.0]
    poller.begin()
    assert poller.on_failure(XAIConnectionError("dropped")).action is Action.GIVE_UP


def test_failure_backoff_is_capped() -> None:
    poller = Poller(60.0, None, max_failures=100)
    steps = [poller.on_failure(transient()) for _ in range(10)]
    assert max(s.delay for s in steps) == MAX_FAILURE_BACKOFF


def test_permanent_failure_gives_up_at_once() -> None:
    poller = Poller(5.0, None)
    assert poller.on_failure(XAIAuthenticationError("revoked", status=401)).action is Action.GIVE_UP
    assert poller.on_failure(ValueError("a bug")).action is Action.GIVE_UP


def test_deadline_times_out_and_never_oversleeps() -> None:
    clock = Clock()
    poller = Poller(30.0, clock() + 10, clock=clock)
    poller.begin()
    step = poller.on_result(False)
    assert step == step.__class__(Action.WAIT, 10.0)
    clock.now += 10
    assert poller.on_result(False).action is Action.TIMEOUT


def test_fixed_rate_counts_the_poll_itself() -> None:
    clock = Clock()
    poller = Poller(5.0, None, clock=clock)
    poller.begin()
    clock.now += 2  # the poll took 2 s
    assert poller.on_result(False).delay == 3.0


def test_first_delay_spreads_within_one_interval() -> None:
    clock = Clock()
    delays = {Poller(5.0, clock() + 2, clock=clock).first_delay() for _ in range(50)}
    assert all(0 <= d <= 2 for d in delays) and len(delays) > 1


def test_poll_loop_rides_out_an_outage_and_reports_it() -> None:
    clock = Clock()
    answers: list[Any] = [transient(), transient(), "pending", transient(), "ready"]
    reported: list[int] = []

    def fetch() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    outcome = poll(
        Poller(1.0, clock() + 60, max_failures=3, clock=clock),
        fetch,
        lambda value: value == "ready",
        on_failure=lambda exc, failures: reported.append(failures),
        sleep=clock.sleep,
    )
    assert (outcome.action, outcome.value) == (Action.FINISH, "ready")
    assert reported == [1, 2, 1]


@pytest.mark.parametrize("max_failures", [1, 3])
def test_poll_loop_gives_up_with_the_error(max_failures: int) -> None:
    clock = Clock()
    error = transient()

    def fetch() -> str:
        raise error

    outcome = poll(Poller(1.0, None, max_failures=max_failures, clock=clock), fetch, bool, sleep=clock.sleep)
    assert outcome.action is Action.GIVE_UP and outcome.error is error
