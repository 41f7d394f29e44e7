"""The JSONL input files of batches on the local server: an uploaded file's lines read into batch
requests (the upload itself is the Files API's route, ``files_routes.py``).

* A file's lines are ``{"custom_id", "method": "POST", "url", "body"}``, ``url`` one of
  ``batch_run.URLS``; a line that is not such an object refuses the batch's creation (400,
  naming the line). Blank lines are skipped.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_xai.testing.batch_run import URLS
from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.files import ServedFile


def read_lines(stored: ServedFile) -> list[tuple[str, str, dict[str, Any]]]:
    """(custom_id, kind, body) of every line of an input file; 400 naming a bad line."""
    out = []
    for n, raw in enumerate(stored.content.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise ServedError(400, f"Invalid input file {stored.id}: line {n} is not JSON ({exc}).") from None
        if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
            raise ServedError(400, f"Invalid input file {stored.id}: line {n} needs a 'body' object.")
        if line.get("url") not in URLS or line.get("method", "POST") != "POST":
            raise ServedError(
                400, f"Invalid input file {stored.id}: line {n}: expected method POST and a url in {sorted(URLS)}."
            )
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise ServedError(400, f"Invalid input file {stored.id}: line {n} needs a custom_id.")
        out.append((custom_id, URLS[line["url"]], line["body"]))
    return out

