"""The scale run's figures (``tests/e2e/scale_figures.py``) from a made-up journal and XCom:
lost, duplicated and crossed answers are counted, and throughput is taken over the fan-out
window."""

from __future__ import annotations

from typing import Any

from airflow_provider_xai.testing.state import JournalEntry
from tests.e2e.scale_figures import figures

RUN = "e2e_1234"
TAGS = [f"{RUN}/m0000", f"{RUN}/f00-0000", f"{RUN}/f00-0001", f"{RUN}/f00-0002"]


def chat(tag: str, status: int, at: float) -> JournalEntry:
    body = {"model": "grok-4.3", "messages": [{"role": "user", "content": f"{tag} Say hello."}]}
    return JournalEntry("POST", "/v1/chat/completions", {}, {}, body, status=status, time=at)


def run(journal: list[JournalEntry], answers: list[tuple[str, str]], **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "limiter": "on",
        "server_rps": 2,
        "run_id": RUN,
        "expected_tags": TAGS,
        "journal": journal,
        "answers": answers,
        "failed_tasks": 0,
        "rollup": {"totals": {"requests": 4, "total_tokens": 40}},
        "recorded_tokens": 40,
        "dag_run_s": 9.0,
        "ran_on": {"worker-1": 2, "worker-2": 1},
    }
    return figures(**{**values, **overrides})


def prompt(tag: str) -> str:
    return f"{tag} Say hello."


def answer(tag: str) -> str:
    return f"You said: {tag} Say hello."


def test_a_clean_run() -> None:
    journal = [
        chat(TAGS[0], 200, 0.0),
        chat(TAGS[1], 200, 1.0),
        chat(TAGS[2], 429, 1.2),
        chat(TAGS[2], 200, 1.5),
        chat(TAGS[3], 200, 2.0),
        JournalEntry("GET", "/v1/models", {}, {}, None, status=200, time=5.0),  # not a chat request
        chat("e2e_other/m0000", 200, 9.0),  # another run's request
    ]
    result = run(journal, [(prompt(t), answer(t)) for t in TAGS])
    assert (result.attempts, result.billed, result.refused_429) == (5, 4, 1)
    assert result.refused_429_share == 0.25
    assert (result.lost_answers, result.duplicated_answers, result.crossed_answers) == (0, 0, 0)
    # fan-out window 1.0 .. 2.0 s holds three billed requests
    assert (result.fanout_window_s, result.billed_in_fanout_window, result.throughput_rps) == (1.0, 3, 3.0)
    assert result.throughput_share_of_limit == 1.5
    assert result.traffic_window_s == 2.0
    assert result.targets_missed() == ["429s 25.0% of requests > 0.5%"]
    slow = run(journal, [(prompt(t), answer(t)) for t in TAGS], server_rps=6)
    assert slow.targets_missed() == ["429s 25.0% of requests > 0.5%", "throughput 50.0% of the limit < 95%"]


def test_lost_duplicated_and_crossed_answers_are_counted() -> None:
    journal = [chat(TAGS[0], 200, 0.0), chat(TAGS[1], 200, 1.0), chat(TAGS[1], 200, 1.1), chat(TAGS[2], 200, 2.0)]
    answers = [
        (prompt(TAGS[0]), answer(TAGS[0])),
        (prompt(TAGS[0]), answer(TAGS[0])),  # stored twice
        (prompt(TAGS[1]), answer(TAGS[2])),  # another prompt's answer
    ]
    result = run(journal, answers)
    # TAGS[3] never answered or stored; TAGS[2] billed but not stored
    assert result.lost_answers == 2
    # TAGS[0] stored twice, TAGS[1] billed twice
    assert result.duplicated_answers == 2
    assert result.crossed_answers == 1


def test_the_capacity_wait_figures_add_up_the_usage_records_and_count_each_answer_once() -> None:
    from tests.e2e.scale_figures import wait_figures

    tags = [f"{RUN}/w{i:04d}" for i in range(3)]
    journal = [
        chat(tags[0], 200, 10.0),
        chat(tags[1], 429, 10.4),
        chat(tags[1], 200, 11.0),
        chat(tags[2], 200, 12.0),
        chat(tags[2], 200, 12.5),  # billed twice
        chat(f"{RUN}/o0000", 200, 10.2),  # other work of the run: in the throughput only
        chat("e2e_other/w0000", 200, 20.0),  # another run's
    ]
    ledgers = [
        [{"waited_s": 0.5, "deferred_s": 0.0}],
        [{"waited_s": 1.25, "deferred_s": 20.0}],
        [{"waited_s": None}],  # a record without the fields counts as no wait
    ]
    answers = [(prompt(t), answer(t)) for t in tags[:2]]  # the third task's answer is missing
    result = wait_figures(
        mode="in the triggerer", server_rps=2, run_id=RUN, tasks=3, journal=journal, answers=answers,
        ledgers=ledgers, failed_tasks=1, came_back=[2.25, 1.5], bystander_start_delays=(3.456, 0.5), dag_run_s=30.0,
        leads=[3.0, 1.25], late_returns=1,
    )
    assert (result.billed, result.refused_429, result.lost_answers, result.duplicated_answers) == (4, 1, 1, 1)
    assert (result.slot_seconds_waiting, result.seconds_deferred, result.deferred_tasks) == (1.75, 20.0, 1)
    assert result.came_back_s == [1.5, 2.2]
    assert (result.leads_s, result.late_returns) == ([1.2, 3.0], 1)
    assert (result.bystander_behind_start_delay_s, result.bystander_first_start_delay_s) == (3.46, 0.5)
    assert result.throughput_rps == round(4 / 2.5, 2)  # 5 answers of the run, from 10.0 to 12.5
