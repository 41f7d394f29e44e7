"""usage.py: records and their cost, price tables, the log line, metrics, the retry-safe ledger."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_xai.pricing import (
    DEFAULT_PRICES,
    PRICES_AS_OF,
    Price,
    parse_prices,
    price_table,
    prices_from_language_models,
)
from airflow_provider_xai.schemas import LanguageModel, ResponseUsage, Usage
from airflow_provider_xai.tool_prices import (
    DEFAULT_TOOL_PRICES,
    TOOL_PRICES_AS_OF,
    tool_fees,
    tool_price_table,
)
from airflow_provider_xai.usage import (
    XCOM_LEDGER_KEY,
    XCOM_USAGE_KEY,
    UsageLedger,
    UsageRecord,
    billed_tokens,
    build_record,
    emit_metrics,
    format_usage_line,
)


def usage(**fields: Any) -> Usage:
    data: dict[str, Any] = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1700,
        "prompt_tokens_details": {"text_tokens": 176, "cached_tokens": 100, "image_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    data.update(fields)
    return Usage.model_validate(data)


class TestBuildRecord:
    def test_total_includes_reasoning_tokens(self) -> None:
        rec = build_record(usage(), "grok-4.3")
        assert (rec.prompt_tokens, rec.completion_tokens, rec.reasoning_tokens) == (1200, 300, 200)
        assert (rec.cached_tokens, rec.image_tokens) == (100, 1024)
        assert rec.total_tokens == 1700  # 1200 + 300 + 200, as xAI counts it

    def test_xai_total_is_kept_not_recomputed(self) -> None:
        assert build_record(usage(total_tokens=1650), "grok-4.3").total_tokens == 1650
        no_total = Usage.model_validate({"prompt_tokens": 10, "completion_tokens": 4, "reasoning_tokens": 6})
        assert build_record(no_total, "grok-4.3").total_tokens == 20  # only when xAI sent none

    @pytest.mark.parametrize(
        "answer_usage",
        [
            usage(),
            Usage.model_validate({"prompt_tokens": 10, "completion_tokens": 4, "reasoning_tokens": 6}),
            ResponseUsage.model_validate({"input_tokens": 30, "output_tokens": 12, "reasoning_tokens": 5}),
            ResponseUsage.model_validate(  # reasoning beside the output, total as sent
                {"input_tokens": 30, "output_tokens": 12, "reasoning_tokens": 5, "total_tokens": 47}
            ),
        ],
        ids=["chat", "chat without a total", "responses", "responses with reasoning beside"],
    )
    def test_the_rate_limiter_settles_to_the_record_total(self, answer_usage: Any) -> None:
        """The limiter reads the billed tokens without making the record: the same figure."""
        answer = type("Answer", (), {"usage": answer_usage})()
        assert billed_tokens(answer) == build_record(answer_usage, "grok-4.3").total_tokens
        assert billed_tokens(type("Unbilled", (), {"usage": None})()) is None

    def test_top_level_reasoning_tokens_of_the_older_shape_are_read(self) -> None:
        older = Usage.model_validate(
            {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 143, "reasoning_tokens": 94}
        )
        rec = build_record(older, "grok-3-mini")
        assert (rec.reasoning_tokens, rec.total_tokens) == (94, 143)
        assert rec.cost_usd == pytest.approx((40 * 0.30 + (9 + 94) * 0.50) / 1_000_000)  # reasoning billed once

    def test_reasoning_tokens_in_both_places_are_counted_once(self) -> None:
        both = usage(reasoning_tokens=200)  # details also say 200
        assert build_record(both, "grok-4.3").reasoning_tokens == 200
        details_win = usage(reasoning_tokens=999)
        assert details_win.reasoning_tokens == 200
        dumped = Usage.model_validate({"reasoning_tokens": 7}).model_dump_json()  # e.g. through XCom
        assert Usage.model_validate_json(dumped).reasoning_tokens == 7

    def test_server_ticks_win_over_the_price_table(self) -> None:
        rec = build_record(usage(cost_in_usd_ticks=123_456_789), "grok-4.3", prices={})
        assert rec.cost_source == "xai" and rec.cost_usd == 0.0123456789

    def test_estimate_from_price_table(self) -> None:
        prices = {"m": Price(input=2.0, cached_input=0.5, output=10.0, image=3.0)}
        rec = build_record(usage(), "m", prices=prices)
        # 76 uncached text, 100 cached, 1024 image tokens; 300 + 200 output (reasoning billed as output)
        expected = (76 * 2.0 + 100 * 0.5 + 1024 * 3.0 + 500 * 10.0) / 1_000_000
        assert rec.cost_source == "estimate" and rec.cost_usd == pytest.approx(expected, abs=1e-15)

    def test_image_tokens_at_input_price_when_no_image_price(self) -> None:
        rec = build_record(usage(), "m", prices={"m": Price(1.0, 1.0, 0.0)})
        assert rec.cost_usd == pytest.approx(1200 / 1_000_000)

    def test_unknown_model_has_unknown_cost(self) -> None:
        rec = build_record(usage(), "grok-99")
        assert rec.cost_usd is None and rec.cost_source == "unknown"
        assert "cost_usd=unknown cost_source=unknown" in format_usage_line(rec)

    def test_no_usage_is_an_empty_record(self) -> None:
        rec = build_record(None, "grok-4.3", completion_id="c1")
        assert rec.total_tokens == 0 and rec.completion_id == "c1" and rec.cost_usd is None

    def test_discount_applies_to_estimates_only(self) -> None:
        full = build_record(usage(), "grok-4.3")
        half = build_record(usage(), "grok-4.3", discount=0.5)
        assert half.cost_usd == pytest.approx(full.cost_usd / 2)  # type: ignore[operator]
        assert build_record(usage(cost_in_usd_ticks=10), "grok-4.3", discount=0.5).cost_usd == 1e-9

    def test_round_trip_and_identity(self) -> None:
        rec = build_record(usage(cost_in_usd_ticks=5), "grok-4.3", completion_id="c")
        data = json.loads(json.dumps(rec.to_dict()))
        back = UsageRecord.from_dict({**data, "new_field_from_the_future": 1})
        assert back == rec and back.key == rec.key

    def test_log_line_is_stable(self) -> None:
        rec = build_record(usage(cost_in_usd_ticks=25_000_000), "grok-4.3")
        assert format_usage_line(rec) == (
            "xAI usage: model=grok-4.3 prompt_tokens=1200 completion_tokens=300 reasoning_tokens=200 "
            "cached_tokens=100 image_tokens=1024 total_tokens=1700 cost_usd=0.002500 cost_source=xai "
            "num_sources_used=0 num_server_side_tools_used=0 server_side_tool_usage=none cache_hit_share=0.08"
        )


#: Server-side tool counters as xAI reports them (a recorded agentic response: the per-tool
#: details need not add up to ``num_server_side_tools_used``; xAI's total is kept).
TOOLS = {
    "num_sources_used": 2,
    "num_server_side_tools_used": 6,
    "server_side_tool_usage_details": {
        "web_search_calls": 0,
        "x_search_calls": 1,
        "code_interpreter_calls": 0,
        "file_search_calls": 0,
        "mcp_calls": 0,
        "document_search_calls": 0,
    },
}


class TestSourcesAndServerSideTools:
    def test_they_reach_the_record(self) -> None:
        rec = build_record(usage(**TOOLS), "grok-4.3")
        assert (rec.num_sources_used, rec.num_server_side_tools_used) == (2, 6)
        assert rec.server_side_tool_usage == {"x_search_calls": 1}  # zero counts left out

    def test_per_tool_counts_alone_give_the_number_of_calls(self) -> None:
        details = {"web_search_calls": 2, "x_search_calls": 1}
        rec = build_record(usage(server_side_tool_usage_details=details), "grok-4.3")
        assert rec.num_server_side_tools_used == 3 and rec.server_side_tool_usage == details

    def test_they_end_the_log_line(self) -> None:
        rec = build_record(usage(cost_in_usd_ticks=25_000_000, **TOOLS), "grok-4.3")
        assert format_usage_line(rec).endswith(
            " total_tokens=1700 cost_usd=0.002500 cost_source=xai "
            "num_sources_used=2 num_server_side_tools_used=6 server_side_tool_usage=x_search_calls:1"
            " cache_hit_share=0.08"
        )
        assert format_usage_line(build_record(usage(), "grok-4.3")).endswith(
            " num_sources_used=0 num_server_side_tools_used=0 server_side_tool_usage=none cache_hit_share=0.08"
        )

    def test_a_record_written_before_these_fields_is_still_read(self) -> None:
        old = {"model": "grok-4.3", "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "cost_usd": 1e-6,
               "cost_source": "xai", "completion_id": "c", "request_id": None, "dag_id": "d", "task_id": "t",
               "run_id": "r", "map_index": -1, "try_number": 1, "timestamp": 1.0, "kind": "chat", "requests": 1,
               "reasoning_tokens": 0, "cached_tokens": 0, "image_tokens": 0}  # fmt: skip
        rec = UsageRecord.from_dict(old)
        assert (rec.total_tokens, rec.num_sources_used, rec.num_server_side_tools_used) == (7, 0, 0)
        assert rec.server_side_tool_usage == {}

    def test_combine_adds_them_up(self) -> None:
        from airflow_provider_xai.usage import combine

        records = [build_record(usage(**TOOLS), "grok-4.3"), build_record(usage(**TOOLS), "grok-4.3")]
        records.append(build_record(usage(server_side_tool_usage_details={"web_search_calls": 4}), "grok-4.3"))
        (folded,) = combine(records, "batch:b")
        assert (folded.num_sources_used, folded.num_server_side_tools_used) == (4, 16)
        assert folded.server_side_tool_usage == {"x_search_calls": 2, "web_search_calls": 4}


class TestOneListOfCounts:
    def test_every_count_reaches_the_record_log_line_metrics_totals_and_table(
        self, stats: CaptureStats
    ) -> None:
        from airflow_provider_xai.usage import COUNTS
        from airflow_provider_xai.usage_summary import render_table, summarize

        rec = build_record(usage(cost_in_usd_ticks=1, **TOOLS), "grok-4.3")
        emit_metrics(rec)
        line, totals = format_usage_line(rec), summarize([rec]).totals.to_dict()
        header = render_table(summarize([rec])).splitlines()[1]
        for count in COUNTS:
            value = getattr(rec, count.field)
            assert f" {count.field}={value}" in line
            assert stats.by_name()[f"xai.{count.metric}"] == value == totals[count.field]
            assert f" {count.column} " in f" {header} "
        assert {"num_sources_used", "num_server_side_tools_used"} <= {c.field for c in COUNTS}


class TestPrices:
    def test_table_is_dated_and_covers_current_models(self) -> None:
        assert PRICES_AS_OF >= "2026-01-01"
        assert {"grok-4.3", "grok-4-1-fast-reasoning", "grok-3-mini"} <= set(DEFAULT_PRICES)

    def test_overrides_replace_and_add(self) -> None:
        table = price_table({"grok-4.3": {"input": 1, "output": 2}, "new-model": {"input": 3, "output": 4}})
        assert table["grok-4.3"] == Price(1.0, None, 2.0)  # no cached price given: none known
        assert table["new-model"].output == 4.0 and table["grok-3"] == DEFAULT_PRICES["grok-3"]

    def test_without_a_cached_price_cached_tokens_cost_the_input_price_in_an_estimate(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        from airflow_provider_xai.usage import _warn_no_cached_price

        _warn_no_cached_price.cache_clear()  # once per process: this test may not be the first
        prices = price_table({"no-cache-price": {"input": 2.0, "output": 10.0}})
        with caplog.at_level(logging.WARNING, logger="airflow_provider_xai.usage"):
            rec = build_record(usage(), "no-cache-price", prices=prices)
            build_record(usage(), "no-cache-price", prices=prices)
        # 76 uncached text + 100 cached + 1024 image tokens, all at the input price (an upper bound)
        assert rec.cost_usd == pytest.approx((1200 * 2.0 + 500 * 10.0) / 1_000_000)
        assert rec.cost_source == "estimate"
        warnings = [r.getMessage() for r in caplog.records if "no-cache-price" in r.getMessage()]
        assert len(warnings) == 1 and "cached_input" in warnings[0]  # said once, naming the fix

    def test_no_warning_without_cached_tokens_or_with_a_cached_price(self, caplog: pytest.LogCaptureFixture) -> None:
        prices = price_table({"no-cache-price-2": {"input": 2.0, "output": 10.0}})
        with caplog.at_level(logging.WARNING, logger="airflow_provider_xai.usage"):
            build_record(usage(prompt_tokens_details={"cached_tokens": 0}), "no-cache-price-2", prices=prices)
            build_record(usage(), "grok-4.3")
        assert caplog.records == []

    def test_published_prices_without_a_cached_price_say_so(self) -> None:
        assert DEFAULT_PRICES["grok-2-vision-1212"].cached_input is None  # xAI lists none
        assert all(DEFAULT_PRICES[m].cached_input is not None for m in ("grok-4.3", "grok-3-mini"))

    @pytest.mark.parametrize("bad", [{"m": {"input": 1}}, {"m": 3}])
    def test_bad_override_names_the_model(self, bad: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="'m'"):
            parse_prices(bad)

    def test_language_model_prices_are_cents_per_100m(self) -> None:
        model = LanguageModel.model_validate(
            {
                "id": "grok-x",
                "aliases": ["grok-x-latest"],
                "prompt_text_token_price": 30000,
                "cached_prompt_text_token_price": 7500,
                "completion_text_token_price": 150000,
                "prompt_image_token_price": 20000,
            }
        )
        unpriced = LanguageModel.model_validate({"id": "free"})
        uncached = LanguageModel.model_validate(
            {"id": "u", "prompt_text_token_price": 100, "completion_text_token_price": 200}
        )
        free_cache = LanguageModel.model_validate(
            {
                "id": "c",
                "prompt_text_token_price": 100,
                "cached_prompt_text_token_price": 0,
                "completion_text_token_price": 200,
            }
        )
        prices = prices_from_language_models([model, unpriced, free_cache, uncached])
        assert prices["grok-x"] == Price(3.0, 0.75, 15.0, image=2.0) == prices["grok-x-latest"]
        assert "free" not in prices
        assert prices["c"] == Price(0.01, 0.0, 0.02)  # a zero cached price is a price
        assert prices["u"] == Price(0.01, None, 0.02)  # no cached price listed: none known

    @pytest.mark.parametrize("as_json", [True, False])
    def test_connection_extra_overrides_hook_prices(
        self, monkeypatch: pytest.MonkeyPatch, as_json: bool
    ) -> None:
        from airflow_provider_xai.hooks.xai import XAIHook

        prices = {"grok-4.3": {"input": 9, "output": 99}}
        extra = {"prices": json.dumps(prices) if as_json else prices}
        conn = {"conn_type": "xai", "host": "https://xai.test/v1", "password": "k", "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
        table = XAIHook().get_prices()
        assert table["grok-4.3"] == Price(9.0, None, 99.0) and table["grok-3"] == DEFAULT_PRICES["grok-3"]


class CaptureStats:
    """A Stats backend that remembers every counter."""

    def __init__(self) -> None:
        self.counters: list[tuple[str, int, dict[str, Any]]] = []

    def incr(self, stat: str, count: int = 1, rate: int = 1, *, tags: dict[str, Any] | None = None) -> None:
        self.counters.append((stat, count, dict(tags or {})))

    def by_name(self) -> dict[str, int]:
        return {name: count for name, count, _ in self.counters}


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureStats]:
    """Airflow's own Stats with its backend replaced (the provider's call goes through Stats)."""
    from airflow.sdk._shared.observability.metrics import stats as stats_module

    backend = CaptureStats()
    if hasattr(stats_module, "_backend"):  # Airflow 3.3: module functions over one backend
        monkeypatch.setattr(stats_module, "_backend", backend)
        yield backend
        return
    # Airflow 3.2: Stats builds its logger from a factory on first use (metaclass _Stats)
    stats_cls = stats_module.Stats
    factory = type.__getattribute__(stats_cls, "factory")
    stats_cls.initialize(factory=lambda: backend)
    try:
        yield backend
    finally:
        stats_cls.initialize(factory=factory)


class TestMetrics:
    def test_counters_by_kind_and_cost_tagged_by_model_dag_task(self, stats: CaptureStats) -> None:
        rec = build_record(usage(cost_in_usd_ticks=25_000_000), "grok-4.3")
        rec.dag_id, rec.task_id = "dag", "task"
        emit_metrics(rec)
        assert stats.by_name() == {
            "xai.requests": 1,
            "xai.tokens.prompt": 1200,
            "xai.tokens.completion": 300,
            "xai.tokens.reasoning": 200,
            "xai.tokens.cached": 100,
            "xai.tokens.image": 1024,
            "xai.tokens.total": 1700,
            "xai.sources_used": 0,
            "xai.server_side_tools_used": 0,
            "xai.cost_micro_usd": 2500,
        }
        assert {json.dumps(t, sort_keys=True) for *_, t in stats.counters} == {
            json.dumps({"dag_id": "dag", "model": "grok-4.3", "task_id": "task"}, sort_keys=True)
        }

    def test_no_cost_counter_when_cost_unknown(self, stats: CaptureStats) -> None:
        emit_metrics(build_record(usage(), "grok-99"))
        assert "xai.cost_micro_usd" not in stats.by_name() and stats.by_name()["xai.tokens.total"] == 1700

    def test_source_and_server_side_tool_counters(self, stats: CaptureStats) -> None:
        emit_metrics(build_record(usage(**TOOLS), "grok-4.3"))
        counters = stats.by_name()
        assert (counters["xai.sources_used"], counters["xai.server_side_tools_used"]) == (2, 6)
        assert counters["xai.server_side_tool_usage.x_search_calls"] == 1
        assert "xai.server_side_tool_usage.web_search_calls" not in counters  # a zero count is not sent

    def test_budget_overrun_counter(self, stats: CaptureStats) -> None:
        from airflow_provider_xai.sensors.usage import _count_overrun

        _count_overrun("dag", "gate")
        assert stats.counters == [("xai.budget_exceeded", 1, {"dag_id": "dag", "task_id": "gate"})]


class FakeTI:
    dag_id, task_id, run_id = "dag", "task", "run"

    def __init__(self, map_index: int = -1, try_number: int = 1) -> None:
        self.map_index = map_index
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = json.loads(json.dumps(value))


class FakeStore:
    """The task state store: survives across attempts (XComs do not)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.broken = False

    def get(self, key: str, default: Any = None) -> Any:
        if self.broken:
            raise RuntimeError("store down")
        return json.loads(json.dumps(self.data.get(key, default)))

    def set(self, key: str, value: Any) -> None:
        if self.broken:
            raise RuntimeError("store down")
        self.data[key] = json.loads(json.dumps(value))


