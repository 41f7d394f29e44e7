"""XAIReconcileOperator: what the provider recorded against what xAI billed, per day and model.

The provider's side is the daily tally every task adds its usage records to (in the shared
store, when the connection has a management key: ``spend/tally.py``); xAI's side is the
Management API's usage query, asked twice: for the team, and for this connection's API key
(``api_key_id``). Each difference above ``tolerance_usd`` is a row, explained when it can be:

- ``other keys``: the team was billed more than this key (keys no task of this store used);
- ``outside Airflow``: this key was billed for calls no task recorded;
- ``estimated``: the provider estimated some of its cost from prices (xAI sent none);
- ``batch discount``: the difference lies in batch results whose cost was estimated at a
  discount other than the one xAI applied;
- ``unpriced``: the provider recorded requests it could not price.

The rows go to the task log (a table) and XCom (the return value: ``differences`` and every
compared ``rows``). Light imports only (imported at DAG parse).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.operators.base import XAIBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Differences at or below this many USD are rounding (xAI's usage is summed in floats).
DEFAULT_TOLERANCE_USD = 0.0001


def _day(value: Any, field: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise XAIValidationError(field, f"expected a day like 2026-09-01, got {value!r}") from None


def _run_day(context: Context | None) -> date:
    """The run's day (UTC): its logical date, else when it was due to run, else today."""
    context = context or {}  # type: ignore[assignment]
    moment = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None)
    if moment is None:
        return datetime.now(timezone.utc).date()
    return moment.astimezone(timezone.utc).date() if isinstance(moment, datetime) else _day(moment, "first_day")


class XAIReconcileOperator(XAIBaseOperator):
    """Compare, per UTC day and model, the provider's recorded usage with xAI's usage query.

    :param first_day: the first day compared (templated; default the run's day: its logical
        date, or for a run without one, as Airflow 3 allows, the day it was due to run).
    :param last_day: the last day compared (templated; default ``first_day``); at most 31 days.
    :param tolerance_usd: differences at or below it are not reported (default $0.0001).
    :param xai_conn_id: the xAI connection; it needs the management key, and its tasks' usage is
        tallied in its store (the same store and management key).
    """

    template_fields: Sequence[str] = ("first_day", "last_day")
    ui_color = "#fcd34d"

    def __init__(
        self,
        *,
        first_day: str | date | None = None,
        last_day: str | date | None = None,
        tolerance_usd: float = DEFAULT_TOLERANCE_USD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(tolerance_usd, bool) or not isinstance(tolerance_usd, int | float) or not (
            math.isfinite(tolerance_usd) and tolerance_usd >= 0
        ):
            raise XAIValidationError("tolerance_usd", f"must be a finite number >= 0, got {tolerance_usd!r}")
        self.first_day = first_day
        self.last_day = last_day
        self.tolerance_usd = float(tolerance_usd)

    def days(self, context: Context | None = None) -> list[date]:
        first = _day(self.first_day, "first_day") if self.first_day not in (None, "") else _run_day(context)
        last = _day(self.last_day, "last_day") if self.last_day not in (None, "") else first
        if last < first:
            raise XAIValidationError("last_day", f"{last} is before first_day {first}")
        if (last - first).days >= 31:
            raise XAIValidationError("last_day", "one reconciliation covers at most 31 days")
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_xai.spend.reconcile import compare, render

        days = self.days(context)
        hook = self.hook
        settings = hook.settings
        key_id = hook.get_api_key_info().api_key_id
        team = hook.query_usage(days[0], days[-1])
        mine = hook.query_usage(days[0], days[-1], [f"api_key_id:{key_id}"]) if key_id else team
        store = hook.spend.store(settings)
        tallies = {day.isoformat(): store.scan(f"xai-tally:{day.isoformat()}:") for day in days}
        rows = compare(days, tallies, team, mine, self.tolerance_usd, key_known=bool(key_id))
        differences = [row for row in rows if row["difference_usd"] is not None and row["flagged"]]
        self.log.info("%s", render(rows, f"xAI reconciliation {days[0]} .. {days[-1]}"))
        if team.limitReached or mine.limitReached:
            self.log.warning("xAI's usage answer was cut (limitReached): ask for fewer days")
        if differences:
            self.log.warning("xAI reconciliation: %d difference(s) above $%g", len(differences), self.tolerance_usd)
        return {
            "first_day": days[0].isoformat(),
            "last_day": days[-1].isoformat(),
            "rows": rows,
            "differences": differences,
            "truncated": bool(team.limitReached or mine.limitReached),
        }

    def result(self, answer: Any) -> Any:
        return answer


__all__ = ["DEFAULT_TOLERANCE_USD", "XAIReconcileOperator"]
