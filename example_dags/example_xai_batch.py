"""Classify support tickets overnight with xAI's Batch API, at the batch discount.

``write_tickets`` writes a few hundred generated tickets as JSONL; ``classify`` submits them
as one xAI batch, waits in the triggerer (no worker slot is held), validates every answer
against ``TicketLabel`` and writes one JSON line per ticket; ``summarise`` counts the labels
from that file. Only a small summary travels through XCom. A retried ``classify`` re-attaches
to the batch it already submitted instead of paying twice.

Set ``XAI_EXAMPLE_DATA`` to an object-storage URI (``s3://bucket/prefix``...) to keep the
files somewhere durable; by default they go to the local temp directory.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, Literal

import pendulum
from airflow.sdk import ObjectStoragePath, dag, task
from pydantic import BaseModel

from airflow_provider_xai.operators.batch import XAIBatchOperator

TICKETS = 300
TOPICS = {
    "billing": "I was charged twice for invoice {n}; please fix my billing.",
    "bug": "The export button crashes the app on screen {n}; looks like a bug.",
    "account": "I cannot log in to account {n} after the password reset.",
    "praise": "Order {n} arrived early, thank you, high praise for the team!",
}


class TicketLabel(BaseModel):
    """What the model returns for each ticket."""

    category: Literal["billing", "bug", "account", "praise"]
    urgent: bool


@dag(
    dag_id="example_xai_batch",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "xai", "batch"],
)
def example_xai_batch() -> None:
    @task(multiple_outputs=True)
    def write_tickets(run_id: str | None = None) -> dict[str, str]:
        """Generate the night's tickets as JSONL; return where the input and output live."""
        data = os.environ.get("XAI_EXAMPLE_DATA", f"file://{tempfile.gettempdir()}/airflow-xai-examples")
        folder = ObjectStoragePath(data) / "batch" / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "manual")
        folder.mkdir(parents=True, exist_ok=True)
        topics = list(TOPICS.values())
        with (folder / "tickets.jsonl").open("w") as handle:
            for n in range(TICKETS):
                ticket = {"custom_id": f"ticket-{n:04d}", "prompt": topics[n % len(topics)].format(n=n)}
                handle.write(json.dumps(ticket) + "\n")
        return {"inputs": str(folder / "tickets.jsonl"), "output": str(folder / "labels.jsonl")}

    paths = write_tickets()

    classify = XAIBatchOperator(
        task_id="classify",
        inputs=paths["inputs"],
        output_path=paths["output"],
        model="grok-4-1-fast-non-reasoning",
        system_prompt="Label the support ticket: its category, and whether it is urgent.",
        response_format=TicketLabel,
        max_tokens=50,
        poll_interval=60,
        batch_timeout=12 * 3600,
        retries=2,
    )

    @task
    def summarise(summary: dict[str, Any]) -> dict[str, Any]:
        """Count labels from the results file (not from XCom)."""
        counts: dict[str, int] = {}
        urgent = 0
        with ObjectStoragePath(summary["output_path"]).open("r") as handle:
            for line in handle:
                row = json.loads(line)
                if row["status"] == "succeeded":
                    counts[row["answer"]["category"]] = counts.get(row["answer"]["category"], 0) + 1
                    urgent += bool(row["answer"]["urgent"])
        report = {
            "tickets": summary["requests"],
            "labelled": summary["succeeded"],
            "failed": summary["failed"] + summary["cancelled"] + summary["missing"],
            "by_category": dict(sorted(counts.items())),
            "urgent": urgent,
            "cost_usd": summary["usage"]["cost_usd"],
        }
        print(json.dumps(report, indent=2))
        return report

    summarise(classify.output)


example_xai_batch()
