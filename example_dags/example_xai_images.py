"""Product images from a small table: make them, edit one, check them all, report.

1. ``products`` is a small table (name, colour, material): in a real DAG, a query.
2. ``product_shot`` is one mapped ``XAIImageOperator`` per product (a templated prompt): the
   image lands in object storage under a name fixed per DAG, run, task, map index and image
   number, and only its path, revised prompt, model and cost travel in XCom. A product that
   xAI's moderation refuses is reported, not failed (``on_moderated="continue"``).
3. ``lifestyle_edit`` edits the first product's image (an edit reads its input from object
   storage, checked as the vision operator checks images).
4. ``check_image`` runs the vision operator over every image made, answering ``ImageCheck``.
5. ``write_report`` writes a JSON report next to the images: made, checked, rejected, cost.

Set ``XAI_EXAMPLE_DATA`` to an object-storage URI (``s3://bucket/prefix``...) to keep the images
somewhere durable; by default they go to the local temp directory.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

import pendulum
from airflow.sdk import ObjectStoragePath, dag, task
from pydantic import BaseModel, Field

from airflow_provider_xai.operators.images import XAIImageOperator
from airflow_provider_xai.operators.vision import XAIVisionOperator


def media_folder() -> str:
    """Where the files go: ``$XAI_EXAMPLE_DATA/media``, read when the task runs."""
    data = os.environ.get("XAI_EXAMPLE_DATA", f"file://{tempfile.gettempdir()}/airflow-xai-examples")
    return f"{data.rstrip('/')}/media"
PRODUCTS = [
    {"name": "Harbour mug", "colour": "sea green", "material": "glazed stoneware"},
    {"name": "Dune lamp", "colour": "sand", "material": "linen and oak"},
    {"name": "Fjord bottle", "colour": "slate blue", "material": "brushed steel"},
]


class ImageCheck(BaseModel):
    """What the vision step says about each generated image."""

    acceptable: bool = Field(description="A clean catalogue photo of one product, nothing odd in it")
    issues: list[str] = Field(description="What is wrong with it, if anything")


@dag(
    dag_id="example_xai_images",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai", "images"],
)
def example_xai_images() -> None:
    folder = task(media_folder)()

    @task
    def products() -> list[dict[str, str]]:
        return PRODUCTS

    @task
    def prompts(rows: list[dict[str, str]]) -> list[str]:
        return [
            f"Studio catalogue photo of the {r['name']}, a {r['colour']} {r['material']} product, "
            "on a plain white background, soft light"
            for r in rows
        ]

    shots = XAIImageOperator.partial(
        task_id="product_shot",
        output_folder=folder,
        aspect_ratio="1:1",
        on_moderated="continue",
    ).expand(prompt=prompts(products()))

    edit = XAIImageOperator(
        task_id="lifestyle_edit",
        prompt="Put this product on a sunny kitchen table, keep the product exactly as it is",
        images="{{ ti.xcom_pull(task_ids='product_shot', map_indexes=0)['paths'][0] }}",
        output_folder=folder,
    )
    shots >> edit

    @task
    def made(shots: list[dict[str, Any]], edit: dict[str, Any]) -> list[str]:
        """Every image path made (slicing fetches the mapped results in one request)."""
        return [path for shot in shots[:] for path in shot["paths"]] + edit["paths"]

    paths = made(shots.output, edit.output)
    checks = XAIVisionOperator.partial(
        task_id="check_image",
        prompt="Check this generated catalogue image: is it a clean photo of one product?",
        response_format=ImageCheck,
        detail="low",
        max_tokens=300,
    ).expand(images=paths)

    @task
    def write_report(
        shots: list[dict[str, Any]], edit: dict[str, Any], paths: list[str], checks: list[dict[str, Any]],
        folder: str, **context: Any,
    ) -> dict[str, Any]:
        results = [*shots[:], edit]
        pulled = context["ti"].xcom_pull(task_ids=["product_shot", "lifestyle_edit", "check_image"], key="xai_usage")
        usage = [u for u in pulled or [] if u]
        verdicts = [{"path": p, **c} for p, c in zip(paths, checks[:], strict=True)]
        summary = {
            "made": len(paths),
            "refused_by_moderation": sum(len(r["refused"]) for r in results),
            "checked": len(verdicts),
            "rejected": sum(not v["acceptable"] for v in verdicts),
            "cost_usd": round(sum(u["cost_usd"] or 0.0 for u in usage), 6),
            "image_cost_usd": round(sum(r["cost_usd"] or 0.0 for r in results), 6),
        }
        run = re.sub(r"[^A-Za-z0-9_.-]", "_", context["run_id"])
        out = ObjectStoragePath(folder) / f"report_{run}.json"
        out.write_text(json.dumps({"run_id": context["run_id"], "summary": summary, "images": verdicts}, indent=2))
        print(f"Wrote {out}: {summary}")
        return {"path": str(out), "summary": summary}

    write_report(shots.output, edit.output, paths, checks.output, folder)


example_xai_images()
