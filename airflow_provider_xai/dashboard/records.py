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

from collections.abc import Collection, Iterator
from typing import Any

import msgspec
from sqlalchemy import Text, cast, exists, select
from sqlalchemy.orm import Session, aliased

from airflow_provider_xai.usage import XCOM_LEDGER_KEY, XCOM_USAGE_KEY


class Record(msgspec.Struct, gc=False):
    """What the page reads of a usage record (``UsageRecord.to_dict``); absent fields default
    as in :class:`~airflow_provider_xai.usage.UsageRecord`, other fields are skipped."""

    timestamp: float = 0.0
    model: str | None = None
    kind: str = "chat"
    cost_source: str | None = None
    cost_usd: float | None = None
    requests: int = 1
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    image_tokens: int = 0
    total_tokens: int = 0
    num_sources_used: int = 0
    num_server_side_tools_used: int = 0
    server_side_tool_usage: dict[str, int] | None = None


# A ledger (list), one record (``xai_usage``), or either stored as a JSON string.
_DECODER = msgspec.json.Decoder(list[Record] | Record | str)
_LENIENT = msgspec.json.Decoder()


def decode(text: str | bytes) -> list[Record]:
    """The records of one XCom value. A value that does not fit :class:`Record` (nulls, other
    items in the list) is read leniently: nulls as absent, items that are no record skipped."""
    try:
        value = _DECODER.decode(text)
    except msgspec.ValidationError:
        value = _LENIENT.decode(text)
        items = value if isinstance(value, list) else [value]
        return [record for item in items if (record := _lenient(item)) is not None]
    if isinstance(value, str):  # written through serialize_value: JSON inside a JSON string
        return decode(value)
    return value if isinstance(value, list) else [value]


def _lenient(item: Any) -> Record | None:
    if not isinstance(item, dict):
        return None
    try:
        return msgspec.convert({k: v for k, v in item.items() if v is not None}, Record)
    except msgspec.ValidationError:
        return None


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
