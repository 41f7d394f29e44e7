"""A daily news digest: Grok searches X and the web for a topic, then summarises its own answer.

``research`` asks about ``params.topic`` (default "solar sails") with two of xAI's server-side
tools: ``x_search`` limited to the run's date window and ``web_search``. The tools run inside
xAI during the one request (the Responses API, chosen because ``tools`` is given); the answer
is streamed into the task log with one line per search, and its sources go to XCom
``xai_citations``. ``summarise`` continues the same conversation with ``previous_response_id``
(pulled from ``research``'s XCom ``xai_response_id``): it sends only the new question, xAI
supplies the rest, and the answer is validated against ``TopicDigest``. ``save`` writes the
answer, its sources and the digest to object storage; only a small summary travels on through
XCom.

The window is the run's data interval, ``data_interval_start | ds`` to ``data_interval_end | ds``
(both inclusive for ``x_search``); a run without a logical date (triggered manually without
one) has no data interval and searches the day before it started instead. The schedule is
``@daily`` as a trigger timetable with a one-day interval: Airflow 3 reads a plain
``schedule="@daily"`` as a trigger timetable whose data interval is a single point (start ==
end == the run's time), which would search only the day that has just begun.

Output goes to the ``output_uri`` param (an object-storage URI: ``s3://bucket/prefix``...),
else ``XAI_EXAMPLE_DATA``, else the local temp directory. Runs against xAI when the
``xai_default`` connection (or ``XAI_API_KEY``) points there, or against the bundled local
server (``python -m airflow_provider_xai.testing``), whose searches are deterministic.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
from typing import Any, Literal

import pendulum
from airflow.sdk import CronTriggerTimetable, ObjectStoragePath, Param, XComArg, dag, task
from pydantic import BaseModel

from airflow_provider_xai import tools
from airflow_provider_xai.operators.responses import XAIResponsesOperator

#: The run's date window as templates: its data interval, else the day before the run started.
FROM_DATE = "{{ (data_interval_start | default(dag_run.run_after - macros.timedelta(days=1), true)) | ds }}"
TO_DATE = "{{ (data_interval_end | default(dag_run.run_after, true)) | ds }}"


class TopicDigest(BaseModel):
    """What the second turn extracts from the first answer."""

    topic: str
    headline: str
    developments: list[str]
    tone: Literal["positive", "neutral", "negative", "mixed"]


@dag(
    dag_id="example_xai_search",
    schedule=CronTriggerTimetable("@daily", timezone="UTC", interval=datetime.timedelta(days=1)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai"],
    params={
        "topic": Param("solar sails", type="string", minLength=1, description="What to follow."),
        "output_uri": Param(
            None,
            type=["null", "string"],
            description="Where to write (file://, s3://...); default: XAI_EXAMPLE_DATA, else a temp dir.",
        ),
    },
)
def example_xai_search() -> None:
    research = XAIResponsesOperator(
        task_id="research",
        prompt=(
            "What happened with {{ params.topic }} between " + FROM_DATE + " and " + TO_DATE + "? "
            "Search X and the web, list the most important developments, and cite a source for each."
        ),
        tools=[
            # Templates are rendered with the task's other fields, then checked (YYYY-MM-DD, order).
            tools.x_search(from_date=FROM_DATE, to_date=TO_DATE),
            tools.web_search(),
        ],
        include=["no_inline_citations"],  # plain text in the answer; the sources are in xai_citations
        max_turns=6,  # caps the agent's tool-calling turns (each search is billed)
        stream=True,  # the answer and one line per search in the task log
    )

    summarise = XAIResponsesOperator(
        task_id="summarise",
        prompt="Turn your answer into a digest: a one-line headline, the key developments, the overall tone.",
        previous_response_id="{{ ti.xcom_pull(task_ids='research', key='xai_response_id') }}",
        response_format=TopicDigest,
    )
    research >> summarise

    @task
    def save(
        answer: str,
        citations: list[dict[str, str]],
        digest: dict[str, Any],
        day: str,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the answer, its sources and the digest to object storage; return where."""
        params = params or {}
        base = (
            params.get("output_uri")
            or os.environ.get("XAI_EXAMPLE_DATA")
            or f"file://{tempfile.gettempdir()}/airflow-xai-examples"
        )
        slug = re.sub(r"[^a-z0-9]+", "-", str(params.get("topic", "topic")).lower()).strip("-") or "topic"
        folder = ObjectStoragePath(base) / "search" / slug / day
        folder.mkdir(parents=True, exist_ok=True)
        sources = "\n".join(
            f"{n}. [{c.get('title') or c['url']}]({c['url']})" for n, c in enumerate(citations, 1)
        )
        (folder / "answer.md").write_text(f"{answer}\n\n## Sources\n\n{sources or '(none)'}\n")
        (folder / "citations.json").write_text(json.dumps(citations, indent=2))
        (folder / "digest.json").write_text(json.dumps(digest, indent=2))
        report = {"folder": str(folder), "sources": len(citations), "headline": digest["headline"]}
        print(json.dumps(report, indent=2))
        return report

    # A @task's arguments are templated too: ``day`` is the last day of the window.
    save(research.output, XComArg(research, key="xai_citations"), summarise.output, day=TO_DATE)


example_xai_search()
