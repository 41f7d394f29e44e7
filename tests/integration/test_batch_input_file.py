"""XAIBatchOperator(submit_as="file"): one JSONL input file uploaded to /v1/files and the batch
made from it (input_file_id); and the local server's rules for such files and batches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai.exceptions import XAIBadRequestError, XAINotFoundError, XAIValidationError
from airflow_provider_xai.hooks import batch as batch_hook
from airflow_provider_xai.hooks.batch import batch_request
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.batch_inputs import split_request_id
from airflow_provider_xai.testing.state import Fault
from airflow_provider_xai.tools import web_search
from tests.helpers.batch import add_calls, batch_posts, context, lines, name_of, operator, run

HEARD = "Grok (local) heard: "


def stored_files(server: Any) -> list[Any]:
    return server.state.files.page(100, None, "asc", None)[0]


def uploads(server: Any) -> list[Any]:
    return [e for e in server.journal if e.method == "POST" and e.path.endswith("/v1/files")]


def test_the_requests_go_as_one_uploaded_jsonl_file(xai_server: Any, tmp_path: Path) -> None:
    xai_server.configure(batch_file_load_polls=2)
    inputs = ["First ticket", {"custom_id": "web", "input": "Solar sail news", "tools": [web_search()]}]
    op = operator(tmp_path, inputs, submit_as="file")
    summary = run(op, context())

    assert len(uploads(xai_server)) == 1 and add_calls(xai_server) == 0
    (created,) = [e for e in xai_server.journal if e.method == "POST" and e.path.endswith("/v1/batches")]
    (stored,) = stored_files(xai_server)
    assert created.body == {"name": name_of(op), "input_file_id": stored.id}
    file_lines = [json.loads(line) for line in stored.content.decode().splitlines()]
    assert [(split_request_id(line["custom_id"])[0], line["url"]) for line in file_lines] == [
        ("req-000000", "/v1/chat/completions"), ("web", "/v1/responses")
    ]  # fmt: skip
    assert [line["answer"].removeprefix(HEARD)[:15] for line in lines(tmp_path)] == ["First ticket", "Solar sail news"]
    assert summary["succeeded"] == 2 and summary["usage"]["requests"] == 2


def test_a_file_batch_shows_no_requests_until_loaded_and_takes_none_added(xai_server: Any) -> None:
    xai_server.configure(batch_file_load_polls=2)
    hook = XAIHook()
    body = {"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": body}
    uploaded = hook.upload_batch_input_file(json.dumps(line).encode() + b"\n")
    batch = hook.create_batch("from-a-file", input_file_id=uploaded.id)
    assert batch.state.num_requests == 0 and not batch.done
    assert hook.get_batch(batch.batch_id).state.num_requests == 0  # poll 1
    with pytest.raises(XAIBadRequestError, match="input file"):
        hook.add_batch_requests(batch.batch_id, [batch_request("r2", body)])
    loaded = hook.wait_for_batch(batch.batch_id, poll_interval=0.01, timeout=10)
    assert loaded.state.num_requests == 1 and loaded.state.num_success == 1
    (result,) = hook.iter_batch_results(batch.batch_id)
    assert result.batch_request_id == "r1" and result.completion is not None


def test_a_retry_reattaches_to_the_file_batch_without_uploading_again(xai_server: Any, tmp_path: Path) -> None:
    xai_server.configure(batch_file_load_polls=5)
    first = run(operator(tmp_path, ["a", "b"], submit_as="file"), context(1))
    second = run(operator(tmp_path, ["a", "b"], submit_as="file"), context(2))
    assert first["batch_id"] == second["batch_id"]
    assert (len(uploads(xai_server)), batch_posts(xai_server)) == (1, 1)


def test_a_file_over_the_limit_is_refused_before_any_request(
    xai_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_hook, "MAX_INPUT_FILE_BYTES", 300)
    with pytest.raises(XAIValidationError) as info:
        operator(tmp_path, [f"ticket {i}" for i in range(5)], submit_as="file").execute(context())
    assert info.value.field == "inputs" and "submit_as='requests'" in str(info.value)
    assert xai_server.journal == []


def test_the_local_server_checks_files_and_their_lines(xai_server: Any) -> None:
    hook = XAIHook()
    with pytest.raises(XAINotFoundError):
        hook.create_batch("no-file", input_file_id="file_missing")
    bad = hook.upload_batch_input_file(b'{"custom_id": "r1", "method": "POST", "url": "/v1/images", "body": {}}\n')
    with pytest.raises(XAIBadRequestError, match="line 1"):
        hook.create_batch("bad-line", input_file_id=bad.id)
    url, headers = f"{xai_server.base_url}/files", {"Authorization": f"Bearer {xai_server.api_key}"}
    parts = [("file", ("a.jsonl", b"{}")), ("expires_after", (None, "3600"))]
    files_first = httpx.post(url, headers=headers, files=parts)
    assert files_first.status_code == 400 and "before file" in files_first.json()["error"]
    too_soon = httpx.post(url, headers=headers, data={"expires_after": "60"}, files={"file": ("a.jsonl", b"{}")})
    assert too_soon.status_code == 400 and "expires_after" in too_soon.json()["error"]


def test_an_upload_that_meets_a_503_is_sent_again_whole(xai_server: Any, tmp_path: Path) -> None:
    xai_server.enqueue(Fault(503, path="/files"))
    summary = run(operator(tmp_path, ["a", "b", "c"], submit_as="file"), context())
    assert [e.status for e in uploads(xai_server)] == [503, 200]
    (stored,) = stored_files(xai_server)
    assert len(stored.content.decode().splitlines()) == 3 and summary["succeeded"] == 3
