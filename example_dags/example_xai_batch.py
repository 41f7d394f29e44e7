"""Classify support tickets overnight with xAI's Batch API, at the batch discount.

``write_tickets`` writes a few hundred generated tickets as JSONL; ``classify`` submits them
as one xAI batch, waits in the triggerer (no worker slot is held), validates every answer
against ``TicketLabel`` and writes one JSON line per ticket. Beside it,
``find_help_articles`` sends a batch of Responses requests with the web search tool (xAI runs
the searches inside the batch) to find a help-centre article per category. ``summarise``
counts the labels and picks the cited articles from those files. Only small summaries travel
through XCom. A retried or cleared batch task re-attaches to the batch it already submitted
for the same inputs instead of paying twice, and submits anew when the inputs changed.

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
from airflow_provider_xai.tools import web_search

TICKETS = 300
TOPICS = {
    "billing": "I was charged twice for invoice {n}; please fix my billing.",
    "bug": "The export button crashes the app on screen {n}; looks like a bug.",
    "account": "I cannot log in to account {n} after the password reset.",
    "praise": "Order {n} arrived early, thank you, high praise for the team!",
}
#: One web search per category: the help-centre article support replies should link.
HELP_SEARCHES = {
    "billing": "Help-centre article on duplicate charges and refunds",
    "bug": "Help-centre article on reporting an app crash",
    "account": "Help-centre article on login problems after a password reset",
    "praise": "Help-centre article on sharing customer feedback with the team",
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
        return {
            "inputs": str(folder / "tickets.jsonl"),
            "output": str(folder / "labels.jsonl"),
            "help": str(folder / "help_articles.jsonl"),
        }

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

    find_help_articles = XAIBatchOperator(
        task_id="find_help_articles",
        inputs=[{"custom_id": category, "prompt": search} for category, search in HELP_SEARCHES.items()],
        output_path=paths["help"],
        tools=[web_search()],  # tools make these Responses requests (api="auto")
        system_prompt="Name the one article a support reply should link, and cite it.",
        max_tokens=200,
        poll_interval=60,
        batch_timeout=12 * 3600,
        retries=2,
    )

    @task
    def summarise(summary: dict[str, Any], help_summary: dict[str, Any]) -> dict[str, Any]:
        """Count labels and pick each category's cited article from the result files (not XCom)."""
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
            "help_articles": help_articles(help_summary["output_path"]),
            "web_searches": help_summary["usage"]["num_server_side_tools_used"],
        }
        print(json.dumps(report, indent=2))
        return report

    summarise(classify.output, find_help_articles.output)


def help_articles(path: str) -> dict[str, str | None]:
    """Each category's first cited source, from the Responses batch's output file."""
    with ObjectStoragePath(path).open("r") as handle:
        rows = [json.loads(line) for line in handle]
    return {row["custom_id"]: (row["citations"] or [None])[0] for row in rows if row["status"] == "succeeded"}


example_xai_batch()
