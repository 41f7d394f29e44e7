"""The management key never leaks: the collections example (sync, question, speech), green and
with the key refused, scanned everywhere the provider leaves traces (task logs, log records,
XComs, rendered fields, the metadata database, written files, the local server's journal) and in
every span it traced; and an exception quoting the key carries it nowhere. Zero hits allowed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.testing import XAIServer
from tests.dags.conftest import run_dag, task_states
from tests.helpers.spans import memory_spans
from tests.resilience.test_secrets import assert_no_leak, exception_texts, new_key, run_and_scan

DAG_ID = "example_xai_collections"


@pytest.fixture
def keyed(xai_server: XAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[XAIServer]:
    """The local server with an API key and a management key never used before."""
    xai_server.configure(api_key=new_key("scan"), management_key=new_key("management"))
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(**xai_server.management_extra()))
    yield xai_server


def span_text(exporter: Any) -> str:
    return json.dumps([json.loads(span.to_json()) for span in exporter.get_finished_spans()])


def test_the_collections_example_leaks_no_key(
    dagbag: Any, keyed: XAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: Any, caplog: Any
) -> None:
    keys = [keyed.api_key, keyed.management_key]
    conf = {"output_uri": f"file://{tmp_path}"}
    with memory_spans(monkeypatch) as spans:
        dag_run, _ = run_and_scan(lambda: run_dag(dagbag, DAG_ID, run_conf=conf), keys, keyed, capfd, caplog,
                                  tmp_path)  # fmt: skip
    assert set(task_states(dag_run).values()) == {"success"}
    traced = span_text(spans)
    assert_no_leak(keys, {"spans": traced})
    assert '"chat ' in traced  # positive control: the question's span was exported and scanned
    assert keyed.requests("/management/v1/collections"), "the run never reached the Management API"


def test_a_refused_management_key_leaks_nowhere(
    dagbag: Any, keyed: XAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: Any, caplog: Any
) -> None:
    wrong = new_key("wrong-management")
    extra = {**keyed.management_extra(), "management_key": wrong}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", keyed.connection_json(**extra))
    keys = [keyed.api_key, keyed.management_key, wrong]
    with memory_spans(monkeypatch) as spans:
        dag_run, sources = run_and_scan(lambda: run_dag(dagbag, DAG_ID, run_conf={"output_uri": f"file://{tmp_path}"}),
                                        keys, keyed, capfd, caplog, tmp_path)  # fmt: skip
    assert task_states(dag_run)[("sync_docs", -1)] == "failed"
    assert "Incorrect management key" in sources["task logs (stdout)"]  # positive control
    assert_no_leak(keys, {"spans": span_text(spans)})


def test_an_error_quoting_the_management_key_never_carries_it(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key("echoed-management")

    def echo(request: httpx.Request) -> httpx.Response:
        said = request.headers["authorization"]
        return httpx.Response(403, json={"code": said, "error": f"{said} may not create collections"})

    conn = {"conn_type": "xai", "password": new_key("api"), "extra": {"management_key": key, "max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
    with pytest.raises(XAIError) as info:
        XAIHook(client_kwargs={"transport": httpx.MockTransport(echo)}).create_collection("n")
    text = exception_texts(info.value)
    assert "may not create collections" in text and key not in text
