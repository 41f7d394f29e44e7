"""Nothing lost: a deferred chat survives a triggerer restart without a second submission, a
billed answer is recorded even when its task then fails, and every try's usage is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta
from typing import Any

import pendulum
import pytest
from airflow.sdk.exceptions import TaskDeferred
from pydantic import BaseModel

from airflow_provider_xai import polling
from airflow_provider_xai.exceptions import XAIStructuredOutputError
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.testing import Fault, XAIServer
from airflow_provider_xai.testing.chat import REPLY_PREFIX
from airflow_provider_xai.testing.state import JournalEntry
from tests.dags.conftest import task_states, xcom_values
from tests.resilience.conftest import FakeTI, chat_posts, fake_context, run_inline_dag

POLL = "/v1/chat/deferred-completion/"


def polls(server: XAIServer) -> list[JournalEntry]:
    return [e for e in server.journal if e.method == "GET" and POLL in e.path]


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def restored(trigger: Any) -> Any:
    """The trigger as a restarted triggerer rebuilds it: from its serialized form only."""
    from airflow.sdk._shared.module_loading import import_string

    classpath, kwargs = trigger.serialize()
    return import_string(classpath)(**kwargs)


@pytest.mark.parametrize("interrupted", ["between polls", "during a poll"])
async def test_deferred_chat_resumes_the_same_request_after_a_triggerer_restart(
    xai_server: XAIServer, interrupted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    between = interrupted == "between polls"
    if between:
        # A poll interval no busy machine outlasts: once a poll is answered, the trigger sits in
        # its sleep until it is cancelled. The first poll at once (no random spread), and the
        # restarted trigger's first poll finds the answer.
        monkeypatch.setattr(polling.random, "uniform", lambda low, high: low)
        xai_server.configure(deferred_pending_polls=1)
    else:
        xai_server.configure(deferred_pending_polls=5)
    prompt = f"deferred {uuid.uuid4().hex}"
    operator = XAIChatOperator(task_id="deferred_chat", prompt=prompt, deferrable=True,
                               poll_interval=3600 if between else 0.05)
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(fake_context(ti))
    trigger = deferred.value.trigger
    request_id = trigger.request_id
    assert ti.values("xai_request_id") == [request_id]  # known before the task ever waits

    # The first triggerer polls (still pending), then dies: in its sleep, or mid-poll.
    if not between:
        xai_server.enqueue(Fault(delay=0.5, path=f"/v1/chat/deferred-completion/{request_id}"))
    first_run = trigger.run()
    waiting = asyncio.ensure_future(anext(first_run))
    if between:  # progress: a poll answered "still pending"
        await wait_for(lambda: [e.status for e in polls(xai_server)] == [202])
    else:  # progress: a poll arrived, and the server holds its answer back
        await wait_for(lambda: len(polls(xai_server)) == 1)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()
    polled_before_restart = len(polls(xai_server))

    # The restarted triggerer rebuilds the trigger and polls the same request to completion.
    event = await anext(restored(trigger).run())
    assert event.payload["status"] == "success", event.payload
    assert event.payload["request_id"] == request_id
    result = operator.execute_complete(fake_context(ti), event.payload)

    assert result == REPLY_PREFIX + prompt
    assert len(chat_posts(xai_server)) == 1, "the chat was submitted twice"
    assert {e.path for e in polls(xai_server)} == {POLL + request_id}
    assert len(polls(xai_server)) > polled_before_restart
    assert len(ti.values("xai_usage")) == 1
    operator.hook.close()


class Verdict(BaseModel):
    label: str
    score: float


@pytest.mark.parametrize(("api", "id_key", "path"), [("chat", "xai_completion_id", "/chat/completions"),
                                                     ("responses", "xai_response_id", "/responses")])
def test_billed_answer_is_recorded_when_the_task_fails_right_after(
    xai_server: XAIServer, api: str, id_key: str, path: str
) -> None:
    xai_server.enqueue(Fault(content="Sorry, I cannot answer in JSON."))
    operator = XAIChatOperator(task_id="structured", prompt="Judge this", response_format=Verdict, api=api)
    ti = FakeTI()
    with pytest.raises(XAIStructuredOutputError):
        operator.execute(fake_context(ti))
    operator.hook.close()
    (record,) = ti.values("xai_usage")
    assert record["total_tokens"] > 0 and record["cost_usd"] > 0
    assert record["completion_id"] == ti.values(id_key)[0]
    assert len(xai_server.requests(path, method="POST")) == 1


def test_every_billed_try_is_counted_across_retries_and_failures(
    airflow_db: None, xai_server: XAIServer
) -> None:
    """A plain, a deferred and a streamed chat each get one answer that fails validation: the
    first two are retried and succeed, the streamed one fails for good. Five answers were
    billed; five usage records exist (the failed tries' too) and the usage sensor counts five."""
    from airflow.sdk import DAG, task

    from airflow_provider_xai.sensors.usage import XAIUsageSensor

    def arm(task_id: str) -> Any:
        @task(task_id=task_id, trigger_rule="all_done")
        def enqueue_bad_answer() -> None:
            xai_server.enqueue(Fault(content="not json"))

        return enqueue_bad_answer()

    retry = {"retries": 1, "retry_delay": timedelta(0), "trigger_rule": "all_done"}
    with DAG(
        "resilience_usage_kept", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")
    ) as dag:
        plain = XAIChatOperator(task_id="plain", prompt="Judge one", response_format=Verdict, api="chat", **retry)
        deferred = XAIChatOperator(
            task_id="deferred",
            prompt="Judge two",
            response_format=Verdict,
            deferrable=True,
            poll_interval=0.05,
            **retry,
        )
        streamed = XAIChatOperator(
            task_id="streamed",
            api="chat",
            prompt="Judge three",
            response_format=Verdict,
            stream=True,
            trigger_rule="all_done",
        )
        usage = XAIUsageSensor(
            task_id="usage",
            task_ids=["plain", "deferred", "streamed"],
            poke_interval=0.1,
            trigger_rule="all_done",
        )
        (
            arm("arm_plain")
            >> plain
            >> arm("arm_deferred")
            >> deferred
            >> arm("arm_streamed")
            >> streamed
            >> usage
        )
    xai_server.configure(deferred_pending_polls=1)
    dag_run = run_inline_dag(dag)

    states = task_states(dag_run)
    assert states[("plain", -1)] == states[("deferred", -1)] == "success", states
    assert states[("streamed", -1)] == "failed" and states[("usage", -1)] == "success", states
    ledgers = {t: xcom_values(dag_run, t, "xai_usage_ledger")[-1] for t in ("plain", "deferred", "streamed")}
    assert {t: [r["try_number"] for r in ledger] for t, ledger in ledgers.items()} == {
        "plain": [1, 2],
        "deferred": [1, 2],
        "streamed": [1],
    }
    billed = [record for ledger in ledgers.values() for record in ledger]
    assert len(billed) == len(chat_posts(xai_server)) == 5  # one record per billed answer
    assert xcom_values(dag_run, "streamed", "xai_usage")[-1]["total_tokens"] > 0  # the failed task's
    report = xcom_values(dag_run, "usage")[-1]  # the sensor's summary
    assert report["records"] == 5
    assert report["by_task"]["plain"]["tries"] == report["by_task"]["deferred"]["tries"] == 2
    assert report["totals"]["total_tokens"] == sum(r["total_tokens"] for r in billed)
