"""Look at images landed by an earlier step and turn them into structured data.

1. ``list_images`` lists the JPEG/PNG files in a folder (an ``ObjectStoragePath``; a local
   ``file://`` folder here so the example runs offline; swap in
   ``ObjectStoragePath("s3://bucket/incoming/", conn_id="aws_default")`` for a bucket).
2. ``describe_image`` is one mapped ``XAIVisionOperator`` task instance per image, answering
   into the ``ImageFacts`` pydantic model.
3. ``pick_cover`` sends all the images in one request (the list arrives from the upstream XCom)
   to choose a cover image.
4. ``write_report`` writes one JSON report (under ``$AIRFLOW_HOME/xai_reports/``) and returns
   its path and a summary, including tokens and cost from the ``xai_usage`` XComs.

Runs against xAI when the ``xai_default`` connection (or ``XAI_API_KEY``) points there, or
against the bundled local server (``python -m airflow_provider_xai.testing``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import ObjectStoragePath, dag, task
from pydantic import BaseModel, Field

from airflow_provider_xai.operators.vision import XAIVisionOperator

SAMPLE_IMAGES = ObjectStoragePath(f"file://{Path(__file__).resolve().parent / 'sample_images'}")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class ImageFacts(BaseModel):
    """What the vision step extracts from each image."""

    caption: str = Field(description="One-line caption for a catalogue")
    objects: list[str] = Field(description="The main objects visible")
    has_text: bool = Field(description="Whether the image contains written text")


@dag(
    dag_id="example_xai_vision",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai", "vision"],
)
def example_xai_vision() -> None:
    @task
    def list_images(folder: ObjectStoragePath = SAMPLE_IMAGES) -> list[ObjectStoragePath]:
        # The name only picks candidates; the operator checks each file's real format.
        return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=str)

    images = list_images()

    facts = XAIVisionOperator.partial(
        task_id="describe_image",
        system_prompt="You catalogue images for a data team. Be factual and brief.",
        prompt=(
            "Describe this image: a one-line caption, the main objects, "
            "and whether it contains any written text."
        ),
        response_format=ImageFacts,
        detail="low",
    ).expand(images=images)

    # The whole list in one request. Passing the XComArg keeps the paths as objects; a Jinja
    # string such as "{{ ti.xcom_pull(...) }}" also works for lists of plain paths or URLs.
    cover = XAIVisionOperator(
        task_id="pick_cover",
        prompt="These images are numbered from 1 in order. Which one would make the best cover, and why?",
        images=images,
        max_tokens=300,
    )

    @task
    def write_report(
        images: list[ObjectStoragePath], facts: list[dict[str, Any]], cover: str, **context: Any
    ) -> dict:
        pulled = context["ti"].xcom_pull(task_ids=["describe_image", "pick_cover"], key="xai_usage")
        usage = [u for u in pulled or [] if u]
        # Slice the mapped results to fetch them all in one request: iterating the lazy XCom
        # sequence (a for loop, list(), zip()) asks for one item past its end, which Airflow
        # logs as an "XCom not found" error.
        entries = [{"image": p.name, "path": str(p), **f} for p, f in zip(images, facts[:], strict=True)]
        summary = {
            "images": len(entries),
            "with_text": [e["image"] for e in entries if e["has_text"]],
            "prompt_tokens": sum(u["prompt_tokens"] for u in usage),  # the images are billed as input
            "total_tokens": sum(u["total_tokens"] for u in usage),
            "cost_usd": round(sum(u["cost_usd"] or 0.0 for u in usage), 6),
        }
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        run = re.sub(r"[^A-Za-z0-9_.-]", "_", context["run_id"])
        out = ObjectStoragePath(f"file://{home}/xai_reports/vision_{run}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        report = {"run_id": context["run_id"], "summary": summary, "cover": cover, "images": entries}
        out.write_text(json.dumps(report, indent=2))
        print(f"Wrote {out}: {summary}")
        return {"path": str(out), "summary": summary}

    write_report(images, facts.output, cover.output)


example_xai_vision()
