"""XAIUsageSensor: token and dollar totals of a DAG run's xAI tasks, with an optional budget.

It waits until the watched task instances can spend nothing more (success, failed, skipped,
upstream_failed or removed), reads their usage XComs (every map index, every attempt), logs a
table, returns a JSON summary, and fails (or skips, with ``soft_fail``) when over budget.
Place it mid-DAG with ``trigger_rule="all_done"`` to stop the rest of an overspending run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, check_number, is_finite_number
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.retry_policy import XAI_RETRY_POLICY, retry_policy_argument

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.retry_policy import RetryPolicy

    from airflow_provider_xai.usage import UsageRecord
    from airflow_provider_xai.usage_summary import Budget

XCOM_SUMMARY_KEY = "xai_usage_summary"


def _number(value: Any, field: str, kind: type[int] | type[float]) -> int | float | None:
    """Check a budget limit (templated values arrive as strings): a finite number > 0 (a NaN
    limit would never be exceeded, an infinite one is none)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = kind(value.strip())
        except ValueError:
            raise XAIValidationError(field, f"expected a number, got {value!r}") from None
    if not is_finite_number(value) or value <= 0:
        raise XAIValidationError(field, f"must be a finite number > 0, got {value!r}")
    if kind is int and value != int(value):
        raise XAIValidationError(field, f"must be a whole number of tokens, got {value!r}")
    return kind(value)


