"""example_xai_chat end to end under dag.test() against the local xAI server."""

from __future__ import annotations

from typing import Any

from tests.dags.conftest import run_dag, task_states, xcom_values


def test_example_chat_dag_runs_green(dagbag: Any, xai_server: Any) -> None:
    dr = run_dag(dagbag, "example_xai_chat")
    states = task_states(dr)
    assert set(states.values()) == {"success"}, states
    report = xcom_values(dr, "report")[-1]
    assert "Lisbon" in report["tip"]
    assert set(report["facts"]) == {"city", "country", "population_millions", "known_for"}
    # The local server's structured answer reads like one: the city the prompt names, its
    # country, a plausible population, and no field echoing the prompt.
    facts = report["facts"]
    assert (facts["city"], facts["country"]) == ("Lisbon", "Portugal"), facts
    assert 0 < facts["population_millions"] < 20 and facts["known_for"]
    assert not any("Summarise" in str(value) for value in facts.values()), facts
    assert len(report["french"]) == 3
    usage = xcom_values(dr, "translate", "xai_usage")
    assert sorted(usage) == [0, 1, 2]
    assert all(u["map_index"] == i and u["task_id"] == "translate" for i, u in usage.items())
    assert xcom_values(dr, "deferred_haiku", "xai_request_id")[-1]
    polls = [e for e in xai_server.journal if "deferred-completion" in e.path]
    assert len(polls) >= 3
