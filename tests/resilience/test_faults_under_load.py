"""Faults under load: 1,000 chat requests through the fan-out helper while the local server
injects rate limits, server errors, dropped connections and truncated streams; a server whose
reads stall past the timeout; and 200 answers that are not what the API promises.

Every request carries a unique prompt, so the server journal tells, per request, how many
attempts it took, which faults it met, and when each attempt arrived.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_xai.exceptions import (
    XAIConnectionError,
    XAIError,
    XAIRateLimitError,
    XAIResponseError,
    XAIServerError,
    XAITimeoutError,
    XAITruncatedStreamError,
)
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.schemas import ChatCompletion
from airflow_provider_xai.testing import Chaos, Fault, XAIServer
from airflow_provider_xai.testing.chat import REPLY_PREFIX
from tests.resilience.conftest import FAST_BACKOFF, FakeTI, attempts_by_prompt, chat_posts, fake_context

LOAD_REQUESTS = 1_000
MAX_RETRIES = 2
RETRY_AFTER = 0.05
CONCURRENCY = 32
USER = [{"role": "user", "content": "Hello Grok"}]

#: Which typed error each injected fault produces when it persists past the retries.
ERROR_FOR_FAULT: dict[str, type[XAIError]] = {
    "chaos:429_retry_after": XAIRateLimitError,
    "chaos:429": XAIRateLimitError,
    "chaos:503": XAIServerError,
    "chaos:drop": XAIConnectionError,
    "chaos:truncate": XAITruncatedStreamError,
}


def load_chaos(stream: bool) -> Chaos:
    """5% 429 (half with retry-after), 5% 503, 1% drops, 1% truncated streams (streaming only)."""
    return Chaos(
        rate_429_retry_after=0.025,
        rate_429=0.025,
        rate_503=0.05,
        rate_drop=0.01,
        rate_truncate=0.01 if stream else 0.0,
        retry_after=RETRY_AFTER,
        seed=20261125,
    )


def load_requests() -> tuple[list[str], list[dict[str, Any]]]:
    run = uuid.uuid4().hex[:8]
    prompts = [f"load {run} request #{i:04d}" for i in range(LOAD_REQUESTS)]
    return prompts, [{"model": "grok-3", "messages": [{"role": "user", "content": p}]} for p in prompts]


def check_load(
    server: XAIServer, prompts: list[str], results: list[ChatCompletion | XAIError], elapsed: float
) -> dict[str, Any]:
    """Assert nothing was lost, duplicated, over-retried or retried too early; return figures."""
    assert len(results) == len(prompts), "a result slot was lost or added"
    posts = chat_posts(server)
    attempts = attempts_by_prompt(posts)
    assert set(attempts) == set(prompts), "a request never reached the server, or a stray one did"

    answers = errors = 0
    for prompt, result in zip(prompts, results, strict=True):
        tries = attempts[prompt]
        faults = [t.fault for t in tries]
        assert 1 <= len(tries) <= MAX_RETRIES + 1, (prompt, faults)
        # The server only ever served one fault-free answer, and only on the last attempt.
        assert all(faults[:-1]), (prompt, faults)
        if isinstance(result, XAIError):
            errors += 1
            assert len(tries) == MAX_RETRIES + 1 and all(faults), (prompt, faults, result)
            assert isinstance(result, ERROR_FOR_FAULT[faults[-1] or ""]), (faults, type(result))
        else:
            answers += 1
            assert isinstance(result, ChatCompletion), type(result)
            assert faults[-1] is None, (prompt, faults)
            assert result.text == REPLY_PREFIX + prompt, "an answer landed in another request's slot"
            assert result.usage is not None and result.usage.completion_tokens > 0
        for before, after in itertools.pairwise(tries):
            gap = after.time - before.time
            if before.fault == "chaos:429_retry_after":
                assert gap >= RETRY_AFTER, f"retried {gap:.3f}s after a retry-after of {RETRY_AFTER}s"
            else:
                assert gap >= FAST_BACKOFF["backoff_base"] * 0.5, f"retried without backing off ({gap:.4f}s)"

    ids = [r.id for r in results if isinstance(r, ChatCompletion)]
    assert len(ids) == len(set(ids)), "the same answer was returned twice"
    injected = Counter(e.fault for e in posts if e.fault)
    assert sum(injected.values()) == sum(server.state.chaos_counts.values())
    assert injected["chaos:429_retry_after"] and injected["chaos:503"] and injected["chaos:drop"]
    figures = {
        "requests": len(prompts),
        "attempts": len(posts),
        "faults_injected": dict(sorted(injected.items())),
        "answers": answers,
        "typed_errors": errors,
        "lost": len(prompts) - answers - errors,
        "duplicates": len(ids) - len(set(ids)),
        "max_attempts_per_request": max(len(t) for t in attempts.values()),
        "seconds": round(elapsed, 2),
    }
    print(f"\nload figures: {json.dumps(figures)}")
    return figures


def test_thousand_chats_under_chaos(xai_server: XAIServer, make_hook: Callable[..., XAIHook]) -> None:
    prompts, requests = load_requests()
    xai_server.set_chaos(load_chaos(stream=False))
    hook = make_hook(max_retries=MAX_RETRIES)
    start = time.monotonic()
    results = hook.chat_many(requests, max_concurrency=CONCURRENCY)
    figures = check_load(xai_server, prompts, results, time.monotonic() - start)
    assert figures["attempts"] > LOAD_REQUESTS  # faults really were injected and retried


async def test_thousand_streamed_chats_under_chaos(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook]
) -> None:
    prompts, requests = load_requests()
    xai_server.set_chaos(load_chaos(stream=True))
    hook = make_hook(max_retries=MAX_RETRIES)
    start = time.monotonic()
    try:
        results = await hook.achat_many(requests, max_concurrency=CONCURRENCY, stream=True)
    finally:
        await hook.aclose()
    figures = check_load(xai_server, prompts, results, time.monotonic() - start)
    assert figures["faults_injected"].get("chaos:truncate")
    assert all(e.body.get("stream") is True for e in chat_posts(xai_server))


@pytest.mark.parametrize("fault", [Fault(503), Fault(drop=True), Fault(truncate_stream=True)], ids=str)
async def test_streamed_attempts_never_exceed_the_retry_budget(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook], fault: Fault
) -> None:
    """Opening a stream and reading it share one budget: max_retries + 1 requests in all."""
    xai_server.enqueue(fault, times=20)
    hook = make_hook(max_retries=MAX_RETRIES)
    with pytest.raises(XAIError):
        hook.stream_chat_completion(messages=USER)
    assert len(chat_posts(xai_server)) == MAX_RETRIES + 1
    try:
        with pytest.raises(XAIError):
            await hook.astream_chat_completion(messages=USER)
    finally:
        await hook.aclose()
    assert len(chat_posts(xai_server)) == 2 * (MAX_RETRIES + 1)


async def test_dropped_stream_connection_is_retried(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook]
) -> None:
    hook = make_hook(max_retries=1)
    xai_server.enqueue(Fault(drop=True))
    chunks = list(hook.stream_chat(messages=USER))  # dropped before the first chunk: reopened
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith("Hello Grok")
    xai_server.enqueue(Fault(drop=True))
    try:
        assert (await hook.astream_chat_completion(messages=USER)).text.endswith("Hello Grok")
    finally:
        await hook.aclose()
    assert [e.fault for e in chat_posts(xai_server)] == ["200,drop", None, "200,drop", None]


# --- a slow server ----------------------------------------------------------------------------
TIMEOUT = 0.3


def timeout_budget(max_retries: int) -> float:
    """timeout x (retries + 1) + the longest backoff sum, + slack for a busy machine."""
    return TIMEOUT * (max_retries + 1) + FAST_BACKOFF["backoff_cap"] * max_retries + 0.7


def test_stalled_answer_times_out_within_budget(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook]
) -> None:
    xai_server.enqueue(Fault(delay=2.0, path="chat/completions"), times=MAX_RETRIES + 1)
    hook = make_hook(timeout=TIMEOUT, max_retries=MAX_RETRIES)
    start = time.monotonic()
    with pytest.raises(XAITimeoutError):
        hook.chat(messages=USER)
    elapsed = time.monotonic() - start
    assert TIMEOUT * (MAX_RETRIES + 1) <= elapsed < timeout_budget(MAX_RETRIES)
    assert len(chat_posts(xai_server)) == MAX_RETRIES + 1


async def test_stalled_answer_times_out_within_budget_async(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook]
) -> None:
    xai_server.enqueue(Fault(delay=2.0, path="chat/completions"), times=2)
    hook = make_hook(timeout=TIMEOUT, max_retries=1)
    start = time.monotonic()
    try:
        with pytest.raises(XAITimeoutError):
            await hook.achat(messages=USER)
    finally:
        await hook.aclose()
    assert time.monotonic() - start < timeout_budget(1)
    assert len(chat_posts(xai_server)) == 2


def test_stream_that_stalls_mid_answer_times_out_within_budget(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook]
) -> None:
    xai_server.configure(stream_interval=1.0)  # first event at once, then a 1 s stall per event
    hook = make_hook(timeout=TIMEOUT, max_retries=MAX_RETRIES)
    seen: list[str] = []
    start = time.monotonic()
    with pytest.raises(XAITimeoutError):
        hook.stream_chat_completion(messages=USER, on_text=seen.append)
    assert time.monotonic() - start < timeout_budget(MAX_RETRIES)
    assert len(chat_posts(xai_server)) == MAX_RETRIES + 1
    assert "".join(seen) == ""  # only the empty role delta arrived before each stall


def test_stalled_deferred_poll_times_out(xai_server: XAIServer, make_hook: Callable[..., XAIHook]) -> None:
    hook = make_hook(timeout=TIMEOUT, max_retries=0)
    request_id = hook.start_deferred(messages=USER)
    xai_server.enqueue(Fault(delay=2.0, path="/v1/chat/deferred-completion"))
    start = time.monotonic()
    with pytest.raises(XAITimeoutError):
        hook.get_deferred(request_id)
    assert time.monotonic() - start < timeout_budget(0)


# --- 200 answers of the wrong shape -----------------------------------------------------------
MALFORMED_BODIES = {
    "not json": "<html>502 Bad Gateway</html>",
    "empty body": "",
    "json null": "null",
    "json list": "[1, 2, 3]",
    "json string": '"ok"',
    "wrong object": '{"answer": "yes"}',
    "choices not a list": '{"id": "c", "model": "grok-3", "choices": {"0": "x"}}',
    "choice without message": '{"id": "c", "model": "grok-3", "choices": [{"index": 0}]}',
    "message is null": '{"id": "c", "model": "grok-3", "choices": [{"message": null}]}',
    "content is a number": '{"id": "c", "model": "grok-3", "choices": [{"message": {"content": 5}}]}',
    "usage is text": '{"id": "c", "model": "grok-3", "choices": [], "usage": "lots"}',
    "truncated json": '{"id": "c", "model": "grok-3", "choices": [{"message": {"content": "hal',
}
EMPTY_CHOICES = '{"id": "c", "model": "grok-3", "created": 1, "choices": [], "usage": null}'


@pytest.mark.parametrize("body", list(MALFORMED_BODIES.values()), ids=list(MALFORMED_BODIES))
def test_malformed_200_is_a_typed_error_through_the_hook(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook], body: str
) -> None:
    hook = make_hook()
    calls: dict[str, Callable[[], Any]] = {
        "chat": lambda: hook.chat(messages=USER),
        "structured": lambda: hook.chat_structured(messages=USER, output="json_object"),
        "start_deferred": lambda: hook.start_deferred(messages=USER),
        "models": hook.list_models,
        "api_key": hook.get_api_key_info,
        "tokenize": lambda: hook.tokenize("hello"),
    }
    for name, call in calls.items():
        xai_server.enqueue(Fault(body=body))
        with pytest.raises(XAIResponseError):
            call()
        assert xai_server.state.pending_faults == 0, name


async def test_malformed_200_is_a_typed_error_through_the_async_hook(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook]
) -> None:
    hook = make_hook()
    try:
        for body in MALFORMED_BODIES.values():
            xai_server.enqueue(Fault(body=body))
            with pytest.raises(XAIResponseError):
                await hook.achat(messages=USER)
        request_id = await hook.astart_deferred(messages=USER)
        xai_server.enqueue(Fault(body='{"choices": "later"}', path="/v1/chat/deferred-completion"))
        with pytest.raises(XAIResponseError):
            await hook.aget_deferred(request_id)
    finally:
        await hook.aclose()


@pytest.mark.parametrize("body", [*MALFORMED_BODIES.values(), EMPTY_CHOICES])
def test_malformed_200_is_a_typed_error_in_a_batch(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook], body: str
) -> None:
    xai_server.enqueue(Fault(body=body))
    results = make_hook().chat_many([{"messages": USER}, {"messages": USER}], max_concurrency=1)
    first, second = results
    if body == EMPTY_CHOICES:
        assert isinstance(first, ChatCompletion)
        with pytest.raises(XAIResponseError, match="no choices"):
            _ = first.text
    else:
        assert isinstance(first, XAIResponseError)
    assert isinstance(second, ChatCompletion) and second.text.endswith("Hello Grok")


def test_empty_choices_is_a_typed_error_through_hook_and_stream(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook]
) -> None:
    hook = make_hook()
    xai_server.enqueue(Fault(body=EMPTY_CHOICES))
    with pytest.raises(XAIResponseError, match="no choices"):
        _ = hook.chat(messages=USER).text
    xai_server.enqueue(Fault(body=EMPTY_CHOICES))
    with pytest.raises(XAIResponseError):
        hook.chat_structured(messages=USER, output="json_object")
    xai_server.enqueue(Fault(malformed_chunk=True))
    with pytest.raises(XAIResponseError):
        hook.stream_chat_completion(messages=USER)


@pytest.mark.parametrize("body", [*MALFORMED_BODIES.values(), EMPTY_CHOICES])
def test_malformed_200_is_a_typed_error_through_the_operator(xai_server: XAIServer, body: str) -> None:
    from airflow_provider_xai.operators.chat import XAIChatOperator

    ti = FakeTI()
    for kwargs in ({}, {"response_format": "json_object"}, {"stream": True}):
        xai_server.enqueue(Fault(body=body))
        op = XAIChatOperator(task_id=f"malformed_{len(kwargs)}", prompt="Hello Grok", api="chat", **kwargs)
        try:
            with pytest.raises(XAIResponseError):
                op.execute(fake_context(ti))
        finally:
            op.hook.close()
    if body == EMPTY_CHOICES:  # billed answer without choices: usage recorded before failing
        assert len(ti.values("xai_usage")) == 2
