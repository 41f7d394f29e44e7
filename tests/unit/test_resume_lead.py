"""The learned resume lead (ratelimit/lead.py): how long before its slot a task waiting in the
triggerer is handed back, from the returns the connection's tasks noted; and the embedded
store's table of those returns (shared by every store object on the file).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_xai.ratelimit.lead import (
    LEAD_FLOOR,
    LEAD_MARGIN,
    MAX_AGE_MS,
    WINDOW,
    entry,
    learned_lead,
    quantile,
    recent,
    trimmed,
)
from airflow_provider_xai.ratelimit.sqlite_store import SQLiteStates, resume_returns

NOW_MS = 1_800_000_000_000


class TestLearnedLead:
    def test_before_any_return_is_measured_the_connections_lead_is_used(self) -> None:
        assert learned_lead([], 3.0) == 3.0

    def test_the_lead_covers_three_returns_in_four_and_the_step_to_the_request(self) -> None:
        returns = [1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 6.0]  # one slow outlier
        assert quantile(returns, 0.75) == 2.0  # six of eight returns within it
        assert learned_lead(returns, 5.0) == pytest.approx(2.0 + LEAD_MARGIN)

    def test_fast_returns_are_floored_slow_ones_capped_by_the_connections_lead(self) -> None:
        assert learned_lead([0.05, 0.1], 3.0) == LEAD_FLOOR
        assert learned_lead([4.0, 9.0, 20.0], 3.0) == 3.0
        assert learned_lead([0.05], 0.2) == 0.2  # a ceiling under the floor wins: the user's setting

    def test_the_quantile_is_one_of_the_values(self) -> None:
        assert quantile([3.0], 0.75) == 3.0
        assert quantile([4.0, 1.0, 3.0, 2.0], 0.75) == 3.0
        assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
        assert quantile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0


class TestEntries:
    def test_an_entry_is_when_it_was_noted_and_the_return_in_ms(self) -> None:
        assert entry(NOW_MS, 1.2345) == f"{NOW_MS}:1234"
        assert entry(NOW_MS, -1) == f"{NOW_MS}:0"
        assert recent([entry(NOW_MS, 1e9)], NOW_MS) == [3600.0]  # at most an hour believed

    def test_recent_returns_are_the_last_ones_noted_within_the_hour_oldest_first(self) -> None:
        entries = [entry(NOW_MS - 10 - i, float(i)) for i in range(WINDOW + 4)]  # newest: 0 s
        assert recent(entries, NOW_MS) == [float(i) for i in range(WINDOW - 1, -1, -1)]
        assert recent([entry(NOW_MS - MAX_AGE_MS - 1, 1.0), entry(NOW_MS - 5, 2.0)], NOW_MS) == [2.0]

    @pytest.mark.parametrize(
        "garbled", ["", "x", "1:2:3", f"{NOW_MS}:-1", f"{NOW_MS}:1.5", f"{NOW_MS + 3_600_000}:100", "9" * 30 + ":1",
                    None, 17, b"\xff:1"],
    )
    def test_a_garbled_or_future_entry_is_ignored(self, garbled: object) -> None:
        assert recent([garbled, entry(NOW_MS, 2.0)], NOW_MS) == [2.0]

    def test_bytes_entries_are_read_as_redis_returns_them(self) -> None:
        assert recent([entry(NOW_MS, 1.5).encode()], NOW_MS) == [1.5]

    def test_the_stored_text_keeps_the_window_and_drops_what_is_too_old(self) -> None:
        stored = ",".join([entry(NOW_MS - MAX_AGE_MS - 1, 9.0), "junk", *(entry(NOW_MS, 1.0) for _ in range(WINDOW))])
        text = trimmed(stored, NOW_MS, entry(NOW_MS, 2.0))
        assert text.split(",") == [entry(NOW_MS, 1.0)] * (WINDOW - 1) + [entry(NOW_MS, 2.0)]
        assert trimmed(None, NOW_MS) == ""


def test_the_embedded_store_shares_returns_between_store_objects(tmp_path: Path) -> None:
    path = str(tmp_path / "limits.sqlite")
    one, two = SQLiteStates(path), SQLiteStates(path)  # two processes' view of one file
    assert resume_returns(one, "k", NOW_MS) == []  # no table yet: made on first use
    resume_returns(one, "k", NOW_MS, entry(NOW_MS, 1.5))
    resume_returns(two, "k", NOW_MS + 1, entry(NOW_MS + 1, 2.5))
    resume_returns(two, "other", NOW_MS, entry(NOW_MS, 9.0))
    assert recent(resume_returns(one, "k", NOW_MS + 2), NOW_MS + 2) == [1.5, 2.5]
    # An hour later they are forgotten, and the row is trimmed on the next read.
    later = NOW_MS + MAX_AGE_MS + 10
    assert resume_returns(two, "k", later) == []
    assert resume_returns(one, "k", later, entry(later, 0.7)) == [entry(later, 0.7)]
