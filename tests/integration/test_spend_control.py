"""Spend control against the local server: the forecast of every call beside its cost, the
task's ``max_cost_usd`` (zero billed requests over it; a tool loop held within it), budgets
reserved and settled in the shared store, and what a task does over one (fail, skip, defer)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from airflow_provider_xai import tools
from airflow_provider_xai.exceptions import XAICostCapError, XAIOverBudgetError
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.operators.responses import XAIResponsesOperator
from airflow_provider_xai.testing import Fault
from tests.helpers.context import FakeTI, make_context

PROMPT = "Summarise the nightly load in one line."
BILLED = ("/chat/completions", "/responses")


def billed(server: Any) -> list[Any]:
    """The requests xAI bills (chat completions and responses), as the server journaled them."""
    return [e for e in server.journal if e.method == "POST" and e.path.endswith(BILLED)]


def connect(server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: Any) -> Path:
    """The connection to the server, with its management key and a store of this test's own."""
    store = tmp_path / "spend.sqlite"
    monkeypatch.setenv(
        "AIRFLOW_CONN_XAI_DEFAULT",
        server.connection_json(**server.management_extra(), rate_limit_path=str(store), **extra),
    )
    return store


def chat(**kwargs: Any) -> XAIChatOperator:
    kwargs.setdefault("task_id", "chat")
    kwargs.setdefault("prompt", PROMPT)
    kwargs.setdefault("max_tokens", 50)
    return XAIChatOperator(deferrable=False, **kwargs)


def forecasts(ti: FakeTI) -> list[dict[str, Any]]:
    (calls,) = ti.values("xai_forecast")
    return calls


# --- the forecast ----------------------------------------------------------------------------------
def test_the_forecast_counts_the_prompt_exactly_and_bounds_the_answer(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path)
    ti = FakeTI()
    chat(system_prompt="You are terse.", max_cost_usd=1.0, model="grok-4.20-0309-non-reasoning").execute(
        make_context(ti)
    )
    (call,) = forecasts(ti)
    usage = ti.pushed["xai_usage"]
    forecast = call["forecast"]
    assert forecast["input_source"] == "tokenize"
    assert forecast["input_tokens"] == usage["prompt_tokens"]  # xAI's tokenizer, message by message
    assert usage["completion_tokens"] + usage["reasoning_tokens"] <= forecast["output_tokens"]
    assert call["actual_usd"] == usage["cost_usd"] <= forecast["cost_usd"]
    tokenized = xai_server.requests("/tokenize-text", method="POST")
    assert sorted(t.body["text"] for t in tokenized) == sorted(["You are terse.", PROMPT])


def test_a_prompt_is_tokenized_once_per_process(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path)
    op = chat(max_cost_usd=1.0)
    for _ in range(3):
        op.execute(make_context())
    assert len(xai_server.requests("/tokenize-text")) == 1
    assert len(billed(xai_server)) == 3


def test_calls_without_a_cap_or_budget_are_forecast_without_a_request(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path)
    ti = FakeTI()
    chat().execute(make_context(ti))
    assert forecasts(ti)[0]["forecast"]["input_source"] == "estimate"
    assert len(xai_server.journal) == len(billed(xai_server)) == 1


