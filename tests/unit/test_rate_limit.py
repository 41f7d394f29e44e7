"""The shared rate limiter (ratelimit/limiter.py) against httpx.MockTransport and a fake clock.

The store is the real embedded one (an SQLite file in tmp_path); only time is faked: the
clock moves when the limiter sleeps, so pacing is asserted exactly and nothing waits. The
store-level tests (slots, garbled values, concurrent reservations) are in
test_rate_limit_store.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai.connection.rate_limits import default_path
from airflow_provider_xai.connection.settings import settings_from_connection
from airflow_provider_xai.endpoints.common import DEFAULT_OUTPUT_TOKENS, IMAGE_TOKENS, estimate_tokens
from airflow_provider_xai.exceptions import (
    XAIBadRequestError,
    XAIConfigurationError,
    XAIConnectionError,
    XAIError,
    XAIRateLimitError,
)
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.ratelimit import store as rate_limit_store
from airflow_provider_xai.ratelimit.limiter import (
    JITTER_ALLOWANCE_US,
    LATE_US,
    MAX_COOLDOWN,
    SharedRateLimiter,
    fingerprint,
)
from airflow_provider_xai.ratelimit.store import SQLiteStates
from tests.helpers.clock import FakeClock
from tests.helpers.limits import counted_operations, tokens_held

KEY = "xai-unit-limiter-key-123456"
MODEL = "grok-4.3"


class Server:
    """A MockTransport handler: answers from a script, records each request and its time."""

    def __init__(self, clock: FakeClock, *answers: Callable[[dict[str, Any]], httpx.Response]) -> None:
        self.clock, self.answers = clock, list(answers)
        self.times: list[float] = []
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(self.clock.now)
        body = json.loads(request.content) if request.content else {}
        self.bodies.append(body)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(body)


class Streamed(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that is streamed, not read up front (as a network answer is), in two pieces."""

    def __init__(self, content: bytes) -> None:
        self.pieces = [content[: len(content) // 2], content[len(content) // 2 :]]

    def __iter__(self) -> Any:
        yield from self.pieces

    async def __aiter__(self) -> Any:
        for piece in self.pieces:
            yield piece


def completion(total_tokens: int = 5) -> Callable[[dict[str, Any]], httpx.Response]:
    def answer(body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": total_tokens - 1, "total_tokens": total_tokens},
            },
        )

    return answer


def too_many(retry_after: str | None = None) -> Callable[[dict[str, Any]], httpx.Response]:
    headers = {"retry-after": retry_after} if retry_after else {}
    return lambda body: httpx.Response(429, json={"code": "c", "error": "rate limited"}, headers=headers)


def set_connection(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        json.dumps({"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY, "extra": extra}),
    )


def limited_hook(server: Server, clock: FakeClock, states: SQLiteStates, **kwargs: Any) -> XAIHook:
    """A hook whose shared limiter runs on the fake clock (the store is the real file)."""
    hook = XAIHook(backoff_base=0.25, client_kwargs={"transport": httpx.MockTransport(server)}, **kwargs)
    config = hook.settings.rate_limit
    assert config is not None
    hook.rate_limit._limiter = SharedRateLimiter(
        config, states, fingerprint(KEY), clock=clock.time, sleep=clock.sleep, asleep=clock.asleep
    )
    return hook


def ask(max_tokens: int | None = None, text: str = "hi") -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def states(tmp_path: Path) -> SQLiteStates:
    return SQLiteStates(str(tmp_path / "limits.sqlite"))


class TestSettings:
    def conn(self, **extra: Any) -> Any:
        from airflow.sdk import Connection

        return Connection(conn_id="x", conn_type="xai", password=KEY, extra=json.dumps(extra))

    def test_no_rate_limit_extras_means_no_client_side_limit(self) -> None:
        assert settings_from_connection(self.conn(), "x").rate_limit is None
        assert settings_from_connection(self.conn(rate_limit_requests_per_second=""), "x").rate_limit is None

    def test_values_are_read_with_the_embedded_store_under_airflow_home_by_default(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
        config = settings_from_connection(
            self.conn(rate_limit_requests_per_second="2.5", rate_limit_tokens_per_minute=9000), "x"
        ).rate_limit
        assert config is not None
        assert (config.requests_per_second, config.tokens_per_minute) == (2.5, 9000)
        assert (config.store, config.path) == ("embedded", str(tmp_path / "xai_rate_limits.sqlite"))
        assert default_path() == config.path

    def test_a_redis_connection_id_selects_the_redis_store(self) -> None:
        config = settings_from_connection(self.conn(rate_limit_redis_conn_id="limits_redis"), "x").rate_limit
        assert config is not None
        assert (config.store, config.redis_conn_id, config.requests_per_second) == ("redis", "limits_redis", None)

    @pytest.mark.parametrize(
        ("extra", "field"),
        [
            ({"rate_limit_requests_per_second": "fast"}, "rate_limit_requests_per_second"),
            ({"rate_limit_requests_per_second": 0}, "rate_limit_requests_per_second"),
            ({"rate_limit_requests_per_second": "nan"}, "rate_limit_requests_per_second"),
            ({"rate_limit_tokens_per_minute": 1.5}, "rate_limit_tokens_per_minute"),
            ({"rate_limit_tokens_per_minute": -10}, "rate_limit_tokens_per_minute"),
            ({"rate_limit_store": "memcached"}, "rate_limit_store"),
            ({"rate_limit_path": "limits.sqlite"}, "rate_limit_path"),
            ({"rate_limit_store": "redis"}, "rate_limit_redis_conn_id"),
            ({"rate_limit_store": "embedded", "rate_limit_redis_conn_id": "r"}, "rate_limit_redis_conn_id"),
        ],
    )
    def test_a_bad_value_names_its_field_before_any_request(
        self, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], field: str
    ) -> None:
        set_connection(monkeypatch, **extra)
        sent: list[httpx.Request] = []
        record = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200))
        hook = XAIHook(client_kwargs={"transport": record})
        with pytest.raises(XAIConfigurationError, match=field):
            hook.chat(ask())
        assert sent == []

    def test_an_unusable_store_path_names_the_field(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        set_connection(monkeypatch, rate_limit_requests_per_second=5, rate_limit_path=str(blocker / "limits.sqlite"))
        sent: list[httpx.Request] = []
        record = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200))
        hook = XAIHook(client_kwargs={"transport": record})
        with pytest.raises(XAIConfigurationError, match="rate_limit_path"):
            hook.chat(ask())
        assert sent == []


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def limiter_of(hook: XAIHook) -> SharedRateLimiter:
    limiter = hook.rate_limit.limiter(hook.settings)
    assert limiter is not None
    return limiter