class XAIUsageSensor(BaseSensorOperator):
    """Wait for xAI tasks of this DAG run to finish, then report (and police) what they spent.

    :param task_ids: tasks to watch (templated). Default: every upstream task (transitively);
        the report lists those that produced xAI usage.
    :param task_group_id: watch every task of this task group instead.
    :param max_total_tokens: fail when the watched tasks used more tokens (templated).
    :param max_cost_usd: fail when the watched tasks cost more USD (templated). Unpriced
        requests count as 0 and are flagged in the report.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param soft_fail: skip instead of failing when over budget or timed out.
    :param retry_policy: Airflow 3.3+ task retry policy; default ``XAIRetryPolicy`` (see
        :mod:`airflow_provider_xai.retry_policy`); ``None`` turns it off.

    Returns ``{"totals", "by_model", "by_task", "records", "budget", "watched", ...}``;
    ``skipped_records`` counts values under the usage keys that were no usage record.
    Poke and reschedule modes work as for any sensor (``mode``, ``poke_interval``, ``timeout``).
    """

    template_fields: Sequence[str] = ("task_ids", "max_total_tokens", "max_cost_usd")
    ui_color = "#fde68a"

    def __init__(
        self,
        *,
        task_ids: Sequence[str] | str | None = None,
        task_group_id: str | None = None,
        max_total_tokens: int | str | None = None,
        max_cost_usd: float | str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: timedelta | float = 10.0,
        retry_policy: RetryPolicy | None = XAI_RETRY_POLICY,
        **kwargs: Any,
    ) -> None:
        for name, wait in (("poke_interval", poke_interval), ("timeout", kwargs.get("timeout"))):
            if not isinstance(wait, timedelta):  # named here: Airflow raises OverflowError for inf
                check_number(name, wait, 0, MAX_WAIT_SECONDS)
        super().__init__(poke_interval=poke_interval, **retry_policy_argument(retry_policy), **kwargs)
        if task_ids is not None and task_group_id is not None:
            raise XAIValidationError("task_ids", "give task_ids or task_group_id, not both")
        if isinstance(task_ids, str) and "{{" not in task_ids:
            task_ids = [task_ids]
        if isinstance(task_ids, list | tuple) and not all(isinstance(t, str) and t for t in task_ids):
            raise XAIValidationError("task_ids", f"expected task ids, got {task_ids!r}")
        if task_group_id is not None and (not isinstance(task_group_id, str) or not task_group_id):
            raise XAIValidationError("task_group_id", f"expected a task group id, got {task_group_id!r}")
        self.task_ids = list(task_ids) if isinstance(task_ids, list | tuple) else task_ids
        self.task_group_id = task_group_id
        self.max_total_tokens = max_total_tokens
        self.max_cost_usd = max_cost_usd
        self.deferrable = deferrable
        for field, value, kind in self._limits():
            if not isinstance(value, str):
                _number(value, field, kind)

    def _limits(self) -> list[tuple[str, Any, type[int] | type[float]]]:
        return [("max_total_tokens", self.max_total_tokens, int), ("max_cost_usd", self.max_cost_usd, float)]

    @property
    def budget(self) -> Budget:
        """The (rendered) budget, checked."""
        from airflow_provider_xai.usage_summary import Budget

        tokens, cost = (_number(value, field, kind) for field, value, kind in self._limits())
        return Budget(max_total_tokens=None if tokens is None else int(tokens), max_cost_usd=cost)

    # --- what to watch ---------------------------------------------------------------------------
    def watched_task_ids(self) -> list[str]:
        """Explicit ids, the task group's tasks, or every upstream task; never the sensor itself."""
        dag = self.dag
        if self.task_group_id is not None:
            group = dag.task_group_dict.get(self.task_group_id)
            if group is None:
                raise XAIValidationError("task_group_id", f"no task group {self.task_group_id!r} in this DAG")
            ids = [task.task_id for task in group.iter_tasks()]
        elif self.task_ids is not None:
            ids = [self.task_ids] if isinstance(self.task_ids, str) else list(self.task_ids)
            unknown = [t for t in ids if t not in dag.task_dict]
            if unknown:
                raise XAIValidationError("task_ids", f"not in DAG {dag.dag_id!r}: {unknown}")
        else:
            ids = list(self.get_flat_relative_ids(upstream=True))
        ids = sorted(set(ids) - {self.task_id})
        downstream = sorted(set(ids) & self.get_flat_relative_ids(upstream=False))
        if downstream:
            field = "task_group_id" if self.task_group_id is not None else "task_ids"
            raise XAIValidationError(
                field, f"{downstream} run after this sensor, so it would wait for them forever"
            )
        return ids

    # --- waiting ------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        _ = self.budget  # fail on a bad rendered budget before waiting
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first:
            return first.xcom_value if isinstance(first, PokeReturnValue) else None
        from airflow_provider_xai.triggers.usage import XAIUsageTrigger

        ti = context["ti"]
        self.defer(
            trigger=XAIUsageTrigger(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_ids=self.watched_task_ids(),
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from airflow_provider_xai.usage_summary import fetch_task_states, unfinished

        ti = context["ti"]
        watched = self.watched_task_ids()
        pending = unfinished(fetch_task_states(ti.dag_id, ti.run_id, watched))
        if pending:
            shown = ", ".join(f"{name}={state}" for name, state in list(pending.items())[:10])
            self.log.info("Waiting for %d xAI task instance(s) to finish: %s", len(pending), shown)
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.report(context, watched))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: report once everything watched has finished."""
        from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

        status = (event or {}).get("status")
        if status == "done":
            return self.report(context, self.watched_task_ids())
        if status == "timeout":
            raise AirflowSensorTimeout(f"xAI tasks still not finished: {event.get('pending')}")  # type: ignore[union-attr]
        raise AirflowException(f"xAI usage trigger failed: {(event or {}).get('message', event)}")

    # --- reporting ----------------------------------------------------------------------------
    def gather(self, context: Context, task_ids: Sequence[str]) -> tuple[list[UsageRecord], int]:
        """Every usage record of ``task_ids`` in this run: the per-instance ledgers (which span
        attempts) and the latest records, for every map index, de-duplicated; and how many
        values under those keys were no usage record (skipped)."""
        from airflow_provider_xai.usage import XCOM_LEDGER_KEY, XCOM_USAGE_KEY
        from airflow_provider_xai.usage_summary import records_from_values

        if not task_ids:
            return [], 0
        ti = context["ti"]
        values: list[Any] = []
        for key in (XCOM_LEDGER_KEY, XCOM_USAGE_KEY):
            pulled = ti.xcom_pull(task_ids=list(task_ids), key=key)
            values.extend(pulled if isinstance(pulled, list) else [pulled])
        return records_from_values(values)

    def report(self, context: Context, watched: Sequence[str]) -> dict[str, Any]:
        """Log the table, build the summary, enforce the budget."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_provider_xai.exceptions import XAIBudgetExceededError
        from airflow_provider_xai.usage_summary import evaluate_budget, render_table, summarize

        ti = context["ti"]
        records, skipped = self.gather(context, watched)
        if skipped:
            self.log.warning("xAI usage: skipped %d stored value(s) that are no usage record", skipped)
        summary = summarize(records)
        budget = evaluate_budget(summary, self.budget)
        self.log.info("%s", render_table(summary, f"xAI usage of {ti.dag_id} / {ti.run_id}"))
        result = {
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "watched": list(watched),
            "tasks_with_usage": list(summary.by_task),
            **summary.to_dict(),
            "skipped_records": skipped,
            "budget": budget,
        }
        if budget["status"] != "exceeded":
            if budget["status"] == "ok":
                self.log.info(
                    "Within budget: %s tokens and $%.6f left",
                    budget["remaining_tokens"],
                    budget["remaining_cost_usd"] or 0.0,
                )
            return result
        ti.xcom_push(key=XCOM_SUMMARY_KEY, value=result)
        _count_overrun(ti.dag_id, self.task_id)
        if self.soft_fail:
            self.log.error("%s Skipping (soft_fail).", budget["message"])
            raise AirflowSkipException(budget["message"])
        raise XAIBudgetExceededError(budget["message"])


def _count_overrun(dag_id: str, task_id: str) -> None:
    """``xai.budget_exceeded`` counter, for alerting on overspending runs."""
    from airflow_provider_xai.usage import METRIC_PREFIX, airflow_stats

    if (backend := airflow_stats()) is not None:
        backend.incr(f"{METRIC_PREFIX}.budget_exceeded", 1, tags={"dag_id": dag_id, "task_id": task_id})
