"""Facts the docs state outside code blocks, checked against their one source.

* every ``xAI usage: ...`` line on any page is exactly what ``format_usage_line`` prints for the
  record it shows;
* every name in the first column of an argument, field or extra table is one the code has;
* docs/scale.md quotes benchmarks/results/scale.json;
* docs/troubleshooting.md shows the reason the retry policy gives for a wrong key, which xAI
  (here the local server) answers with a 400.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_xai.usage import UsageRecord, format_usage_line
from tests.conftest import REPO
from tests.docs.pages import PAGES, name

_USAGE_LINE = re.compile(r"xAI usage: (model=[^\s`]+(?: \w+=[^\s`]+)*)")


def usage_lines() -> list[tuple[str, str]]:
    return [(name(page), line) for page in PAGES for line in _USAGE_LINE.findall(page.read_text())]


def record_of(line: str) -> UsageRecord:
    """The record a usage line shows (a field the record does not have is a TypeError)."""
    shown = dict(pair.split("=", 1) for pair in line.split())
    cost, tools = shown.pop("cost_usd", "unknown"), shown.pop("server_side_tool_usage", "none")
    shown.pop("cache_hit_share", None)  # derived from the counts: the round trip checks it
    units, unit = float(shown.pop("units", 0)), shown.pop("unit", None)
    waited, deferred = float(shown.pop("waited_s", 0)), float(shown.pop("deferred_s", 0))
    return UsageRecord(
        waited_s=waited,
        deferred_s=deferred,
        model=shown.pop("model"),
        cost_source=shown.pop("cost_source", "unknown"),  # type: ignore[arg-type]
        cost_usd=None if cost == "unknown" else float(cost),
        server_side_tool_usage={t: int(n) for t, n in (p.split(":") for p in tools.split(",") if tools != "none")},
        units=units,
        unit=unit,
        **{field: int(value) for field, value in shown.items()},
    )


@pytest.mark.parametrize(("page", "line"), usage_lines())
def test_a_usage_line_on_a_page_is_the_one_the_code_logs(page: str, line: str) -> None:
    assert format_usage_line(record_of(line)) == f"xAI usage: {line}"


def test_the_pages_show_usage_lines() -> None:
    pages = {page for page, _ in usage_lines()}
    assert {"README.md", "docs/getting-started.md", "docs/operators/chat.md", "docs/usage.md"} <= pages


def table_names(page: Path, header: str) -> list[str]:
    """The backquoted names in the first column of the page's table whose first header is ``header``."""
    lines = page.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    names: list[str] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        names += re.findall(r"`([^`]+)`", line.split("|")[1])
    return names


def _arguments(cls: type) -> set[str]:
    """The keyword arguments of an operator and of the provider's classes it extends."""
    return {
        parameter
        for klass in cls.__mro__
        if klass.__module__.startswith("airflow_provider_xai") and "__init__" in vars(klass)
        for parameter in inspect.signature(klass.__init__).parameters
    }


def _conn_fields() -> set[str]:
    from airflow_provider_xai.get_provider_info import get_provider_info

    (connection_type,) = get_provider_info()["connection-types"]
    return set(connection_type["conn-fields"])


def _chat_arguments() -> set[str]:
    from airflow_provider_xai.operators.chat import XAIChatOperator

    return _arguments(XAIChatOperator)


def _responses_arguments() -> set[str]:
    from airflow_provider_xai.operators.responses import XAIResponsesOperator

    return _arguments(XAIResponsesOperator)


def _batch_arguments() -> set[str]:
    from airflow_provider_xai.operators.batch import XAIBatchOperator

    return _arguments(XAIBatchOperator)


def _image_arguments() -> set[str]:
    from airflow_provider_xai.operators.images import XAIImageOperator

    return _arguments(XAIImageOperator)


def _video_arguments() -> set[str]:
    from airflow_provider_xai.operators.video import XAIVideoOperator

    return _arguments(XAIVideoOperator)


def _vision_arguments() -> set[str]:
    from airflow_provider_xai.operators.vision import XAIVisionOperator

    return _arguments(XAIVisionOperator)


def _sync_arguments() -> set[str]:
    from airflow_provider_xai.operators.collections import XAICollectionSyncOperator

    return _arguments(XAICollectionSyncOperator)


def _speech_arguments() -> set[str]:
    from airflow_provider_xai.operators.voice import XAITextToSpeechOperator

    return _arguments(XAITextToSpeechOperator)


def _transcription_arguments() -> set[str]:
    from airflow_provider_xai.operators.voice import XAISpeechToTextOperator

    return _arguments(XAISpeechToTextOperator)


#: (page, the first header of its table) -> the names the code has.
TABLES: dict[tuple[str, str], Callable[[], set[str]]] = {
    ("docs/operators/chat.md", "Argument"): _chat_arguments,
    ("docs/responses.md", "Argument"): _responses_arguments,
    ("docs/operators/responses.md", "Argument"): _responses_arguments,
    ("docs/operators/vision.md", "Argument"): _vision_arguments,
    ("docs/operators/batch.md", "Argument"): _batch_arguments,
    ("docs/operators/images.md", "Argument"): _image_arguments,
    ("docs/operators/video.md", "Argument"): _video_arguments,
    ("docs/usage.md", "Field"): lambda: {f.name for f in dataclasses.fields(UsageRecord)},
    ("docs/scale.md", "extra"): _conn_fields,
    ("docs/collections.md", "Argument"): _sync_arguments,
    ("docs/voice.md", "Argument"): _speech_arguments,
    ("docs/voice.md", "Speech-to-text argument"): _transcription_arguments,
}


