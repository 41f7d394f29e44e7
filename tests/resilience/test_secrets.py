"""The API key never leaks: example DAG runs (green, bad key, blocked key, credits exhausted)
are scanned everywhere the provider leaves traces: task logs, XComs, rendered template fields,
the metadata database, exception texts and the local server's journal. Zero hits allowed.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_xai.exceptions import (
    XAIAuthenticationError,
    XAIError,
    XAIPermissionError,
    XAIQuotaExhaustedError,
)
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.testing import Fault, XAIServer
from tests.dags.conftest import run_dag, task_states
from tests.resilience.conftest import run_inline_dag

CREDITS_GONE = "Your team has exhausted its credits and reached its monthly spending limit."
USER = [{"role": "user", "content": "Hello Grok"}]


def new_key(kind: str) -> str:
    return f"xai-{kind}-{uuid.uuid4().hex}"


@pytest.fixture
def keyed_server(xai_server: XAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[XAIServer]:
    """The local server with a key never used before (so any hit anywhere is from this test)."""
    xai_server.configure(api_key=new_key("scan"))
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json())
    yield xai_server


def connection_with_key(server: XAIServer, key: str) -> str:
    return json.dumps({"conn_type": "xai", "host": server.base_url, "password": key})


# --- collecting everything a run produced ------------------------------------------------------
def run_records(dag_run: Any) -> dict[str, str]:
    """XComs, rendered template fields and task instance rows of one run, as text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    def where(model: Any) -> Any:
        return select(model).where(model.dag_id == dag_run.dag_id, model.run_id == dag_run.run_id)

    with create_session() as session:
        xcoms = {
            f"{x.task_id}[{x.map_index}].{x.key}": XComModel.deserialize_value(x)
            for x in session.scalars(where(XComModel))
        }
        rendered = {f"{r.task_id}[{r.map_index}]": r.rendered_fields for r in session.scalars(where(RTIF))}
        tis = [
            {"task": ti.task_id, "next_kwargs": ti.next_kwargs, "state": str(ti.state)}
            for ti in session.scalars(where(TaskInstance))
        ]
    return {
        "xcom": json.dumps(xcoms, default=repr),
        "rendered": json.dumps(rendered, default=repr),
        "task_instances": json.dumps(tis, default=repr),
    }


def home_files(*extra_dirs: Path) -> dict[str, str]:
    """Task log files and the metadata database (raw bytes, WAL included) under AIRFLOW_HOME,
    and every file the run wrote under ``extra_dirs``."""
    home = Path(os.environ["AIRFLOW_HOME"])
    files = [p for p in home.rglob("*") if p.is_file() and (p.suffix == ".log" or "airflow.db" in p.name)]
    files += [p for d in extra_dirs for p in d.rglob("*") if p.is_file()]
    return {str(p): p.read_bytes().decode("utf-8", "replace") for p in files}


def journal_text(server: XAIServer) -> str:
    return json.dumps([entry.to_dict() for entry in server.journal], default=repr)


def assert_no_leak(keys: list[str], sources: dict[str, str]) -> int:
    """Assert no key appears in any source; return how many characters were scanned."""
    for name, text in sources.items():
        for key in keys:
            assert key not in text, f"API key leaked into {name}"
    return sum(len(t) for t in sources.values())


def run_and_scan(
    run: Callable[[], Any], keys: list[str], server: XAIServer, capfd: Any, caplog: Any, *dirs: Path
) -> tuple[Any, dict[str, str]]:
    """Run a DAG, then scan everything it produced for ``keys``."""
    dag_run = run()
    out, err = capfd.readouterr()
    sources = {
        "task logs (stdout)": out,
        "task logs (stderr)": err,
        "log records": caplog.text,
        "server journal": journal_text(server),
        **run_records(dag_run),
        **home_files(*dirs),
    }
    scanned = assert_no_leak(keys, sources)
    assert scanned > 10_000  # the scan saw real material, not empty captures
    return dag_run, sources


EXAMPLE_DAGS = ["example_xai_chat", "example_xai_vision", "example_xai_usage", "example_xai_batch"]