@pytest.mark.parametrize("capped", [False, True])
def test_a_stored_conversation_is_read_back_only_when_the_forecast_decides_something(
    capped: bool, xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A continued conversation another process started: its size is read back from xAI for a
    forecast under a cap; an uncontrolled forecast (a report only) costs no request."""
    from airflow_provider_xai.hooks.xai import XAIHook

    connect(xai_server, monkeypatch, tmp_path)
    first = XAIHook().create_response(model="grok-4.3", input=PROMPT, max_output_tokens=50)
    ti = FakeTI()
    XAIResponsesOperator(task_id="r", prompt="And tomorrow?", previous_response_id=first.id, max_tokens=50,
                         max_cost_usd=1.0 if capped else None).execute(make_context(ti))  # fmt: skip
    read_back = [e for e in xai_server.journal if e.method == "GET" and e.path.endswith(f"/responses/{first.id}")]
    assert len(read_back) == int(capped)
    assert (forecasts(ti)[0]["forecast"]["history_tokens"] > 0) == capped


def test_a_hook_call_outside_a_task_with_no_budget_is_left_alone(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No task to report a forecast to, no cap, no budget: the spend layer takes no part in the
    call (nothing forecast, nothing reserved); a team budget brings it back in."""
    from airflow_provider_xai.hooks.xai import XAIHook

    connect(xai_server, monkeypatch, tmp_path)
    hook = XAIHook()
    spent = []
    monkeypatch.setattr(hook.spend, "forecast", lambda *a, **k: spent.append(a) or pytest.fail("forecast"))
    hook.chat(messages=[{"role": "user", "content": PROMPT}], max_tokens=20)
    assert spent == [] and len(billed(xai_server)) == 1
    connect(xai_server, monkeypatch, tmp_path, budgets=[{"name": "team", "scope": "team", "usd": 5}])
    budgeted = XAIHook()
    budgeted.chat(messages=[{"role": "user", "content": PROMPT}], max_tokens=20)
    (state,) = budgeted.spend.budget_states(budgeted.settings)
    assert state.committed > 0  # reserved and settled to the bill


# --- the cap -----------------------------------------------------------------------------------------
def responses(**kwargs: Any) -> XAIResponsesOperator:
    return XAIResponsesOperator(task_id="r", prompt=PROMPT, max_tokens=50, **kwargs)


@pytest.mark.parametrize("make", [chat, responses])
def test_a_call_over_max_cost_usd_sends_zero_billed_requests(
    make: Any, xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path)
    ti = FakeTI()
    with pytest.raises(XAICostCapError, match=r"max_cost_usd is \$0\.000001") as raised:
        make(max_cost_usd=0.000001).execute(make_context(ti))
    assert billed(xai_server) == []
    assert raised.value.forecast["cost_usd"] > 0.000001
    (refused,) = forecasts(ti)
    assert (
        "xai_usage" not in ti.pushed
        and refused["actual_usd"] is None
        and "max_cost_usd" in refused["refused"]
    )


def test_calls_made_at_once_are_capped_together(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Four calls at once under a cap that holds two worst cases: two are sent, two refused
    before sending (each call counts the worst cases of the calls still under way). The cap
    also stops a third call when the first two have already finished, so two are sent however
    the four interleave; without the count of calls under way, overlapping calls all go."""
    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.spend.layer import SpendTask

    connect(xai_server, monkeypatch, tmp_path)
    xai_server.configure(latency=1.0)  # the four overlap
    prompt = " ".join([PROMPT] * 20)  # counted exactly: the worst case is near the bill
    ask = {"model": "grok-4.20-0309-non-reasoning", "messages": [{"role": "user", "content": prompt}],
           "max_tokens": 5}  # fmt: skip
    probe = XAIHook()
    probe.spend.task = SpendTask(max_cost_usd=1.0)
    probe.chat(ask)
    (call,) = probe.spend.task.calls
    worst, billed_usd = call["forecast"]["cost_usd"], call["actual_usd"]
    assert worst / 2 < billed_usd <= worst
    hook = XAIHook()
    hook.spend.task = task = SpendTask(max_cost_usd=(2 * worst + 2 * billed_usd + worst) / 2)
    answers = hook.chat_many([ask] * 4, max_concurrency=4)
    assert len([a for a in answers if isinstance(a, XAICostCapError)]) == 2
    assert len(billed(xai_server)) == 1 + 2 and task.under_way_usd == 0


def test_max_cost_usd_needs_an_output_bound(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path)
    with pytest.raises(XAICostCapError, match="set max_tokens"):
        chat(max_tokens=None, max_cost_usd=100.0).execute(make_context())
    assert billed(xai_server) == []


def test_a_function_tool_loop_stops_at_the_cap_with_the_answer_so_far(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path)

    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id} shipped"

    def run(cap: float | None) -> tuple[FakeTI, Any]:
        ti = FakeTI()
        op = XAIResponsesOperator(
            task_id="agent",
            prompt="Please lookup_order A-1",
            tools=[lookup_order],
            max_tokens=60,
            max_cost_usd=cap,
        )
        return ti, op.execute(make_context(ti))

    free, _ = run(1.0)
    first, follow = forecasts(free)
    assert len(billed(xai_server)) == 2 and follow["forecast"]["history_tokens"] > 0
    xai_server.reset()
    connect(xai_server, monkeypatch, tmp_path / "again")
    cap = max(first["forecast"]["cost_usd"], first["actual_usd"] + follow["forecast"]["cost_usd"] / 2)
    assert cap < first["actual_usd"] + follow["forecast"]["cost_usd"]
    capped, answer = run(cap)
    assert len(billed(xai_server)) == 1  # the follow-up's worst case would have passed the cap
    assert answer == ""  # the first answer (a function call) is the task's
    assert len(capped.values("xai_usage")) == 1  # recorded once


def test_a_server_side_tool_loop_is_held_to_the_turns_within_the_cap(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path)

    def op(cap: float | None, turns: int) -> XAIResponsesOperator:
        return XAIResponsesOperator(
            task_id="s",
            prompt="airflow news",
            tools=[tools.web_search()],
            max_turns=turns,
            max_tokens=40,
            max_cost_usd=cap,
        )

    one, five = FakeTI(), FakeTI()
    op(10.0, 1).execute(make_context(one))
    op(10.0, 5).execute(make_context(five))
    one_turn, five_turns = forecasts(one)[0]["forecast"], forecasts(five)[0]["forecast"]
    assert five_turns["cost_usd"] > one_turn["cost_usd"]
    held = FakeTI()
    op((one_turn["cost_usd"] + five_turns["cost_usd"]) / 2, 5).execute(make_context(held))
    sent = billed(xai_server)[-1].body
    assert 1 <= sent["max_turns"] < 5
    assert forecasts(held)[0]["forecast"]["cost_usd"] <= (one_turn["cost_usd"] + five_turns["cost_usd"]) / 2


# --- budgets ----------------------------------------------------------------------------------------------
def test_a_reservation_settles_to_what_xai_billed(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path, budgets=[{"name": "daily", "scope": "team", "usd": 5}])
    op = chat()
    ti = FakeTI()
    op.execute(make_context(ti))
    (call,) = forecasts(ti)
    (state,) = call["budgets"]
    assert state["committed"] == pytest.approx(call["forecast"]["cost_usd"], abs=1e-6)  # reserved
    (after,) = op.hook.spend.budget_states(op.hook.settings)
    assert after.committed == math.ceil(ti.pushed["xai_usage"]["cost_usd"] * 1e9)  # settled to the bill


def test_a_refused_call_gives_its_reservation_back(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path, budgets=[{"name": "daily", "scope": "team", "usd": 5}])
    xai_server.enqueue(Fault(status=400, message="no", path="/v1/responses"))
    op = chat()
    with pytest.raises(Exception, match="no"):
        op.execute(make_context())
    assert [s.committed for s in op.hook.spend.budget_states(op.hook.settings)] == [0]


def over_budget(monkeypatch: pytest.MonkeyPatch, server: Any, tmp_path: Path) -> None:
    budgets = [
        {"name": "tiny", "scope": "dag:test_dag", "usd": 0.000001},
        {"name": "team", "scope": "team", "period": "monthly", "tokens": 10**9},
    ]
    connect(server, monkeypatch, tmp_path, budgets=budgets)


def test_over_budget_fails_before_any_billed_request(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    over_budget(monkeypatch, xai_server, tmp_path)
    with pytest.raises(
        XAIOverBudgetError, match=r"tiny \(\d{4}-\d\d-\d\d\): \$0\.000000 of \$0\.000001 committed"
    ) as err:
        chat().execute(make_context())
    assert billed(xai_server) == []
    assert [b["name"] for b in err.value.budgets] == ["tiny"]  # only the budget it would pass


def test_over_budget_can_skip(xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    over_budget(monkeypatch, xai_server, tmp_path)
    with pytest.raises(AirflowSkipException):
        chat(over_budget="skip").execute(make_context())
    assert billed(xai_server) == []


def test_over_budget_can_wait_for_the_next_period(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    over_budget(monkeypatch, xai_server, tmp_path)
    op = chat(over_budget="defer")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context())
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date()
    assert deferred.value.trigger.moment.date() == tomorrow and deferred.value.trigger.moment.hour == 0
    assert deferred.value.method_name == "execute_budget_resume"
    assert billed(xai_server) == []


def test_a_budget_of_another_dag_does_not_apply(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    over_budget(monkeypatch, xai_server, tmp_path)
    chat().execute(make_context(FakeTI(dag_id="another_dag")))
    assert len(billed(xai_server)) == 1


def test_bad_budgets_are_refused_naming_the_field(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path, budgets=[{"scope": "dag:x", "usd": float("inf")}])
    with pytest.raises(Exception, match=r"budgets\[0\]\.usd"):
        chat().execute(make_context())
    assert xai_server.journal == []


def test_unknown_models_are_unpriced_never_free(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path, prices_ttl=0)  # built-in prices only
    ti = FakeTI()
    with pytest.raises(XAICostCapError, match=r"grok-4\.5.*no known price"):
        chat(model="grok-4.5", max_cost_usd=5.0).execute(make_context(ti))
    assert forecasts(ti)[0]["forecast"]["cost_source"] == "unpriced"
    assert billed(xai_server) == []


def test_live_prices_price_a_model_the_built_in_table_lacks(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(xai_server, monkeypatch, tmp_path)
    ti = FakeTI()
    chat(model="grok-4.5", max_cost_usd=5.0).execute(make_context(ti))
    assert forecasts(ti)[0]["forecast"]["cost_source"] == "prices"
    assert len(xai_server.requests("/language-models")) == 1
    chat(model="grok-4.5", max_cost_usd=5.0).execute(make_context())  # another hook, same store
    assert len(xai_server.requests("/language-models")) == 1  # cached in the shared store


def test_the_forecast_and_budget_lines_keep_secrets_out(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    over_budget(monkeypatch, xai_server, tmp_path)
    ti = FakeTI()
    with pytest.raises(XAIOverBudgetError) as err:
        chat(max_cost_usd=1.0).execute(make_context(ti))
    shown = json.dumps([ti.pushes, str(err.value), err.value.budgets, caplog.text], default=str)
    assert xai_server.api_key not in shown and xai_server.management_key not in shown
    assert "xAI forecast: model=grok-4.3" in caplog.text


# --- images and video: priced by count and seconds -----------------------------------------------
def test_images_over_the_cap_are_refused_before_the_request_and_under_it_bounded(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_xai.operators.images import XAIImageOperator

    connect(xai_server, monkeypatch, tmp_path)
    folder = f"file://{tmp_path}/media"
    ti = FakeTI()
    with pytest.raises(XAICostCapError, match=r"max_cost_usd"):  # 3 images at $0.02 > $0.05
        XAIImageOperator(task_id="shot", prompt="a mug", n=3, max_cost_usd=0.05, output_folder=folder).execute(
            make_context(ti)
        )
    assert xai_server.requests("/images/generations") == []
    (refused,) = forecasts(ti)
    assert (refused["forecast"]["units"], refused["forecast"]["unit"]) == (3, "image")
    ti = FakeTI()
    result = XAIImageOperator(task_id="shot", prompt="a mug", n=2, max_cost_usd=0.05, output_folder=folder).execute(
        make_context(ti)
    )
    (call,) = forecasts(ti)
    assert call["actual_usd"] == result["cost_usd"] <= call["forecast"]["cost_usd"] == pytest.approx(0.04)


def test_a_video_over_the_cap_is_refused_before_the_job_starts(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_xai.operators.video import XAIVideoOperator

    connect(xai_server, monkeypatch, tmp_path)
    ti = FakeTI()
    op = XAIVideoOperator(task_id="clip", prompt="a boat", duration=10, max_cost_usd=0.3,
                          output_folder=f"file://{tmp_path}/media", deferrable=False)  # fmt: skip
    with pytest.raises(XAICostCapError, match=r"max_cost_usd"):  # 10 s at $0.05 (or more) > $0.30
        op.execute(make_context(ti))
    assert xai_server.requests("/videos/generations") == []
    (refused,) = forecasts(ti)
    assert (refused["forecast"]["units"], refused["forecast"]["unit"]) == (10.0, "second")


def test_speech_is_forecast_exactly_and_refused_over_the_cap_before_any_request(
    xai_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_xai.operators.voice import XAITextToSpeechOperator

    connect(xai_server, monkeypatch, tmp_path, budgets=[{"name": "daily", "scope": "team", "usd": 5}])
    text = "Good morning. The nightly load finished at 03:12 with no errors. " * 20  # 1,300 characters

    def speak(cap: float) -> XAITextToSpeechOperator:
        return XAITextToSpeechOperator(task_id="say", text=text, output_path=f"file://{tmp_path}/say.mp3",
                                       max_cost_usd=cap)  # fmt: skip

    ti = FakeTI()
    with pytest.raises(XAICostCapError, match="max_cost_usd"):  # 1,300 characters at $4.20 per million: $0.00546
        speak(0.005).execute(make_context(ti))
    assert xai_server.requests("/tts") == []
    (refused,) = forecasts(ti)
    assert (refused["forecast"]["units"], refused["forecast"]["unit"]) == (len(text), "characters")
    ti = FakeTI()
    op = speak(0.01)
    op.execute(make_context(ti))
    (call,) = forecasts(ti)
    assert call["actual_usd"] == pytest.approx(call["forecast"]["cost_usd"]) == pytest.approx(len(text) * 4.2e-6)
    (state,) = op.hook.spend.budget_states(op.hook.settings)
    assert state.committed == math.ceil(call["actual_usd"] * 1e9)  # reserved, then settled to the bill
