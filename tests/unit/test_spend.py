"""Spend control without a server: the declared forecasts, pricing them, budgets (their
settings, periods and amounts), the cached price table read leniently, the daily tallies and the
reconciliation's explanations, and billing amounts bounded as they are read."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from typing import Any

import pytest

from airflow_provider_xai.connection.spend import NANO, parse_budgets, spend_config
from airflow_provider_xai.endpoints.common import forecast_chat, forecast_responses
from airflow_provider_xai.exceptions import XAIConfigurationError
from airflow_provider_xai.forecast import (
    FORMAT_TOKENS_PER_MESSAGE,
    IMAGE_TOKENS_BOUND,
    TOOL_RESULT_TOKENS,
    UNBOUNDED_OUTPUT_TOKENS,
    Forecast,
    forecast_images,
    forecast_video,
    priced,
    utf8_bound,
)
from airflow_provider_xai.pricing import Price, UnitPrice
from airflow_provider_xai.schemas.billing import DataPoint, PrepaidBalance, UsageAnalytics, cents
from airflow_provider_xai.spend import prices as price_book
from airflow_provider_xai.spend.budgets import billed_amount, key_of, period_of, reserved_amount
from airflow_provider_xai.spend.reconcile import compare
from airflow_provider_xai.spend.tally import entries_of
from airflow_provider_xai.usage import UsageRecord

PIXEL = "data:image/png;base64,iVBORw0KGgo="


def count(texts: list[str], model: str) -> list[int]:
    """A stand-in tokenizer: one token per word."""
    return [len(t.split()) for t in texts]


# --- declared forecasts ------------------------------------------------------------------------------
def test_a_chat_forecast_counts_each_message_and_bounds_the_answer() -> None:
    body = {
        "model": "grok-4.3",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is"},
                    {"type": "text", "text": "this"},
                    {"type": "image_url", "image_url": {"url": PIXEL}},
                ],
            },
            {"role": "assistant", "content": None},
        ],
        "max_completion_tokens": 100,
        "n": 2,
    }
    f = forecast_chat(body, count)
    assert f.input_tokens == 2 + 3 + 1  # the parts joined by a newline; an empty turn costs one
    assert f.image_tokens == IMAGE_TOKENS_BOUND
    assert f.overhead_tokens == 3 * FORMAT_TOKENS_PER_MESSAGE
    assert f.output_tokens == 2 * 100 * 2  # answer and reasoning, per choice
    assert f.bounded


def test_a_chat_forecast_without_an_output_bound_says_so() -> None:
    f = forecast_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, count)
    assert not f.bounded and f.unbounded == "max_completion_tokens"
    assert f.output_tokens == 2 * UNBOUNDED_OUTPUT_TOKENS


def test_tool_definitions_go_to_the_overhead() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    f = forecast_chat(
        {"model": "m", "messages": [{"role": "user", "content": "a b"}], "tools": tools, "max_tokens": 1},
        count,
    )
    assert f.overhead_tokens == FORMAT_TOKENS_PER_MESSAGE + count([json.dumps(tools, sort_keys=True)], "m")[0]


def test_a_responses_forecast_reads_items_history_and_tool_turns() -> None:
    body = {
        "model": "grok-4.3",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "find news"}]},
            {"type": "function_call_output", "call_id": "c", "output": "three words here"},
        ],
        "previous_response_id": "resp_1",
        "tools": [{"type": "web_search"}, {"type": "x_search"}, {"type": "function", "name": "f"}],
        "max_turns": 3,
        "max_output_tokens": 50,
    }
    f = forecast_responses(body, count)
    assert f.input_tokens == 2 + 2 + 3 and f.history_of == "resp_1"
    assert f.tool_calls == {"web_search_calls": 3, "x_search_calls": 3} and f.turns == 3
    assert f.tool_input_tokens == 6 * TOOL_RESULT_TOKENS and f.output_tokens == 50
    f.history_tokens = 100
    assert f.prompt_tokens == (f.input_tokens + 100 + f.overhead_tokens) * 3 + f.tool_input_tokens


def test_server_side_tools_without_max_turns_are_unbounded() -> None:
    f = forecast_responses(
        {"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "max_output_tokens": 5}, count
    )
    assert not f.bounded and f.unbounded == "max_turns"


def test_media_forecasts_by_count_and_duration() -> None:
    assert forecast_images({"model": "grok-imagine-image", "n": 4}, count).units == 4
    assert forecast_video({"model": "v", "duration": "6"}, count).units == 6
    assert forecast_video({"model": "v", "duration": 99}, count).units == 15  # no such video: the longest
    video = priced(
        forecast_video({"model": "v", "duration": 10}, count),
        {},
        None,
        {"v": UnitPrice(0.05, "second", {"720p": 0.07})},
    )
    assert video.cost_usd == pytest.approx(0.7)  # no resolution given: the dearest


# --- pricing -------------------------------------------------------------------------------------
def test_the_worst_case_prices_every_input_token_uncached() -> None:
    f = Forecast(
        "m",
        "chat",
        input_tokens=1000,
        overhead_tokens=0,
        image_tokens=500,
        output_tokens=2000,
        tool_calls={"web_search_calls": 2},
        service_tier="priority",
    )
    priced(f, {"m": Price(1.0, 0.1, 10.0, image=2.0)})
    tokens = (1000 * 1.0 + 500 * 2.0 + 2000 * 10.0) / 1e6
    assert f.cost_usd == pytest.approx(2 * tokens + 2 * 5.0 / 1000) and f.cost_source == "prices"


def test_a_model_no_table_knows_is_unpriced_never_free() -> None:
    f = priced(Forecast("nobody", "chat", input_tokens=10), {"m": Price(1, 1, 1)})
    assert f.cost_usd is None and f.cost_source == "unpriced"
    assert "worst_case_usd=unpriced" in __import__(
        "airflow_provider_xai.forecast"
    ).forecast.format_forecast_line(f)


def test_the_byte_bound_is_never_below_a_tokenizers_count() -> None:
    assert utf8_bound(["héllo", ""]) == [6, 0]


# --- budgets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("budgets", "field"),
    [
        ([{"scope": "team"}], "give exactly one of 'usd' or 'tokens'"),
        ([{"usd": 1, "tokens": 5}], "give exactly one"),
        ([{"usd": float("nan")}], r"\[0\]\.usd"),
        ([{"usd": 2e6}], r"\[0\]\.usd"),
        ([{"tokens": 1.5}], r"\[0\]\.tokens"),
        ([{"usd": 1, "scope": "dag:"}], r"\[0\]\.scope"),
        ([{"usd": 1, "scope": "team:x"}], r"\[0\]\.scope"),
        ([{"usd": 1, "period": "weekly"}], r"\[0\]\.period"),
        ([{"usd": 1, "limit": 2}], r"\[0\]\.limit: unknown field"),
        ([{"usd": 1}, {"usd": 2}], "two budgets are named"),
        ("not json", "not JSON"),
    ],
)
def test_bad_budgets_are_refused_naming_the_field(budgets: Any, field: str) -> None:
    with pytest.raises(XAIConfigurationError, match=field):
        parse_budgets(budgets if isinstance(budgets, str) else json.dumps(budgets), "budgets")


def test_budgets_of_the_provider_config_come_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__XAI__BUDGETS", json.dumps([{"name": "team", "usd": 10}]))
    config = spend_config({"budgets": [{"scope": "tag:etl", "tokens": 500, "period": "monthly"}]}, "c")
    assert [(b.name, b.scope, b.target, b.unit, b.limit) for b in config.budgets] == [
        ("team", "team", None, "usd", 10 * NANO),
        ("tag:etl:monthly:tokens", "tag", "etl", "tokens", 500),
    ]
    assert config.budgets[1].applies("any", ("etl", "x")) and not config.budgets[1].applies("any", ("x",))


@pytest.mark.parametrize(
    ("field", "value"), [("prices_ttl", -1), ("prices_ttl", True), ("forecast_tokens", "guess")]
)
def test_bad_spend_extras_are_refused_naming_them(field: str, value: Any) -> None:
    with pytest.raises(XAIConfigurationError, match=field):
        spend_config({field: value}, "c")


def test_periods_are_utc_days_and_calendar_months() -> None:
    (daily,) = parse_budgets([{"name": "d", "usd": 1}], "b")
    (monthly,) = parse_budgets([{"name": "m", "usd": 1, "period": "monthly"}], "b")
    late = datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
    assert period_of(daily, late)[0] == "2026-12-31" and period_of(daily, late + 1)[0] == "2027-01-01"
    assert period_of(monthly, late)[2] == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert key_of(monthly, late) == "xai-budget:m:2026-12"


def test_amounts_round_up_so_a_budget_never_loses_a_fraction() -> None:
    (usd,) = parse_budgets([{"usd": 1}], "b")
    (tokens,) = parse_budgets([{"tokens": 100}], "b")
    forecast = Forecast("m", "chat", input_tokens=3, output_tokens=4, cost_usd=1.0000000001)
    assert reserved_amount(usd, forecast) == NANO + 1 and reserved_amount(tokens, forecast) == 7
    record = UsageRecord(model="m", cost_usd=0.0000000001, total_tokens=9)
    assert billed_amount(usd.unit, record) == 1 and billed_amount(tokens.unit, record) == 9
    assert reserved_amount(usd, Forecast("m", "chat")) is None  # unpriced: a USD budget cannot admit it


# --- prices ------------------------------------------------------------------------------------------
def test_live_prices_out_of_bounds_are_left_out() -> None:
    from airflow_provider_xai.schemas import LanguageModel
    from airflow_provider_xai.schemas.billing import ImageGenerationModel

    languages = [
        LanguageModel(
            id="ok", prompt_text_token_price=12500, completion_text_token_price=25000, aliases=["alias"]
        ),
        LanguageModel(id="negative", prompt_text_token_price=-1, completion_text_token_price=1),
        LanguageModel(id="huge", prompt_text_token_price=10**13, completion_text_token_price=1),
    ]
    images = [
        ImageGenerationModel(id="img", image_price=200_000_000),
        ImageGenerationModel(id="bad", image_price=-5),
    ]
    tokens, units = price_book.live_prices(languages, images)
    assert set(tokens) == {"ok", "alias"} and tokens["ok"].input == 1.25
    assert units == {"img": UnitPrice(0.02, "image")}


def test_a_cached_table_is_read_leniently() -> None:
    text = price_book.encode({"a": Price(1, None, 2)}, {"i": UnitPrice(0.02, "image")}, 5.0)
    data = json.loads(text)
    data["tokens"]["bad"] = ["x", None, 1, None]
    data["units"]["worse"] = [-1, "image"]
    tokens, units, written, skipped = price_book.decode(json.dumps(data))
    assert set(tokens) == {"a"} and set(units) == {"i"} and written == 5.0 and skipped == 2
    assert price_book.decode("not json") == ({}, {}, None, 1)


class _Cache:
    """A shared store's price cache (always stale: each read refreshes)."""

    def __init__(self) -> None:
        self.text: str | None = None

    def cached(self, key: str, fresh_for: float) -> tuple[str | None, bool]:
        return self.text, True

    def cache(self, key: str, text: str, ttl: float) -> None:
        self.text = text


