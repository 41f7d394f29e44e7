"""The results of a batch task: each answer read once in the shape it came in (a kind of
``batch_inputs.KINDS``), its usage record made by its endpoint's record function at the batch
discount, and one output line per input, joined by the whole request name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.operators.batch_inputs import (
    KINDS,
    KINDS_BY_WIRE,
    PreparedRequest,
    split_request_id,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_xai.pricing import Price
    from airflow_provider_xai.schemas import Batch, BatchResult
    from airflow_provider_xai.structured import OutputSpec
    from airflow_provider_xai.usage import UsageRecord


@dataclass(frozen=True)
class Answer:
    """One finished request, read: the answer (a ChatCompletion or Response), or why not."""

    result: BatchResult
    answer: Any = None
    error: str | None = None


def read_result(result: BatchResult) -> Answer:
    """Read a result in its shape; a failed, malformed or unknown one carries its error."""
    if (error := result.error) is not None:
        return Answer(result, error=error)
    kind = KINDS_BY_WIRE.get(result.response_kind or "")
    if kind is None:
        return Answer(result, error=f"unsupported batch answer kind: {result.response_kind}")
    model, _record = kind.answer()
    try:
        return Answer(result, answer=result.parsed(model))
    except XAIError as exc:
        return Answer(result, error=exc.message)


def usage_records(
    answers: Mapping[str, Answer], prices: Mapping[str, Price], discount: float
) -> dict[str, UsageRecord]:
    """One usage record (``kind="batch"``) per billed answer, by request name, through the
    record function of the endpoint whose shape the answer came in."""
    records = {}
    for request_id, read in answers.items():
        if read.answer is None:
            continue
        _model, record_of = KINDS_BY_WIRE[read.result.response_kind or ""].answer()
        with contextlib.suppress(XAIError):
            if (record := record_of(read.answer, prices, discount=discount)) is not None:
                record.kind, record.request_id = "batch", split_request_id(request_id)[0]
                records[request_id] = record
    return records


def cited_urls(answer: Any) -> list[str]:
    """The sources an answer cites: a Response's annotations, a completion's ``citations``."""
    found = getattr(answer, "citations", None)
    found = found() if callable(found) else found
    return [str(getattr(c, "url", c)) for c in found or []]


def output_line(
    index: int,
    req: PreparedRequest,
    read: Answer | None,
    record: UsageRecord | None,
    batch: Batch,
    spec: OutputSpec | None,
    other: str | None = None,
) -> dict[str, Any]:
    """The output line of one input. ``other`` names an answer of the batch for the same
    custom id but another request (the input changed after the batch was submitted)."""
    from airflow_provider_xai.usage import TOKEN_FIELDS

    line: dict[str, Any] = {"custom_id": req.custom_id, "index": index, "api": req.kind, "status": "succeeded"}
    line.update(answer=None, error=None, model=None, usage=None, citations=[])
    if req.refused is not None:
        line.update(status="failed", error=req.refused)
        return line
    if read is None:
        line["status"] = "cancelled" if batch.ended else "missing"
        line["error"] = (
            f"the input changed after xAI batch {batch.batch_id} was submitted: its answer is for "
            "the earlier request and is not used" if other else
            f"no result: the batch is {batch.outcome} and this request did not run"
        )  # fmt: skip
        return line
    if record is not None:
        line["model"] = record.model
        line["usage"] = {**{f: getattr(record, f) for f in TOKEN_FIELDS}, "cost_usd": record.cost_usd}
    if read.answer is None:
        line.update(status="failed", error=read.error)
        return line
    if KINDS[req.kind].files:  # its answer is files: the operator writes them (batch_media.py)
        return line
    line["citations"] = cited_urls(read.answer)
    try:
        text = read.answer.text
        line["answer"] = text if spec is None else spec.parse(text, read.answer)
    except XAIError as exc:
        line.update(status="failed", error=exc.message)
    return line


def write_jsonl(path: ObjectStoragePath, lines: list[dict[str, Any]]) -> None:
    with contextlib.suppress(OSError, NotImplementedError):  # object stores have no directories
        path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(jsonl_line(line) for line in lines)


def jsonl_line(line: dict[str, Any]) -> str:
    """One line as UTF-8-safe JSON text: a value with a lone surrogate (which UTF-8 cannot
    encode) is written with ``\\u`` escapes instead of failing the whole file."""
    text = json.dumps(line, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(line)
    return text + "\n"


__all__ = ["Answer", "cited_urls", "jsonl_line", "output_line", "read_result", "usage_records", "write_jsonl"]
