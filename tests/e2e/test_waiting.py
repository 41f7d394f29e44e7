"""``wait_while_moving`` on a fake clock: moving work may take long, stalled work fails."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import httpx
import pytest

from tests.e2e import waiting
from tests.e2e.waiting import wait_while_moving


class FakeClock:
    """Stands in for the ``time`` module inside ``waiting``: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.setattr(waiting, "time", fake)
    yield fake


def test_work_that_keeps_moving_may_take_many_stall_periods(clock: FakeClock) -> None:
    result = wait_while_moving(
        lambda: "done" if clock.now >= 500 else None,
        lambda: int(clock.now // 20),  # something changes every 20 s
        "slow work",
        stall=30,
        ceiling=1000,
        interval=1,
    )
    assert result == "done" and clock.now == 500


def test_work_that_stops_moving_fails_after_the_stall_period(clock: FakeClock) -> None:
    with pytest.raises(AssertionError, match=r"nothing moved for 30s while waiting for stuck work; "
                                             r"last seen: 'stage 3'"):
        wait_while_moving(
            lambda: False,
            lambda: f"stage {min(int(clock.now // 10), 3)}",  # moves until 30 s, then stops
            "stuck work",
            stall=30,
            ceiling=1000,
            interval=1,
        )
    assert 60 < clock.now <= 61


def test_work_that_moves_forever_fails_at_the_ceiling(clock: FakeClock) -> None:
    ticks = count()
    with pytest.raises(AssertionError, match="still waiting for endless work after 100s, though it moves"):
        wait_while_moving(lambda: False, lambda: next(ticks), "endless work", stall=30, ceiling=100,
                          interval=1)
    assert 100 < clock.now <= 101


def test_transient_errors_mean_not_done_yet_and_are_reported(clock: FakeClock) -> None:
    def done_from_8s() -> bool:
        if clock.now < 5:
            raise httpx.ConnectError("connection refused")
        return clock.now >= 8

    assert wait_while_moving(done_from_8s, lambda: clock.now, "a starting server", interval=1) is True

    def refused() -> bool:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(AssertionError, match=r"nothing moved for 3s .*ConnectError\('connection refused'\)"):
        wait_while_moving(refused, lambda: "same", "a server that never answers", stall=3, interval=1)