def test_a_call_without_a_store_never_hides_the_live_table() -> None:
    from airflow_provider_xai.schemas import LanguageModel

    live = [LanguageModel(id="grok-new", prompt_text_token_price=12500, completion_text_token_price=25000)]
    book = price_book.PriceBook(lambda: (live, []), {}, ttl=600)
    assert book.table(_Cache(), "k").knows("grok-new")
    assert not book.table(None, "").knows("grok-new")  # an uncontrolled call: the built-in table
    assert book.table(_Cache(), "k").source == "xai"  # the live one is still this process's


def test_a_limit_under_a_cent_is_shown_as_it_is() -> None:
    (small,) = parse_budgets([{"usd": 0.000292}], "b")
    (large,) = parse_budgets([{"usd": 1234.5}], "b")
    assert (small.shown_limit, large.shown_limit) == ("$0.000292", "$1,234.50")


# --- tallies and reconciliation ------------------------------------------------------------------
def test_tallies_add_up_records_by_day_kind_and_model() -> None:
    stamp = datetime(2026, 9, 1, 12, tzinfo=timezone.utc).timestamp()
    records = [
        UsageRecord(model="m", cost_usd=0.5, cost_source="xai", timestamp=stamp, kind="chat"),
        UsageRecord(
            model="m", cost_usd=0.25, cost_source="estimate", timestamp=stamp, kind="batch", requests=3
        ),
        UsageRecord(model="m", cost_usd=None, timestamp=stamp, kind="chat"),
    ]
    sums = {e.key: e.amount for e in entries_of(records)}
    assert sums["xai-tally:2026-09-01:usd:chat:m"] == NANO // 2
    assert sums["xai-tally:2026-09-01:estimated:batch:m"] == NANO // 4
    assert (
        sums["xai-tally:2026-09-01:requests:chat:m"] == 2
        and sums["xai-tally:2026-09-01:unpriced:chat:m"] == 1
    )


