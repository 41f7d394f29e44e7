"""How the usage page decodes a usage XCom's value (no DB: :func:`records.decode` alone)."""

from __future__ import annotations

import json

import msgspec
import pytest

from airflow_provider_xai.dashboard.records import Record, decode, decode_summary
from airflow_provider_xai.usage import COUNT_FIELDS, UsageRecord


def test_a_record_carries_every_count_the_page_adds_up() -> None:
    assert set(COUNT_FIELDS) <= set(Record.__struct_fields__)


def test_a_ledger_a_single_record_and_a_json_string_all_decode_to_records() -> None:
    full = UsageRecord(model="grok-4.3", prompt_tokens=7, total_tokens=9, cost_usd=0.5, timestamp=12.5,
                       kind="responses", server_side_tool_usage={"web_search_calls": 2}).to_dict()
    expected = msgspec.convert(full, Record)
    assert expected.total_tokens == 9 and expected.server_side_tool_usage == {"web_search_calls": 2}
    assert decode(json.dumps([full, full])) == ([expected, expected], 0)
    assert decode(json.dumps(full)) == ([expected], 0)
    assert decode(json.dumps(json.dumps([full]))) == ([expected], 0)  # stored through serialize_value


def test_old_or_odd_values_are_read_leniently() -> None:
    # An older record without kind/requests gets UsageRecord's defaults.
    (old,), skipped = decode(json.dumps({"model": "grok-3", "total_tokens": 4, "timestamp": 1}))
    assert (old.kind, old.requests, old.total_tokens, old.cost_usd, skipped) == ("chat", 1, 4, None, 0)
    # Nulls count as absent; items that are no record are skipped and counted, the rest still counts.
    got, skipped = decode(json.dumps([{"model": "m", "total_tokens": None, "cost_usd": None, "prompt_tokens": 3},
                                      5, "x", {"model": None, "prompt_tokens": 1}]))
    assert [(r.model, r.total_tokens, r.prompt_tokens) for r in got] == [("m", 0, 3)] and skipped == 3
    assert decode(json.dumps([{"model": "m", "total_tokens": "many"}])) == ([], 1)
    assert decode("null") == ([], 0)
    assert decode("[]") == ([], 0)


GOOD = {"model": "grok-4.3", "total_tokens": 5, "timestamp": 10.0}


@pytest.mark.parametrize(
    ("text", "records", "skipped"),
    [
        # What issue 27 saw: a task pushed the string "done: 3 rows" under xai_usage.
        (json.dumps("done: 3 rows"), 0, 1),
        (json.dumps(json.dumps("done: 3 rows")), 0, 1),  # the same, through serialize_value
        ("done: 3 rows", 0, 1),  # not JSON at all
        ("[{", 0, 1),  # cut short
        ("[" * 100_000, 0, 1),  # absurdly deep
        ("3", 0, 1),
        (json.dumps([GOOD, "x", 5, [GOOD]]), 1, 3),
        # numbers no record can hold: skipped, never summed (nor a 500 when summed)
        (json.dumps([GOOD, {**GOOD, "cost_usd": 1e308}]), 1, 1),
        ('[{"model": "m", "cost_usd": 1e400}]', 0, 1),
        (json.dumps([GOOD, {**GOOD, "total_tokens": -4}]), 1, 1),
        (json.dumps([GOOD, {**GOOD, "cost_usd": -0.5}]), 1, 1),
        (json.dumps([GOOD, {**GOOD, "requests": 1.5}]), 1, 1),
        (json.dumps([GOOD, {**GOOD, "timestamp": 1e300}]), 1, 1),
        (json.dumps([GOOD, {**GOOD, "server_side_tool_usage": {"web_search_calls": -1}}]), 1, 1),
        (json.dumps([GOOD, {**GOOD, "server_side_tool_usage": ["web"]}]), 1, 1),
        # NaN and Infinity, as Airflow's XCom encoder writes them: only that record is lost
        (json.dumps([GOOD, {**GOOD, "cost_usd": float("nan")}]), 1, 1),
        (json.dumps(json.dumps([GOOD, {**GOOD, "timestamp": float("inf")}])), 1, 1),
        (json.dumps([GOOD, {"total_tokens": 5}]), 1, 1),  # no model: no usage record
    ],
)
def test_a_value_that_is_no_usage_record_is_skipped_and_counted_never_raised(
    text: str, records: int, skipped: int
) -> None:
    got, bad = decode(text)
    assert (len(got), bad) == (records, skipped)
    assert all(r.model == "grok-4.3" and r.total_tokens == 5 for r in got)


def test_a_sensor_summary_is_read_leniently() -> None:
    summary = {"budget": {"status": "exceeded", "max_cost_usd": 1.0}}
    assert decode_summary(json.dumps(summary)) == summary
    assert decode_summary(json.dumps(json.dumps(summary))) == summary
    assert decode_summary(json.dumps({"budget": float("nan")})) is not None  # a summary, if an odd one
    for text in ("over budget!", json.dumps("over budget!"), "[1]", "null", "{" * 100_000):
        assert decode_summary(text) is None, text