@pytest.mark.parametrize("dag_id", EXAMPLE_DAGS)
def test_green_example_runs_leak_no_key(
    dagbag: Any,
    keyed_server: XAIServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: Any,
    caplog: Any,
    dag_id: str,
) -> None:
    if dag_id not in dagbag.dag_ids:
        pytest.fail(f"{dag_id} is not in example_dags: {sorted(dagbag.dag_ids)} {dagbag.import_errors}")
    monkeypatch.setenv("XAI_EXAMPLE_DATA", f"file://{tmp_path}")  # where the batch example writes
    keyed_server.configure(batch_pending_polls=1)  # a batch is done at its first poll
    keys = [keyed_server.api_key]
    dag_run, sources = run_and_scan(
        lambda: run_dag(dagbag, dag_id), keys, keyed_server, capfd, caplog, tmp_path
    )
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    # Positive controls: the scan covered the task logs, the XComs and the rendered fields.
    assert re.search(r"xAI (batch )?usage", sources["task logs (stdout)"])
    assert '"xai_usage' in sources["xcom"] or "xai_usage" in sources["xcom"]
    assert sources["rendered"] != "{}"
    assert "Bearer ***" in sources["server journal"]


def _bad_key(server: XAIServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    wrong = new_key("wrong")
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", connection_with_key(server, wrong))
    return [wrong]


def _blocked_key(server: XAIServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    server.configure(api_key_blocked=True)
    return []


def _credits_exhausted(server: XAIServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    server.enqueue(Fault(429, message=CREDITS_GONE), times=100)
    return []


FAILURES: dict[str, tuple[Callable[[XAIServer, pytest.MonkeyPatch], list[str]], str]] = {
    "bad key": (_bad_key, "Incorrect API key"),
    "blocked key (403)": (_blocked_key, "is blocked"),
    "credits exhausted (429)": (_credits_exhausted, "exhausted its credits"),
}


def batch_dag(tmp_path: Path) -> Any:
    """The batch example's operator without its ``retries=2`` (each retry waits 5 minutes)."""
    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_xai.operators.batch import XAIBatchOperator

    with DAG(
        "resilience_batch_failure", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")
    ) as dag:
        XAIBatchOperator(
            task_id="classify",
            inputs=["Ticket one: the invoice is wrong", "Ticket two: thanks, it works"],
            output_path=f"file://{tmp_path}/labels.jsonl",
            max_tokens=50,
            poll_interval=0.1,
        )
    return dag


#: The failing variants run every example DAG except the batch one, whose ``retries=2`` keep a
#: failed run waiting 2 x 5 minutes under dag.test(); its operator runs in a DAG built here.
FAILING_RUNS = ["example_xai_chat", "example_xai_vision", "example_xai_usage", "batch operator"]


@pytest.mark.parametrize("dag_id", FAILING_RUNS)
@pytest.mark.parametrize("failure", list(FAILURES))
def test_failing_runs_leak_no_key(
    dagbag: Any,
    keyed_server: XAIServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: Any,
    caplog: Any,
    failure: str,
    dag_id: str,
) -> None:
    setup, expected_message = FAILURES[failure]
    keys = [keyed_server.api_key, *setup(keyed_server, monkeypatch)]
    run: Callable[[], Any] = (
        (lambda: run_inline_dag(batch_dag(tmp_path)))
        if dag_id == "batch operator"
        else (lambda: run_dag(dagbag, dag_id))
    )
    dag_run, sources = run_and_scan(run, keys, keyed_server, capfd, caplog, tmp_path)
    states = task_states(dag_run)
    assert "failed" in states.values(), states
    # Positive control: the failure (with xAI's message) is in the logs that were scanned.
    assert expected_message in sources["task logs (stdout)"]
    assert keyed_server.journal, "the run never reached the server"


# --- exception texts -------------------------------------------------------------------------
def exception_texts(exc: BaseException) -> str:
    return "\n".join(
        [
            str(exc),
            repr(exc),
            repr(exc.args),
            json.dumps(exc.to_dict() if isinstance(exc, XAIError) else {}),
            pickle.dumps(exc).decode("latin-1"),
            "".join(traceback.format_exception(exc)),
            repr(vars(exc)),
        ]
    )


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (lambda server: None, XAIAuthenticationError),
        (lambda server: server.configure(api_key_blocked=True), XAIPermissionError),
        (lambda server: server.enqueue(Fault(429, message=CREDITS_GONE), times=2), XAIQuotaExhaustedError),
        (lambda server: server.enqueue(Fault(500, message="boom"), times=2), XAIError),
        (lambda server: server.enqueue(Fault(drop=True), times=2), XAIError),
    ],
)
def test_exceptions_never_carry_the_key(
    keyed_server: XAIServer, monkeypatch: pytest.MonkeyPatch, setup: Any, error: type[XAIError]
) -> None:
    if error is XAIAuthenticationError:
        key = new_key("wrong")
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", connection_with_key(keyed_server, key))
    else:
        key = keyed_server.api_key
    setup(keyed_server)
    hook = XAIHook(max_retries=0)
    try:
        with pytest.raises(error) as info:
            hook.chat(messages=USER)
        with pytest.raises(error) as streamed:
            hook.stream_chat_completion(messages=USER)
    finally:
        hook.close()
    text = exception_texts(info.value) + exception_texts(streamed.value) + repr(hook) + repr(hook.settings)
    assert key not in text
    assert key[-6:] not in text  # not even its tail (xAI's own masking keeps 2 characters)


def test_a_server_echoing_the_key_is_scrubbed(keyed_server: XAIServer) -> None:
    key = keyed_server.api_key
    keyed_server.enqueue(Fault(400, message=f"Your request used key {key}, which is not allowed here."))
    hook = XAIHook(max_retries=0)
    try:
        with pytest.raises(XAIError) as info:
            hook.chat(messages=USER)
    finally:
        hook.close()
    assert "which is not allowed here" in str(info.value)
    assert key not in exception_texts(info.value)


# --- the secrets masker -----------------------------------------------------------------------
def masked(text: str) -> str:
    from airflow.sdk._shared.secrets_masker import redact

    return str(redact(text))


@pytest.mark.parametrize("source", ["connection password", "XAI_API_KEY"])
def test_key_is_registered_with_the_masker_when_the_hook_reads_it(
    xai_server: XAIServer, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    key = new_key("mask")
    xai_server.configure(api_key=key)
    if source == "XAI_API_KEY":
        monkeypatch.setenv(
            "AIRFLOW_CONN_XAI_DEFAULT", json.dumps({"conn_type": "xai", "host": xai_server.base_url})
        )
        monkeypatch.setenv("XAI_API_KEY", key)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json())
    line = f"calling xAI with {key}"
    assert masked(line) == line  # nothing registered it yet
    hook = XAIHook()
    assert hook.settings.api_key == key  # the hook reads the key...
    assert masked(line) == "calling xAI with ***"  # ...and registers it at once, before any request
    assert not xai_server.journal


def test_key_read_in_a_task_reaches_the_supervisors_masker(
    airflow_db: None, xai_server: XAIServer, monkeypatch: pytest.MonkeyPatch, capfd: Any
) -> None:
    """In a task, the key the hook reads from ``XAI_API_KEY`` (no connection password, so only
    the hook can register it) is sent to the supervisor, whose masker redacts the task log in a
    deployment, and a log line carrying it comes out masked from the task-log masking step.

    (Under ``dag.test()`` Airflow writes console logs without that step, so this checks the
    hand-over and the masking step rather than dag.test's console output.)
    """
    import pendulum
    from airflow.sdk import DAG, task
    from airflow.sdk.execution_time import supervisor
    from airflow.sdk.log import mask_logs

    key = new_key("tasklog")
    xai_server.configure(api_key=key)
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT", json.dumps({"conn_type": "xai", "host": xai_server.base_url})
    )
    monkeypatch.setenv("XAI_API_KEY", key)
    handed_over: list[Any] = []
    original = supervisor.handle_mask_secret
    monkeypatch.setattr(
        supervisor, "handle_mask_secret", lambda msg: (handed_over.append(msg.value), original(msg))
    )

    with DAG(
        "resilience_masked_key", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")
    ) as dag:

        @task
        def chat_with_env_key() -> str:
            return XAIHook().chat(messages=USER).text

        chat_with_env_key()

    dag_run = run_inline_dag(dag)
    out, err = capfd.readouterr()
    assert task_states(dag_run) == {("chat_with_env_key", -1): "success"}
    assert key in handed_over
    line = mask_logs(None, "info", {"event": f"careless log line: key={key}"})
    assert line == {"event": "careless log line: key=***"}
    assert key not in out + err + journal_text(xai_server)
