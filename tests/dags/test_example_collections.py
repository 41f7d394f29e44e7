"""example_xai_collections end to end under dag.test() against the local xAI server: the folder
synced into a collection (the Management API, with its own key), a question answered from it
with citations, the answer spoken to a WAV file and heard back; a second run changes nothing."""

from __future__ import annotations

import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.dags.conftest import REPO, run_dag, task_states, xcom_values

TASKS = ("sync_docs", "ask", "speak", "transcribe", "report")
MUTATIONS = (("POST", "/v1/files"), ("POST", "/documents/"), ("DELETE", ""))


def mutations(journal: list[Any]) -> list[str]:
    """The uploads, attaches and deletes a journal shows."""
    return [f"{e.method} {e.path}" for e in journal
            if any(e.method == m and (p in e.path) for m, p in MUTATIONS)]  # fmt: skip


def usage_page_kinds(dag_run: Any) -> dict[str, dict[str, Any]]:
    """The usage page's rows by kind for the run's DAG (today, UTC, and the days around)."""
    from airflow.utils.session import create_session

    from airflow_provider_xai.dashboard.query import Window, usage_report

    today = datetime.now(timezone.utc).date()
    with create_session() as session:
        report = usage_report(session, {dag_run.dag_id}, Window(today - timedelta(days=1), today + timedelta(days=1)))
    return {row["kind"]: row for row in report["by_kind"]}


def test_example_collections_dag_runs_green(dagbag: Any, xai_server: Any, tmp_path: Path) -> None:
    conf = {"output_uri": f"file://{tmp_path}"}
    dr = run_dag(dagbag, "example_xai_collections", run_conf=conf)
    assert task_states(dr) == {(task, -1): "success" for task in TASKS}, task_states(dr)
    docs = sorted(p.name for p in (REPO / "example_dags" / "sample_docs").glob("*.md"))

    report = xcom_values(dr, "report")[-1]
    assert report["synced"] == {"added": len(docs), "replaced": 0, "removed": 0, "unchanged": 0,
                                "indexed": len(docs)}  # fmt: skip
    assert report["failed"] == []
    assert xcom_values(dr, "sync_docs", "xai_collection_id")[-1] == report["collection_id"]
    # the question was answered from the uploaded handbook, which the citations name
    assert "25 vacation days" in report["answer"], report["answer"]
    assert "vacation.md" in report["sources"], report["sources"]
    (question,) = [e for e in xai_server.requests("/responses", "POST")]
    assert question.body["tools"] == [{"type": "file_search", "vector_store_ids": [report["collection_id"]],
                                       "max_num_results": 3}]  # fmt: skip
    # the answer spoken to a real WAV file under output_uri, and heard back word for word
    audio = Path(urlsplit(report["audio"]).path)
    assert audio.is_relative_to(tmp_path), audio
    with wave.open(str(audio)) as spoken:
        assert spoken.getnframes() > 0 and spoken.getframerate() > 0
    assert report["heard_the_answer"] is True
    for task, unit in (("speak", "characters"), ("transcribe", "audio_seconds")):
        usage = xcom_values(dr, task, "xai_usage")[-1]
        assert usage["unit"] == unit and usage["units"] > 0 and usage["cost_usd"] > 0, usage
    # the voice calls are on the usage page, by kind, with their cost
    kinds = usage_page_kinds(dr)
    assert kinds["tts"]["requests"] == kinds["stt"]["requests"] == 1, kinds
    assert kinds["tts"]["cost_usd"] > 0 and kinds["stt"]["cost_usd"] > 0 and kinds["responses"]["requests"] == 1
    # collections went to the Management API with its own key, the API key never
    assert all(e.path.startswith("/management/") for e in xai_server.journal if "/collections" in e.path)
    assert len(mutations(xai_server.journal)) == 2 * len(docs)  # one upload and one attach each

    # a second run: nothing changed, so nothing is uploaded, attached or deleted
    before = len(xai_server.journal)
    again = run_dag(dagbag, "example_xai_collections", run_conf=conf)
    assert set(task_states(again).values()) == {"success"}
    assert mutations(xai_server.journal[before:]) == []
    second = xcom_values(again, "report")[-1]
    assert second["collection_id"] == report["collection_id"]
    assert second["synced"] == {"added": 0, "replaced": 0, "removed": 0, "unchanged": len(docs),
                                "indexed": len(docs)}  # fmt: skip
