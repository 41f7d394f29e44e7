"""A short product teaser: a still image, then a five-second video animated from it.

``still`` makes the first frame with ``XAIImageOperator``; ``teaser`` animates it with
``XAIVideoOperator`` (image-to-video). Video jobs take minutes, so ``teaser`` waits in the
triggerer, with its progress in the task log, holding no worker slot; its request id is in XCom
(and the task state store) at once, so a retry re-attaches instead of paying twice. The MP4 is
streamed into object storage as soon as it is ready; ``announce`` reports where and at what cost.

Set ``XAI_EXAMPLE_DATA`` to an object-storage URI (``s3://bucket/prefix``...) to keep the video
somewhere durable; by default it goes to the local temp directory.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_xai.operators.images import XAIImageOperator
from airflow_provider_xai.operators.video import XAIVideoOperator


def media_folder() -> str:
    """Where the files go: ``$XAI_EXAMPLE_DATA/media``, read when the task runs."""
    data = os.environ.get("XAI_EXAMPLE_DATA", f"file://{tempfile.gettempdir()}/airflow-xai-examples")
    return f"{data.rstrip('/')}/media"


@dag(
    dag_id="example_xai_video",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai", "video"],
)
def example_xai_video() -> None:
    folder = task(media_folder)()
    still = XAIImageOperator(
        task_id="still",
        prompt="A paper boat on a calm blue lake at sunrise, wide shot",
        aspect_ratio="16:9",
        output_folder=folder,
    )

    teaser = XAIVideoOperator(
        task_id="teaser",
        prompt="The paper boat drifts slowly across the lake as the sun rises",
        image="{{ ti.xcom_pull(task_ids='still')['paths'][0] }}",
        duration=5,
        aspect_ratio="16:9",
        output_folder=folder,
        poll_interval=2.0,
    )

    @task
    def announce(video: dict[str, Any], still: dict[str, Any]) -> dict[str, Any]:
        cost = (video["cost_usd"] or 0.0) + (still["cost_usd"] or 0.0)
        print(f"Teaser: {video['path']} ({video['duration']} s, {video['bytes']} bytes); cost ${cost:.4f}")
        return {"video": video["path"], "seconds": video["duration"], "cost_usd": round(cost, 6)}

    still >> teaser
    announce(teaser.output, still.output)


example_xai_video()
