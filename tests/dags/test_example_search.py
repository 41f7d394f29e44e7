"""example_xai_search end to end under dag.test() against the local xAI server.

The local server's searches are deterministic: for a run on 2026-09-04, ``x_search`` limited to
2026-09-03..2026-09-04 finds the one post of that window (@solar_sail_fan, 2026-09-03), and
``web_search`` finds the Wikipedia page on solar sails among its pages.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pendulum
import pytest

from tests.dags.conftest import run_dag, task_states, xcom_values

LOGICAL_DATE = pendulum.datetime(2026, 9, 4, tz="UTC")
X_POST = "https://x.com/solar_sail_fan/status/1879000000000000004"
WIKIPEDIA = "https://en.wikipedia.org/wiki/Solar_sail"


def input_texts(value: Any) -> list[str]:
    """The texts of a Responses ``input``: a string, or message items (string or parts content)."""
    if isinstance(value, str):
        return [value]
    texts: list[str] = []
    for item in value:
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part.get("text", "") for part in content if isinstance(part, dict))
    return texts


def test_example_search_dag_runs_green(
    dagbag: Any, xai_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = {"output_uri": f"file://{tmp_path}"}
    dr = run_dag(dagbag, "example_xai_search", logical_date=LOGICAL_DATE, run_conf=conf)
    states = task_states(dr)
    assert states == {(task, -1): "success" for task in ("research", "summarise", "save")}, states

    first, second = xai_server.requests("/responses", "POST")

    # research: both search tools, the date window rendered from the run's data interval
    assert first.status == 200 and second.status == 200
    assert first.body["tools"] == [
        {"type": "x_search", "from_date": "2026-09-03", "to_date": "2026-09-04"},
        {"type": "web_search"},
    ]
    assert first.body["include"] == ["no_inline_citations"]
    assert first.body["max_turns"] == 6 and first.body["stream"] is True
    assert first.body.get("store", True) is True, "the conversation must be stored to be continued"
    (question,) = input_texts(first.body["input"])
    assert "solar sails between 2026-09-03 and 2026-09-04" in question

    answer = xcom_values(dr, "research")[-1]
    assert answer.startswith("Grok (local) heard: What happened with solar sails")
    assert "Solar sails are back" in answer  # the X post of 2026-09-03, found by x_search
    assert "radiation pressure of sunlight" in answer  # the Wikipedia page, found by web_search
    assert "[[" not in answer, "no inline citation markers with include=['no_inline_citations']"
    citations = xcom_values(dr, "research", "xai_citations")[-1]
    urls = [c["url"] for c in citations]
    assert urls[0] == X_POST and WIKIPEDIA in urls and len(set(urls)) == len(urls), urls
    assert all(set(c) == {"url", "title"} and c["title"] for c in citations), citations
    assert xcom_values(dr, "research", "xai_function_calls")[-1] == []

    # summarise: the stored conversation continued, with only the new question sent
    response_id = xcom_values(dr, "research", "xai_response_id")[-1]
    assert response_id and second.body["previous_response_id"] == response_id
    assert "instructions" not in second.body and not second.body.get("tools")
    if isinstance(second.body["input"], list):
        assert len(second.body["input"]) == 1, second.body["input"]
    (follow_up,) = input_texts(second.body["input"])
    assert follow_up.startswith("Turn your answer into a digest")
    assert "What happened with" not in json.dumps(second.body), "the first question is not sent again"
    text_format = second.body["text"]["format"]
    assert text_format["type"] == "json_schema"
    assert set(text_format["schema"]["properties"]) == {"topic", "headline", "developments", "tone"}
    digest = xcom_values(dr, "summarise")[-1]
    assert set(digest) == {"topic", "headline", "developments", "tone"}
    assert digest["tone"] in {"positive", "neutral", "negative", "mixed"}
    # The local server keeps the conversation's topic, and its free text says where it is from.
    assert digest["topic"] == "solar sails"
    assert digest["headline"] == "(local server) Solar sails at a glance"
    assert digest["developments"] and all(d.startswith("(local server) ") for d in digest["developments"])

    # save: the answer, its sources and the digest in object storage, a small summary in XCom
    folder = tmp_path / "search" / "solar-sails" / "2026-09-04"
    report = xcom_values(dr, "save")[-1]
    assert report == {"folder": f"file://{folder}", "sources": len(citations), "headline": digest["headline"]}
    written = (folder / "answer.md").read_text()
    assert written.startswith(answer) and f"1. [{citations[0]['title']}]({X_POST})" in written
    assert json.loads((folder / "citations.json").read_text()) == citations
    assert json.loads((folder / "digest.json").read_text()) == digest

    # usage: the two searches counted (and priced by xAI), the follow-up billed its history as cached
    usage = xcom_values(dr, "research", "xai_usage")[-1]
    assert usage["kind"] == "responses" and usage["completion_id"] == response_id
    assert usage["num_server_side_tools_used"] == 2
    assert usage["server_side_tool_usage"] == {"web_search_calls": 1, "x_search_calls": 1}
    assert usage["cost_source"] == "xai" and usage["cost_usd"] >= 2 * 5 / 1000  # two $5-per-1,000 calls
    follow_usage = xcom_values(dr, "summarise", "xai_usage")[-1]
    assert follow_usage["num_server_side_tools_used"] == 0 and follow_usage["cached_tokens"] > 0

    out = capsys.readouterr().out
    print(out, end="")  # handed back for the error-line check in tests/dags/conftest.py
    # stream=True: one log line per tool step, the sources numbered at the end
    assert "xAI | x_search: " in out and "xAI | web_search: " in out
    assert f"xAI | [1] {X_POST}" in out
    lines = [line for line in out.splitlines() if "xAI usage:" in line]
    by_tool = "server_side_tool_usage=web_search_calls:1,x_search_calls:1"
    tool_lines = [line for line in lines if by_tool in line]
    assert len(tool_lines) == 1 and "num_server_side_tools_used=2" in tool_lines[0], lines


def test_example_search_without_logical_date_searches_the_day_before_the_run(
    dagbag: Any, xai_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run triggered without a logical date (as the REST API and the e2e test do) has no data
    interval: the window is then the day before the run started, and the default output place
    (XAI_EXAMPLE_DATA) is used."""
    monkeypatch.setenv("XAI_EXAMPLE_DATA", f"file://{tmp_path}")
    # output_uri given as None explicitly: under dag.test() a run's conf is written into the
    # tasks' params in place, so another test's output_uri would otherwise leak into this run.
    dr = run_dag(dagbag, "example_xai_search", logical_date=None, run_conf={"output_uri": None})
    assert dr.logical_date is None and dr.data_interval_start is None
    states = task_states(dr)
    assert states == {(task, -1): "success" for task in ("research", "summarise", "save")}, states

    end = pendulum.instance(dr.run_after).date()
    start, end = (end - datetime.timedelta(days=1)).isoformat(), end.isoformat()
    first = xai_server.requests("/responses", "POST")[0]
    assert first.body["tools"][0] == {"type": "x_search", "from_date": start, "to_date": end}
    (question,) = input_texts(first.body["input"])
    assert f"between {start} and {end}?" in question
    report = xcom_values(dr, "save")[-1]
    assert report["folder"] == f"file://{tmp_path}/search/solar-sails/{end}"
    assert (tmp_path / "search" / "solar-sails" / end / "answer.md").exists()
