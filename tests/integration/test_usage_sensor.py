"""XAIUsageSensor and usage accounting against the local xAI server and real Airflow runs.

Unit-level sensor/trigger tests use a fake task-state source (``get_task_states`` patched) and
a fake task instance; the DAG runs use ``dag.test()`` with DAGs defined here (serialized first).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, TaskGroup, task
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException, TaskDeferred
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from pydantic import BaseModel

from airflow_provider_xai.exceptions import XAIBudgetExceededError, XAIValidationError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.sensors.usage import XCOM_SUMMARY_KEY, XAIUsageSensor
from airflow_provider_xai.testing.state import Fault
from airflow_provider_xai.triggers.usage import XAIUsageTrigger
from airflow_provider_xai.usage import TICKS_PER_USD, build_record
from tests.dags.conftest import run_inline_dag, task_states, xcom_values
from tests.helpers.airflow_features import HAS_TASK_STATE_STORE

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def record(task_id: str, map_index: int = -1, try_number: int = 1, **fields: Any) -> dict[str, Any]:
    base = {"model": "grok-4.3", "prompt_tokens": 10, "completion_tokens": 5, "reasoning_tokens": 3}
    base.update(fields)
    base["total_tokens"] = base["prompt_tokens"] + base["completion_tokens"] + base["reasoning_tokens"]
    base.setdefault("cost_usd", 0.0001)
    base.setdefault("cost_source", "xai")
    stamp = {"dag_id": "d", "task_id": task_id, "run_id": "r", "map_index": map_index}
    return {**base, **stamp, "try_number": try_number, "timestamp": 1000.0 + try_number + map_index}


class FakeTI:
    """Enough of RuntimeTaskInstance for the sensor: XComs by (task, map index, key)."""

    dag_id = "d"
    run_id = "r"
    task_id = "usage"
    map_index = -1
    try_number = 1

    def __init__(self, xcoms: dict[tuple[str, int, str], Any] | None = None) -> None:
        self.xcoms = dict(xcoms or {})
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: list[str], key: str, **_: Any) -> list[Any]:
        out: list[Any] = []
        for t in task_ids:
            values = [v for (tid, _i, k), v in sorted(self.xcoms.items()) if tid == t and k == key]
            out.extend(values or [None])
        return out

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


class States:
    """A fake state source: ``RuntimeTaskInstance.get_task_states`` answers from ``now``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **now: str | None) -> None:
        self.now: dict[str, str | None] = now
        self.calls: list[dict[str, Any]] = []
        self.fail = 0
        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(self))

    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("execution API unavailable")
        wanted = kwargs["task_ids"]
        keys = {k: v for k, v in self.now.items() if k in wanted or k.rsplit("_", 1)[0] in wanted}
        return {kwargs["run_ids"][0]: keys}


def gate_dag(**sensor_kwargs: Any) -> tuple[DAG, XAIUsageSensor]:
    with DAG("d", schedule=None, start_date=START) as dag:
        a = XAIChatOperator(task_id="a", prompt="x")
        b = XAIChatOperator.partial(task_id="b").expand(prompt=["x", "y"])
        with TaskGroup("grp"):
            g = XAIChatOperator(task_id="g", prompt="x")
        sensor = XAIUsageSensor(task_id="usage", poke_interval=0, **sensor_kwargs)
        after = XAIChatOperator(task_id="after", prompt="x")
        a >> b >> sensor >> after
        g >> after
    return dag, sensor


LEDGERS = {
    ("a", -1, "xai_usage_ledger"): [record("a", try_number=1), record("a", try_number=2)],
    ("a", -1, "xai_usage"): record("a", try_number=2),
    ("b", 0, "xai_usage"): record("b", 0, prompt_tokens=7),
    ("b", 1, "xai_usage_ledger"): [record("b", 1, prompt_tokens=9, cost_usd=None, cost_source="unknown")],
}


