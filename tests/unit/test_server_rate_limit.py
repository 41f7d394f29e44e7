"""The local server's xAI-style rate-limit windows, on a hand-moved clock (no server, no sleep)."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_xai.testing.rate_limit import (
    REQUESTS_PER_SECOND,
    TOKENS_PER_MINUTE,
    RateLimitRefusal,
    ServerRateLimiter,
    key_fingerprint,
)
from airflow_provider_xai.testing.state import DEFAULT_API_KEY, ServerState

KEY = (key_fingerprint("xai-k1"), "grok-3")


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_requests_per_second_slide_and_say_when_the_window_frees() -> None:
    clock = Clock()
    limiter = ServerRateLimiter(clock)
    assert limiter.admit(KEY, rps=2, tpm=0) is None
    clock.now += 0.25
    assert limiter.admit(KEY, rps=2, tpm=0) is None
    clock.now += 0.25
    refusal = limiter.admit(KEY, rps=2, tpm=0)
    assert refusal == RateLimitRefusal(REQUESTS_PER_SECOND, "grok-3", 2, pytest.approx(0.5))
    clock.now += 0.5  # the first request leaves the window exactly now
    assert limiter.admit(KEY, rps=2, tpm=0) is None
    clock.now += 0.1
    refusal = limiter.admit(KEY, rps=2, tpm=0)
    assert refusal is not None and refusal.retry_after == pytest.approx(0.15)  # 2nd leaves at +1
    assert limiter.refused == {REQUESTS_PER_SECOND: 2}


def test_refused_requests_take_no_room_in_the_window() -> None:
    clock = Clock()
    limiter = ServerRateLimiter(clock)
    assert limiter.admit(KEY, 1, 0) is None
    for _ in range(32):
        clock.now += 1 / 64  # binary fractions: exact sums
        assert limiter.admit(KEY, 1, 0) is not None
    clock.now += 0.5  # 1.0 s after the only admitted request
    assert limiter.admit(KEY, 1, 0) is None


def test_tokens_per_minute_count_billed_tokens_until_they_leave_the_minute() -> None:
    clock = Clock()
    limiter = ServerRateLimiter(clock)
    assert limiter.admit(KEY, 0, 100) is None
    limiter.charge(KEY, 200)  # one answer may overshoot: tokens are known only afterwards
    clock.now += 10
    assert limiter.admit(KEY, 0, 100) is not None
    limiter.charge(KEY, 150)  # an answer admitted earlier, billed late, still counts
    assert limiter.tokens_in_window(KEY) == 350
    clock.now += 5
    refusal = limiter.admit(KEY, 0, 100)
    # 350 -> 150 at +60 s is still >= 100; both must leave: the second at 10 + 60 s
    assert refusal == RateLimitRefusal(TOKENS_PER_MINUTE, "grok-3", 100, pytest.approx(55.0))
    clock.now += 45  # t = 60: the 200 left
    assert limiter.tokens_in_window(KEY) == 150
    assert limiter.admit(KEY, 0, 100) is not None
    clock.now += 10
    assert limiter.tokens_in_window(KEY) == 0
    assert limiter.admit(KEY, 0, 100) is None
    assert limiter.refused == {TOKENS_PER_MINUTE: 3}


def test_tokens_free_as_soon_as_the_sum_drops_under_the_limit() -> None:
    clock = Clock()
    limiter = ServerRateLimiter(clock)
    for tokens in (60, 30, 30):  # 120 in all, at t = 0, 1, 2
        limiter.charge(KEY, tokens)
        clock.now += 1
    refusal = limiter.admit(KEY, 0, 100)
    assert refusal is not None and refusal.retry_after == pytest.approx(57.0)  # 60 s after t=0


def test_windows_are_per_key_and_model_and_zero_means_no_limit() -> None:
    limiter = ServerRateLimiter(Clock())
    other_model, other_key = (KEY[0], "grok-4"), (key_fingerprint("xai-k2"), "grok-3")
    assert limiter.admit(KEY, 1, 0) is None
    assert limiter.admit(KEY, 1, 0) is not None
    assert limiter.admit(other_model, 1, 0) is None
    assert limiter.admit(other_key, 1, 0) is None
    limiter.charge(KEY, 10**9)
    assert all(limiter.admit(KEY, 0, 0) is None for _ in range(100))


def test_concurrent_admits_never_over_admit() -> None:
    limiter = ServerRateLimiter(Clock())  # frozen: all 400 attempts fall in one window
    admitted: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(50):
            ok = limiter.admit(KEY, 7, 0) is None
            with lock:
                admitted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 7 and len(admitted) == 400
    assert limiter.refused == {REQUESTS_PER_SECOND: 393}


@pytest.mark.parametrize(("wait", "seconds", "ms"), [
    (0.3451, "1", "346"), (1.0, "1", "1000"), (59.9999, "60", "60000"), (1e-9, "1", "1")])
def test_retry_headers_round_up_so_a_client_that_waits_them_gets_in(
    wait: float, seconds: str, ms: str
) -> None:
    headers = RateLimitRefusal(REQUESTS_PER_SECOND, "grok-3", 1, wait).headers()
    assert headers == {"retry-after": seconds, "retry-after-ms": ms}


def test_message_names_the_model_and_limit_and_not_credits() -> None:
    rps = RateLimitRefusal(REQUESTS_PER_SECOND, "grok-4", 30, 0.1).message
    tpm = RateLimitRefusal(TOKENS_PER_MINUTE, "grok-4", 10_000, 1.0).message
    assert "grok-4: 30 requests per second" in rps and "10000 tokens per minute" in tpm
    # the provider reads "credits"/"spending limit" as exhausted quota, which is never retried
    assert not any(w in rps + tpm for w in ("credits", "spending limit"))


def test_server_state_config_aliases_fingerprint_and_reset() -> None:
    clock = Clock()
    state = ServerState(clock=clock, rate_limit_rps=1)
    assert state.config()["rate_limit_rps"] == 1 and state.rate_limit_retry_after is False
    key = state.rate_limit_key("grok-4")  # an alias shares its model's window
    assert key == state.rate_limit_key("grok-4.3") and DEFAULT_API_KEY not in key[0]
    assert state.admit(key) is None and state.admit(key) is not None
    state.charge_tokens(key, {"total_tokens": 42})
    state.charge_tokens(None, {"total_tokens": 42})  # an unlimited route: no-op
    assert state.rate_limiter.tokens_in_window(key) == 42
    assert state.rate_limited == {REQUESTS_PER_SECOND: 1}
    state.reset()
    assert state.rate_limited == {} and state.rate_limiter.tokens_in_window(key) == 0
    assert state.rate_limit_rps == 1  # reset restores the configured limits
    assert state.admit(key) is None


@pytest.mark.parametrize("bad", [{"rate_limit_rps": -1}, {"rate_limit_tpm": 1.5},
                                 {"rate_limit_rps": True}, {"rate_limit_retry_after": 1}])
def test_bad_rate_limit_config_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        ServerState(**bad)
