"""The shared rate limit across OS processes and through a real Redis.

Several processes (multiprocessing, spawned: fresh interpreters like Celery workers) call the
bundled local server through hooks whose connection sets a requests-per-second limit on one
shared store. Each worker notes when the limiter let each request go; however slow the machine,
no second of those departures may hold more than the limit (a worker that woke late for its
slot takes another). The server's journal gives the arrivals, whose overall rate may not
exceed the limit either (only upper bounds: slowness can only lower the rate). The Redis store
runs against a real ``redis-server`` started here on a free loopback port
(``XAI_TEST_REDIS_SERVER`` or PATH).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_xai.exceptions import XAIConnectionError, XAIRateLimitError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.ratelimit.limiter import SharedRateLimiter
from airflow_provider_xai.ratelimit.redis_store import RedisStates
from airflow_provider_xai.ratelimit.slots import HORIZON, Update, transition
from airflow_provider_xai.ratelimit.sqlite_store import SQLiteStates
from airflow_provider_xai.testing.redis_server import RedisServerMissing, redis_server
from tests.helpers.clock import FakeClock
from tests.helpers.limits import redis_client, tokens_held

REDIS_PASSWORD = "limits-redis-secret-0451"
RATE = 20
PROCESSES = 4
CALLS_EACH = 15


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """A private redis-server on loopback, with a password, kept for this module's tests."""
    try:
        with redis_server(REDIS_PASSWORD) as server:
            yield server.port
    except RedisServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def redis_connection(port: int, password: str = REDIS_PASSWORD) -> str:
    return json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": port, "password": password})


def limits(store: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    if store == "redis":
        return {"rate_limit_redis_conn_id": "limits_redis", **extra}
    return {"rate_limit_path": str(tmp_path / "limits.sqlite"), **extra}


def _worker(env: dict[str, str], calls: int, start: Any, out: Any) -> None:
    """One 'Celery worker': its own interpreter, hook, pools and limiter; puts the times at
    which its limiter let each request go."""
    os.environ.update(env)
    hook = XAIHook()
    hook.chat(model="grok-4.3", messages=[{"role": "user", "content": "warm up the imports"}], max_tokens=5)
    limiter = hook.rate_limit.limiter(hook.settings)
    assert limiter is not None
    acquire, departures = limiter.acquire, []

    def noted(plan: Any, *more: Any) -> float:
        waited = acquire(plan, *more)
        departures.append(time.time())
        return waited

    limiter.acquire = noted  # type: ignore[method-assign]
    start.wait()
    for i in range(calls):
        hook.chat(model="grok-4.3", messages=[{"role": "user", "content": f"request {i}"}], max_tokens=5)
    out.put(departures)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["embedded", "redis"])
