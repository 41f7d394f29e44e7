"""XAIBatchOperator re-attaches only to a batch of the same inputs: one task instance, run again
after its inputs changed, against the local server (which echoes prompts)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_xai.hooks.batch import batch_request
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.batch import batch_prefix_for
from tests.helpers.batch import (
    RUN_ID,
    FakeStore,
    add_calls,
    batch_posts,
    by_custom_id,
    context,
    first_event,
    lines,
    name_of,
    operator,
    run,
)

HEARD = "Grok (local) heard: "


def heard(tmp_path: Path) -> dict[str, str]:
    return {line["custom_id"]: line["answer"].removeprefix(HEARD) for line in lines(tmp_path)}


def tickets(**prompts: str) -> list[dict[str, str]]:
    return [{"custom_id": custom_id, "prompt": prompt} for custom_id, prompt in prompts.items()]


def test_changed_inputs_are_a_new_batch_and_the_log_says_what_changed(
    xai_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FakeStore()
    before = tickets(a="Ticket a: refund", b="Ticket b: login", c="Ticket c: invoice")
    first = run(operator(tmp_path, before), context(1, store))
    now = tickets(a="Ticket a: refund", b="Ticket b: login fails on mobile", d="Ticket d: export")
    second = run(operator(tmp_path, now), context(2, store))

    assert heard(tmp_path) == {"a": "Ticket a: refund", "b": "Ticket b: login fails on mobile", "d": "Ticket d: export"}
    assert first["batch_id"] != second["batch_id"] and batch_posts(xai_server) == 2
    assert sorted(by_custom_id(xai_server.state.batches[second["batch_id"]])) == ["a", "b", "d"]
    assert len(xai_server.state.batches[first["batch_id"]].requests) == 3, "nothing was added to the old batch"
    out = capsys.readouterr().out
    print(out)  # for the log check of tests/dags (and a reader)
    assert f"The inputs differ from those of xAI batch {first['batch_id']}" in out
    assert "1 changed (b); 1 new (d); 1 dropped (c)" in out
    assert store["xai_batch_id"]["value"] == second["batch_id"]
    ledger = store["xai_usage_ledger"]
    assert [r["requests"] for r in ledger] == [3, 3], "both batches were billed and each is recorded once"


def test_a_changed_shared_default_changes_every_request(xai_server: Any, tmp_path: Path, capsys: Any) -> None:
    prompts = tickets(a="Ticket a", b="Ticket b")
    first = run(operator(tmp_path, prompts, system_prompt="Be brief."), context())
    second = run(operator(tmp_path, prompts, system_prompt="Answer in French."), context())
    assert first["batch_id"] != second["batch_id"]
    assert "2 changed (a, b); 0 new; 0 dropped" in capsys.readouterr().out
    sent = by_custom_id(xai_server.state.batches[second["batch_id"]])["a"].body["messages"][0]
    assert sent == {"role": "system", "content": "Answer in French."}


def test_the_batch_of_earlier_inputs_is_found_again_by_its_name(xai_server: Any, tmp_path: Path) -> None:
    """Inputs changed back: the batch of those inputs is re-attached (the name is per inputs)."""
    original, fixed = tickets(a="Ticket a: refund"), tickets(a="Ticket a: refund twice")
    first = run(operator(tmp_path, original), context())
    run(operator(tmp_path, fixed), context())
    adds = add_calls(xai_server)
    again = run(operator(tmp_path, original), context())
    assert again["batch_id"] == first["batch_id"] and batch_posts(xai_server) == 2 and add_calls(xai_server) == adds
    assert heard(tmp_path) == {"a": "Ticket a: refund"}


def test_inputs_changed_while_the_batch_ran_are_not_paired_with_its_answers(
    xai_server: Any, tmp_path: Path
) -> None:
    """The task resumes from the trigger after its input file was rewritten: the answer of the
    earlier request is not written against the new one."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": "a", "prompt": "Ticket a"}\n{"custom_id": "b", "prompt": "Ticket b"}\n')
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, f"file://{source}").execute(ctx)
    source.write_text('{"custom_id": "a", "prompt": "Ticket a"}\n{"custom_id": "b", "prompt": "Ticket b, fixed"}\n')
    event = asyncio.run(first_event(deferred.value.trigger))
    summary = operator(tmp_path, f"file://{source}").execute_complete(ctx, event)
    a, b = lines(tmp_path)
    assert (a["status"], a["answer"]) == ("succeeded", HEARD + "Ticket a")
    assert (b["status"], b["answer"]) == ("missing", None)
    assert b["error"].startswith("the input changed after xAI batch") and summary["succeeded"] == 1


def test_a_batch_of_the_name_holding_other_requests_is_not_used(
    xai_server: Any, tmp_path: Path, capsys: Any
) -> None:
    op = operator(tmp_path, tickets(a="Ticket a"))
    hook = XAIHook()
    squatter = hook.create_batch(name_of(op))
    body = {"model": "grok-4.3", "messages": [{"role": "user", "content": "someone else's"}]}
    hook.add_batch_requests(squatter.batch_id, [batch_request("a~0123456789abcdef", body)])
    summary = run(op, context())
    assert summary["batch_id"] != squatter.batch_id and heard(tmp_path) == {"a": "Ticket a"}
    assert "holds other requests: not used" in capsys.readouterr().out


def test_a_batch_submitted_before_fingerprints_is_not_reattached(
    xai_server: Any, tmp_path: Path, capsys: Any
) -> None:
    """Named as earlier versions named it (no inputs digest), its requests plain custom ids."""
    hook = XAIHook()
    legacy = hook.create_batch(batch_prefix_for("nightly", RUN_ID, "classify", -1)[:-1])
    body = {"model": "grok-4.3", "messages": [{"role": "user", "content": "Ticket a, as it was"}]}
    hook.add_batch_requests(legacy.batch_id, [batch_request("req-000000", body)])
    summary = run(operator(tmp_path, ["Ticket a, as it is"]), context())
    assert summary["batch_id"] != legacy.batch_id and heard(tmp_path) == {"req-000000": "Ticket a, as it is"}
    out = capsys.readouterr().out
    assert f"xAI batch {legacy.batch_id}" in out and "1 of its requests were sent without a fingerprint" in out