def test_no_limit_configured_touches_no_store(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a store was opened without a configured limit")

    monkeypatch.setattr(rate_limit_store, "open_states", refuse)
    monkeypatch.setattr(SharedRateLimiter, "acquire", refuse)
    monkeypatch.setattr(SharedRateLimiter, "aacquire", refuse)
    clock = FakeClock(1_800_000_000.0)
    server = Server(clock, completion())
    hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(server)})
    hook.chat(ask())
    asyncio.run(hook.achat(ask()))
    assert hook.rate_limit.limiter(hook.settings) is None
    assert hook.batch_pacer.__class__.__name__ == "CallPacer"
    assert len(server.times) == 2


class TestReservedSlots:
    """Each call reserves a future slot in one store operation and sleeps until it, once."""

    def test_requests_are_paced_exactly_one_reserved_slot_apart(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=4)
        server = Server(clock, completion())
        hook = limited_hook(server, clock, states)
        for _ in range(5):
            hook.chat(ask())
        spacing = limiter_of(hook).spacing_us / 1e6
        assert spacing == pytest.approx((1 + JITTER_ALLOWANCE_US / 1e6) / 4)  # 1.025 s per 4
        assert gaps(server.times) == pytest.approx([spacing] * 4, abs=1e-5)  # at the limit, never slower
        assert len(clock.slept) == 4  # one sleep per waiting call: no polling

    @pytest.mark.parametrize("asynchronous", [False, True])
    def test_a_caller_that_wakes_too_late_takes_the_next_free_slot(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates, asynchronous: bool
    ) -> None:
        """Sending in a stale slot would crowd the slots booked after it into xAI's window."""
        set_connection(monkeypatch, rate_limit_requests_per_second=4)
        server = Server(clock, completion())
        hook = limited_hook(server, clock, states)
        limiter = limiter_of(hook)
        spacing = limiter.spacing_us / 1e6
        oversleep = [LATE_US / 1e6 + 0.05, LATE_US / 1e6 - 0.001]  # too late, then late but in time

        def busy_machine(seconds: float) -> None:
            clock.sleep(seconds + (oversleep.pop(0) if oversleep else 0.0))

        async def abusy_machine(seconds: float) -> None:
            busy_machine(seconds)

        limiter.sleep, limiter.asleep = busy_machine, abusy_machine
        start = clock.now
        with counted_operations(states) as operations:
            for _ in range(3):
                asyncio.run(hook.achat(ask())) if asynchronous else hook.chat(ask())
        assert operations() == 4  # the late call reserved a second time
        sent = [t - start for t in server.times]
        # the second call woke too late for its slot (1 x spacing) and took the next free one (2 x),
        # for which it woke late but in time; the third kept its own slot (3 x)
        assert sent == pytest.approx([0.0, 2 * spacing + LATE_US / 1e6 - 0.001, 3 * spacing], abs=1e-5)

    def test_a_call_costs_one_store_operation(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=1000, rate_limit_tokens_per_minute=10**6)
        hook = limited_hook(Server(clock, completion(total_tokens=5)), clock, states)
        hook.chat(ask())  # opens the file
        with counted_operations(states) as operations:
            for _ in range(10):
                hook.chat(ask(max_tokens=50))  # over-estimated: the refund rides on the next call
            asyncio.run(hook.achat(ask(max_tokens=50)))
        assert operations() == 11

    def test_an_answer_billing_more_than_reserved_costs_a_second_operation(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=10**6)
        hook = limited_hook(Server(clock, completion(total_tokens=500)), clock, states)
        with counted_operations(states) as operations:
            hook.chat(ask(max_tokens=50))
        assert operations() == 2  # the reservation, then the debt, at once
        assert tokens_held(limiter_of(hook)) == 500

    def test_models_are_limited_separately(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=1)
        server = Server(clock, completion())
        hook = limited_hook(server, clock, states)
        hook.chat(ask())
        hook.chat({**ask(), "model": "grok-4.20"})
        assert clock.slept == []
        hook.chat(ask())
        assert sum(clock.slept) >= 1.0

    def test_a_call_waiting_for_tokens_books_its_request_slot_when_it_goes(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=10, rate_limit_tokens_per_minute=1000)
        limiter = limiter_of(limited_hook(Server(clock, completion()), clock, states))
        big, small, after = limiter.plan(MODEL, 1000), limiter.plan(MODEL, 500), limiter.plan(MODEL, 0)
        assert big is not None and small is not None and after is not None
        start = clock.now
        limiter.acquire(big)  # the whole minute's budget
        limiter.acquire(small)  # waits until half of it has drained
        assert clock.now - start == pytest.approx(30.0, abs=1e-3)
        limiter.acquire(after)  # no tokens, but its request slot comes after the one taken at 30 s
        assert clock.now - start == pytest.approx(30.0 + limiter.spacing_us / 1e6, abs=1e-3)


