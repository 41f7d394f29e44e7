"""XAIHook batch methods against httpx.MockTransport: chunking, pacing, paging, done-ness."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_xai.exceptions import (
    XAIBadRequestError,
    XAIDeferredTimeoutError,
    XAIResponseError,
    XAIValidationError,
)
from airflow_provider_xai.hooks.batch import (
    ADD_REQUESTS_CALLS,
    ADD_REQUESTS_WINDOW,
    MAX_ADD_REQUESTS_BYTES,
    CallPacer,
    batch_request,
    chunk_batch_requests,
    encoded_size,
)
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.schemas import Batch, BatchResult, parse_time

KEY = "xai-unit-batch-key-123456"


class FakeClock:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Server:
    """Routes requests to handlers by (method, path); records every request."""

    def __init__(self, routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode().split("?")[0].removeprefix("/v1/")
        return self.routes[(request.method, path)](request)


@pytest.fixture(autouse=True)
def conn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY, "extra": {"max_retries": 1}}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))


def make_hook(server: Server) -> XAIHook:
    return XAIHook(backoff_base=0.001, client_kwargs={"transport": httpx.MockTransport(server)})


def batch_json(batch_id: str = "b1", name: str = "n", **state: int) -> dict[str, Any]:
    counts = {"num_requests": 0, "num_pending": 0, "num_success": 0, "num_error": 0, "num_cancelled": 0}
    return {"batch_id": batch_id, "name": name, "create_time": "2026-01-01T00:00:00Z",
            "expire_time": "2999-01-01T00:00:00Z", "state": {**counts, **state}}  # fmt: skip


def items(n: int, size: int = 50) -> list[dict[str, Any]]:
    body = {"model": "grok-4.3", "messages": [{"role": "user", "content": "x" * size}]}
    return [batch_request(f"req-{i:03d}", body) for i in range(n)]


def query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(request.url)).query)


class TestLimits:
    def test_documented_limits_are_the_defaults(self) -> None:
        assert MAX_ADD_REQUESTS_BYTES == 25_000_000
        assert (ADD_REQUESTS_CALLS, ADD_REQUESTS_WINDOW) == (100, 30.0)
        pacer = CallPacer()
        assert (pacer.calls, pacer.period) == (100, 30.0)

    @settings(max_examples=60, deadline=None)
    @given(sizes=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=40),
           limit=st.integers(min_value=600, max_value=2000))  # fmt: skip
    def test_chunks_stay_under_the_limit_and_keep_order(self, sizes: list[int], limit: int) -> None:
        body = [batch_request(f"r{i}", {"model": "m", "messages": [{"role": "user", "content": "y" * n}]})
                for i, n in enumerate(sizes)]  # fmt: skip
        chunks = chunk_batch_requests(body, limit)
        assert [item for chunk in chunks for item in chunk] == body
        assert all(encoded_size({"batch_requests": chunk}) <= limit for chunk in chunks)
        # greedy: no chunk could also have taken the first item of the next one
        for first, second in itertools.pairwise(chunks):
            assert encoded_size({"batch_requests": [*first, second[0]]}) > limit

    def test_exact_fit_is_one_call(self) -> None:
        body = items(3)
        assert chunk_batch_requests(body, encoded_size({"batch_requests": body})) == [body]
        assert len(chunk_batch_requests(body, encoded_size({"batch_requests": body}) - 1)) == 2

    def test_oversized_request_fails_before_any_call(self) -> None:
        server = Server({})
        with pytest.raises(XAIValidationError) as info:
            make_hook(server).add_batch_requests("b1", [*items(2), *items(1, size=5000)], max_bytes=2000)
        assert info.value.field == "batch_requests[2]"
        assert "at most 2000 bytes" in str(info.value)
        assert server.requests == []


class TestPacing:
    def test_sliding_window_sleeps_only_when_full(self) -> None:
        clock = FakeClock()
        pacer = CallPacer(2, 30.0, clock=clock, sleep=clock.sleep)
        starts = []
        for _ in range(5):
            pacer.acquire()
            starts.append(clock.now - 1000.0)
        assert starts == [0.0, 0.0, 30.0, 30.0, 60.0]
        assert clock.sleeps == [30.0, 30.0]

    def test_add_requests_is_chunked_and_paced(self) -> None:
        clock = FakeClock()
        calls: list[tuple[float, list[str]]] = []

        def add(request: httpx.Request) -> httpx.Response:
            assert len(request.content) <= 600
            ids = [r["batch_request_id"] for r in json.loads(request.content)["batch_requests"]]
            calls.append((clock.now, ids))
            return httpx.Response(200, json={})

        server = Server({("POST", "batches/b%201/requests"): add})
        body = items(12)
        pacer = CallPacer(3, 30.0, clock=clock, sleep=clock.sleep)
        n = make_hook(server).add_batch_requests("b 1", body, max_bytes=600, pacer=pacer)
        assert n == len(calls) == len(chunk_batch_requests(body, 600)) > 3
        assert [i for _, ids in calls for i in ids] == [r["batch_request_id"] for r in body]
        times = [t for t, _ in calls]
        assert all(sum(1 for t in times if start <= t < start + 30.0) <= 3 for start in times)
        assert clock.sleeps and clock.now - 1000.0 == 30.0 * ((n - 1) // 3)

    def test_the_hook_shares_one_pacer_across_calls(self) -> None:
        server = Server({("POST", "batches/b1/requests"): lambda r: httpx.Response(200, json={})})
        hook = make_hook(server)
        clock = FakeClock()
        hook._batch_pacer = CallPacer(2, 10.0, clock=clock, sleep=clock.sleep)
        for _ in range(3):
            hook.add_batch_requests("b1", items(1))
        assert clock.sleeps == [10.0]
        assert hook.batch_pacer is hook._batch_pacer

    def test_too_large_413_is_not_retried(self) -> None:
        server = Server({("POST", "batches/b1/requests"): lambda r: httpx.Response(
            413, json={"code": "Payload too large", "error": "too big"})})  # fmt: skip
        with pytest.raises(XAIBadRequestError) as info:
            make_hook(server).add_batch_requests("b1", items(1))
        assert info.value.status == 413
        assert len(server.requests) == 1


class TestBatchState:
    @pytest.mark.parametrize(
        ("changes", "done", "outcome"),
        [
            ({"state": {"num_requests": 3, "num_pending": 1}}, False, "running"),
            ({"state": {"num_requests": 3, "num_pending": 0, "num_success": 3}}, True, "completed"),
            ({"state": {"num_requests": 0, "num_pending": 0}}, False, "running"),
            ({"cancel_time": "2026-01-01T01:00:00Z", "state": {"num_requests": 0}}, True, "cancelled"),
            ({"cancel_by_xai_message": "abuse", "state": {"num_requests": 2, "num_pending": 2}}, True, "cancelled"),
            ({"expire_time": "2020-01-01T00:00:00.123456789Z", "state": {"num_pending": 4}}, True, "expired"),
        ],
    )  # fmt: skip
    def test_done_has_no_status_field(self, changes: dict[str, Any], done: bool, outcome: str) -> None:
        batch = Batch.model_validate({**batch_json(), **changes})
        assert batch.done is done
        assert batch.outcome == outcome

    def test_parse_time_accepts_xai_forms(self) -> None:
        assert parse_time("1970-01-01T00:01:00Z") == 60.0
        assert parse_time("1970-01-01T00:00:01.500000123Z") == 1.5
        assert parse_time("1970-01-01T01:00:00+01:00") == 0.0
        assert parse_time("yesterday") is None
        assert parse_time(None) is None

    def test_results_give_completion_or_error(self) -> None:
        ok = BatchResult.model_validate({"batch_request_id": "a", "batch_result": {"response": {
            "chat_get_completion": {"id": "c", "model": "grok-4.3", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "fine"}}]}}}})  # fmt: skip
        assert ok.completion is not None and ok.completion.text == "fine" and ok.error is None
        failed = BatchResult.model_validate({"batch_request_id": "b", "batch_result": {"error": "boom"}})
        assert failed.completion is None and failed.error == "boom"
        nested = BatchResult.model_validate(
            {"batch_request_id": "c", "batch_result": {"error": {"message": "m"}}}
        )
        assert nested.error == "m"
        legacy = BatchResult.model_validate({"batch_request_id": "d", "error_message": "old shape"})
        assert legacy.error == "old shape"
        bad = BatchResult.model_validate(
            {"batch_request_id": "e", "batch_result": {"response": {"chat_get_completion": {"id": 1}}}}
        )
        with pytest.raises(XAIResponseError, match="batch request e"):
            _ = bad.completion

    @pytest.mark.parametrize("empty", [{"code": 0, "message": ""}, {"code": "", "message": None}, {}])
    def test_an_empty_error_object_is_a_success(self, empty: dict[str, Any]) -> None:
        result = BatchResult.model_validate({"batch_request_id": "a", "batch_result": {"error": empty, "response": {
            "chat_get_completion": {"id": "c", "model": "grok-4.3", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "fine"}}]}}}})  # fmt: skip
        assert result.error is None and result.completion is not None and result.completion.text == "fine"

    def test_an_error_object_with_a_code_or_message_is_a_failure(self) -> None:
        coded = BatchResult.model_validate({"batch_request_id": "a", "batch_result": {"error": {"code": 8}}})
        assert coded.error == '{"code": 8}'
        told = BatchResult.model_validate(
            {"batch_request_id": "b", "batch_result": {"error": {"code": 0, "message": "quota"}}}
        )
        assert told.error == "quota"


class TestEndpoints:
    def test_create_get_cancel_bodies_and_paths(self) -> None:
        server = Server({
            ("POST", "batches"): lambda r: httpx.Response(200, json=batch_json(name=json.loads(r.content)["name"])),
            ("GET", "batches/b1"): lambda r: httpx.Response(200, json=batch_json(num_requests=2, num_pending=2)),
            ("POST", "batches/b1:cancel"): lambda r: httpx.Response(
                200, json={**batch_json(num_requests=2, num_cancelled=2), "cancel_time": "2026-01-01T00:00:00Z"}),
        })  # fmt: skip
        hook = make_hook(server)
        assert hook.create_batch("nightly").name == "nightly"
        assert not hook.get_batch("b1").done
        assert hook.cancel_batch("b1").outcome == "cancelled"
        assert [(r.method, r.url.path) for r in server.requests] == [
            ("POST", "/v1/batches"), ("GET", "/v1/batches/b1"), ("POST", "/v1/batches/b1:cancel")]  # fmt: skip
        assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"

    def test_a_batch_from_an_input_file_uploads_it_as_a_form_then_names_it(self) -> None:
        uploaded = {"id": "file_1", "object": "file", "bytes": 3, "filename": "batch.jsonl"}
        server = Server({
            ("POST", "files"): lambda r: httpx.Response(200, json=uploaded),
            ("POST", "batches"): lambda r: httpx.Response(200, json=batch_json(name=json.loads(r.content)["name"])),
        })  # fmt: skip
        hook = make_hook(server)
        assert hook.upload_batch_input_file(b"{}\n").id == "file_1"
        assert hook.create_batch("nightly", input_file_id="file_1").name == "nightly"
        form, create = server.requests
        assert form.headers["content-type"].startswith("multipart/form-data")
        body = form.read()
        assert body.index(b'name="expires_after"') < body.index(b'name="file"; filename="batch.jsonl"')
        assert b"\r\n\r\n259200\r\n" in body and b"\r\n\r\n{}\n\r\n" in body
        assert json.loads(create.content) == {"name": "nightly", "input_file_id": "file_1"}

    def test_an_input_file_over_the_limit_is_refused_without_a_request(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from airflow_provider_xai.hooks import batch as batch_hook

        monkeypatch.setattr(batch_hook, "MAX_INPUT_FILE_BYTES", 10)
        server = Server({})
        with pytest.raises(XAIValidationError) as info:
            make_hook(server).upload_batch_input_file(b"x" * 11)
        assert info.value.field == "content" and server.requests == []
        with pytest.raises(XAIValidationError) as info:
            make_hook(server).create_batch("n", input_file_id=" ")
        assert info.value.field == "input_file_id" and server.requests == []

    def test_create_rejects_empty_name_without_a_request(self) -> None:
        server = Server({})
        with pytest.raises(XAIValidationError):
            make_hook(server).create_batch(" ")
        assert server.requests == []

    def test_find_batch_pages_until_the_newest_live_match(self) -> None:
        pages = {
            None: {"batches": [batch_json("b9", "other")], "pagination_token": "p2"},
            "p2": {"batches": [batch_json("b8", "mine") | {"cancel_time": "2026-01-01T00:00:00Z"},
                               batch_json("b7", "mine")], "pagination_token": "p3"},
            "p3": {"batches": [batch_json("b6", "mine")], "pagination_token": None},
        }  # fmt: skip

        def listing(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=pages[query(request).get("pagination_token", [None])[0]])

        server = Server({("GET", "batches"): listing})
        hook = make_hook(server)
        hook.batch_page_size = 7
        assert hook.find_batch("mine").batch_id == "b7"  # the cancelled b8 is skipped
        assert len(server.requests) == 2  # stopped before page 3
        assert all(query(r)["limit"] == ["7"] for r in server.requests)
        assert hook.find_batch("mine", include_ended=True).batch_id == "b8"
        assert hook.find_batch("absent") is None

    def test_results_and_request_metadata_page_through_tokens(self) -> None:
        def results(request: httpx.Request) -> httpx.Response:
            token = query(request).get("pagination_token", ["0"])[0]
            start = int(token)
            page = [
                {"batch_request_id": f"r{i}", "batch_result": {"error": "x"}}
                for i in range(start, min(start + 2, 5))
            ]
            nxt = str(start + 2) if start + 2 < 5 else None
            return httpx.Response(200, json={"results": page, "pagination_token": nxt})

        meta = {
            "batch_request_metadata": [{"batch_request_id": "r0", "state": "pending"}],
            "pagination_token": "",
        }
        server = Server({("GET", "batches/b1/results"): results,
                         ("GET", "batches/b1/requests"): lambda r: httpx.Response(200, json=meta)})  # fmt: skip
        hook = make_hook(server)
        assert [r.batch_request_id for r in hook.iter_batch_results("b1")] == ["r0", "r1", "r2", "r3", "r4"]
        assert len(server.requests) == 3
        assert [m.state for m in hook.list_batch_requests("b1")] == ["pending"]

    def test_malformed_batch_is_a_response_error(self) -> None:
        server = Server({("GET", "batches/b1"): lambda r: httpx.Response(200, json={"name": "no id"})})
        with pytest.raises(XAIResponseError, match="batch"):
            make_hook(server).get_batch("b1")

    async def test_async_get_and_cancel(self) -> None:
        server = Server({
            ("GET", "batches/b1"): lambda r: httpx.Response(200, json=batch_json(num_requests=1, num_success=1)),
            ("POST", "batches/b1:cancel"): lambda r: httpx.Response(200, json=batch_json() | {"cancel_time": "t"}),
        })  # fmt: skip
        hook = make_hook(server)
        try:
            assert (await hook.aget_batch("b1")).done
            assert (await hook.acancel_batch("b1")).cancelled
        finally:
            await hook.aclose()


class TestWait:
    def test_wait_polls_until_done(self) -> None:
        answers = iter([batch_json(num_requests=2, num_pending=2), batch_json(num_requests=2, num_pending=1),
                        batch_json(num_requests=2, num_success=2)])  # fmt: skip
        server = Server({("GET", "batches/b1"): lambda r: httpx.Response(200, json=next(answers))})
        clock = FakeClock()
        batch = make_hook(server).wait_for_batch("b1", poll_interval=5, clock=clock, sleep=clock.sleep)
        assert batch.done and clock.sleeps == [5, 5]

    def test_wait_timeout_cancels_and_fails_clearly(self) -> None:
        server = Server({
            ("GET", "batches/b1"): lambda r: httpx.Response(200, json=batch_json(num_requests=2, num_pending=2)),
            ("POST", "batches/b1:cancel"): lambda r: httpx.Response(
                200, json={**batch_json(num_requests=2, num_cancelled=2), "cancel_time": "2026-01-01T00:00:00Z"}),
        })  # fmt: skip
        clock = FakeClock()
        with pytest.raises(XAIDeferredTimeoutError) as info:
            make_hook(server).wait_for_batch(
                "b1", poll_interval=4, timeout=10, clock=clock, sleep=clock.sleep
            )
        assert (
            "b1" in str(info.value) and "cancelled it" in str(info.value) and "within 10s" in str(info.value)
        )
        assert server.requests[-1].url.path == "/v1/batches/b1:cancel"
        assert clock.sleeps == [4, 4, 2]
