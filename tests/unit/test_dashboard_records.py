"""How the usage page decodes a usage XCom's value (no DB: :func:`records.decode` alone)."""

from __future__ import annotations

import json

import msgspec

from airflow_provider_xai.dashboard.records import Record, decode
from airflow_provider_xai.usage import COUNT_FIELDS, UsageRecord


def test_a_record_carries_every_count_the_page_adds_up() -> None:
    assert set(COUNT_FIELDS) <= set(Record.__struct_fields__)


def test_a_ledger_a_single_record_and_a_json_string_all_decode_to_records() -> None:
    full = UsageRecord(model="grok-4.3", prompt_tokens=7, total_tokens=9, cost_usd=0.5, timestamp=12.5,
                       kind="responses", server_side_tool_usage={"web_search_calls": 2}).to_dict()
    expected = msgspec.convert(full, Record)
    assert expected.total_tokens == 9 and expected.server_side_tool_usage == {"web_search_calls": 2}
    assert decode(json.dumps([full, full])) == [expected, expected]
    assert decode(json.dumps(full)) == [expected]
    assert decode(json.dumps(json.dumps([full]))) == [expected]  # stored through serialize_value


def test_old_or_odd_values_are_read_leniently() -> None:
    # An older record without kind/requests gets UsageRecord's defaults.
    (old,) = decode(json.dumps({"model": "grok-3", "total_tokens": 4, "timestamp": 1}))
    assert (old.kind, old.requests, old.total_tokens, old.cost_usd) == ("chat", 1, 4, None)
    # Nulls count as absent; items that are no record are skipped, the rest still counts.
    got = decode(json.dumps([{"model": None, "total_tokens": None, "cost_usd": None, "prompt_tokens": 3}, 5, "x"]))
    assert [(r.model, r.total_tokens, r.prompt_tokens) for r in got] == [(None, 0, 3)]
    assert decode(json.dumps([{"total_tokens": "many"}])) == []
    assert decode("null") == []
