"""Values kept in the task state store across tries, read back leniently (issue 27, item 3's
class): the deferred request id, the batch id and the usage ledger."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_provider_xai.operators.base import TaskState, fingerprint
from airflow_provider_xai.operators.chat import DEFERRED_REQUEST_KEY
from airflow_provider_xai.usage import XCOM_LEDGER_KEY, UsageLedger, UsageRecord
from tests.helpers.context import FakeStateStore, FakeTI, make_context

LOG = logging.getLogger("test_task_state")


class BrokenStore:
    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("store down")

    def set(self, key: str, value: Any, **_: Any) -> None:
        raise RuntimeError("store down")


def test_an_id_is_read_and_written_with_the_inputs_it_was_made_for() -> None:
    store = FakeStateStore()
    state = TaskState(make_context(store=store), "k", LOG)
    assert state.get() is None
    inputs = fingerprint({"prompt": "hello"})
    state.set("batch_1", inputs)
    assert store.data["k"] == {"value": "batch_1", "inputs": inputs}
    assert state.get(inputs) == "batch_1" and state.get() == "batch_1"
    assert state.get(fingerprint({"prompt": "hello, fixed"})) is None  # other inputs: start afresh
    state.clear()
    assert "k" not in store.data and state.get() is None


def test_an_inputs_fingerprint_ignores_key_order_only() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


@pytest.mark.parametrize("store", [None, BrokenStore()])
def test_no_store_or_a_broken_one_means_absent_never_an_error(store: Any, caplog: pytest.LogCaptureFixture) -> None:
    context = {"ti": FakeTI()} if store is None else {"ti": FakeTI(), "task_state_store": store}
    state = TaskState(context, "k", LOG)
    with caplog.at_level(logging.DEBUG, logger="test_task_state"):
        state.set("x")
        assert state.get() is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("bad", [12345, "", {"id": "x"}, ["x"], True, 1.5, {"value": 7, "inputs": "f"}])
def test_a_stored_id_of_another_kind_is_skipped_and_logged(bad: Any, caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStateStore({DEFERRED_REQUEST_KEY: bad})
    with caplog.at_level(logging.WARNING, logger="test_task_state"):
        assert TaskState(make_context(store=store), DEFERRED_REQUEST_KEY, LOG, "xAI deferred request id").get() is None
    assert "xAI deferred request id in the task state store: skipped 1 unusable item(s)" in caplog.text


class Gone(Exception):
    pass


class FakeJobs:
    """Jobs on a fake xAI: ``status`` per id (absent: gone); every submission makes a new one."""

    def __init__(self, **status: str) -> None:
        self.status, self.submitted = dict(status), 0

    def look_up(self, job_id: str) -> dict[str, str]:
        if job_id not in self.status:
            raise Gone(job_id)
        return {"id": job_id, "status": self.status[job_id]}

    def submit(self) -> str:
        self.submitted += 1
        self.status[f"new_{self.submitted}"] = "pending"
        return f"new_{self.submitted}"


@pytest.mark.parametrize(
    ("kept", "status", "attached", "done", "submitted", "said"),
    [
        (None, {}, "new_1", False, 1, "Sent xAI job new_1"),
        ("old", {"old": "pending"}, "old", False, 0, "Re-attaching to xAI job old of an earlier try"),
        ("old", {"old": "done"}, "old", True, 0, ""),
        ("old", {}, "new_1", False, 1, "xAI job old of an earlier try is gone; sending it anew"),
        ("other inputs", {"other inputs": "done"}, "new_1", False, 1, "was made for other inputs"),
    ],
)
def test_a_retry_attaches_to_the_earlier_tries_call_or_makes_one(
    kept: str | None, status: dict[str, str], attached: str, done: bool, submitted: int, said: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    inputs = fingerprint({"prompt": "draw a cat"})
    store = FakeStateStore()
    if kept is not None:
        made_for = inputs if kept == "old" else fingerprint({"prompt": "draw a dog"})
        store.data["k"] = {"value": kept, "inputs": made_for}
    jobs = FakeJobs(**status)
    state = TaskState(make_context(store=store), "k", LOG, "xAI job id")
    with caplog.at_level(logging.INFO, logger="test_task_state"):
        job_id, job = state.attach(inputs, jobs.look_up, lambda j: j["status"] == "done", Gone, jobs.submit)
    assert job_id == attached and jobs.submitted == submitted
    assert (job is not None) == done and (job is None or job["id"] == attached)
    assert store.data["k"] == {"value": attached, "inputs": inputs}  # kept at once, for the next try
    assert said in caplog.text


GOOD = UsageRecord(model="grok-4.3", prompt_tokens=3, total_tokens=5, completion_id="c1").to_dict()


@pytest.mark.parametrize(
    ("stored", "kept", "skipped"),
    [
        ([GOOD], 1, 0),
        ([GOOD, "x", 5, None, {"junk": 1}], 1, 4),
        ([GOOD, {**GOOD, "cost_usd": float("nan")}, {**GOOD, "total_tokens": -1}], 1, 2),
        ("done: 3 rows", 0, 1),
        (GOOD, 1, 0),  # one record, not in a list
        ([], 0, 0),
    ],
)
def test_the_usage_ledger_keeps_only_usage_records_and_counts_the_rest(
    stored: Any, kept: int, skipped: int, caplog: pytest.LogCaptureFixture
) -> None:
    store, ti = FakeStateStore({"xai_usage_ledger": stored}), FakeTI()
    with caplog.at_level(logging.WARNING, logger="test_task_state"):
        ledger = UsageLedger(make_context(ti, store), LOG)
    assert (len(ledger.records), ledger.skipped) == (kept, skipped)
    assert all(r == GOOD for r in ledger.records)
    assert (f"skipped {skipped} unusable item(s)" in caplog.text) == bool(skipped)
    if kept:  # re-published without the bad items, in XCom and in the store
        assert ti.pushed[XCOM_LEDGER_KEY] == [GOOD] and store.data["xai_usage_ledger"] == [GOOD]