LOG = logging.getLogger("test_usage")


class TestLedger:
    def test_records_survive_a_retry(self, stats: CaptureStats, caplog: pytest.LogCaptureFixture) -> None:
        store = FakeStore()
        first = FakeTI(map_index=2, try_number=1)
        with caplog.at_level(logging.INFO, logger="test_usage"):
            UsageLedger({"ti": first, "task_state_store": store}, LOG).record(
                build_record(usage(cost_in_usd_ticks=7), "grok-4.3", completion_id="c1")
            )
        assert "xAI usage: model=grok-4.3 prompt_tokens=1200" in caplog.text
        assert first.xcom[XCOM_USAGE_KEY]["try_number"] == 1 and first.xcom[XCOM_USAGE_KEY]["map_index"] == 2
        assert stats.by_name()["xai.tokens.total"] == 1700

        second = FakeTI(map_index=2, try_number=2)  # a retry starts with no XComs
        ledger = UsageLedger({"ti": second, "task_state_store": store}, LOG)
        assert [r["completion_id"] for r in second.xcom[XCOM_LEDGER_KEY]] == ["c1"]  # re-published
        ledger.record(build_record(usage(), "grok-4.3", completion_id="c2"))
        assert [(r["completion_id"], r["try_number"]) for r in second.xcom[XCOM_LEDGER_KEY]] == [
            ("c1", 1),
            ("c2", 2),
        ]
        assert second.xcom[XCOM_USAGE_KEY]["completion_id"] == "c2"
        assert len(store.data["xai_usage_ledger"]) == 2

    def test_works_without_a_state_store(self) -> None:
        ti = FakeTI()
        UsageLedger({"ti": ti}, LOG).record(build_record(usage(), "grok-4.3"))
        assert len(ti.xcom[XCOM_LEDGER_KEY]) == 1

    def test_a_broken_store_never_fails_the_task(self) -> None:
        store = FakeStore()
        store.broken = True
        ti = FakeTI()
        UsageLedger({"ti": ti, "task_state_store": store}, LOG).record(build_record(usage(), "grok-4.3"))
        assert ti.xcom[XCOM_USAGE_KEY]["total_tokens"] == 1700