class TestInterface:
    """plan / acquire / failed / settle, as the rate-limit layer calls them."""

    @pytest.fixture
    def limiter(self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates) -> SharedRateLimiter:
        set_connection(monkeypatch, rate_limit_requests_per_second=10, rate_limit_tokens_per_minute=1000)
        return limiter_of(limited_hook(Server(clock, completion()), clock, states))

    def test_a_plan_names_a_model_and_bounds_its_estimate(self, limiter: SharedRateLimiter) -> None:
        assert limiter.plan(None, 10) is None and limiter.plan("", 10) is None
        plans = [limiter.plan(MODEL, n) for n in (-5, 300, 10**15)]
        assert [p.tokens for p in plans if p is not None] == [0, 300, 1000]  # at most a minute's budget

    def test_without_a_tokens_limit_a_plan_reserves_no_tokens(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=10)
        plan = limiter_of(limited_hook(Server(clock, completion()), clock, states)).plan(MODEL, 500)
        assert plan is not None and plan.tokens == 0

    def test_the_async_methods_reserve_settle_and_give_back(
        self, limiter: SharedRateLimiter, clock: FakeClock
    ) -> None:
        first, second = limiter.plan(MODEL, 600), limiter.plan(MODEL, 600)
        assert first is not None and second is not None

        async def calls() -> None:
            await limiter.aacquire(first)
            await limiter.asettle(first, 100)
            await limiter.aacquire(second)  # fits only because the 500 over-estimate came back
            await limiter.afailed(second, XAIBadRequestError("bad", status=400), 0.0)

        asyncio.run(calls())
        assert clock.slept == pytest.approx([limiter.spacing_us / 1e6], abs=1e-5)
        assert tokens_held(limiter) == pytest.approx(100, abs=2)  # less what drained while it slept

    @pytest.mark.parametrize("asynchronous", [False, True])
    def test_a_429_sets_the_shared_cool_down_and_the_errors_retry_after(
        self, limiter: SharedRateLimiter, clock: FakeClock, asynchronous: bool
    ) -> None:
        plan = limiter.plan(MODEL, 100)
        assert plan is not None
        limiter.acquire(plan)
        error = XAIRateLimitError("slow down", status=429)
        error.retry_after = 4.0
        if asynchronous:
            asyncio.run(limiter.afailed(plan, error, 0.5))
        else:
            limiter.failed(plan, error, 0.5)
        assert error.retry_after == pytest.approx(4.0, abs=1e-3)
        assert limiter.remaining_cooldown(MODEL) == pytest.approx(4.0, abs=1e-3)
        assert tokens_held(limiter) == 0  # a refused request is not billed
        start = clock.now
        limiter.acquire(plan)
        assert clock.now - start == pytest.approx(4.0, abs=1e-3)

    def test_a_429_carries_a_shared_cool_down_longer_than_its_own_backoff(
        self, limiter: SharedRateLimiter, clock: FakeClock
    ) -> None:
        mine, theirs = limiter.plan(MODEL, 0), limiter.plan(MODEL, 0)
        assert mine is not None and theirs is not None
        limiter.acquire(mine)  # in flight while another worker meets a 429 asking 30 s
        elsewhere = XAIRateLimitError("elsewhere", status=429)
        elsewhere.retry_after = 30.0
        limiter.failed(theirs, elsewhere, 0.1)
        clock.now += 10
        own = XAIRateLimitError("no retry-after", status=429)
        limiter.failed(mine, own, 0.25)
        assert own.retry_after == pytest.approx(20.0, abs=1e-3)

    @pytest.mark.parametrize("retry_after", [float("nan"), float("inf"), -3.0, 1e15])
    def test_an_insane_retry_after_falls_back_to_the_backoff(
        self, limiter: SharedRateLimiter, retry_after: float
    ) -> None:
        plan = limiter.plan(MODEL, 0)
        assert plan is not None
        error = XAIRateLimitError("slow down", status=429)
        error.retry_after = retry_after
        limiter.failed(plan, error, 0.5)
        assert error.retry_after == pytest.approx(0.5, abs=1e-3)
        assert limiter.remaining_cooldown(MODEL) == pytest.approx(0.5, abs=1e-3)

    @pytest.mark.parametrize("backoff", [float("nan"), float("inf"), -1.0, 1e15])
    def test_the_cool_down_from_a_backoff_is_bounded(self, limiter: SharedRateLimiter, backoff: float) -> None:
        plan = limiter.plan(MODEL, 0)
        assert plan is not None
        limiter.failed(plan, XAIRateLimitError("slow down", status=429), backoff)
        assert 0.0 <= limiter.remaining_cooldown(MODEL) <= MAX_COOLDOWN

    @pytest.mark.parametrize("used", [-1, -(10**15), True, 12.5, "300"])
    def test_a_usage_that_is_no_count_is_refused_and_logged(
        self, limiter: SharedRateLimiter, used: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        plan = limiter.plan(MODEL, 300)
        assert plan is not None
        limiter.acquire(plan)
        with caplog.at_level(logging.WARNING):
            limiter.settle(plan, used)
        assert tokens_held(limiter) == 300  # the estimate stays; nothing summed
        assert "not a count" in caplog.text

    def test_an_error_answer_gives_the_tokens_back_without_a_store_operation(
        self, limiter: SharedRateLimiter, states: SQLiteStates
    ) -> None:
        plan = limiter.plan(MODEL, 700)
        assert plan is not None
        limiter.acquire(plan)
        with counted_operations(states) as operations:
            limiter.failed(plan, XAIBadRequestError("bad", status=400), 0.0)
        assert operations() == 0 and plan.charged == 0
        assert tokens_held(limiter) == 0  # carried by the next operation on the key

    def test_a_refund_survives_a_store_failure(
        self, limiter: SharedRateLimiter, states: SQLiteStates, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        plan = limiter.plan(MODEL, 700)
        assert plan is not None
        limiter.acquire(plan)
        limiter.settle(plan, 100)
        with monkeypatch.context() as broken:
            broken.setattr(states, "update", lambda *a: (_ for _ in ()).throw(XAIConnectionError("store down")))
            with pytest.raises(XAIConnectionError):
                limiter.acquire(plan)
        assert tokens_held(limiter) == 100  # the 600 given back were carried once the store came back

    def test_settle_never_raises(
        self, limiter: SharedRateLimiter, states: SQLiteStates, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        plan = limiter.plan(MODEL, 100)
        assert plan is not None
        limiter.acquire(plan)
        def broken(*args: Any) -> Any:
            raise RuntimeError("bug in a store")

        async def abroken(*args: Any) -> Any:
            raise RuntimeError("bug in a store")

        monkeypatch.setattr(states, "update", broken)
        monkeypatch.setattr(states, "aupdate", abroken)
        limiter.settle(plan, 900)  # a debt: written at once, and the store fails
        asyncio.run(limiter.asettle(plan, 950))
        assert caplog.text.count("Could not update the shared xAI rate limit after a billed answer") == 2


def test_a_429_cools_down_every_transport_sharing_the_store(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    set_connection(monkeypatch, rate_limit_requests_per_second=100, max_retries=0)
    first = Server(clock, too_many(retry_after="3"))
    second = Server(clock, completion())
    worker_a = limited_hook(first, clock, states)
    worker_b = limited_hook(second, clock, states)
    started = clock.now
    with pytest.raises(XAIRateLimitError) as raised:
        worker_a.chat(ask())
    assert raised.value.retry_after == pytest.approx(3.0, abs=0.01)
    worker_b.chat(ask())  # a different hook, transport and client: it never saw the 429
    assert second.times[0] - started >= 3.0
    assert len(first.times) == 1


def test_the_final_rate_limit_error_carries_the_remaining_shared_cool_down(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    set_connection(monkeypatch, rate_limit_requests_per_second=100, max_retries=1)
    monkeypatch.setattr("airflow_provider_xai.pipeline.transport.time.sleep", clock.sleep)  # the retry wait
    server = Server(clock, too_many(retry_after="20"))
    hook = limited_hook(server, clock, states)
    with pytest.raises(XAIRateLimitError) as raised:
        hook.chat(ask())  # a 20 s cool-down, the retry after it, another 20 s cool-down
    assert len(server.times) == 2 and server.times[1] - server.times[0] >= 20.0
    assert raised.value.retry_after == pytest.approx(20.0, abs=0.01)


def test_the_shared_cool_down_is_capped_but_the_error_keeps_the_servers_longer_delay(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    set_connection(monkeypatch, rate_limit_requests_per_second=100, max_retries=0)
    worker_a = limited_hook(Server(clock, too_many(retry_after="600")), clock, states)
    second = Server(clock, completion())
    worker_b = limited_hook(second, clock, states)
    started = clock.now
    with pytest.raises(XAIRateLimitError) as raised:
        worker_a.chat(ask())
    assert raised.value.retry_after == 600.0  # what the server asked, for the task-level retry
    worker_b.chat(ask())
    assert second.times[0] - started == pytest.approx(60.0, abs=0.01)  # workers pause a minute at most


@pytest.mark.parametrize("answer", [completion(total_tokens=500), too_many(retry_after="2")])
def test_a_store_failure_after_the_answer_never_loses_it(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates, caplog: pytest.LogCaptureFixture,
    answer: Callable[[dict[str, Any]], httpx.Response],
) -> None:
    set_connection(monkeypatch, rate_limit_tokens_per_minute=10_000, max_retries=0)
    server = Server(clock, answer)
    hook = limited_hook(server, clock, states)
    calls = 0
    real_update = states.update

    def update_then_fail(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:  # the reservation went through; the debt or the cool-down meets a dead store
            raise XAIConnectionError("store went away")
        return real_update(*args)

    monkeypatch.setattr(states, "update", update_then_fail)
    try:
        completion_ = hook.chat(ask(max_tokens=100))
    except XAIRateLimitError as exc:  # a 429 still carries its cool-down
        assert exc.retry_after == pytest.approx(2.0, abs=0.01)
    else:
        assert completion_.usage is not None and completion_.usage.total_tokens == 500
    assert len(server.times) == 1 and calls == 2  # answered once, not requested again
    assert "store went away" in caplog.text


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_garbled_row_in_the_embedded_store_is_read_as_empty(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates, caplog: pytest.LogCaptureFixture,
    asynchronous: bool,
) -> None:
    """Issue 27, item 6: after ``UPDATE xai_rate_limit SET state='garbage'`` chat raised a raw
    ValueError. A stored value that cannot be read is an empty key, logged and counted."""
    set_connection(monkeypatch, rate_limit_requests_per_second=5, rate_limit_tokens_per_minute=10_000)
    server = Server(clock, completion())
    hook = limited_hook(server, clock, states)
    hook.chat(ask())
    with sqlite3.connect(states.path) as db:
        db.execute("UPDATE xai_rate_limit SET state = 'garbage'")
    if asynchronous:
        asyncio.run(hook.achat(ask()))
    else:
        hook.chat(ask())
    assert len(server.times) == 2 and clock.slept == []  # the garbled row held no reservation
    assert states.garbled == 1 and "unreadable value" in caplog.text
    hook.chat(ask())  # paced again from the reset state
    assert clock.slept == pytest.approx([limiter_of(hook).spacing_us / 1e6], abs=1e-5)


class TestTokens:
    def test_the_estimate_counts_prompt_characters_images_and_the_answer_bound(self) -> None:
        text = "x" * 400  # 100 tokens, and the role's 4 characters one more
        assert estimate_tokens(ask(max_tokens=50, text=text)) == 101 + 50
        assert estimate_tokens(ask(text=text)) == 101 + DEFAULT_OUTPUT_TOKENS
        image = {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
            ],
        }
        # the role and the text part's type: 8 characters, 2 tokens
        assert estimate_tokens({"model": MODEL, "messages": [image], "max_tokens": 10}) == 102 + IMAGE_TOKENS + 10
        responses = {"model": MODEL, "input": text, "instructions": text, "max_output_tokens": 7}
        assert estimate_tokens(responses) == 200 + 7

    def test_an_over_estimate_is_given_back_after_the_answer(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=1000)
        server = Server(clock, completion(total_tokens=100))
        hook = limited_hook(server, clock, states)
        hook.chat(ask(max_tokens=600))  # reserved ~601 before, 100 after
        hook.chat(ask(max_tokens=850))  # fits only because the over-estimate came back
        assert clock.slept == []
        assert tokens_held(limiter_of(hook)) == 200

    def test_an_under_estimate_is_charged_after_the_answer(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=1000)
        server = Server(clock, completion(total_tokens=950))
        hook = limited_hook(server, clock, states)
        hook.chat(ask(max_tokens=100))
        assert tokens_held(limiter_of(hook)) == 950
        hook.chat(ask(max_tokens=100))
        # waits until the debt has drained down to room for the estimate
        assert sum(clock.slept) == pytest.approx((950 + estimate_tokens(ask(max_tokens=100)) - 1000) * 0.06, abs=0.01)

    def test_a_huge_usage_figure_is_settled_at_once_and_charged_one_minutes_budget(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Issue 27, item 1: usage.total_tokens = 10**15 once hung the call (the debt was charged
        a minute's budget per transaction) and would have locked every worker out for ever."""
        set_connection(monkeypatch, rate_limit_tokens_per_minute=1000)
        hook = limited_hook(Server(clock, completion(total_tokens=10**15)), clock, states)
        with counted_operations(states, limit=10) as operations:
            completion_ = hook.chat(ask(max_tokens=100))
        assert completion_.usage is not None and completion_.usage.total_tokens == 10**15
        assert operations() == 2
        assert "more than a minute's budget" in caplog.text
        assert tokens_held(limiter_of(hook)) == 1000
        hook.chat(ask(max_tokens=100))  # waits for its own share of the minute, no longer
        assert sum(clock.slept) == pytest.approx(estimate_tokens(ask(max_tokens=100)) * 0.06, abs=0.01)

    @pytest.mark.parametrize("total", [-5, "42", 10**30])
    def test_a_billed_figure_that_is_no_sane_count_never_reaches_the_budget(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates, total: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=1000)

        def answer(body: dict[str, Any]) -> httpx.Response:
            reply = completion()(body)
            return httpx.Response(200, json={**json.loads(reply.content), "usage": {"total_tokens": total}})

        hook = limited_hook(Server(clock, answer), clock, states)
        hook.chat(ask(max_tokens=100))
        held = tokens_held(limiter_of(hook))
        if total == 10**30:  # charged as one minute's budget, and said so
            assert held == 1000 and "more than a minute's budget" in caplog.text
        elif total == "42":  # the answer's model reads a count sent as text (as its usage record does)
            assert held == 42
        else:  # refused: the estimate stays charged
            assert held == estimate_tokens(ask(max_tokens=100))
            assert ("not a count" in caplog.text) == (total == -5)

    @pytest.mark.parametrize(
        "event",
        [
            {"type": "response.completed", "response": "not an object"},
            {"type": "response.completed", "response": {"usage": {"total_tokens": -7}}},
            {"type": "response.completed", "response": {"usage": "total_tokens"}},
        ],
    )
    def test_a_streams_odd_usage_event_keeps_the_estimate(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates, event: dict[str, Any]
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=100_000)
        body = f"event: response.completed\ndata: {json.dumps(event)}\n\n"
        stream = lambda request: httpx.Response(  # noqa: E731
            200, headers={"content-type": "text/event-stream"}, stream=Streamed(body.encode())
        )
        hook = limited_hook(Server(clock, stream), clock, states)
        with contextlib.suppress(XAIError):  # an answer with no usable usage: nothing to settle from
            hook.stream_response(model=MODEL, input="hi", max_output_tokens=50)
        assert tokens_held(limiter_of(hook)) == estimate_tokens({"input": "hi", "max_output_tokens": 50})

    def test_an_error_answer_gives_the_estimate_back(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=1000)
        bad = lambda body: httpx.Response(400, json={"code": "c", "error": "bad"})  # noqa: E731
        hook = limited_hook(Server(clock, bad), clock, states)
        with pytest.raises(XAIBadRequestError):
            hook.chat(ask(max_tokens=900))
        assert tokens_held(limiter_of(hook)) == 0

    def test_the_async_path_waits_without_blocking_the_loop(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=2, rate_limit_tokens_per_minute=100_000)
        server = Server(clock, completion(total_tokens=10))
        hook = limited_hook(server, clock, states)
        owed: list[int] = []

        async def main() -> None:
            await hook.achat(ask(max_tokens=100))
            owed.append(tokens_held(limiter_of(hook)))
            await hook.achat(ask(max_tokens=100))

        asyncio.run(main())
        assert clock.async_sleeps == 1 and server.times[1] - server.times[0] >= 0.5
        assert owed == [10]  # the estimate (~102) corrected to the usage

    @pytest.mark.parametrize("asynchronous", [False, True])
    def test_a_stream_is_corrected_by_the_usage_it_carried(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates, asynchronous: bool
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=100_000)
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**chunk, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}},
        ]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        stream = lambda request: httpx.Response(  # noqa: E731
            200, headers={"content-type": "text/event-stream"}, stream=Streamed(body.encode())
        )
        server = Server(clock, stream)
        hook = limited_hook(server, clock, states)
        if asynchronous:
            completion = asyncio.run(hook.astream_chat_completion(ask(max_tokens=4000)))
        else:
            completion = hook.stream_chat_completion(ask(max_tokens=4000))
        assert completion.usage is not None and completion.usage.total_tokens == 42
        assert tokens_held(limiter_of(hook)) == 42  # not ~4000

    def test_chat_many_shares_the_limit(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=10)
        server = Server(clock, completion())
        hook = limited_hook(server, clock, states)
        results = hook.chat_many([ask(text=str(i)) for i in range(6)], max_concurrency=6)
        assert len(results) == 6 and not any(isinstance(r, Exception) for r in results)
        assert gaps(sorted(server.times)) == pytest.approx([limiter_of(hook).spacing_us / 1e6] * 5, abs=1e-5)


def test_the_batch_pacer_is_shared_through_the_store(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    set_connection(monkeypatch, rate_limit_store="embedded")
    one = limited_hook(Server(clock, completion()), clock, states)
    two = limited_hook(Server(clock, completion()), clock, states)
    waits = [one.batch_pacer.acquire(), two.batch_pacer.acquire(), one.batch_pacer.acquire()]
    assert waits[0] == 0.0
    assert waits[1] == pytest.approx(0.303, abs=0.002) and waits[2] == pytest.approx(0.303, abs=0.002)


def test_a_calls_wait_for_its_slot_and_the_429s_it_met_are_on_its_usage_record(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    set_connection(monkeypatch, rate_limit_requests_per_second=2, max_retries=2)
    monkeypatch.setattr("airflow_provider_xai.pipeline.transport.time.sleep", clock.sleep)  # the retry wait
    server = Server(clock, too_many(retry_after="3"), completion())
    hook = limited_hook(server, clock, states)
    refused = hook.chat(ask()).usage_record  # its slot now, a 429, the retry 3 s later
    assert refused is not None and (refused.rate_limited, refused.waited_s) == (1, pytest.approx(3.0))
    paced = hook.chat(ask()).usage_record  # the next slot, one spacing after the retry's
    assert paced is not None and paced.rate_limited == 0
    assert paced.waited_s == pytest.approx(limiter_of(hook).spacing_us / 1e6, abs=1e-3)


def test_429s_are_counted_without_a_client_side_limit(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    set_connection(monkeypatch, max_retries=3)
    monkeypatch.setattr("airflow_provider_xai.pipeline.transport.time.sleep", clock.sleep)
    server = Server(clock, too_many(retry_after="1"), too_many(retry_after="1"), completion())
    hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(server)})
    record = hook.chat(ask()).usage_record
    assert record is not None and (record.rate_limited, record.waited_s) == (2, 0.0)


def test_the_async_path_withdraws_a_far_call_and_sends_later_with_the_held_slot(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    from airflow_provider_xai.ratelimit.held import CapacityWait
    from airflow_provider_xai.ratelimit.layer import FirstCall
    from airflow_provider_xai.ratelimit.slots import Update

    set_connection(monkeypatch, rate_limit_requests_per_second=2)
    server = Server(clock, completion())
    hook = limited_hook(server, clock, states)
    limiter = limiter_of(hook)
    for _ in range(10):  # other callers hold the next five seconds
        update = Update(limiter.now_us(), slot=True, spacing=limiter.spacing_us)
        limiter.states.update(limiter.key(f"model:{MODEL}"), update)
    hook.rate_limit.expect(FirstCall(defer_after=1.0))
    with pytest.raises(CapacityWait) as withdrawn:
        asyncio.run(hook.achat(ask()))
    held = withdrawn.value.reservation
    assert server.times == [] and withdrawn.value.wait > 5 and withdrawn.value.inputs
    first = FirstCall(held=held, inputs=withdrawn.value.inputs)
    hook.rate_limit.expect(first)
    with counted_operations(states) as operations:
        record = asyncio.run(hook.achat(ask())).usage_record
    assert operations() == 0 and first.held_outcome == "used"
    assert server.times == [held.at / 1e6]  # at its slot, the one it held
    assert record is not None and record.waited_s == pytest.approx(withdrawn.value.wait)


@pytest.mark.parametrize(("short_by", "sleeps"), [(0.0, 1), (0.000_002, 1), (0.003, 2)])
def test_a_sleep_that_ends_early_is_slept_again_unless_by_float_rounding(
    monkeypatch: pytest.MonkeyPatch, states: SQLiteStates, short_by: float, sleeps: int
) -> None:
    """Waking 3 ms early sleeps again; waking 2 us short of the slot (what the epoch clock's
    float rounding can read back) does not."""
    set_connection(monkeypatch, rate_limit_requests_per_second=1)
    clock = FakeClock(1_800_000_000.123_456_7)

    def sleep(seconds: float) -> None:  # the first sleep ends ``short_by`` early
        clock.sleep(seconds - short_by if not clock.slept else seconds)

    config = XAIHook().settings.rate_limit
    assert config is not None
    limiter = SharedRateLimiter(config, states, fingerprint(KEY), clock=clock.time, sleep=sleep, asleep=clock.asleep)
    limiter.sleep_until(limiter.now_us() + 500_000)
    assert len(clock.slept) == sleeps
    assert sum(clock.slept) == pytest.approx(0.5 - (short_by if sleeps == 1 else 0), abs=2e-6)


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_slot_within_the_resume_lead_is_slept_for_and_the_lead_read_only_past_defer_after(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates, path: str
) -> None:
    from airflow_provider_xai.ratelimit.layer import FirstCall
    from airflow_provider_xai.ratelimit.slots import Update

    set_connection(monkeypatch, rate_limit_requests_per_second=2)
    server = Server(clock, completion(), completion())
    hook = limited_hook(server, clock, states)
    limiter = limiter_of(hook)

    def chat() -> Any:
        return hook.chat(ask()) if path == "sync" else asyncio.run(hook.achat(ask()))

    def unread() -> float:
        raise AssertionError("the lead was read for a slot within rate_limit_defer_after")

    hook.rate_limit.expect(FirstCall(defer_after=1.0, lead=unread))  # the slot is now
    assert chat().usage_record is not None
    for _ in range(10):  # other callers hold the next five seconds
        update = Update(limiter.now_us(), slot=True, spacing=limiter.spacing_us)
        limiter.states.update(limiter.key(f"model:{MODEL}"), update)
    reads: list[int] = []
    hook.rate_limit.expect(FirstCall(defer_after=1.0, lead=lambda: reads.append(1) or 6.0))
    record = chat().usage_record  # about 5.6 s away: past defer_after, within the 6 s lead
    assert reads == [1] and record is not None and record.waited_s > 5 and len(server.times) == 2