def usage(points: dict[str, float], day: str = "2026-09-01") -> UsageAnalytics:
    return UsageAnalytics(
        timeSeries=[
            {"group": [g], "dataPoints": [DataPoint(timestamp=f"{day}T00:00:00Z", values=[v])]}
            for g, v in points.items()
        ]
    )


def test_the_reconciliation_explains_a_batch_discount() -> None:
    day = date(2026, 9, 1)
    tally = {
        "xai-tally:2026-09-01:usd:batch:m": NANO,
        "xai-tally:2026-09-01:estimated:batch:m": NANO,
        "xai-tally:2026-09-01:requests:batch:m": 10,
    }
    (row,) = compare([day], {"2026-09-01": tally}, usage({"Batch m": 0.5}), usage({"Batch m": 0.5}), 0.0001)
    assert row["difference_usd"] == -0.5 and row["explanations"][0].startswith("batch discount")


def test_a_match_is_not_flagged() -> None:
    tally = {"xai-tally:2026-09-01:usd:chat:m": NANO, "xai-tally:2026-09-01:requests:chat:m": 1}
    (row,) = compare(
        [date(2026, 9, 1)], {"2026-09-01": tally}, usage({"Chat m": 1.0}), usage({"Chat m": 1.0}), 1e-6
    )
    assert row["explanations"] == [] and not row["flagged"]


# --- billing answers -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "read"),
    [
        ({"val": "-1000"}, -1000),
        ("250", 250),
        (12, 12),
        (12.0, 12),
        ({"val": "1e3"}, None),
        ("9" * 30, None),
        (True, None),
        (float("inf"), None),
        (None, None),
        ({"val": 10**13}, None),
    ],
)
def test_amounts_from_xai_are_bounded(value: Any, read: int | None) -> None:
    assert cents(value) == read


def test_the_prepaid_total_is_negated() -> None:
    assert PrepaidBalance(total={"val": "-1050"}).credit_usd == 10.5
    assert PrepaidBalance(total={"val": "x"}).credit_usd is None


def test_a_usage_value_that_is_no_amount_is_refused() -> None:
    with pytest.raises(ValueError):
        DataPoint(timestamp="t", values=[math.inf])