@pytest.mark.parametrize(("page", "header"), TABLES, ids=lambda v: v)
def test_a_documented_name_is_one_the_code_has(page: str, header: str) -> None:
    names = table_names(REPO / page, header)
    assert names, f"no {header} table in {page}"
    assert not set(names) - TABLES[page, header](), f"{page} documents names the code does not have"


def test_the_scale_page_quotes_the_scale_run() -> None:
    run = json.loads((REPO / "benchmarks" / "results" / "scale.json").read_text())
    on, off, conf = run["limiter_on"], run["limiter_off"], run["conf"]
    page = (REPO / "docs" / "scale.md").read_text()
    quoted = [
        f"{off['refused_429']:,} 429s and {off['failed_tasks']} failed tasks for {off['requests']:,} requests",
        f"client limit of {run['client_rps']} it gave {on['refused_429']:,} 429 for {on['requests']:,} requests and\n"
        f"  {on['throughput_share_of_limit']:.1%} of the limit",
        f"{conf['mapped']} mapped tasks sent {conf['mapped']} requests while {conf['fanouts']} `chat_many` tasks sent "
        f"{conf['fanouts'] * conf['per_fanout']:,}",
        f"| failed tasks | {on['failed_tasks']} | {off['failed_tasks']} |",
        f"| answers (200) | {on['billed']:,} of {on['requests']:,} | {off['billed']:,} |",
        f"| 429s | {on['refused_429']:,} ({on['refused_429_share']:.1%}) | {off['refused_429']:,} |",
        f"| {on['lost_answers']} / {on['duplicated_answers']} / {on['crossed_answers']} | "
        f"{off['lost_answers']:,} missing (the failed tasks') / "
        f"{off['duplicated_answers']} / {off['crossed_answers']} |",
        f"| {on['rollup_requests']:,} and {on['rollup_total_tokens']:,}, what the tasks recorded | "
        f"{off['rollup_requests']:,} and {off['rollup_total_tokens']:,}, what the tasks recorded |",
        f"| {on['throughput_rps']} per second, {on['throughput_share_of_limit']:.1%} of R | "
        f"{off['throughput_rps']} per second |",
        f"| DAG run | {on['dag_run_s']} s | {off['dag_run_s']} s |",
    ]
    quoted += capacity_wait_rows(run["capacity_waits"])
    missing = [figure for figure in quoted if figure not in page]
    assert not missing, "docs/scale.md does not quote scale.json:\n" + "\n".join(missing)


def capacity_wait_rows(waits: dict[str, Any]) -> list[str]:
    """The capacity-waits table of docs/scale.md as scale.json's ``capacity_waits`` gives it (its
    columns: alone, then behind other work; in workers, then in the triggerer)."""
    runs = [waits["scenarios"][scenario][mode]
            for scenario in ("alone", "behind other work") for mode in ("in workers", "in the triggerer")]

    def leads(run: dict[str, Any]) -> str:
        found = run.get("leads_s") or []
        if not found:
            return "none"
        low, high = min(found), max(found)
        return f"{low} s" if low == high else f"{low} to {high} s"

    rows = {
        "worker-slot seconds waiting for capacity": lambda r: f"{r['slot_seconds_waiting']}",
        "tasks deferred / seconds in the triggerer": lambda r: f"{r['deferred_tasks']} / {r['seconds_deferred']}",
        "resume leads": leads,
        "returns from the triggerer / later than their lead":
            lambda r: f"{len(r['came_back_s'])} / {r.get('late_returns', 0)}",
        "429s, failed tasks, lost answers": lambda r: f"{r['refused_429']}, {r['failed_tasks']}, {r['lost_answers']}",
        "start delay of the non-xAI task first in line": lambda r: f"{r['bystander_first_start_delay_s']} s",
        "start delay of the non-xAI task behind them": lambda r: f"{r['bystander_behind_start_delay_s']} s",
        "throughput, share of the limit": lambda r: f"{r['throughput_share_of_limit']:.1%}",
        "DAG run": lambda r: f"{r['dag_run_s']} s",
    }
    table = [f"| {label} | " + " | ".join(cell(r) for r in runs) + " |" for label, cell in rows.items()]
    return [*table, f"the same run (load average {waits['load_average_1_5_15_min'][0]})"]


def test_troubleshooting_shows_the_reason_a_wrong_key_gets(xai_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_xai.exceptions import XAIAuthenticationError
    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.retry_policy import XAIRetryPolicy

    wrong = {"conn_type": "xai", "host": xai_server.base_url, "password": "xai-wrong-key"}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(wrong))
    with pytest.raises(XAIAuthenticationError) as refused:
        XAIHook().chat(model="grok-4.3", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status == 400
    reason = XAIRetryPolicy().evaluate(refused.value, try_number=1, max_tries=3).reason
    assert f"`{reason}`" in (REPO / "docs" / "troubleshooting.md").read_text()