def test_operator_costs_with_connection_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chat operator records the estimate from the connection's prices when xAI sends no cost."""
    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.operators.chat import XAIChatOperator

    conn = {"conn_type": "xai", "host": "https://xai.test/v1", "password": "k"}
    conn["extra"] = {"prices": json.dumps({"grok-4.3": {"input": 1000, "output": 2000}})}  # type: ignore[assignment]
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "grok-4.3",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "total_tokens": 20,
            "completion_tokens_details": {"reasoning_tokens": 6},
        },
    }
    op = XAIChatOperator(task_id="t", prompt="hello", api="chat")
    op.hook = XAIHook(
        client_kwargs={"transport": httpx.MockTransport(lambda r: httpx.Response(200, json=body))}
    )
    ti = FakeTI()
    assert op.execute({"ti": ti, "task_state_store": FakeStore()}) == "hi"  # type: ignore[arg-type]
    rec = ti.xcom[XCOM_USAGE_KEY]
    assert rec["cost_source"] == "estimate" and rec["total_tokens"] == 20
    assert rec["cost_usd"] == pytest.approx((10 * 1000 + 10 * 2000) / 1_000_000)


def test_record_many_publishes_one_ledger(stats: CaptureStats) -> None:
    store, ti = FakeStore(), FakeTI(try_number=3)
    ledger = UsageLedger({"ti": ti, "task_state_store": store}, LOG)
    stamped = ledger.record_many(build_record(usage(), "grok-4.3", completion_id=f"b{i}") for i in range(3))
    assert [r.try_number for r in stamped] == [3, 3, 3]
    assert [r["completion_id"] for r in ti.xcom[XCOM_LEDGER_KEY]] == ["b0", "b1", "b2"]
    assert XCOM_USAGE_KEY not in ti.xcom and len(store.data["xai_usage_ledger"]) == 3
    assert sum(count for name, count, _ in stats.counters if name == "xai.requests") == 3


