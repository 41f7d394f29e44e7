"""The local server's xAI-style rate limits, over loopback.

Bursts run against a server whose clock the test holds still (``ServerState(clock=...)``), so
"a burst inside one second" is exact however slow the machine is; the pacing test uses the
real clock, where a slow machine only spaces requests further apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_xai.exceptions import XAIRateLimitError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.testing import XAIServer
from airflow_provider_xai.testing.errors import ERROR_CODES
from airflow_provider_xai.testing.state import ServerState

pytest_plugins = ["airflow_provider_xai.testing.pytest_plugin"]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def held_server(clock: Clock) -> Iterator[XAIServer]:
    with XAIServer(state=ServerState(clock=clock)) as server:
        yield server


@pytest.fixture
def server(held_server: XAIServer) -> Iterator[XAIServer]:
    held_server.reset()
    yield held_server
    held_server.reset()


def client_for(server: XAIServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=10,
                        headers={"Authorization": f"Bearer {server.api_key}"})


def chat_body(model: str = "grok-3", text: str = "Hello Grok", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


async def burst(server: XAIServer, n: int, body: dict[str, Any]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10,
                                 headers={"Authorization": f"Bearer {server.api_key}"}) as c:
        return list(await asyncio.gather(*(c.post("/chat/completions", json=body)
                                           for _ in range(n))))


def test_a_burst_over_the_limit_gets_xais_429_without_retry_after(server: XAIServer) -> None:
    server.configure(rate_limit_rps=3)
    answers = asyncio.run(burst(server, 12, chat_body()))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 3 + [429] * 9
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json() == {
        "code": ERROR_CODES[429],
        "error": "Rate limit exceeded for model grok-3: 3 requests per second. "
                 "Please slow down and retry later."}
    assert "retry-after" not in refused.headers and "retry-after-ms" not in refused.headers
    assert server.rate_limited == {"requests_per_second": 9}


def test_retry_after_is_the_real_time_until_the_window_frees(server: XAIServer,
                                                              clock: Clock) -> None:
    server.configure(rate_limit_rps=2, rate_limit_retry_after=True)
    with client_for(server) as c:
        assert c.post("/chat/completions", json=chat_body()).status_code == 200
        clock.now += 0.25
        assert c.post("/chat/completions", json=chat_body()).status_code == 200
        clock.now += 0.125
        refused = c.post("/chat/completions", json=chat_body())
        assert refused.status_code == 429
        assert refused.headers["retry-after-ms"] == "625"  # the first leaves the window at +1 s
        assert refused.headers["retry-after"] == "1"
        clock.now += 0.625
        assert c.post("/chat/completions", json=chat_body()).status_code == 200


def test_the_provider_reads_the_refusal_as_a_rate_limit_with_its_delay(
    server: XAIServer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.configure(rate_limit_rps=1, rate_limit_retry_after=True)
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", server.connection_json())
    hook = XAIHook(max_retries=0)
    assert hook.chat(model="grok-3", messages=[{"role": "user", "content": "hi"}]).choices
    clock.now += 0.75
    with pytest.raises(XAIRateLimitError) as caught:
        hook.chat(model="grok-3", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status == 429 and caught.value.retry_after == pytest.approx(0.25)


def test_a_client_pacing_itself_under_the_limit_is_never_refused(
    xai_server: XAIServer,
) -> None:
    xai_server.configure(rate_limit_rps=5, rate_limit_retry_after=True)
    with client_for(xai_server) as c:
        for _ in range(12):  # >= 0.25 s between arrivals: at most 4 in any second
            assert c.post("/chat/completions", json=chat_body()).status_code == 200
            time.sleep(0.25)
    assert xai_server.rate_limited == {}
    assert all(e.status == 200 for e in xai_server.requests("/chat/completions"))


def test_tokens_per_minute_refuse_once_billed_tokens_reach_the_limit(server: XAIServer,
                                                                     clock: Clock) -> None:
    server.configure(rate_limit_tpm=100, rate_limit_retry_after=True)
    billed: list[int] = []
    with client_for(server) as c:
        while True:
            answer = c.post("/chat/completions", json=chat_body(text="count my tokens " * 5))
            if answer.status_code != 200:
                break
            billed.append(answer.json()["usage"]["total_tokens"])
            clock.now += 1
        assert answer.status_code == 429 and "100 tokens per minute" in answer.json()["error"]
        assert sum(billed[:-1]) < 100 <= sum(billed)  # refused exactly when the sum reached it
        # the window frees when enough of the oldest answers are 60 s old
        freed, oldest = sum(billed), 0
        while freed >= 100:
            freed -= billed[oldest]
            oldest += 1
        wait = (oldest - 1) + 60 - len(billed)
        assert int(answer.headers["retry-after-ms"]) == wait * 1000
        assert server.rate_limited == {"tokens_per_minute": 1}
        clock.now += wait
        assert c.post("/chat/completions", json=chat_body()).status_code == 200


def test_streams_deferred_and_responses_share_the_models_window(server: XAIServer,
                                                                clock: Clock) -> None:
    server.configure(rate_limit_rps=1, rate_limit_tpm=10**6)
    with client_for(server) as c:
        with c.stream("POST", "/chat/completions", json=chat_body(
                stream=True, stream_options={"include_usage": True})) as streamed:
            assert streamed.status_code == 200
            streamed.read()
        stream_tokens = server.state.rate_limiter.tokens_in_window(
            server.state.rate_limit_key("grok-3"))
        assert stream_tokens > 0  # a stream's billed usage is charged too
        deferred = c.post("/chat/completions", json=chat_body(deferred=True))
        responses = c.post("/responses", json={"model": "grok-3", "input": "hi"})
        assert deferred.status_code == responses.status_code == 429
        assert c.post("/chat/completions", json=chat_body("grok-4.3")).status_code == 200
        clock.now += 1
        submitted = c.post("/chat/completions", json=chat_body(deferred=True))
        assert submitted.status_code == 200
        clock.now += 1
        answer = c.post("/responses", json={"model": "grok-3", "input": "hi"})
        assert answer.status_code == 200
        # polls of a deferred completion and the batch API are not rate-limited
        request_id = submitted.json()["request_id"]
        polls = [c.get(f"/chat/deferred-completion/{request_id}") for _ in range(3)]
        assert [p.status_code for p in polls] == [202, 202, 200]
        assert c.post("/batches", json={"name": "b"}).status_code == 200
        charged = server.state.rate_limiter.tokens_in_window(server.state.rate_limit_key("grok-3"))
        assert charged == (stream_tokens + polls[-1].json()["usage"]["total_tokens"]
                           + answer.json()["usage"]["total_tokens"])


def test_refusals_are_journaled_counted_and_cleared_by_reset(server: XAIServer) -> None:
    server.configure(rate_limit_rps=1)
    ctl = httpx.Client(base_url=server.root_url + "/_control", timeout=10)
    assert ctl.post("/config", json={"rate_limit_rps": 2}).json()["rate_limit_rps"] == 2
    assert ctl.post("/config", json={"rate_limit_tpm": -5}).status_code == 400
    asyncio.run(burst(server, 5, chat_body("grok-4")))  # an alias of grok-4.3
    state = ctl.get("/state").json()
    assert state["rate_limited"] == 3 and state["rate_limited_by"] == {"requests_per_second": 3}
    journal = ctl.get("/journal")
    refused = [e for e in journal.json() if e["status"] == 429]
    assert len(refused) == 3 and server.api_key not in journal.text
    fingerprint = server.state.rate_limit_key("grok-4.3")[0]
    for entry in refused:
        assert entry["rate_limited"] == "requests_per_second"
        assert entry["model"] == "grok-4.3" and entry["key_fingerprint"] == fingerprint
    assert ctl.post("/reset", json={}).status_code == 200
    state = ctl.get("/state").json()
    assert state["rate_limited"] == 0 and state["config"]["rate_limit_rps"] == 0
    assert [r.status_code for r in asyncio.run(burst(server, 5, chat_body()))] == [200] * 5
    ctl.close()


def test_xaiserver_kwargs_and_cli_flags_set_the_limits() -> None:
    from airflow_provider_xai.testing.__main__ import main

    server = XAIServer(rate_limit_rps=4, rate_limit_tpm=1000, rate_limit_retry_after=True)
    assert (server.state.rate_limit_rps, server.state.rate_limit_tpm) == (4, 1000)
    assert server.state.rate_limit_retry_after is True
    with pytest.raises(ValueError, match="rate_limit_rps"):
        XAIServer(rate_limit_rps=-1)
    with pytest.raises(SystemExit) as exc:
        main(["--rate-limit-rps", "-2"])
    assert exc.value.code == 2
