"""The usage records the xAI usage page counts: one SQL query, each XCom value decoded once.

What counts (so nothing is counted twice): per task instance (DAG run, task, map index), the
records of its ``xai_usage_ledger`` XCom, which holds every billed response of every attempt
(batch results are only there); the ``xai_usage`` XCom (the latest single record, also in the
ledger) counts only for a task instance that has no ledger. The usage sensor's roll-ups are
never counted. A record's day is its own ``timestamp`` (UTC), not the XCom's.

SQL picks the rows (that rule as ``NOT EXISTS``, the readable DAGs, the window's first day as a
lower bound on the XCom time) and returns only the row's ids and the value as text, so the
driver does not build dicts. :mod:`msgspec` (which Airflow itself depends on) then decodes each
value straight into :class:`Record` (the fields the page adds up, nothing else).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from typing import Any

import msgspec
from sqlalchemy import Text, cast, exists, select
from sqlalchemy.orm import Session, aliased

from airflow_provider_xai.usage import (
    USD,
    XCOM_LEDGER_KEY,
    XCOM_USAGE_KEY,
    Epoch,
    NonNegInt,
    Seconds,
    stored_as,
)


class Record(msgspec.Struct, gc=False):
    """What the page reads of a usage record (``UsageRecord.to_dict``); absent fields default
    as in :class:`~airflow_provider_xai.usage.UsageRecord`, other fields are skipped. As
    there, a record has a model and its numbers are bounded (``NonNegInt``, ``USD``, ``Epoch``)."""

    model: str
    timestamp: Epoch = 0.0
    kind: str = "chat"
    cost_source: str | None = None
    cost_usd: USD | None = None
    requests: NonNegInt = 1
    prompt_tokens: NonNegInt = 0
    completion_tokens: NonNegInt = 0
    reasoning_tokens: NonNegInt = 0
    cached_tokens: NonNegInt = 0
    image_tokens: NonNegInt = 0
    total_tokens: NonNegInt = 0
    num_sources_used: NonNegInt = 0
    num_server_side_tools_used: NonNegInt = 0
    server_side_tool_usage: dict[str, NonNegInt] | None = None
    waited_s: Seconds = 0.0
    deferred_s: Seconds = 0.0
    rate_limited: NonNegInt = 0


# A ledger (list), one record (``xai_usage``), or either stored as a JSON string.
_DECODER = msgspec.json.Decoder(list[Record] | Record | str)
_LENIENT = msgspec.json.Decoder()
#: What reading a value that is no JSON (or nests absurdly deep) raises.
_UNREADABLE = (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError)


def _parse(text: str | bytes, loads: Callable[[Any], Any]) -> Any:
    """``text`` decoded; a value written through serialize_value (JSON inside a JSON string)
    is decoded once more."""
    value = loads(text)
    return loads(value) if isinstance(value, str) else value


def _loose(text: str | bytes) -> Any:
    """Any JSON value in ``text``, also with ``NaN`` or ``Infinity`` (which Airflow's XCom
    encoder writes and msgspec refuses: only then is the slower :func:`json.loads` used)."""
    try:
        return _parse(text, _LENIENT.decode)
    except _UNREADABLE:
        return _parse(text, json.loads)


def decode(text: str | bytes) -> tuple[list[Record], int]:
    """The records of one XCom value, and how many of its items were skipped. A value that
    does not fit :class:`Record` is read item by item: nulls as absent, an item that is no
    record (or out of bounds) skipped and counted; a value that is no JSON at all (a foreign
    task's text under a usage key) counts as one skipped item. Never raises."""
    try:
        value = _parse(text, _DECODER.decode)
    except _UNREADABLE:
        return _lenient(text)
    if isinstance(value, str):
        return [], 1
    return (value, 0) if isinstance(value, list) else ([value], 0)


def _lenient(text: str | bytes) -> tuple[list[Record], int]:
    try:
        value = _loose(text)
    except _UNREADABLE:
        return [], 1
    if value is None:
        return [], 0
    items = value if isinstance(value, list) else [value]
    records = [record for item in items if (record := stored_as(item, Record)) is not None]
    return records, len(items) - len(records)


def decode_json(text: str | bytes) -> Any:
    """Any JSON value in one XCom value (as :func:`decode` reads it leniently), or None when
    it is no JSON. Never raises."""
    try:
        return _loose(text)
    except _UNREADABLE:
        return None


def decode_summary(text: str | bytes) -> dict[str, Any] | None:
    """The usage sensor's summary (``xai_usage_summary``, a JSON object) in one XCom value, or
    None when the value is none. Never raises."""
    value = decode_json(text)
    return value if isinstance(value, dict) else None




def counted_rows(session: Session, dag_ids: Collection[str], since: Any) -> Iterator[tuple[str, str, str, str]]:
    """``(dag_id, run_id, task_id, value as JSON text)`` of every counted usage XCom of
    ``dag_ids`` written at or after ``since`` (a ledger written at T holds records up to T)."""
    from airflow.models.xcom import XComModel as X

    if not dag_ids:
        return
    ledger = aliased(X)
    has_ledger = exists().where(
        ledger.dag_run_id == X.dag_run_id,
        ledger.task_id == X.task_id,
        ledger.map_index == X.map_index,
        ledger.key == XCOM_LEDGER_KEY,
    )
    stmt = select(X.dag_id, X.run_id, X.task_id, cast(X.value, Text)).where(
        X.dag_id.in_(sorted(dag_ids)),
        X.timestamp >= since,
        X.key.in_((XCOM_LEDGER_KEY, XCOM_USAGE_KEY)),  # one search of idx_xcom_key (or of the DAG ids')
        (X.key == XCOM_LEDGER_KEY) | ~has_ledger,
    )
    # Core rows, not ORM ones: nothing here is an entity.
    for row in session.connection().execute(stmt.execution_options(yield_per=5000)):
        if row[3] is not None:
            yield row[0], row[1], row[2], row[3]
