"""usage_summary.py: gathering, exact totals, budgets, the table, task-state parsing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_xai.usage import COUNT_FIELDS, TICKS_PER_USD, UsageRecord
from airflow_provider_xai.usage_summary import (
    Budget,
    evaluate_budget,
    fetch_task_states,
    parse_task_states,
    records_from_values,
    render_table,
    summarize,
    unfinished,
)


def rec(
    task_id: str = "t", map_index: int = -1, try_number: int = 1, ticks: int | None = 100, **kw: Any
) -> UsageRecord:
    r = UsageRecord(
        model=kw.pop("model", "grok-4.3"), task_id=task_id, map_index=map_index, try_number=try_number
    )
    r.prompt_tokens, r.completion_tokens, r.reasoning_tokens = kw.get("p", 10), kw.get("c", 5), kw.get("r", 3)
    r.cached_tokens, r.image_tokens = kw.get("cached", 2), kw.get("image", 0)
    r.num_sources_used, r.server_side_tool_usage = kw.get("sources", 0), kw.get("tools", {})
    r.num_server_side_tools_used = sum(r.server_side_tool_usage.values())
    r.total_tokens = r.prompt_tokens + r.completion_tokens + r.reasoning_tokens
    r.cost_usd = None if ticks is None else ticks / TICKS_PER_USD
    r.cost_source = "unknown" if ticks is None else "xai"
    r.dag_id, r.run_id = "d", "run"
    r.timestamp = 1000.0 + 10 * try_number + map_index
    r.completion_id = f"{task_id}-{map_index}-{try_number}"
    return r


records_strategy = st.lists(
    st.builds(
        rec,
        task_id=st.sampled_from(["a", "b", "c"]),
        map_index=st.integers(-1, 3),
        try_number=st.integers(1, 3),
        ticks=st.none() | st.integers(0, 10**9),
        model=st.sampled_from(["grok-4.3", "grok-3-mini"]),
        p=st.integers(0, 10**6),
        c=st.integers(0, 10**5),
        r=st.integers(0, 10**5),
        cached=st.integers(0, 1000),
        image=st.integers(0, 4096),
        sources=st.integers(0, 20),
        tools=st.dictionaries(st.sampled_from(["web_search_calls", "x_search_calls"]), st.integers(1, 9)),
    ),
    max_size=30,
)


class TestTotals:
    @settings(max_examples=60, deadline=None)
    @given(records_strategy)
    def test_totals_are_exact_sums_at_every_level(self, records: list[UsageRecord]) -> None:
        records, skipped = records_from_values([r.to_dict() for r in records])  # de-duplicated
        assert skipped == 0
        summary = summarize(records)
        totals = summary.totals
        assert totals.requests == len(records) == summary.records
        for name in COUNT_FIELDS:
            assert getattr(totals, name) == sum(getattr(r, name) for r in records)
            assert sum(getattr(t, name) for t in summary.by_task.values()) == getattr(totals, name)
            assert sum(getattr(t, name) for t in summary.by_model.values()) == getattr(totals, name)
        assert totals.total_tokens == sum(
            r.prompt_tokens + r.completion_tokens + r.reasoning_tokens for r in records
        )
        ticks = sum(round(r.cost_usd * TICKS_PER_USD) for r in records if r.cost_usd is not None)
        assert totals.cost_ticks == ticks and totals.cost_usd == ticks / TICKS_PER_USD
        assert totals.unpriced_requests == sum(r.cost_usd is None for r in records)
        for tool in ("web_search_calls", "x_search_calls"):
            calls = sum(r.server_side_tool_usage.get(tool, 0) for r in records)
            assert totals.server_side_tool_usage.get(tool, 0) == calls
            assert totals.to_dict()["server_side_tool_usage"].get(tool, 0) == calls

    def test_mapped_instances_and_tries_are_counted(self) -> None:
        summary = summarize([rec("m", 0), rec("m", 1), rec("m", 2), rec("m", 2, try_number=2), rec("x")])
        m = summary.by_task["m"].to_dict()
        assert (m["requests"], m["map_indexes"], m["tries"], m["mapped"]) == (4, 3, 4, True)
        assert summary.by_task["m"].label("m") == "m [3 mapped, 4 tries]"
        assert summary.by_task["x"].label("x") == "x"
        assert summary.to_dict()["by_task"]["x"]["mapped"] is False


class TestGathering:
    def test_ledger_and_latest_record_are_deduplicated(self) -> None:
        try1, try2, other = rec("a", try_number=1), rec("a", try_number=2), rec("b", 0)
        values = [[try1.to_dict(), try2.to_dict()], try2.to_dict(), None, other.to_dict(), {"junk": 1}, "x"]
        got, skipped = records_from_values(values)
        assert [(r.task_id, r.try_number) for r in got] == [("a", 1), ("a", 2), ("b", 1)]
        assert skipped == 2  # {"junk": 1} and "x"; None is no value at all

    def test_same_call_in_two_map_indexes_is_not_merged(self) -> None:
        assert len(records_from_values([rec("a", 0).to_dict(), rec("a", 1).to_dict()])[0]) == 2

    @pytest.mark.parametrize(
        "bad",
        [
            "done: 3 rows",  # a foreign task's text under xai_usage (issue 27)
            3,
            {"junk": 1},
            {"model": "m", "prompt_tokens": "many"},
            {"model": "m", "total_tokens": -5},
            {"model": "m", "cost_usd": float("nan")},
            {"model": "m", "cost_usd": float("inf")},
            {"model": "m", "cost_usd": -0.01},
            {"model": "m", "cost_usd": 1e300},
            {"model": "m", "timestamp": float("nan")},
            {"model": "m", "requests": True},
            {"model": "m", "cost_source": "guess"},
            {"model": "m", "server_side_tool_usage": {"web_search_calls": -2}},
            {"model": 7},
        ],
    )
    def test_a_value_that_is_no_usage_record_is_skipped_and_counted_never_summed(self, bad: Any) -> None:
        good = rec("a")
        records, skipped = records_from_values([[good.to_dict(), bad], bad])
        assert (records, skipped) == ([good], 2)
        totals = summarize(records).totals  # never an exception, never a NaN or negative sum
        assert (totals.total_tokens, totals.cost_ticks) == (good.total_tokens, 100)

    def test_nulls_count_as_absent(self) -> None:
        data = {**rec("a").to_dict(), "cost_usd": None, "try_number": None, "server_side_tool_usage": None}
        ((got,), skipped) = records_from_values([data])
        assert (got.cost_usd, got.try_number, got.server_side_tool_usage, skipped) == (None, None, {}, 0)


class TestBudget:
    summary = summarize(
        [rec("big", ticks=3_000_000, p=900), rec("small", ticks=1_000_000), rec("free", ticks=None)]
    )

    def test_unlimited(self) -> None:
        status = evaluate_budget(self.summary, Budget())
        assert status["status"] == "unlimited" and status["message"] == ""

    def test_exactly_at_the_limit_is_within_budget(self) -> None:
        total = self.summary.totals
        status = evaluate_budget(
            self.summary, Budget(max_total_tokens=total.total_tokens, max_cost_usd=0.0004)
        )
        assert (
            status["status"] == "ok" and status["remaining_tokens"] == 0 and status["remaining_cost_usd"] == 0
        )

    def test_over_tokens_names_overspend_and_top_spenders(self) -> None:
        status = evaluate_budget(self.summary, Budget(max_total_tokens=100))
        total = self.summary.totals.total_tokens
        assert status["status"] == "exceeded" and status["over_tokens"] == total - 100
        assert f"total_tokens {total:,} > max_total_tokens 100 (over by {total - 100:,})" in status["message"]
        assert [t["task_id"] for t in status["top_tasks"]] == ["big", "small", "free"]
        assert "Top spenders: big ($0.000300, 908 tokens)" in status["message"]
        assert "1 request(s) had no known price" in status["message"] and not status["cost_complete"]

    def test_over_cost(self) -> None:
        status = evaluate_budget(self.summary, Budget(max_cost_usd=0.0001))
        assert status["over_cost_usd"] == pytest.approx(0.0003) and status["over_tokens"] == 0
        assert "cost $0.000400 > max_cost_usd $0.000100 (over by $0.000300)" in status["message"]


def test_table_lists_tasks_models_and_total() -> None:
    summary = summarize(
        [
            rec("a", 0, ticks=10**5, p=1234, tools={"web_search_calls": 2}),
            rec("a", 1, ticks=10**5, sources=3),
            rec("b", ticks=None, model="grok-3-mini"),
        ]
    )
    table = render_table(summary, "xAI usage of d / run")
    lines = table.splitlines()
    assert lines[0] == "xAI usage of d / run: 3 record(s)"
    assert lines[1].split() == [
        "requests",
        "prompt",
        "completion",
        "reasoning",
        "cached",
        "image",
        "total",
        "sources",
        "tools",
        "cost",
        "USD",
    ]
    assert lines[3].split() == [
        "task",
        "a",
        "[2",
        "mapped]",
        "2",
        "1,244",
        "10",
        "6",
        "4",
        "0",
        "1,260",
        "3",
        "2",
        "0.000020",
    ]
    assert lines[4].split()[:3] == ["task", "b", "1"] and lines[4].endswith("0.000000+?")
    assert [line.split()[1] for line in lines if line.startswith("model")] == ["grok-3-mini", "grok-4.3"]
    assert lines[-1].split() == ["TOTAL", "3", "1,254", "15", "9", "6", "0", "1,278", "3", "2", "0.000020+?"]
    assert len({len(line) for line in lines[1:]}) == 1  # columns line up


class TestTaskStates:
    def test_mapped_keys_and_enum_states(self) -> None:
        class State:
            value = "success"

        raw = {"a": State(), "b_0": "running", "b_1": None, "other": "failed", "c_x": "success"}
        assert parse_task_states(raw, ["a", "b"]) == {
            ("a", -1): "success",
            ("b", 0): "running",
            ("b", 1): None,
        }

    def test_unfinished(self) -> None:
        states = {("a", -1): "success", ("b", 0): "up_for_retry", ("b", 1): None, ("c", -1): "removed"}
        assert unfinished(states) == {"b[0]": "up_for_retry", "b[1]": "None"}
        finished = ("success", "failed", "skipped", "upstream_failed", "removed")
        assert unfinished({("x", i): s for i, s in enumerate(finished)}) == {}

    def test_fetch_asks_per_task_when_ids_could_collide(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        db = {"a": {"a_1": "running"}, "a_1": {"a_1": "success"}}
        calls: list[list[str]] = []

        def get_task_states(**kw: Any) -> dict[str, Any]:
            calls.append(kw["task_ids"])
            assert kw["dag_id"] == "d" and kw["run_ids"] == ["r"]
            return {"r": {k: v for t in kw["task_ids"] for k, v in db[t].items()}}

        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
        assert fetch_task_states("d", "r", ["a", "a_1"]) == {("a", 1): "running", ("a_1", -1): "success"}
        assert calls == [["a"], ["a_1"]]
        calls.clear()
        assert fetch_task_states("d", "r", ["a"]) == {("a", 1): "running"} and calls == [["a"]]
        assert fetch_task_states("d", "r", []) == {}


# --- pinned by make mutate: the shapes users and the usage page read, and the budget's edges ------
def test_the_summary_and_totals_keep_their_keys() -> None:
    """The sensor's XCom and the usage page read these names: a renamed key breaks them."""
    summary = summarize([rec("a", ticks=5_000, tools={"web_search_calls": 1}), rec("a", 0, ticks=None)])
    data = summary.to_dict()
    assert list(data) == ["totals", "by_model", "by_task", "records"] and data["records"] == 2
    assert data["totals"] == {
        "requests": 2, "prompt_tokens": 20, "completion_tokens": 10, "reasoning_tokens": 6, "cached_tokens": 4,
        "image_tokens": 0, "total_tokens": 36, "num_sources_used": 0, "num_server_side_tools_used": 1,
        "server_side_tool_usage": {"web_search_calls": 1}, "cost_usd": 5_000 / TICKS_PER_USD, "unpriced_requests": 1,
    }  # fmt: skip
    assert data["by_model"] == {"grok-4.3": data["totals"]}
    assert data["by_task"]["a"] == {**data["totals"], "mapped": True, "map_indexes": 2, "tries": 2}


