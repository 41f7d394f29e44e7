"""XAIBatchOperator, its trigger and the local server's Batch API, end to end over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from airflow.sdk.exceptions import TaskDeferred
from pydantic import BaseModel

from airflow_provider_xai.exceptions import (
    XAIBadRequestError,
    XAIDeferredTimeoutError,
    XAINotFoundError,
    XAIValidationError,
)
from airflow_provider_xai.hooks.batch import batch_request
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.testing.state import Fault
from airflow_provider_xai.triggers.batch import XAIBatchTrigger
from airflow_provider_xai.usage import TICKS_PER_USD
from tests.helpers.batch import (
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


class TestOperator:
    def test_results_join_back_by_custom_id_with_partial_failures(
        self, xai_server: Any, tmp_path: Path
    ) -> None:
        inputs = [
            {"custom_id": "zeta", "prompt": "Refund my order 17"},
            "Where is parcel 4?",
            {"custom_id": "alpha", "prompt": "This one breaks [fail]"},
            {"messages": [{"role": "user", "content": "Reset my password"}]},
        ]
        ctx = context()
        summary = run(operator(tmp_path, inputs, system_prompt="Be brief."), ctx)
        out = lines(tmp_path)
        assert [line["custom_id"] for line in out] == ["zeta", "req-000001", "alpha", "req-000003"]
        assert [line["index"] for line in out] == [0, 1, 2, 3]
        for line, prompt in zip(
            out, ["Refund my order 17", "Where is parcel 4?", None, "Reset my password"], strict=True
        ):
            if prompt is not None:
                assert line["status"] == "succeeded" and prompt in line["answer"] and line["error"] is None
        assert out[2]["status"] == "failed" and "[fail]" in out[2]["error"] and out[2]["answer"] is None
        assert (summary["requests"], summary["succeeded"], summary["failed"]) == (4, 3, 1)
        assert summary["outcome"] == "completed" and summary["output_path"].endswith("out.jsonl")
        assert ctx["ti"].pushed("xai_batch_id") == [summary["batch_id"]]
        assert ctx["ti"].pushed("return_value") == []  # the summary is returned, answers are not pushed
        sent = by_custom_id(xai_server.state.batches[summary["batch_id"]])["zeta"].body
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent["model"] == "grok-4.3"

    def test_usage_totals_are_the_sum_of_per_request_usage(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(prompt_cache=False)
        ctx = context()
        summary = run(operator(tmp_path, [f"Summarise ticket {i}" * (i + 1) for i in range(7)]), ctx)
        usage = [line["usage"] for line in lines(tmp_path)]
        ticks = sum(round(u["cost_usd"] * TICKS_PER_USD) for u in usage)
        assert round(summary["usage"]["cost_usd"] * TICKS_PER_USD) == ticks > 0
        for field in ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens"):
            assert summary["usage"][field] == sum(u[field] for u in usage)
        assert summary["usage"]["requests"] == 7 and summary["usage_by_model"]["grok-4.3"]["requests"] == 7
        ledger = ctx["ti"].pushed("xai_usage_ledger")
        assert len(ledger) == 1, "one ledger publish for the whole batch"
        (folded,) = ledger[0]  # one record per model, not one per request
        assert (folded["kind"], folded["requests"], folded["task_id"]) == ("batch", 7, "classify")
        assert folded["completion_id"] == f"batch:{summary['batch_id']}:grok-4.3:xai"
        assert round(folded["cost_usd"] * TICKS_PER_USD) == ticks
        for field in ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens"):
            assert folded[field] == summary["usage"][field]
        assert ctx["ti"].pushed("xai_usage") == []
        # the batch discount: half of what the same request costs in real time
        hook = XAIHook()
        realtime = hook.chat(model="grok-4.3", messages=[{"role": "user", "content": "Summarise ticket 0"}])
        assert realtime.usage is not None and realtime.usage.cost_in_usd_ticks is not None
        assert round(usage[0]["cost_usd"] * TICKS_PER_USD) == round(realtime.usage.cost_in_usd_ticks / 2)

    def test_structured_output_from_a_jsonl_file(self, xai_server: Any, tmp_path: Path) -> None:
        class Label(BaseModel):
            category: Literal["billing", "bug", "praise"]
            urgent: bool

        source = tmp_path / "in.jsonl"
        rows = [
            {"custom_id": "t1", "prompt": "My invoice is wrong: billing"},
            {"custom_id": "t2", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "grok-3-mini", "messages": [{"role": "user", "content": "It crashes, a bug"}]}},
            "Great praise for the team",
        ]  # fmt: skip
        source.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
        summary = run(operator(tmp_path, f"file://{source}", response_format=Label), context())
        out = lines(tmp_path)
        assert [line["answer"]["category"] for line in out] == ["billing", "bug", "praise"]
        assert [line["model"] for line in out] == ["grok-4.3", "grok-3-mini", "grok-4.3"]
        assert summary["succeeded"] == 3

    @pytest.mark.parametrize(
        "response_format",
        ["json_object", {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}],
        ids=["json_object", "schema dict"],
    )
    def test_an_answer_that_is_not_json_fails_its_line_instead_of_succeeding(
        self, xai_server: Any, tmp_path: Path, response_format: Any
    ) -> None:
        """Without a pydantic model: garbage must never be written as a succeeded answer."""
        plain = {"messages": [{"role": "user", "content": "Just say hi"}], "response_format": {"type": "text"}}
        inputs = ["Answer as JSON", {"custom_id": "plain", "body": plain}]  # this one answers plain text
        summary = run(operator(tmp_path, inputs, response_format=response_format), context())
        good, bad = lines(tmp_path)
        assert good["status"] == "succeeded" and isinstance(good["answer"], dict)
        assert bad["status"] == "failed" and bad["answer"] is None
        assert "not valid JSON" in bad["error"] and "Grok (local) heard: Just say hi" in bad["error"]
        assert bad["usage"]["total_tokens"] > 0  # billed all the same, and counted
        assert (summary["succeeded"], summary["failed"], summary["usage"]["requests"]) == (1, 1, 2)

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"inputs": []}, "inputs"),
            ({"inputs": [{"prompt": "a", "colour": "red"}]}, "inputs[0].colour"),
            ({"inputs": [{"messages": [{"role": "robot", "content": "x"}]}, "x" * 3000]}, "inputs[0].messages[0].role"),
            ({"inputs": [{"prompt": "a", "model": ""}]}, "inputs[0].model"),
            ({"inputs": ["x" * 3000]}, "inputs[0]"),
            ({"inputs": "file:///nonexistent/in.jsonl"}, "inputs"),
            ({"inputs": "['rendered', 'as text']"}, "inputs"),
            ({"inputs": ["a"], "output_path": None}, "output_path"),
            ({"inputs": [{"body": {"messages": []}, "url": "/v1/videos/edits"}]}, "inputs[0].url"),
            ({"inputs": [{"body": {"prompt": "x", "n": 11}, "url": "/v1/images/generations"}]}, "inputs[0].n"),
            ({"inputs": [{"video_generation": {"prompt": "x", "duration": 30}}]}, "inputs[0].duration"),
        ],
    )  # fmt: skip
    def test_bad_input_fails_before_any_request(
        self, xai_server: Any, tmp_path: Path, kwargs: dict[str, Any], field: str
    ) -> None:
        op = operator(tmp_path, **kwargs)
        op.add_requests_max_bytes = 2000
        with pytest.raises(XAIValidationError) as info:
            op.execute(context())
        assert info.value.field == field
        assert xai_server.journal == []

    def test_a_bad_input_is_refused_on_its_own_and_the_others_go_through(
        self, xai_server: Any, tmp_path: Path
    ) -> None:
        source = tmp_path / "in.jsonl"
        deep = '{"messages": [{"role": "user", "content": ' + "[" * 100_000 + "]" * 100_000 + "}]}"
        rows = [
            json.dumps({"custom_id": "first", "prompt": "Where is parcel 4?"}).encode(),
            b'{"custom_id": "broken", "prompt": ',  # cut short
            deep.encode(),
            json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
            b'"caf\xe9"',  # Latin-1, not UTF-8
            json.dumps({"custom_id": "first", "prompt": "the same id again"}).encode(),
            json.dumps({"custom_id": "huge", "prompt": "x" * 3000}).encode(),
            json.dumps({"custom_id": "half\udc00", "prompt": "Hi"}).encode(),  # an escaped lone surrogate
            json.dumps("Reset my password").encode(),
        ]
        source.write_bytes(b"\n".join(rows) + b"\n")
        op = operator(tmp_path, f"file://{source}")
        op.add_requests_max_bytes = 2000
        summary = run(op, context())
        where = f"(line {{}} of file://{source})"
        too_deep = "inputs[2].messages[0].content" + "[0]" * 61  # the 65th container
        expected = [
            ("first", "succeeded", None),
            ("req-000001", "failed", f"Invalid inputs[1]: line 2 of file://{source} is not valid JSON "
             "(Expecting value at column 35)"),
            ("req-000002", "failed", f"Invalid {too_deep}: is nested more than 64 levels deep {where.format(3)}"),
            ("req-000003", "failed", "Invalid inputs[3].messages[0].role: unknown role 'robot'; expected one of "
             "('system', 'user', 'assistant', 'tool', 'function', 'developer')"),
            ("req-000004", "failed", f"Invalid inputs[4]: line 5 of file://{source} is not UTF-8 text "
             "(invalid continuation byte)"),
            ("first", "failed", "Invalid inputs[5].custom_id: 'first' is also inputs[0]"),
            ("huge", "failed", "Invalid inputs[6]: request 'huge' is 3"),
            ("half\udc00", "failed", "Invalid inputs[7].custom_id: contains a lone surrogate (not valid Unicode)"),
            ("req-000008", "succeeded", None),
        ]  # fmt: skip
        out = lines(tmp_path)
        assert [line["index"] for line in out] == list(range(9))
        for line, (custom_id, status, error) in zip(out, expected, strict=True):
            assert (line["custom_id"], line["status"]) == (custom_id, status), line
            if error is None:
                assert line["error"] is None and line["usage"] is not None
            else:
                assert line["error"].startswith(error) and line["answer"] is None and line["usage"] is None
        assert "Where is parcel 4?" in out[0]["answer"] and "Reset my password" in out[8]["answer"]
        assert (summary["requests"], summary["succeeded"], summary["failed"]) == (9, 2, 7)
        (batch,) = xai_server.state.batches.values()
        assert sorted(by_custom_id(batch)) == ["first", "req-000008"], "refused inputs are never sent"

    def test_an_answer_utf8_cannot_encode_does_not_stop_the_other_lines(
        self, xai_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        op = operator(tmp_path, ["First ticket", {"custom_id": "odd", "prompt": "Second"}, "Third ticket"])
        fetch = op.hook.iter_batch_results

        def with_a_lone_surrogate(batch_id: str) -> Any:  # JSON may escape one: "caf\udce9"
            for result in fetch(batch_id):
                if result.batch_request_id.startswith("odd~") and result.batch_result is not None:
                    completion = result.batch_result["response"]["chat_get_completion"]
                    completion["choices"][0]["message"]["content"] = "caf\udce9"
                yield result

        monkeypatch.setattr(op.hook, "iter_batch_results", with_a_lone_surrogate)
        summary = run(op, context())
        out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [line["status"] for line in out] == ["succeeded"] * 3 and summary["succeeded"] == 3
        assert out[1]["answer"] == "caf\udce9"  # kept, \u-escaped on its line
        assert "First ticket" in out[0]["answer"] and "Third ticket" in out[2]["answer"]

    def test_bad_static_arguments_fail_at_parse_time(self, tmp_path: Path) -> None:
        bad = {
            "temperature": 3,
            "max_tokens": 0,
            "poll_interval": 0,
            "batch_timeout": -1,
            "response_format": 5,
        }
        for field, value in bad.items():
            kwargs = {field: value}
            with pytest.raises(XAIValidationError) as info:
                operator(tmp_path, ["a"], **kwargs)
            assert info.value.field == field


class TestIdempotency:
    def test_retry_after_crash_between_submit_and_completion_reattaches(
        self, xai_server: Any, tmp_path: Path
    ) -> None:
        prompts = [f"record {i}" for i in range(25)]
        first = operator(tmp_path, prompts)
        first.add_requests_max_bytes = 1500
        ctx1 = context(try_number=1)
        with pytest.raises(TaskDeferred):
            first.execute(ctx1)  # submitted and deferred ... then the worker dies
        calls_first = add_calls(xai_server)
        assert batch_posts(xai_server) == 1 and calls_first > 1
        ctx2 = context(try_number=2)  # a retry: fresh XComs, no task state store
        summary = run(operator(tmp_path, prompts), ctx2)
        assert batch_posts(xai_server) == 1 and len(xai_server.state.batches) == 1
        assert add_calls(xai_server) == calls_first, "the retry added nothing"
        assert (
            summary["batch_id"]
            == ctx1["ti"].pushed("xai_batch_id")[0]
            == ctx2["ti"].pushed("xai_batch_id")[0]
        )
        assert summary["succeeded"] == 25
        (batch,) = xai_server.state.batches.values()
        assert batch.name == name_of(operator(tmp_path, prompts))
        assert len(batch.requests) == 25

    def test_crash_midway_through_adding_adds_only_the_missing_requests(
        self, xai_server: Any, tmp_path: Path
    ) -> None:
        prompts = [f"row {i}" for i in range(30)]
        xai_server.enqueue(Fault(path="/requests"))  # first add call passes
        xai_server.enqueue(Fault(400, path="/requests", message="worker lost"))  # the second one dies
        first = operator(tmp_path, prompts)
        first.add_requests_max_bytes = 1500
        with pytest.raises(XAIBadRequestError):
            first.execute(context(try_number=1))
        (batch,) = xai_server.state.batches.values()
        added_before = len(batch.requests)
        assert 0 < added_before < 30
        summary = run(operator(tmp_path, prompts), context(try_number=2))
        assert batch_posts(xai_server) == 1 and len(batch.requests) == 30
        assert summary["succeeded"] == 30
        retry_adds = [e for e in xai_server.requests("/requests", "POST") if e.status == 200][1:]
        assert sum(len(e.body["batch_requests"]) for e in retry_adds) == 30 - added_before

    def test_state_store_remembers_the_batch_and_usage_is_not_counted_twice(
        self, xai_server: Any, tmp_path: Path
    ) -> None:
        store = FakeStore()
        prompts = ["a", "b", "c"]
        run(operator(tmp_path, prompts), context(1, store))
        assert store["xai_batch_id"]["value"] in xai_server.state.batches
        seen = len(xai_server.journal)
        summary = run(operator(tmp_path, prompts), context(2, store))  # cleared, runs again
        second = [(e.method, e.path.rsplit("/v1/", 1)[1]) for e in xai_server.journal[seen:]]
        assert ("GET", "batches") not in second, "the stored id is used; no name lookup needed"
        assert [m for m, p in second if m == "POST"] == [], "no new batch, no new requests"
        assert summary["succeeded"] == 3
        (folded,) = store["xai_usage_ledger"]
        assert folded["requests"] == 3, "re-attaching records no usage twice"

    def test_a_stored_batch_id_of_another_kind_is_skipped_and_logged(
        self, xai_server: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        store = FakeStore({"xai_batch_id": {"not": "an id"}})
        capfd.readouterr()
        summary = run(operator(tmp_path, ["a"]), context(1, store))
        assert summary["succeeded"] == 1 and store["xai_batch_id"]["value"] == summary["batch_id"]
        assert "xAI batch id in the task state store: skipped 1 unusable item(s)" in "".join(capfd.readouterr())

    def test_cancelled_batch_is_not_reattached(self, xai_server: Any, tmp_path: Path) -> None:
        hook = XAIHook()
        old = hook.create_batch(name_of(operator(tmp_path, ["x"])))
        hook.cancel_batch(old.batch_id)
        summary = run(operator(tmp_path, ["x"]), context())
        assert summary["batch_id"] != old.batch_id and summary["succeeded"] == 1


class TestCancel:
    def test_poll_timeout_cancels_the_batch_and_keeps_partial_results(
        self, xai_server: Any, tmp_path: Path
    ) -> None:
        xai_server.configure(batch_pending_polls=1000)  # request k needs k + 1 polls
        ctx = context()
        with pytest.raises(XAIDeferredTimeoutError) as info:
            run(operator(tmp_path, [f"p{i}" for i in range(40)], batch_timeout=0.3, poll_interval=0.05), ctx)
        batch_id = ctx["ti"].pushed("xai_batch_id")[0]
        assert xai_server.state.batches[batch_id].cancelled is not None
        assert (
            batch_id in str(info.value)
            and "cancelled it" in str(info.value)
            and "out.jsonl" in str(info.value)
        )
        statuses = [line["status"] for line in lines(tmp_path)]
        assert statuses.count("succeeded") >= 1 and statuses.count("cancelled") >= 20
        assert statuses == sorted(statuses, key=lambda s: s != "succeeded")
        assert sum(r["requests"] for r in ctx["ti"].pushed("xai_usage_ledger")[-1]) == statuses.count(
            "succeeded"
        )

    def test_blocking_mode_timeout_also_cancels(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(batch_request_delay=3600)  # never finishes
        ctx = context()
        with pytest.raises(XAIDeferredTimeoutError):
            operator(
                tmp_path, ["a", "b", "c"], deferrable=False, batch_timeout=0.1, poll_interval=0.02
            ).execute(ctx)
        assert xai_server.state.batches[ctx["ti"].pushed("xai_batch_id")[0]].cancelled is not None

    def test_on_kill_cancels_the_running_batch(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(batch_request_delay=3600)
        op = operator(tmp_path, ["a", "b"], deferrable=False, poll_interval=0.02)
        result: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: result.update(summary=op.execute(context())))
        worker.start()
        deadline = time.monotonic() + 10
        while not (op._batch_id and xai_server.requests("/requests", "POST")) and time.monotonic() < deadline:
            time.sleep(0.01)
        op.on_kill()
        worker.join(10)
        assert not worker.is_alive()
        assert xai_server.state.batches[op._batch_id].cancelled is not None
        assert result["summary"]["cancelled"] == 2 and result["summary"]["outcome"] == "cancelled"

    def test_trigger_on_kill_cancels_and_serializes(self, xai_server: Any) -> None:
        hook = XAIHook()
        batch = hook.create_batch("to-kill")
        hook.add_batch_requests(batch.batch_id, [batch_request("r", {"model": "grok-4.3", "messages": [
            {"role": "user", "content": "hi"}]})])  # fmt: skip
        trigger = XAIBatchTrigger(batch.batch_id, poll_interval=2.5, end_time=123.0, timeout=60)
        path, kwargs = trigger.serialize()
        assert path == "airflow_provider_xai.triggers.batch.XAIBatchTrigger"
        assert XAIBatchTrigger(**kwargs).serialize() == (path, kwargs)
        asyncio.run(trigger.on_kill())
        assert hook.get_batch(batch.batch_id).outcome == "cancelled"

    def test_trigger_reports_errors(self, xai_server: Any) -> None:
        event = asyncio.run(first_event(XAIBatchTrigger("batch_missing", poll_interval=0.01)))
        assert event["status"] == "error" and event["http_status"] == 404

    def test_trigger_rides_out_transient_poll_failures(
        self, xai_server: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(max_retries=0))
        hook = XAIHook()
        batch = hook.create_batch("flaky")
        hook.add_batch_requests(batch.batch_id, TestLocalServerBatchAPI().items(2))
        xai_server.enqueue(Fault(503, path=f"/batches/{batch.batch_id}"), times=2)
        event = asyncio.run(first_event(XAIBatchTrigger(batch.batch_id, poll_interval=0.01)))
        assert event["status"] == "success" and event["state"]["num_success"] == 2
        xai_server.enqueue(Fault(503, path=f"/batches/{batch.batch_id}"), times=2)
        event = asyncio.run(
            first_event(XAIBatchTrigger(batch.batch_id, poll_interval=0.01, max_poll_failures=2))
        )
        assert event["status"] == "error" and event["http_status"] == 503


class TestLocalServerBatchAPI:
    def items(self, n: int, prefix: str = "r") -> list[dict[str, Any]]:
        return [batch_request(f"{prefix}{i}", {"model": "grok-4.3", "messages": [{"role": "user", "content": f"q{i}"}]})
                for i in range(n)]  # fmt: skip

    def test_requests_finish_over_polls_and_results_page(self, xai_server: Any) -> None:
        xai_server.configure(batch_pending_polls=3)
        hook = XAIHook()
        hook.batch_page_size = 4
        batch = hook.create_batch("progress")
        hook.add_batch_requests(batch.batch_id, self.items(10))
        pending = [hook.get_batch(batch.batch_id).state.num_pending for _ in range(3)]
        assert pending == [6, 3, 0]
        assert [m.state for m in hook.list_batch_requests(batch.batch_id)] == ["succeeded"] * 10
        before = len(xai_server.requests("/results", "GET"))
        results = list(hook.iter_batch_results(batch.batch_id))
        assert sorted(r.batch_request_id for r in results) == sorted(f"r{i}" for i in range(10))
        assert len(xai_server.requests("/results", "GET")) - before == 3

    def test_request_delay_and_results_before_completion(self, xai_server: Any) -> None:
        """Waits on progress, not on a margin: it looks until the batch is done, and judges each
        look by when it happened (the server shares this process's clock): a look that ended
        before the delay ran out must see the requests pending, and none may see them done
        before it; results never run ahead of the state."""
        delay = 0.15
        xai_server.configure(batch_pending_polls=0, batch_request_delay=delay)
        hook = XAIHook()
        batch = hook.create_batch("slow")
        ready = time.time() + delay  # no earlier than when the server stamps the requests
        hook.add_batch_requests(batch.batch_id, self.items(2))
        while True:
            state = hook.get_batch(batch.batch_id).state
            results = list(hook.iter_batch_results(batch.batch_id))
            after = hook.get_batch(batch.batch_id).state
            looked = time.time()  # the server answered all three by now
            assert state.num_success <= len(results) <= after.num_success
            if looked < ready:
                assert (after.num_pending, results) == (2, [])
            if state.num_pending == 0:  # done before the results were read: they are all there
                break
            time.sleep(0.01)
        assert looked >= ready and hook.get_batch(batch.batch_id).done and len(results) == 2

    def test_body_limit_duplicates_cancel_and_errors(self, xai_server: Any) -> None:
        hook = XAIHook()
        batch = hook.create_batch("limits")
        xai_server.configure(batch_max_body_bytes=500)
        with pytest.raises(XAIBadRequestError) as info:
            hook.add_batch_requests(batch.batch_id, self.items(10))
        assert info.value.status == 413 and add_calls(xai_server) == 1
        xai_server.configure(batch_max_body_bytes=25_000_000)
        hook.add_batch_requests(batch.batch_id, self.items(3))
        hook.add_batch_requests(batch.batch_id, self.items(4))  # r0..r2 again: ignored
        assert hook.get_batch(batch.batch_id).state.num_requests == 4
        hook.cancel_batch(batch.batch_id)
        with pytest.raises(XAIBadRequestError, match="cancelled"):
            hook.add_batch_requests(batch.batch_id, self.items(1, "new"))
        with pytest.raises(XAINotFoundError):
            hook.get_batch("batch_nope")
        with pytest.raises(XAIBadRequestError, match="pagination_token"):
            hook.request("GET", f"batches/{batch.batch_id}/results?pagination_token=bogus")

    def test_listing_is_newest_first_and_paged(self, xai_server: Any) -> None:
        hook = XAIHook()
        ids = [hook.create_batch(f"b{i}").batch_id for i in range(5)]
        hook.batch_page_size = 2
        assert [b.batch_id for b in hook.list_batches()] == ids[::-1]
        before = len(xai_server.requests("/v1/batches", "GET"))
        assert hook.find_batch("b0").batch_id == ids[0]
        assert len(xai_server.requests("/v1/batches", "GET")) - before == 3

    @pytest.mark.parametrize("shape", ["chat", "responses"])
    def test_responses_requests_answer_in_the_configured_shape_and_fail_like_chat(
        self, xai_server: Any, shape: str
    ) -> None:
        xai_server.configure(batch_pending_polls=0, batch_responses_shape=shape)
        hook = XAIHook()
        batch = hook.create_batch("responses")
        hook.add_batch_requests(batch.batch_id, [
            batch_request("ok", {"model": "grok-4.3", "input": "Tide tables", "tools": [{"type": "web_search"}]},
                          "responses"),
            batch_request("marked", {"model": "grok-4.3", "input": "breaks [fail]"}, "responses"),
            batch_request("refused", {"model": "grok-4.3", "input": "x", "messages": []}, "responses"),
        ])  # fmt: skip
        assert [m.endpoint for m in hook.list_batch_requests(batch.batch_id)] == ["responses"] * 3
        results = {r.batch_request_id: r for r in hook.iter_batch_results(batch.batch_id)}
        wire = "chat_get_completion" if shape == "chat" else "responses"
        assert results["ok"].response_kind == wire and results["ok"].error is None
        assert "[fail]" in str(results["marked"].error) and "messages" in str(results["refused"].error)
        with pytest.raises(XAIBadRequestError, match="expected exactly one of"):
            hook.add_batch_requests(batch.batch_id, [batch_request("tts", {"text": "hi"}, "speech_generation")])


class TestMediaRequests:
    """Image and video requests in a batch: their files beside the output, paths in its lines."""

    def test_images_and_videos_go_through_a_batch_to_object_storage(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(batch_pending_polls=0)
        inputs = [
            {"custom_id": "chat", "prompt": "Say hi"},
            {"custom_id": "shots", "image_generation": {"prompt": "a mug", "n": 2}},
            {"custom_id": "held", "url": "/v1/images/generations", "body": {"prompt": "a mug [moderated]"}},
            {"custom_id": "clip", "video_generation": {"prompt": "a boat", "duration": 2}},
            {"custom_id": "broken", "video_generation": {"prompt": "a boat [failed]"}},
        ]
        ctx = context()
        summary = run(operator(tmp_path, inputs, api="chat"), ctx)
        out = {line["custom_id"]: line for line in lines(tmp_path)}
        assert (summary["succeeded"], summary["failed"]) == (4, 1)
        media = tmp_path / "out_media"
        assert out["shots"]["api"] == "image_generation" and out["shots"]["answer"] == {
            "paths": [f"file://{media}/shots/image_00.jpeg", f"file://{media}/shots/image_01.jpeg"], "refused": [],
        }  # fmt: skip
        assert out["held"]["answer"] == {"paths": [], "refused": [0]}
        assert out["clip"]["answer"]["paths"] == [f"file://{media}/clip/video.mp4"]
        assert (media / "clip" / "video.mp4").read_bytes()[4:8] == b"ftyp"
        assert out["broken"]["status"] == "failed" and "simulated" in out["broken"]["error"]
        (batch,) = xai_server.state.batches.values()
        kinds = {custom_id: request.kind for custom_id, request in by_custom_id(batch).items()}
        assert kinds == {"chat": "chat_get_completion", "shots": "image_generation", "held": "image_generation",
                         "clip": "video_generation", "broken": "video_generation"}  # fmt: skip
        # Per image and per second, at the batch discount (xAI's ticks, halved by the batch).
        ledger = ctx["ti"].pushed("xai_usage_ledger")[-1]
        by_model = {r["model"]: r for r in ledger}
        images, video = by_model["grok-imagine-image"], by_model["grok-imagine-video"]
        assert (images["units"], images["unit"], images["requests"]) == (3, "image", 2)
        assert images["cost_usd"] == pytest.approx(3 * 0.02 / 2)
        assert (video["units"], video["unit"], video["cost_usd"]) == (2, "second", pytest.approx(2 * 0.05 / 2))
        assert out["shots"]["usage"]["cost_usd"] == pytest.approx(0.02)

    def test_prompts_become_images_with_api_image_generation(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(batch_pending_polls=0)
        run(operator(tmp_path, ["a red chair", "a blue chair"], api="image_generation"), context())
        out = lines(tmp_path)
        assert [len(line["answer"]["paths"]) for line in out] == [1, 1]
        (batch,) = xai_server.state.batches.values()
        assert [r.body for r in by_custom_id(batch).values()] == [
            {"prompt": "a red chair", "model": "grok-imagine-image"},
            {"prompt": "a blue chair", "model": "grok-imagine-image"},
        ]