def test_combine_folds_records_per_model_with_exact_totals() -> None:
    from airflow_provider_xai.usage import TICKS_PER_USD, combine
    from airflow_provider_xai.usage_summary import summarize

    records = [
        UsageRecord(
            model="grok-4.3",
            prompt_tokens=10 + i,
            completion_tokens=3,
            reasoning_tokens=i,
            total_tokens=13 + 2 * i,
            cost_usd=(7 + i) / TICKS_PER_USD,
            cost_source="xai",
            kind="batch",
        )
        for i in range(5)
    ] + [UsageRecord(model="mystery-1", prompt_tokens=4, total_tokens=4, kind="batch")] * 2
    folded = combine(records, "batch:b1")
    assert [(r.model, r.requests, r.completion_id) for r in folded] == [
        ("grok-4.3", 5, "batch:b1:grok-4.3:xai"),
        ("mystery-1", 2, "batch:b1:mystery-1:unknown"),
    ]
    assert folded[0].prompt_tokens == sum(r.prompt_tokens for r in records[:5])
    assert folded[0].reasoning_tokens == 10 and folded[1].cost_usd is None
    # the usage page splits costs by source and API
    assert [(r.cost_source, r.kind) for r in folded] == [("xai", "batch"), ("unknown", "batch")]
    assert round(folded[0].cost_usd * TICKS_PER_USD) == sum(range(7, 12))
    before, after = summarize(records).totals, summarize(folded).totals
    assert after.to_dict() == before.to_dict()
    assert (after.requests, after.unpriced_requests) == (7, 2)


