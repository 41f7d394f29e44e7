"""Keep an xAI collection in sync with a folder, ask it a question with citations, speak the answer.

1. ``sync_docs`` mirrors the folder ``sample_docs/`` (three pages of a staff handbook) into the
   collection ``params.collection`` (created when missing): new and changed files are uploaded,
   removed ones taken out, unchanged ones cost nothing. It waits in the triggerer until the
   documents are indexed and returns what it did; the collection id goes to XCom
   ``xai_collection_id``. Collections need the connection's management key.
2. ``ask`` answers ``params.question`` with the ``file_search`` tool over that collection (its
   id rendered from the XCom); the handbook pages it used go to XCom ``xai_citations``.
3. ``speak`` turns the answer into a WAV file in object storage; ``transcribe`` listens to it
   again (a check that the audio says the answer).
4. ``report`` gathers the sync counts, the answer, its sources and the audio's path.

Audio goes under the ``output_uri`` param (``s3://bucket/prefix``...), else ``XAI_EXAMPLE_DATA``,
else the local temp directory. Runs against xAI when the ``xai_default`` connection (or
``XAI_API_KEY`` and ``XAI_MANAGEMENT_KEY``) points there, or against the bundled local server
(``python -m airflow_provider_xai.testing``), whose search reads the uploaded files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, XComArg, dag, task

from airflow_provider_xai import tools
from airflow_provider_xai.operators.collections import XAICollectionSyncOperator
from airflow_provider_xai.operators.responses import XAIResponsesOperator
from airflow_provider_xai.operators.voice import XAISpeechToTextOperator, XAITextToSpeechOperator

SAMPLE_DOCS = f"file://{Path(__file__).resolve().parent / 'sample_docs'}"
DEFAULT_OUTPUT = os.environ.get("XAI_EXAMPLE_DATA") or f"file://{tempfile.gettempdir()}/airflow-xai-examples"
COLLECTION_ID = "{{ ti.xcom_pull(task_ids='sync_docs', key='xai_collection_id') }}"
RUN_FOLDER = "{{ params.output_uri or '" + DEFAULT_OUTPUT + "' }}/collections/{{ run_id | replace(':', '-') }}"


@dag(
    dag_id="example_xai_collections",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai", "collections", "voice"],
    params={
        "collection": Param("airflow-example-handbook", type="string", minLength=1),
        "question": Param("How many vacation days do new employees get?", type="string", minLength=1),
        "output_uri": Param(None, type=["null", "string"], description="Where the audio goes (file://, s3://...)."),
    },
)
def example_xai_collections() -> None:
    sync = XAICollectionSyncOperator(
        task_id="sync_docs",
        source=SAMPLE_DOCS,
        collection_name="{{ params.collection }}",
        pattern="*.md",
        poll_interval=2,
    )

    ask = XAIResponsesOperator(
        task_id="ask",
        prompt="{{ params.question }} Answer in two sentences from the handbook.",
        tools=[tools.file_search(COLLECTION_ID, max_num_results=3)],  # the id is rendered from XCom
        include=["no_inline_citations"],  # plain text to speak; the sources are in xai_citations
    )

    speak = XAITextToSpeechOperator(
        task_id="speak",
        text="{{ ti.xcom_pull(task_ids='ask') }}",
        output_path=RUN_FOLDER + "/answer.wav",
        codec="wav",
        language="en",
    )

    transcribe = XAISpeechToTextOperator(
        task_id="transcribe",
        audio="{{ ti.xcom_pull(task_ids='speak', key='xai_audio_path') }}",
        language="en",
    )
    sync >> ask >> speak >> transcribe

    @task
    def report(
        synced: dict[str, Any], answer: str, citations: list[dict[str, str]], audio: dict[str, Any],
        heard: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        """What the run did, in one XCom."""
        summary = {
            "collection_id": synced["collection_id"],
            "synced": {k: synced[k] for k in ("added", "replaced", "removed", "unchanged", "indexed")},
            "failed": synced["failed"],
            "answer": answer,
            "sources": [c.get("title") or c["url"] for c in citations],
            "audio": audio["path"],
            "heard_the_answer": heard["text"].strip() == answer.strip(),
        }
        print(summary)
        return summary

    report(sync.output, ask.output, XComArg(ask, key="xai_citations"), speak.output, transcribe.output)


example_xai_collections()