def test_processes_sharing_a_store_keep_the_aggregate_rate(
    store: str, xai_server: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {"AIRFLOW_CONN_XAI_DEFAULT": xai_server.connection_json(
        rate_limit_requests_per_second=RATE, **limits(store, tmp_path)
    )}
    if store == "redis":
        env["AIRFLOW_CONN_LIMITS_REDIS"] = redis_connection(request.getfixturevalue("redis_port"))
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [context.Process(target=_worker, args=(env, CALLS_EACH, start, out)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    while len(xai_server.requests("chat/completions")) < PROCESSES:  # every worker warmed up
        assert all(w.is_alive() or w.exitcode == 0 for w in workers), "a worker died while starting"
        time.sleep(0.05)
    first_paced = len(xai_server.journal)
    start.set()
    departures = sorted(t for _ in workers for t in out.get(timeout=120))
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    journal = [e for e in xai_server.journal[first_paced:] if e.path.endswith("chat/completions")]
    arrivals = sorted(e.time for e in journal if e.status == 200)
    assert len(arrivals) == PROCESSES * CALLS_EACH
    # No second of departures holds more than RATE: RATE + 1 consecutive ones span more than a
    # second (slots are (1 s + 25 ms) / RATE apart; a worker up to 12.5 ms late keeps its slot).
    spans = [departures[i + RATE] - departures[i] for i in range(len(departures) - RATE)]
    assert min(spans) >= 1.0, f"{RATE + 1} requests went within {min(spans):.3f}s"
    overall = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    refused = sum(e.status == 429 for e in journal)
    print(f"\n{store} store, {PROCESSES} processes: {overall:.1f} requests/s for a limit of {RATE}, {refused} 429s")
    assert overall <= RATE * 1.05  # the first and last arrivals may each be late or early


NOW = 1_800_000_000_000_000  # us
SPACING = 1_000


def _reserve(where: Any, count: int, start: Any, out: Any) -> None:
    """One process: open the store, wait for the others, reserve ``count`` slots at once."""
    states = SQLiteStates(where) if isinstance(where, str) else RedisStates(where, "limits_redis")
    start.wait()
    out.put([states.update("race", Update(NOW, slot=True, spacing=SPACING)).at for _ in range(count)])


@pytest.mark.parametrize("store", ["embedded", "redis"])
def test_processes_reserving_at_once_never_share_a_slot(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Processes ask for slots at the same instant: every slot is given once, none skipped."""
    if store == "redis":
        port = request.getfixturevalue("redis_port")
        where: Any = {"host": "127.0.0.1", "port": port, "password": REDIS_PASSWORD}
        redis_client(RedisStates(where, "limits_redis")).delete("race")
    else:
        where = str(tmp_path / "limits.sqlite")
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [context.Process(target=_reserve, args=(where, 50, start, out)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    start.set()
    slots = [at for _ in workers for at in out.get(timeout=120)]
    for worker in workers:
        worker.join()
    assert sorted(slots) == [NOW + i * SPACING for i in range(PROCESSES * 50)]


class TestRedisStore:
    """The same limiter on Redis: the Lua twin of the transition, cool-downs, refunds, async."""

    @pytest.fixture
    def hooks(self, redis_port: int, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
        import redis

        redis.Redis(host="127.0.0.1", port=redis_port, password=REDIS_PASSWORD).flushall()
        monkeypatch.setenv("AIRFLOW_CONN_LIMITS_REDIS", redis_connection(redis_port))
        clock = FakeClock()

        def make(server: Any, **extra: Any) -> XAIHook:
            monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", server.connection_json(
                rate_limit_redis_conn_id="limits_redis", **extra
            ))
            hook = XAIHook(backoff_base=0.05)
            limiter = hook.rate_limit.limiter(hook.settings)
            assert limiter is not None
            limiter.clock, limiter.sleep, limiter.asleep = clock.time, clock.sleep, clock.asleep
            hook.clock = clock  # type: ignore[attr-defined]
            return hook

        return make

    def test_requests_are_paced_and_a_429_cools_down_every_hook(self, hooks: Any, xai_server: Any) -> None:
        from airflow_provider_xai.testing.state import Fault

        one = hooks(xai_server, rate_limit_requests_per_second=5, max_retries=0)
        two = hooks(xai_server, rate_limit_requests_per_second=5, max_retries=0)
        clock = one.clock
        for hook in (one, two, one):
            hook.chat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}])
        assert clock.slept == pytest.approx([one.rate_limit._limiter.spacing_us / 1e6] * 2, abs=1e-5)
        xai_server.enqueue(Fault(429, retry_after=7))
        with pytest.raises(XAIRateLimitError) as raised:
            one.chat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}])
        assert raised.value.retry_after == pytest.approx(7.0, abs=0.01)
        before = sum(clock.slept)
        two.chat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}])  # never saw the 429
        assert sum(clock.slept) - before == pytest.approx(7.0, abs=0.05)

    def test_tokens_are_corrected_by_the_usage_on_the_async_path(self, hooks: Any, xai_server: Any) -> None:
        hook = hooks(xai_server, rate_limit_tokens_per_minute=10_000)
        limiter: SharedRateLimiter = hook.rate_limit._limiter
        completion = asyncio.run(
            hook.achat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}], max_tokens=5000)
        )
        assert completion.usage is not None and completion.usage.total_tokens < 1000
        assert tokens_held(limiter) == pytest.approx(completion.usage.total_tokens, abs=1)  # not ~5000
        assert hook.clock.async_sleeps == 0

    def test_returns_from_the_triggerer_are_shared_through_redis(self, redis_port: int) -> None:
        """The learned resume lead's entries (ratelimit/lead.py): noted by one store object,
        read by another, the last WINDOW kept, unreadable ones ignored."""
        from airflow_provider_xai.ratelimit.lead import WINDOW, entry, recent
        from airflow_provider_xai.ratelimit.redis_store import resume_returns

        options = {"host": "127.0.0.1", "port": redis_port, "password": REDIS_PASSWORD}
        one, two = RedisStates(options, "limits_redis"), RedisStates(options, "limits_redis")
        redis_client(one).delete("returns")
        now_ms = NOW // 1000
        assert resume_returns(one, "returns", now_ms) == []
        redis_client(one).rpush("returns", "garbled")
        for i in range(WINDOW):
            resume_returns(one if i % 2 else two, "returns", now_ms, entry(now_ms + i, i / 10))
        assert recent(resume_returns(two, "returns", now_ms + WINDOW), now_ms + WINDOW) == [
            pytest.approx(i / 10) for i in range(WINDOW)
        ]
        assert 0 < redis_client(one).pttl("returns") <= 3600 * 1000

    def test_the_lua_script_applies_the_same_transition(self, redis_port: int) -> None:
        """The Redis store's script and slots.transition (the embedded store's) agree on every
        answer and every stored value, over random updates and garbled values."""
        states = RedisStates({"host": "127.0.0.1", "port": redis_port, "password": REDIS_PASSWORD}, "limits_redis")
        client = redis_client(states)
        client.delete("twin")
        rng = random.Random(25)
        stored, now = None, NOW
        for step in range(400):
            now += rng.choice([0, 0, 1, 999, 50_000, 3_000_000, 70_000_000])
            update = Update(
                now,
                correction=rng.choice([0, 0, 7, -7, 6_000_000, -90_000_000]),
                cool_until=rng.choice([0, 0, now + rng.randrange(60_000_000)]),
                slot=rng.random() < 0.6,
                spacing=rng.choice([0, 50_000, 1_025_000]),
                tokens=rng.choice([0, 1, 6_000_000, 60_000_000]),
                depth=rng.choice([0, 60_000_000]),
                # a slot given back: often one booked just before (next = it + spacing)
                release=rng.choice([0, 0, now + rng.randrange(3_000_000), _last_slot(stored, now)]),
            )
            if step % 50 == 7:
                stored = rng.choice(["garbage", "1,2", f"{now + HORIZON + 1},0,0", "-1,0,0"])
                client.set("twin", stored)
            stored, expected = transition(stored, update)
            answer = states.update("twin", update) if step % 2 else asyncio.run(states.aupdate("twin", update))
            assert answer == expected, (step, update)
            assert client.get("twin").decode() == stored, (step, update)

    @pytest.mark.parametrize("garble", ["text", "wrong type", "far future"])
    def test_a_garbled_value_is_read_as_empty(
        self, hooks: Any, xai_server: Any, garble: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        hook = hooks(xai_server, rate_limit_requests_per_second=5, rate_limit_tokens_per_minute=10_000)
        hook.chat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}])
        limiter: SharedRateLimiter = hook.rate_limit._limiter
        key, client, before = limiter.key("model:grok-4.3"), redis_client(limiter.states), limiter.states.garbled
        if garble == "text":
            client.set(key, "garbage")
        elif garble == "wrong type":
            client.delete(key)
            client.rpush(key, "not", "a", "string")
        else:  # a lock-out no server would impose, e.g. left by an old bug
            client.set(key, f"{limiter.now_us() + 10**18},0,0")
        hook.chat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}])
        assert hook.clock.slept == []  # the unreadable value held no reservation
        assert limiter.states.garbled == before + 1 and "unreadable value" in caplog.text
        hook.chat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}])  # paced from the reset
        assert hook.clock.slept == pytest.approx([limiter.spacing_us / 1e6], abs=1e-5)

    def test_a_call_costs_one_round_trip(self, hooks: Any, xai_server: Any) -> None:
        hook = hooks(xai_server, rate_limit_requests_per_second=1000, rate_limit_tokens_per_minute=10**6)
        client = redis_client(hook.rate_limit.limiter(hook.settings).states)
        ask = {"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 500}

        async def calls() -> None:
            await hook.achat(ask)  # this loop's client connects and loads the script
            client.config_resetstat()
            for _ in range(3):
                await hook.achat(ask)
            for _ in range(5):
                hook.chat(ask)  # over-estimated: the refund rides on the next call

        hook.chat(ask)
        asyncio.run(calls())
        stats = client.info("commandstats")
        calls_made = {k: v["calls"] for k, v in stats.items() if not k.startswith(("cmdstat_config", "cmdstat_info"))}
        # 8 calls, 8 round trips: one EVALSHA each, and the GET and SET that script makes inside
        assert calls_made == {"cmdstat_evalsha": 8, "cmdstat_get": 8, "cmdstat_set": 8}

    def test_a_wrong_password_fails_clearly_without_the_password(
        self, redis_port: int, xai_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        wrong = "not-the-redis-password-977"
        monkeypatch.setenv("AIRFLOW_CONN_LIMITS_REDIS", redis_connection(redis_port, wrong))
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(
            rate_limit_redis_conn_id="limits_redis", rate_limit_requests_per_second=5, max_retries=0
        ))
        with pytest.raises(XAIConnectionError, match="limits_redis") as raised:
            XAIHook().chat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}])
        assert wrong not in str(raised.value) and wrong not in caplog.text
        assert xai_server.requests("chat/completions") == []  # nothing sent past a broken store


def _last_slot(stored: str | None, now: int) -> int:
    """The slot booked last in ``stored`` under the spacings the twin test uses (0: none)."""
    from airflow_provider_xai.ratelimit.slots import decode

    (nxt, _, _), _ = decode(stored, now)
    return max(0, nxt - 50_000)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_api_calls_are_charged_their_real_usage(
    xai_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(
        rate_limit_tokens_per_minute=1_000_000, rate_limit_path=str(tmp_path / "limits.sqlite")
    ))
    hook = XAIHook()
    limiter = hook.rate_limit.limiter(hook.settings)
    assert limiter is not None
    clock = FakeClock()
    limiter.clock, limiter.sleep, limiter.asleep = clock.time, clock.sleep, clock.asleep
    call = hook.stream_response if stream else hook.create_response
    response = call(model="grok-4.3", input="Say hello in five words.", max_output_tokens=20_000)
    assert response.usage is not None and response.usage.total_tokens < 5_000
    assert tokens_held(limiter) == pytest.approx(response.usage.total_tokens, abs=1)  # not ~20,000