class TestResponsesUsage:
    """One record per billed Responses answer, in the record's terms: reasoning sits inside xAI's
    ``output_tokens``, the record's ``completion_tokens`` excludes it, nothing counts twice."""

    @staticmethod
    def response_usage(**fields: Any) -> ResponseUsage:
        from tests.unit.response_fixtures import FUNCTION_CALL_RESPONSE

        return ResponseUsage.model_validate({**FUNCTION_CALL_RESPONSE["usage"], **fields})

    def test_counts_map_without_double_counting(self) -> None:
        rec = build_record(self.response_usage(), "grok-4.3", completion_id="0b6d2c1e")
        counts = (rec.prompt_tokens, rec.cached_tokens, rec.completion_tokens, rec.reasoning_tokens)
        assert counts == (310, 256, 24, 40)
        assert rec.total_tokens == 374 == rec.prompt_tokens + rec.completion_tokens + rec.reasoning_tokens
        assert (rec.kind, rec.completion_id) == ("responses", "0b6d2c1e")
        assert (rec.cost_source, rec.cost_usd) == ("xai", 0.000547)
        assert build_record(self.response_usage(), "grok-4.3", kind="batch").kind == "batch"

    def test_xai_total_is_kept_as_sent(self) -> None:
        assert build_record(self.response_usage(total_tokens=999), "grok-4.3").total_tokens == 999
        unsent = ResponseUsage.model_validate({"input_tokens": 10, "output_tokens": 8,
                                               "output_tokens_details": {"reasoning_tokens": 5}})  # fmt: skip
        rec = build_record(unsent, "grok-4.3")
        assert (rec.completion_tokens, rec.reasoning_tokens, rec.total_tokens) == (3, 5, 18)

    def test_reasoning_beside_the_output_is_read_so(self) -> None:
        """R1's example: total = input + output + reasoning (32 + 9 + 110)."""
        beside = ResponseUsage.model_validate({"input_tokens": 32, "output_tokens": 9, "total_tokens": 151,
                                               "output_tokens_details": {"reasoning_tokens": 110}})  # fmt: skip
        rec = build_record(beside, "grok-4.3")
        assert (rec.completion_tokens, rec.reasoning_tokens, rec.total_tokens) == (9, 110, 151)
        assert rec.cost_usd == pytest.approx((32 * 1.25 + (9 + 110) * 2.50) / 1_000_000)

    def test_estimate_bills_output_once(self) -> None:
        rec = build_record(self.response_usage(cost_in_usd_ticks=None), "grok-4.3")
        # 54 uncached + 256 cached input; 64 output tokens of which 40 reasoning, billed once
        assert rec.cost_source == "estimate"
        assert rec.cost_usd == pytest.approx((54 * 1.25 + 256 * 0.20 + 64 * 2.50) / 1_000_000)

    def test_server_side_tools_by_kind_and_their_fees(self) -> None:
        from tests.unit.response_fixtures import TIDE_USAGE

        with_ticks = build_record(ResponseUsage.model_validate(TIDE_USAGE), "grok-4.3")
        assert with_ticks.num_server_side_tools_used == 1
        assert with_ticks.server_side_tool_usage == {"web_search_calls": 1}
        assert with_ticks.cost_usd == 0.01234  # xAI's ticks include the tool fee
        assert format_usage_line(with_ticks).endswith(
            "num_sources_used=0 num_server_side_tools_used=1 server_side_tool_usage=web_search_calls:1"
            f" cache_hit_share={with_ticks.cached_tokens / with_ticks.prompt_tokens:.2f}"
        )
        estimate = build_record(ResponseUsage.model_validate({**TIDE_USAGE, "cost_in_usd_ticks": None}), "grok-4.3")
        tokens = (1024 * 1.25 + 4096 * 0.20 + 180 * 2.50) / 1_000_000
        assert estimate.cost_usd == pytest.approx(tokens + 5 / 1000)  # $5 per 1,000 web searches
        cheaper = build_record(
            ResponseUsage.model_validate({**TIDE_USAGE, "cost_in_usd_ticks": None}),
            "grok-4.3",
            tool_prices=tool_price_table({"web_search_calls": 2}),
        )
        assert cheaper.cost_usd == pytest.approx(tokens + 2 / 1000)

    def test_tool_fee_table(self, caplog: pytest.LogCaptureFixture) -> None:
        assert DEFAULT_TOOL_PRICES["x_search_calls"] == 5.0 and DEFAULT_TOOL_PRICES["file_search_calls"] == 2.5
        assert DEFAULT_TOOL_PRICES["mcp_calls"] == 0.0 and TOOL_PRICES_AS_OF >= "2026-01-01"
        from airflow_provider_xai.tool_prices import _warn_no_tool_price

        _warn_no_tool_price.cache_clear()  # once per process: this test may not be the first
        calls = {"code_interpreter_calls": 2, "file_search_calls": 4, "mcp_calls": 3, "hologram_calls": 1}
        with caplog.at_level(logging.WARNING, logger="airflow_provider_xai.tool_prices"):
            assert tool_fees(calls) == pytest.approx(0.01 + 0.01)
            tool_fees(calls)
        warnings = [r.getMessage() for r in caplog.records if "hologram_calls" in r.getMessage()]
        assert len(warnings) == 1 and "tool_prices" in warnings[0]
        with pytest.raises(ValueError, match="'web_search_calls'"):
            tool_price_table({"web_search_calls": -1})

    def test_chat_estimates_include_tool_fees_too(self) -> None:
        plain = build_record(usage(), "grok-4.3")
        searched = build_record(usage(server_side_tool_usage_details={"x_search_calls": 2}), "grok-4.3")
        assert searched.cost_usd == pytest.approx(plain.cost_usd + 0.01)  # type: ignore[operator]
        assert plain.kind == "chat"

    def test_a_streamed_answer_makes_the_same_record(self) -> None:
        from airflow_provider_xai.schemas import Response
        from airflow_provider_xai.streams.responses import ResponseStreamAssembler
        from tests.unit.response_fixtures import ILLUSTRATIVE_STREAM, TIDE_RESPONSE

        assembler = ResponseStreamAssembler()
        for data in ILLUSTRATIVE_STREAM:
            assembler.feed(data)
        streamed = build_record(assembler.response().usage, "grok-4.3", completion_id="R")
        direct = build_record(Response.model_validate(TIDE_RESPONSE).usage, "grok-4.3", completion_id="R")
        streamed.timestamp = direct.timestamp
        assert streamed == direct
        assert (direct.prompt_tokens, direct.completion_tokens, direct.reasoning_tokens, direct.total_tokens) == (
            5120, 60, 120, 5300
        )