class TestSensorWithFakeStates:
    def test_waits_while_a_watched_task_runs_then_reports_exact_sums(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _, sensor = gate_dag()
        states = States(monkeypatch, a="success", b_0="running", b_1="up_for_retry")
        ti = FakeTI(LEDGERS)
        assert sensor.poke({"ti": ti}) is False  # type: ignore[arg-type]
        states.now.update(b_0="success")
        assert sensor.poke({"ti": ti}) is False  # type: ignore[arg-type]
        states.now.update(b_1="failed")
        done = sensor.poke({"ti": ti})  # type: ignore[arg-type]
        assert done and states.calls[-1]["task_ids"] == ["a", "b"] and states.calls[-1]["run_ids"] == ["r"]
        report = done.xcom_value  # type: ignore[union-attr]
        assert report["records"] == 4
        assert report["totals"]["prompt_tokens"] == 10 + 10 + 7 + 9
        assert report["totals"]["total_tokens"] == 18 + 18 + 15 + 17
        assert report["totals"]["reasoning_tokens"] == 12
        assert report["totals"]["cost_usd"] == pytest.approx(0.0003, abs=1e-12)
        assert report["totals"]["unpriced_requests"] == 1
        assert report["by_task"]["a"]["tries"] == 2
        assert report["by_task"]["b"]["map_indexes"] == 2
        assert report["watched"] == ["a", "b"] and report["budget"]["status"] == "unlimited"

    def test_poke_mode_execute_loops_until_done(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _, sensor = gate_dag(task_ids=["a"], max_total_tokens=1000)
        states = States(monkeypatch, a="running")
        original = XAIUsageSensor.poke

        def poke(self: XAIUsageSensor, context: Any) -> Any:
            result = original(self, context)
            states.now["a"] = "success"  # the watched task finishes after the first poke
            return result

        monkeypatch.setattr(XAIUsageSensor, "poke", poke)
        report = sensor.execute({"ti": FakeTI(LEDGERS)})  # type: ignore[arg-type]
        assert len(states.calls) == 2
        assert report["budget"]["status"] == "ok" and report["budget"]["remaining_tokens"] == 1000 - 36

    def test_watched_tasks_default_explicit_and_group(self) -> None:
        assert gate_dag()[1].watched_task_ids() == ["a", "b"]
        assert gate_dag(task_ids="grp.g")[1].watched_task_ids() == ["grp.g"]
        assert gate_dag(task_group_id="grp")[1].watched_task_ids() == ["grp.g"]

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"task_ids": ["nope"]}, "task_ids"),
            ({"task_ids": ["after"]}, "task_ids"),
            ({"task_group_id": "nope"}, "task_group_id"),
        ],
    )
    def test_bad_watch_lists_are_refused(self, kwargs: dict[str, Any], field: str) -> None:
        with pytest.raises(XAIValidationError) as err:
            gate_dag(**kwargs)[1].watched_task_ids()
        assert err.value.field == field

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"task_ids": ["a"], "task_group_id": "grp"}, "task_ids"),
            ({"task_ids": [""]}, "task_ids"),
            ({"max_total_tokens": 0}, "max_total_tokens"),
            ({"max_total_tokens": 1.5}, "max_total_tokens"),
            ({"max_total_tokens": True}, "max_total_tokens"),
            ({"max_cost_usd": -1}, "max_cost_usd"),
        ],
    )
    def test_bad_arguments_fail_at_parse(self, kwargs: dict[str, Any], field: str) -> None:
        with pytest.raises(XAIValidationError) as err:
            XAIUsageSensor(task_id="s", **kwargs)
        assert err.value.field == field

    def test_templated_budget_is_checked_after_rendering(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _, sensor = gate_dag(max_cost_usd="{{ params.budget }}")
        sensor.max_cost_usd = "0.5"  # what rendering produces
        assert sensor.budget.max_cost_usd == 0.5
        sensor.max_cost_usd = "lots"
        States(monkeypatch, a="success", b="success")
        with pytest.raises(XAIValidationError, match="max_cost_usd"):
            sensor.execute({"ti": FakeTI()})  # type: ignore[arg-type]

    def test_over_budget_fails_naming_overspend_and_top_spenders(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _, sensor = gate_dag(max_total_tokens=50, max_cost_usd=0.00015)
        States(monkeypatch, a="success", b_0="success", b_1="failed")
        ti = FakeTI(LEDGERS)
        with pytest.raises(XAIBudgetExceededError) as err:
            sensor.execute({"ti": ti})  # type: ignore[arg-type]
        message = str(err.value)
        assert "total_tokens 68 > max_total_tokens 50 (over by 18)" in message
        assert "over by $0.000150" in message
        assert "Top spenders: a ($0.000200, 36 tokens), b ($0.000100, 32 tokens)" in message
        assert "1 request(s) had no known price" in message
        budget = ti.pushed[XCOM_SUMMARY_KEY]["budget"]
        assert budget["over_tokens"] == 18 and budget["over_cost_usd"] == pytest.approx(0.00015)

    def test_a_foreign_value_under_a_usage_key_is_skipped_counted_and_logged(
        self, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
    ) -> None:
        _, sensor = gate_dag(max_cost_usd=1.0)
        States(monkeypatch, a="success", b_0="success", b_1="success")
        b1 = ("b", 1, "xai_usage_ledger")
        xcoms = {
            **LEDGERS,
            ("a", -1, "xai_usage"): "done: 3 rows",  # a foreign task's text (issue 27)
            b1: [*LEDGERS[b1], {**record("b", 1), "cost_usd": float("nan")}, "x"],
        }
        capfd.readouterr()
        report = sensor.execute({"ti": FakeTI(xcoms)})  # type: ignore[arg-type]
        assert report["records"] == 4 and report["skipped_records"] == 3
        assert report["totals"]["cost_usd"] == pytest.approx(0.0003, abs=1e-12)
        assert report["budget"]["status"] == "ok"
        assert "xAI usage: skipped 3 stored value(s)" in "".join(capfd.readouterr())

    def test_soft_fail_skips_when_over_budget(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _, sensor = gate_dag(max_total_tokens=10, soft_fail=True)
        States(monkeypatch, a="success", b_0="success", b_1="success")
        with pytest.raises(AirflowSkipException, match="over by 58"):
            sensor.execute({"ti": FakeTI(LEDGERS)})  # type: ignore[arg-type]


class TestDeferrable:
    def test_defers_while_pending_and_reports_on_resume(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _, sensor = gate_dag(deferrable=True, timeout=60, max_total_tokens=10_000)
        states = States(monkeypatch, a="success", b_0="deferred", b_1="success")
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute({"ti": FakeTI(LEDGERS)})  # type: ignore[arg-type]
        trigger = deferred.value.trigger
        assert isinstance(trigger, XAIUsageTrigger) and deferred.value.method_name == "execute_complete"
        path, kwargs = trigger.serialize()
        assert path == "airflow_provider_xai.triggers.usage.XAIUsageTrigger"
        assert kwargs["task_ids"] == ["a", "b"] and kwargs["run_id"] == "r"
        assert kwargs["end_time"] == pytest.approx(time.time() + 60, abs=5)

        states.now["b_0"] = "success"
        event = asyncio.run(anext(XAIUsageTrigger(**kwargs).run()))
        assert event.payload == {"status": "done", "task_ids": ["a", "b"]}
        report = sensor.execute_complete({"ti": FakeTI(LEDGERS)}, event.payload)  # type: ignore[arg-type]
        assert report["records"] == 4 and report["budget"]["status"] == "ok"

    def test_done_at_once_needs_no_deferral(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _, sensor = gate_dag(deferrable=True)
        States(monkeypatch, a="success", b_0="skipped", b_1="upstream_failed")
        assert sensor.execute({"ti": FakeTI(LEDGERS)})["records"] == 4  # type: ignore[arg-type]

    async def test_trigger_polls_until_finished(self, monkeypatch: pytest.MonkeyPatch) -> None:
        states = States(monkeypatch, a="running")
        trigger = XAIUsageTrigger(dag_id="d", run_id="r", task_ids=["a"], poll_interval=0.01)
        runner = trigger.run()
        pending = asyncio.ensure_future(anext(runner))
        while len(states.calls) < 3:
            await asyncio.sleep(0.005)
        assert not pending.done()
        states.now["a"] = "removed"
        assert (await pending).payload["status"] == "done"

    async def test_trigger_times_out_listing_pending(self, monkeypatch: pytest.MonkeyPatch) -> None:
        States(monkeypatch, a="success", b_2="queued")
        trigger = XAIUsageTrigger(dag_id="d", run_id="r", task_ids=["a", "b"], end_time=time.time())
        event = await anext(trigger.run())
        assert event.payload == {"status": "timeout", "pending": {"b[2]": "queued"}}

    async def test_trigger_survives_blips_then_reports_errors(self, monkeypatch: pytest.MonkeyPatch) -> None:
        states = States(monkeypatch, a="success")
        states.fail = 2
        trigger = XAIUsageTrigger(dag_id="d", run_id="r", task_ids=["a"], poll_interval=0)
        assert (await anext(trigger.run())).payload["status"] == "done"
        states.fail = 99
        event = await anext(trigger.run())
        assert event.payload["status"] == "error" and "execution API unavailable" in event.payload["message"]

    def test_resume_after_timeout_fails_or_skips(self) -> None:
        _, sensor = gate_dag(deferrable=True)
        event = {"status": "timeout", "pending": {"b[0]": "running"}}
        with pytest.raises(AirflowSensorTimeout, match=r"b\[0\]"):
            sensor.execute_complete({"ti": FakeTI()}, event)  # type: ignore[arg-type]
        _, soft = gate_dag(deferrable=True, soft_fail=True)
        with pytest.raises(AirflowSkipException):
            soft.resume_execution("execute_complete", {"event": event}, {"ti": FakeTI()})  # type: ignore[arg-type]


# --- cost against the local server --------------------------------------------------------------
def _ask(model: str = "grok-4.3") -> Any:
    hook = XAIHook()
    completion = hook.chat(messages=[{"role": "user", "content": "Price this answer, please."}], model=model)
    return build_record(completion.usage, completion.model, prices=hook.get_prices())


class TestCostAgainstLocalServer:
    def test_server_ticks_are_used_when_present(self, xai_server: Any) -> None:
        xai_server.configure(prompt_cache=False)
        rec = _ask()
        assert rec.cost_source == "xai"
        assert rec.total_tokens == rec.prompt_tokens + rec.completion_tokens + rec.reasoning_tokens
        assert rec.reasoning_tokens > 0
        xai_server.configure(omit_cost=True)
        estimate = _ask()
        assert estimate.cost_source == "estimate"
        assert estimate.cost_usd == pytest.approx(rec.cost_usd, abs=1e-12)  # same price table

    @pytest.mark.parametrize("as_json", [True, False])
    def test_price_override_from_connection_extra(
        self, xai_server: Any, monkeypatch: pytest.MonkeyPatch, as_json: bool
    ) -> None:
        prices = {"grok-4.3": {"input": 100.0, "cached_input": 10.0, "output": 1000.0}}
        extra = {"prices": json.dumps(prices) if as_json else prices}
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(**extra))
        xai_server.configure(omit_cost=True, prompt_cache=False)
        rec = _ask()
        output = rec.completion_tokens + rec.reasoning_tokens
        assert rec.cost_source == "estimate"
        assert rec.cost_usd == pytest.approx((rec.prompt_tokens * 100 + output * 1000) / 1e6, abs=1e-12)
        xai_server.configure(omit_cost=False)
        assert _ask().cost_source == "xai"  # xAI's own figure still wins


# --- real DAG runs ------------------------------------------------------------------------------
class Answer(BaseModel):
    city: str


@pytest.mark.task_state_store
def test_failed_and_retried_tasks_count_and_the_gate_stops_the_run(airflow_db: None, xai_server: Any) -> None:
    """With a task state store (Airflow 3.3+) the retried task's ledger holds both tries; without
    one (3.2) it holds the current try only, as docs/usage.md says, and the gates still hold."""
    with DAG("t_xai_usage_gate", schedule=None, start_date=START) as dag:
        flaky = XAIChatOperator(
            api="chat",
            task_id="flaky",
            prompt="City?",
            response_format=Answer,
            retries=1,
            retry_delay=datetime.timedelta(0),
        )
        broken = XAIChatOperator(api="chat", task_id="broken", prompt="City?", response_format=Answer)
        hard = XAIUsageSensor(
            task_id="hard_gate", max_total_tokens=1, poke_interval=0, trigger_rule="all_done"
        )
        soft = XAIUsageSensor(
            task_id="soft_gate", max_cost_usd=1e-9, soft_fail=True, poke_interval=0, trigger_rule="all_done"
        )
        [flaky, broken] >> hard >> XAIChatOperator(api="chat", task_id="after_hard", prompt="more")
        [flaky, broken] >> soft >> XAIChatOperator(api="chat", task_id="after_soft", prompt="more")
    # The first answer of each task is not JSON: `broken` fails, `flaky` fails then succeeds.
    xai_server.enqueue(Fault(content="not json"), times=2)
    dr = run_inline_dag(dag)

    states = task_states(dr)
    assert states[("flaky", -1)] == "success" and states[("broken", -1)] == "failed"
    assert states[("hard_gate", -1)] == "failed" and states[("after_hard", -1)] == "upstream_failed"
    assert states[("soft_gate", -1)] == "skipped" and states[("after_soft", -1)] == "skipped"
    assert len(xai_server.requests("/chat/completions")) == 3

    ledger = xcom_values(dr, "flaky", "xai_usage_ledger")[-1]
    flaky_tries = [1, 2] if HAS_TASK_STATE_STORE else [2]
    assert [r["try_number"] for r in ledger] == flaky_tries
    billed = ledger + xcom_values(dr, "broken", "xai_usage_ledger")[-1]
    report = xcom_values(dr, "hard_gate", XCOM_SUMMARY_KEY)[-1]
    assert report["records"] == len(flaky_tries) + 1
    assert report["by_task"]["flaky"]["tries"] == len(flaky_tries)
    assert report["by_task"]["broken"]["requests"] == 1
    total = sum(r["prompt_tokens"] + r["completion_tokens"] + r["reasoning_tokens"] for r in billed)
    assert report["totals"]["total_tokens"] == total
    ticks = sum(round(r["cost_usd"] * TICKS_PER_USD) for r in billed)
    assert report["totals"]["cost_usd"] == ticks / TICKS_PER_USD
    assert report["budget"]["over_tokens"] == total - 1
    assert "over by" in report["budget"]["message"] and "flaky" in report["budget"]["message"]
    assert xcom_values(dr, "soft_gate", XCOM_SUMMARY_KEY)[-1]["budget"]["status"] == "exceeded"


@task
def probe(**context: Any) -> dict[str, Any]:
    """Run the trigger from inside a task: the task itself is `running`, `first` finished."""
    ti = context["ti"]

    def first_event(task_ids: list[str]) -> dict[str, Any]:
        trigger = XAIUsageTrigger(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_ids=task_ids,
            poll_interval=0.05,
            end_time=time.time() + 0.2,
        )
        return asyncio.run(anext(trigger.run())).payload

    return {"waiting": first_event(["first", "probe"]), "done": first_event(["first"])}


def test_sensor_waits_for_a_watched_task_in_a_real_run(airflow_db: None, xai_server: Any) -> None:
    with DAG("t_xai_usage_wait", schedule=None, start_date=START) as dag:
        first = XAIChatOperator(task_id="first", prompt="Go")
        watched = XAIChatOperator(task_id="watched", prompt="Then this")
        first >> watched
        first >> probe()
        XAIUsageSensor(
            task_id="usage", task_ids=["watched"], mode="reschedule", poke_interval=0.2, timeout=120
        )
    dr = run_inline_dag(dag)

    assert set(task_states(dr).values()) == {"success"}
    report = xcom_values(dr, "usage")[-1]
    assert report["tasks_with_usage"] == ["watched"] and report["records"] == 1
    assert report["totals"]["total_tokens"] == xcom_values(dr, "watched", "xai_usage")[-1]["total_tokens"]
    assert _reschedules(dr, "usage") >= 1  # it poked, found `watched` unfinished, and waited

    seen = xcom_values(dr, "probe")[-1]
    assert seen["waiting"] == {"status": "timeout", "pending": {"probe": "running"}}
    assert seen["done"] == {"status": "done", "task_ids": ["first"]}


def _reschedules(dag_run: Any, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count(TaskReschedule.id))
            .join(TaskInstance, TaskInstance.id == TaskReschedule.ti_id)
            .where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
            .where(TaskInstance.task_id == task_id)
        )


def test_tool_calls_of_a_responses_task_are_rolled_up_and_counted_by_the_budget(
    airflow_db: None, xai_server: Any
) -> None:
    from airflow_provider_xai import tools

    with DAG("t_xai_usage_tools", schedule=None, start_date=START) as dag:
        research = XAIChatOperator(
            task_id="research", prompt="Tides in Brest", tools=[tools.web_search(), tools.x_search()]
        )
        # Each search call costs $0.005 (xAI's $5 per 1,000); tokens alone cost far less.
        research >> XAIUsageSensor(task_id="usage", task_ids=["research"], max_cost_usd=0.005)
    dr = run_inline_dag(dag)

    record = xcom_values(dr, "research", "xai_usage")[-1]
    assert record["num_server_side_tools_used"] == 2
    assert record["server_side_tool_usage"] == {"web_search_calls": 1, "x_search_calls": 1}
    assert record["cost_usd"] > 0.01  # the two tool fees are in xAI's cost
    states = task_states(dr)
    assert states[("research", -1)] == "success"
    assert states[("usage", -1)] == "failed"  # the tool fees put the run over its budget
    report = xcom_values(dr, "usage", XCOM_SUMMARY_KEY)[-1]
    assert report["budget"]["status"] == "exceeded"
    assert report["totals"]["server_side_tool_usage"] == {"web_search_calls": 1, "x_search_calls": 1}
    assert report["totals"]["cost_usd"] == record["cost_usd"]
