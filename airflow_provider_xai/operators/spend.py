"""Spend control in a task: its cost cap and what it does when a call does not fit a budget.

:func:`run_within_budget` wraps a task's run: it hands the hook's spend layer the task (its DAG
and tags, for the budgets; ``max_cost_usd`` less what earlier tries spent), and pushes each call's
forecast beside its cost to XCom ``xai_forecast`` however the run ends. A call over budget is
refused before it is sent; then, as the task's ``over_budget`` says:

- ``fail``: the task fails (never retried);
- ``skip``: the task is skipped;
- ``defer``: the task waits in the triggerer until the budget's next period, then runs again;
- ``ask``: a person is asked, through Airflow's human-in-the-loop (the task's *Required
  actions*), with the call's forecast and the budgets' state; ``Approve`` runs the task again
  and lets exactly that call past the budget; ``Reject`` (or no answer in ``approval_timeout``)
  fails it.

Light imports only: this module is imported at DAG parse.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import XAIOverBudgetError, XAIValidationError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.forecast import Forecast
    from airflow_provider_xai.usage import UsageLedger

#: The operator (``XAIBaseOperator``) whose run is under spend control.
XAIBaseOperator = Any

OVER_BUDGET = ("fail", "skip", "defer", "ask")
XCOM_FORECAST_KEY = "xai_forecast"
APPROVE, REJECT = "Approve", "Reject"
#: The resume method of a task that waited for a budget (``XAIBaseOperator``'s).
RESUME_METHOD = "execute_budget_resume"


def check_spend_arguments(max_cost_usd: Any, over_budget: Any, approval_timeout: Any) -> None:
    """The spend arguments, checked at DAG parse (naming the argument)."""
    if max_cost_usd is not None and (
        isinstance(max_cost_usd, bool)
        or not isinstance(max_cost_usd, int | float)
        or not (math.isfinite(max_cost_usd) and max_cost_usd > 0)
    ):
        raise XAIValidationError("max_cost_usd", f"must be a finite number of USD above 0, got {max_cost_usd!r}")
    if over_budget not in OVER_BUDGET:
        raise XAIValidationError("over_budget", f"must be one of {', '.join(OVER_BUDGET)}, got {over_budget!r}")
    if approval_timeout is not None and not (
        isinstance(approval_timeout, timedelta) and approval_timeout.total_seconds() > 0
    ):
        raise XAIValidationError("approval_timeout", f"must be a positive timedelta, got {approval_timeout!r}")


def run_within_budget(op: XAIBaseOperator, context: Context, ledger: UsageLedger, run: Callable[[], Any]) -> Any:
    """Run ``run`` with spend control (see the module docstring)."""
    from airflow_provider_xai.spend.layer import SpendTask

    dag = context.get("dag")
    earlier = sum(r.get("cost_usd") or 0.0 for r in ledger.records if isinstance(r.get("cost_usd"), int | float))
    task = SpendTask(
        dag_id=context["ti"].dag_id,
        task_id=context["ti"].task_id,
        tags=tuple(sorted(getattr(dag, "tags", None) or ())),
        max_cost_usd=op.max_cost_usd,
        spent_usd=float(earlier),
        approved=set(op.approved_calls),
    )
    op.hook.spend.task = task
    try:
        return run()
    except XAIOverBudgetError as exc:
        return _over_budget(op, context, exc)
    finally:
        if task.calls:
            context["ti"].xcom_push(key=XCOM_FORECAST_KEY, value=task.calls)


def batch_forecast(
    op: XAIBaseOperator, ledger: UsageLedger, requests: list[tuple[str, dict[str, Any]]]
) -> Forecast | None:
    """A batch's worst case (every request's forecast, no discount assumed), checked against
    the task's ``max_cost_usd`` before the batch is made, for it and the budgets (None: neither
    applies, nothing forecast); ``requests``: (API path, body) pairs."""
    from airflow_provider_xai.endpoints import declaration_of
    from airflow_provider_xai.exceptions import XAICostCapError
    from airflow_provider_xai.forecast import combined

    settings, forecasts, problems = op.hook.settings, [], []
    if op.max_cost_usd is None and not op.hook.spend.budgets(settings):
        return None
    for path, body in requests:
        endpoint = declaration_of("POST", path)
        declared = endpoint.forecast if endpoint is not None else None
        if declared is None:
            problems.append(f"{path} has no forecast")
            continue
        forecast, _ = op.hook.spend.forecast(declared, body, settings)
        if forecast.cost_usd is None or not forecast.bounded:
            problems.append(f"a {forecast.model} request has no bound ({forecast.unbounded or 'unpriced'})")
        forecasts.append(forecast)
    whole = combined(forecasts, "batch")
    worst = whole.cost_usd or 0.0
    op.log.info("xAI batch forecast: %d requests, worst case $%.6f (no discount assumed)", len(requests), worst)
    if op.max_cost_usd is None:
        return whole
    spent = sum(r.get("cost_usd") or 0.0 for r in ledger.records if isinstance(r.get("cost_usd"), int | float))
    if problems or spent + worst > op.max_cost_usd:
        why = "; ".join(problems) or f"its worst case ${worst:.6f} would take the task to ${spent + worst:.6f}"
        cap = op.max_cost_usd
        error = XAICostCapError(f"xAI batch refused before it was made: max_cost_usd is ${cap:.6f} and {why}")
        error.spent_usd = spent
        raise error
    return whole


def _over_budget(op: XAIBaseOperator, context: Context, exc: XAIOverBudgetError) -> Any:
    op.log.warning("%s", exc.message)
    if op.over_budget == "skip":
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(exc.message)
    if op.over_budget == "defer":
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        moment = datetime.fromisoformat(exc.resets_at or datetime.now().isoformat())
        op.log.info("Waiting for the xAI budget's next period, from %s", moment.isoformat())
        op.defer(trigger=DateTimeTrigger(moment=moment), method_name=RESUME_METHOD, kwargs={"reason": "period"})
    if op.over_budget == "ask":
        return _ask(op, context, exc)
    raise exc


def question(exc: XAIOverBudgetError) -> str:
    """The approval's body (Markdown): the call's forecast and the budgets it would pass."""
    forecast = exc.forecast or {}
    cost = forecast.get("cost_usd")
    lines = [
        "An xAI call of this task does not fit its budget. **Approve** lets this one call through "
        "(it is then counted against the budget); **Reject** fails the task.",
        "",
        f"- model: `{forecast.get('model')}`",
        f"- forecast, worst case: {'unpriced' if cost is None else f'${cost:.6f}'}, "
        f"{forecast.get('total_tokens')} tokens ({forecast.get('input_tokens')} prompt tokens counted, "
        f"at most {forecast.get('output_tokens')} output tokens)",
    ]
    for budget in exc.budgets or []:
        unit = "$" if budget.get("unit") == "usd" else ""
        lines.append(
            f"- budget `{budget.get('name')}` ({budget.get('period_id')}): {unit}{budget.get('committed')} of "
            f"{unit}{budget.get('limit')} committed, {unit}{budget.get('remaining')} left; "
            f"resets {budget.get('resets_at')}"
        )
    return "\n".join(lines)


def _ask(op: XAIBaseOperator, context: Context, exc: XAIOverBudgetError) -> Any:
    """Ask a person (Airflow's human-in-the-loop), then resume in :data:`RESUME_METHOD`."""
    from airflow.sdk.execution_time.hitl import upsert_hitl_detail

    ti_id = context["task_instance"].id
    options = [APPROVE, REJECT]
    upsert_hitl_detail(
        ti_id=ti_id,
        options=options,
        subject=f"xAI budget: let one call of {context['ti'].task_id} through?",
        body=question(exc),
        defaults=[REJECT],
        multiple=False,
        params={},
    )
    kwargs = {"approve": exc.fingerprint}
    op.log.info("Asking for an approval of the xAI call over budget (the task's Required actions)")
    try:
        from airflow.sdk.exceptions import TaskAwaitingInput  # Airflow 3.3+: no trigger
    except ImportError:
        from airflow.providers.standard.triggers.hitl import HITLTrigger
        from airflow.sdk.timezone import utcnow

        timeout = op.approval_timeout
        op.defer(
            trigger=HITLTrigger(
                ti_id=ti_id, options=options, defaults=[REJECT], params={}, multiple=False,
                timeout_datetime=utcnow() + timeout if timeout else None,
            ),
            method_name=RESUME_METHOD,
            kwargs=kwargs,
        )  # fmt: skip
    raise TaskAwaitingInput(method_name=RESUME_METHOD, kwargs=kwargs, timeout=op.approval_timeout)


def resume(op: XAIBaseOperator, context: Context, event: Any, approve: str | None, reason: str | None) -> Any:
    """After waiting: run the task again (an approval lets its call through once)."""
    if approve is not None:
        chosen = event.get("chosen_options") if isinstance(event, dict) else None
        if chosen != [APPROVE]:
            who = (event or {}).get("responded_by_user") if isinstance(event, dict) else None
            name = who.get("name") if isinstance(who, dict) else None
            why = "no one answered in time" if (event or {}).get("timedout") else f"{name or 'a person'} rejected it"
            raise XAIOverBudgetError(f"The xAI call over budget was not approved: {why}")
        op.log.info("The xAI call over budget was approved: running the task again with it")
        op.approved_calls = [approve]
    elif reason == "period":
        op.log.info("The xAI budget's period has turned: running the task again")
    return op.execute(context)


__all__ = [
    "APPROVE",
    "OVER_BUDGET",
    "REJECT",
    "RESUME_METHOD",
    "XCOM_FORECAST_KEY",
    "batch_forecast",
    "check_spend_arguments",
    "question",
    "resume",
    "run_within_budget",
]