class TestBudgetEdges:
    summary = summarize([rec("big", ticks=3_000_000, p=900), rec("small", ticks=1_000_000)])

    def test_the_whole_status_of_a_run_within_budget(self) -> None:
        totals = self.summary.totals
        status = evaluate_budget(self.summary, Budget(max_total_tokens=totals.total_tokens + 5, max_cost_usd=0.001))
        assert status == {
            "status": "ok", "max_total_tokens": totals.total_tokens + 5, "max_cost_usd": 0.001,
            "total_tokens": totals.total_tokens, "cost_usd": 0.0004, "cost_complete": True,
            "over_tokens": 0, "over_cost_usd": 0.0, "remaining_tokens": 5, "remaining_cost_usd": 0.0006,
            "top_tasks": [
                {"task_id": "big", "cost_usd": 0.0003, "total_tokens": 908, "requests": 1},
                {"task_id": "small", "cost_usd": 0.0001, "total_tokens": 18, "requests": 1},
            ],
            "message": "",
        }  # fmt: skip

    def test_one_token_or_one_tick_over_is_over(self) -> None:
        totals = self.summary.totals
        tokens = evaluate_budget(self.summary, Budget(max_total_tokens=totals.total_tokens - 1))
        assert (tokens["status"], tokens["over_tokens"], tokens["remaining_tokens"]) == ("exceeded", 1, 0)
        cost = evaluate_budget(self.summary, Budget(max_cost_usd=(totals.cost_ticks - 1) / TICKS_PER_USD))
        assert (cost["status"], cost["over_cost_usd"], cost["remaining_cost_usd"]) == ("exceeded", 1e-10, 0.0)
        assert cost["over_tokens"] == 0 and cost["remaining_tokens"] is None

    def test_both_limits_over_are_both_named_with_every_top_spender(self) -> None:
        status = evaluate_budget(self.summary, Budget(max_total_tokens=10, max_cost_usd=0.0001))
        assert status["message"] == (
            "xAI budget exceeded: total_tokens 926 > max_total_tokens 10 (over by 916); "
            "cost $0.000400 > max_cost_usd $0.000100 (over by $0.000300). "
            "Top spenders: big ($0.000300, 908 tokens), small ($0.000100, 18 tokens)."
        )

    def test_top_spenders_are_three_by_cost_then_tokens(self) -> None:
        four = summarize([rec("a", ticks=100, p=5), rec("b", ticks=100, p=50), rec("c", ticks=900), rec("d", ticks=1)])
        assert [t["task_id"] for t in evaluate_budget(four, Budget(max_total_tokens=1))["top_tasks"]] == ["c", "b", "a"]