def test_a_record_billed_by_units_says_so_in_its_line_and_folds_them() -> None:
    from airflow_provider_xai.usage import combine

    image = UsageRecord(model="grok-imagine-image", cost_usd=0.04, cost_source="xai", units=2, unit="image")
    assert format_usage_line(image).endswith(" cache_hit_share=0.00 units=2 unit=image")
    assert " units=" not in format_usage_line(UsageRecord(model="grok-4.3"))
    (folded,) = combine([image, UsageRecord(model="grok-imagine-image", cost_usd=0.02, cost_source="xai",
                                            units=1, unit="image")], "g")  # fmt: skip
    assert (folded.units, folded.unit, folded.requests) == (3, "image", 2)
    assert UsageRecord.from_dict({"model": "m"}).unit is None  # records written before stay readable


def test_the_cache_hit_share_is_the_cached_part_of_the_prompt() -> None:
    from airflow_provider_xai.usage import cache_hit_share

    assert cache_hit_share(UsageRecord(model="m", prompt_tokens=200, cached_tokens=150)) == 0.75
    assert cache_hit_share(UsageRecord(model="m")) == 0.0  # no prompt: nothing to share
    assert cache_hit_share(UsageRecord(model="m", prompt_tokens=10, cached_tokens=40)) == 1.0  # bounded


