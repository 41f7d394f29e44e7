"""The shared rate limiter (ratelimit/limiter.py) against httpx.MockTransport and a fake clock.

The store is the real embedded one (an SQLite file in tmp_path); only time is faked: the
clock moves when the limiter sleeps, so pacing is asserted exactly and nothing waits.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai.connection.rate_limits import default_path
from airflow_provider_xai.connection.settings import settings_from_connection
from airflow_provider_xai.endpoints.common import DEFAULT_OUTPUT_TOKENS, IMAGE_TOKENS, estimate_tokens
from airflow_provider_xai.exceptions import XAIConfigurationError, XAIConnectionError, XAIRateLimitError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.ratelimit import store as rate_limit_store
from airflow_provider_xai.ratelimit.limiter import SharedRateLimiter, fingerprint
from airflow_provider_xai.ratelimit.store import ALGORITHM, RedisStates, SQLiteStates
from tests.helpers.clock import FakeClock

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


def test_no_limit_configured_touches_no_store(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a store was opened without a configured limit")

    monkeypatch.setattr(rate_limit_store, "open_states", refuse)
    monkeypatch.setattr(SharedRateLimiter, "run", refuse)
    monkeypatch.setattr(SharedRateLimiter, "arun", refuse)
    clock = FakeClock(1_800_000_000.0)
    server = Server(clock, completion())
    hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(server)})
    hook.chat(ask())
    asyncio.run(hook.achat(ask()))
    assert hook.rate_limit.limiter(hook.settings) is None
    assert hook.batch_pacer.__class__.__name__ == "CallPacer"
    assert len(server.times) == 2


def test_requests_are_paced_to_the_configured_rate(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    set_connection(monkeypatch, rate_limit_requests_per_second=4)
    server = Server(clock, completion())
    hook = limited_hook(server, clock, states)
    for _ in range(5):
        hook.chat(ask())
    gaps = [round(b - a, 3) for a, b in zip(server.times, server.times[1:], strict=False)]
    assert all(gap >= 0.25 for gap in gaps), gaps
    assert server.times[-1] - server.times[0] < 4 * 0.25 + 0.05  # paced, not slower


def test_models_are_limited_separately(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates) -> None:
    set_connection(monkeypatch, rate_limit_requests_per_second=1)
    server = Server(clock, completion())
    hook = limited_hook(server, clock, states)
    hook.chat(ask())
    hook.chat({**ask(), "model": "grok-4.20"})
    assert clock.slept == []
    hook.chat(ask())
    assert sum(clock.slept) >= 0.99


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


def test_a_shared_cool_down_longer_than_the_backoff_is_what_the_error_carries(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    set_connection(monkeypatch, rate_limit_requests_per_second=100, max_retries=0)
    limiter_owner = limited_hook(Server(clock, completion()), clock, states)
    limiter = limiter_owner.rate_limit.limiter(limiter_owner.settings)
    assert limiter is not None
    plan = limiter.plan(ask())
    assert plan is not None
    error = XAIRateLimitError("elsewhere", status=429)
    error.retry_after = 30.0
    limiter.run(limiter._cool_down(plan, error, 0.1))  # another worker met a 429 with retry-after 30
    clock.now += 10
    hook = limited_hook(Server(clock, too_many()), clock, states)
    with pytest.raises(XAIRateLimitError) as raised:
        hook.chat(ask())  # waits out the shared cool-down, then meets its own 429
    assert limiter.run(limiter.remaining_cooldown(MODEL)) == pytest.approx(raised.value.retry_after, abs=0.01)
    assert clock.slept and sum(clock.slept) >= 20.0


def test_a_store_failure_after_the_answer_never_loses_it(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates, caplog: pytest.LogCaptureFixture
) -> None:
    set_connection(monkeypatch, rate_limit_tokens_per_minute=10_000, max_retries=2)
    server = Server(clock, completion(total_tokens=42))
    hook = limited_hook(server, clock, states)
    checks = 0
    real_check = states.check

    def check_then_fail(*args: Any) -> Any:
        nonlocal checks
        checks += 1
        if checks > 2:  # the tokens and the request went through; the correction meets a dead store
            raise XAIConnectionError("store went away")
        return real_check(*args)

    monkeypatch.setattr(states, "check", check_then_fail)
    completion_ = hook.chat(ask(max_tokens=100))
    assert completion_.usage is not None and completion_.usage.total_tokens == 42
    assert len(server.times) == 1  # answered once, not requested again
    assert "store went away" in caplog.text


class TestTokens:
    def tokens_owed(self, limiter: SharedRateLimiter, model: str = MODEL) -> int:
        plan = limiter.plan(ask())
        assert plan is not None
        state = limiter.states.read(plan.tokens_key, limiter.tokens_rate)
        return int(ALGORITHM.consumed(limiter.tokens_rate, state, limiter.now_ms()))

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
        hook.chat(ask(max_tokens=600))  # charged ~601 before, 100 after
        limiter = hook.rate_limit.limiter(hook.settings)
        assert limiter is not None
        assert 99 <= self.tokens_owed(limiter) <= 101
        hook.chat(ask(max_tokens=850))  # fits only because the over-estimate came back
        assert clock.slept == []

    def test_an_under_estimate_is_charged_after_the_answer(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=1000)
        server = Server(clock, completion(total_tokens=1500))  # more than a minute's budget
        hook = limited_hook(server, clock, states)
        hook.chat(ask(max_tokens=100))
        limiter = hook.rate_limit.limiter(hook.settings)
        assert limiter is not None
        assert 1499 <= self.tokens_owed(limiter) <= 1501  # a debt past the limit
        hook.chat(ask(max_tokens=100))
        # waits until the debt is paid down to room for ~101 tokens: (1500 + 101 - 1000) / 1000 min
        assert sum(clock.slept) == pytest.approx(0.601 * 60, abs=0.2)

    def test_an_error_answer_gives_the_estimate_back(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_tokens_per_minute=1000)
        bad = lambda body: httpx.Response(400, json={"code": "c", "error": "bad"})  # noqa: E731
        hook = limited_hook(Server(clock, bad), clock, states)
        with pytest.raises(Exception, match="400"):
            hook.chat(ask(max_tokens=900))
        limiter = hook.rate_limit.limiter(hook.settings)
        assert limiter is not None
        assert self.tokens_owed(limiter) == 0

    def test_the_async_path_waits_without_blocking_the_loop(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=2, rate_limit_tokens_per_minute=100_000)
        server = Server(clock, completion(total_tokens=10))
        hook = limited_hook(server, clock, states)

        owed: list[int] = []

        async def main() -> None:
            await hook.achat(ask(max_tokens=100))
            owed.append(self.tokens_owed(hook.rate_limit._limiter))  # type: ignore[arg-type]
            await hook.achat(ask(max_tokens=100))

        asyncio.run(main())
        assert clock.async_sleeps >= 1 and clock.slept and server.times[1] - server.times[0] >= 0.5
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
        assert self.tokens_owed(hook.rate_limit._limiter) == 42  # type: ignore[arg-type]  # not ~4000

    def test_chat_many_shares_the_limit(
        self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
    ) -> None:
        set_connection(monkeypatch, rate_limit_requests_per_second=10)
        server = Server(clock, completion())
        hook = limited_hook(server, clock, states)
        results = hook.chat_many([ask(text=str(i)) for i in range(6)], max_concurrency=6)
        assert len(results) == 6 and not any(isinstance(r, Exception) for r in results)
        times = sorted(server.times)
        assert times[-1] - times[0] >= 0.5 - 1e-6


def test_the_batch_pacer_is_shared_through_the_store(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, states: SQLiteStates
) -> None:
    set_connection(monkeypatch, rate_limit_store="embedded")
    one = limited_hook(Server(clock, completion()), clock, states)
    two = limited_hook(Server(clock, completion()), clock, states)
    waits = [one.batch_pacer.acquire(), two.batch_pacer.acquire(), one.batch_pacer.acquire()]
    assert waits[0] == 0.0
    assert waits[1] == pytest.approx(0.303, abs=0.002) and waits[2] == pytest.approx(0.303, abs=0.002)


def test_two_connections_of_one_machine_share_one_sqlite_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    assert rate_limit_store.open_states("embedded", path, None) is rate_limit_store.open_states("embedded", path, None)
    SQLiteStates(path).check("k", _rate(), 1, 1)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT key FROM xai_rate_limit").fetchall() == [("k",)]


def _rate() -> list[Any]:
    from pyrate_limiter import Rate

    return [Rate(1, 1000)]


def test_a_redis_failure_names_the_store_and_never_the_password() -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    password = "redis-pass-do-not-leak-42"
    states = RedisStates({"host": "127.0.0.1", "port": port, "password": password}, "limits_redis")
    with pytest.raises(XAIConnectionError) as raised:
        states.check("k", _rate(), 1, 1)
    assert "limits_redis" in str(raised.value) and password not in str(raised.value)
    with pytest.raises(XAIConnectionError) as araised:
        asyncio.run(states.acheck("k", _rate(), 1, 1))
    assert password not in str(araised.value)


def _check_in_child(states: SQLiteStates, result: Any) -> None:
    result.put(states.check("forked", _rate(), 1, 1).allowed)


def test_a_forked_worker_opens_its_own_connection(states: SQLiteStates) -> None:
    import multiprocessing

    assert states.check("forked", _rate(), 0, 1).allowed  # the parent's connection is open
    context = multiprocessing.get_context("fork")  # as Celery's prefork pool starts workers
    result = context.Queue()
    child = context.Process(target=_check_in_child, args=(states, result))
    child.start()
    allowed = result.get(timeout=60)
    child.join()
    assert child.exitcode == 0 and allowed is False  # the child saw the parent's arrival at 0 ms
    assert states.check("forked", _rate(), 1000, 1).allowed  # and the parent's connection still works