def test_the_table_has_its_default_title_and_left_aligned_names() -> None:
    table = render_table(summarize([rec("a_long_task_name"), rec("b")]))
    lines = table.splitlines()
    assert lines[0] == "xAI usage: 2 record(s)"
    assert lines[3].startswith("task   a_long_task_name ") and lines[4].startswith("task   b                ")


class TestTaskStateLookups:
    @pytest.fixture
    def calls(self, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        seen: list[list[str]] = []

        def get_task_states(**kw: Any) -> dict[str, Any]:
            seen.append(kw["task_ids"])
            return {"r": {t: "success" for t in kw["task_ids"]}} if kw["task_ids"] != ["gone"] else {}

        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
        return seen

    def test_ids_that_cannot_collide_are_asked_at_once(self, calls: list[list[str]]) -> None:
        assert fetch_task_states("d", "r", ["a", "b_1", "c_d"]) == {
            ("a", -1): "success", ("b_1", -1): "success", ("c_d", -1): "success"}
        assert calls == [["a", "b_1", "c_d"]]

    def test_ids_that_could_collide_are_asked_one_by_one(self, calls: list[list[str]]) -> None:
        fetch_task_states("d", "r", ["x_y", "x_y_1"])  # "x_y_1" may be map index 1 of "x_y"
        assert calls == [["x_y"], ["x_y_1"]]

    def test_a_run_missing_from_the_answer_has_no_states(self, calls: list[list[str]]) -> None:
        assert fetch_task_states("d", "r", ["gone"]) == {}


def test_an_unmapped_unfinished_task_is_named_without_an_index() -> None:
    assert unfinished({("a", -1): "running", ("b", 2): "queued"}) == {"a": "running", "b[2]": "queued"}