def test_a_priority_answer_is_estimated_at_twice_the_price() -> None:
    default = build_record(usage(), "grok-4.3", service_tier="default")
    priority = build_record(usage(), "grok-4.3", service_tier="priority")
    assert default.cost_usd and priority.cost_usd == pytest.approx(2 * default.cost_usd)
    assert priority.service_tier == "priority" and priority.cost_source == "estimate"
    ticks = build_record(usage(cost_in_usd_ticks=25_000_000), "grok-4.3", service_tier="priority")
    assert ticks.cost_usd == 0.0025  # xAI's own cost already says what it charged


def test_the_served_tier_is_read_off_chat_and_responses_answers_and_other_objects() -> None:
    from types import SimpleNamespace

    from airflow_provider_xai.endpoints.chat import chat_record
    from airflow_provider_xai.endpoints.responses import response_record
    from airflow_provider_xai.schemas import ChatCompletion, Response
    from airflow_provider_xai.usage import served_tier

    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "grok-4.3", "choices": []}
    plain = ChatCompletion.model_validate({**answer, "usage": usage().model_dump()})
    priority = ChatCompletion.model_validate({**answer, "usage": usage().model_dump(), "service_tier": "priority"})
    assert served_tier(plain) is None and chat_record(plain, {}) is not None
    record = chat_record(priority, {})
    assert served_tier(priority) == "priority" and record is not None and record.service_tier == "priority"
    response = Response.model_validate(
        {"id": "r", "model": "grok-4.3", "output": [], "service_tier": "flex",
         "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}
    )  # fmt: skip
    assert served_tier(response) == "flex" and response_record(response, {}).service_tier == "flex"  # type: ignore[union-attr]
    assert served_tier(SimpleNamespace(service_tier="priority")) == "priority"
    assert served_tier(SimpleNamespace(service_tier="")) is None and served_tier(object()) is None


# --- pinned by make mutate: what a user reads off a record, a metric or a price ------------------
def test_the_ledger_stamps_each_record_with_where_it_ran() -> None:
    """Without dag/task/run the usage page and the sensor could not attribute a dollar."""
    unmapped = FakeTI(map_index=None, try_number=4)  # type: ignore[arg-type]  # unmapped: Airflow may give None
    ledger = UsageLedger({"ti": unmapped}, LOG)
    rec = ledger.record(build_record(usage(), "grok-4.3"))
    assert (rec.dag_id, rec.task_id, rec.run_id, rec.map_index, rec.try_number) == ("dag", "task", "run", -1, 4)
    assert unmapped.xcom[XCOM_USAGE_KEY]["dag_id"] == "dag" and ledger.skipped == 0


def test_the_ledger_warns_naming_itself_when_it_skips_stored_items(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    store.data["xai_usage_ledger"] = ["not a record", build_record(usage(), "grok-4.3").to_dict()]
    with caplog.at_level(logging.WARNING, logger="test_usage"):
        ledger = UsageLedger({"ti": FakeTI(), "task_state_store": store}, LOG)
    assert ledger.skipped == 1 and len(ledger.records) == 1
    assert "xAI usage ledger in the task state store: skipped 1 unusable item(s) (not usage records)" in caplog.text


def test_metrics_of_a_folded_record_carry_its_request_count_tool_calls_and_cost(stats: CaptureStats) -> None:
    rec = build_record(usage(cost_in_usd_ticks=35_000_000_000, server_side_tool_usage_details={"web_search_calls": 4}),
                       "grok-4.3")
    rec.requests = 3  # a batch's folded record stands for three billed answers
    emit_metrics(rec)  # no dag or task: tagged as empty, never left out
    counters = stats.by_name()
    assert counters["xai.requests"] == 3 and counters["xai.server_side_tool_usage.web_search_calls"] == 4
    assert counters["xai.cost_micro_usd"] == 3_500_000
    assert all(tags == {"model": "grok-4.3", "dag_id": "", "task_id": ""} for *_, tags in stats.counters)


def test_price_overrides_read_every_field() -> None:
    prices = parse_prices({"m": {"input": "1.5", "cached_input": 0, "output": 2, "image": "0.5"}})
    assert prices["m"] == Price(1.5, 0.0, 2.0, image=0.5)


def test_a_language_model_without_a_completion_price_is_left_unpriced() -> None:
    half = LanguageModel.model_validate({"id": "half", "prompt_text_token_price": 100})
    other_half = LanguageModel.model_validate({"id": "other", "completion_text_token_price": 100})
    assert prices_from_language_models([half, other_half]) == {}


def test_the_log_line_lists_every_tool_kind_sorted() -> None:
    rec = build_record(usage(server_side_tool_usage_details={"x_search_calls": 1, "web_search_calls": 2}), "grok-4.3")
    assert " server_side_tool_usage=web_search_calls:2,x_search_calls:1 " in format_usage_line(rec)


def test_a_call_that_waited_for_capacity_says_so_at_the_end_of_its_line_and_in_metrics(stats: CaptureStats) -> None:
    rec = build_record(usage(cost_in_usd_ticks=25_000_000), "grok-4.3")
    plain = format_usage_line(rec)
    rec.waited_s, rec.deferred_s, rec.rate_limited = 1.25, 30.5, 2
    assert format_usage_line(rec) == plain + " waited_s=1.250 deferred_s=30.500 rate_limited=2"
    emit_metrics(rec)
    counters = stats.by_name()
    assert (counters["xai.rate_limit.waited_ms"], counters["xai.rate_limit.deferred_ms"]) == (1250, 30500)
    assert counters["xai.rate_limit.refused"] == 2


def test_a_record_without_the_wait_fields_reads_as_no_wait_and_a_bad_one_is_skipped() -> None:
    data = build_record(usage(), "grok-4.3").to_dict()
    for name in ("waited_s", "deferred_s", "rate_limited"):
        data.pop(name)
    old = UsageRecord.from_stored(data)
    assert old is not None and (old.waited_s, old.deferred_s, old.rate_limited) == (0.0, 0.0, 0)
    assert UsageRecord.from_stored({**data, "waited_s": -1.0}) is None
    assert UsageRecord.from_stored({**data, "deferred_s": float("inf")}) is None
