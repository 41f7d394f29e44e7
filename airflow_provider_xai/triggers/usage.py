"""Waits in the triggerer until the task instances an :class:`XAIUsageSensor` watches finish.

The trigger reads task states through the Task SDK (``RuntimeTaskInstance.get_task_states``,
answered by the triggerer's supervisor, like the standard provider's ``WorkflowTrigger``), so
it needs no metadata-DB access. It only waits; the sensor gathers usage when it resumes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xai.arguments import check_wait
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Action, Poller, ProgressLog, apoll
from airflow_provider_xai.usage_summary import fetch_task_states, unfinished

#: Consecutive failed state look-ups tolerated before the trigger gives up.
MAX_LOOKUP_FAILURES = DEFAULT_MAX_POLL_FAILURES


class XAIUsageTrigger(BaseTrigger):
    """Poll the states of ``task_ids`` in one DAG run until none can still spend.

    Events: ``{"status": "done", "task_ids": [...]}``, ``{"status": "timeout", "pending":
    {...}}`` once ``end_time`` (epoch seconds) passes, or ``{"status": "error", "message"}``.
    """

    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str],
        poll_interval: float = 10.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        check_wait(poll_interval, end_time)
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_ids = list(task_ids)
        self.poll_interval = poll_interval
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "task_ids": self.task_ids,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        lookup = sync_to_async(fetch_task_states)

        async def pending() -> dict[str, str]:
            return unfinished(await lookup(self.dag_id, self.run_id, self.task_ids))

        def waiting(still: dict[str, str]) -> None:
            if still:
                self.log.info("Waiting for %d xAI task instance(s): %s", len(still), _brief(still))

        # Any failure to read the states may be a blip of the API: all count as transient.
        poller = Poller(self.poll_interval, self.end_time, MAX_LOOKUP_FAILURES, transient=lambda exc: True)
        outcome = await apoll(
            poller,
            pending,
            lambda still: not still,
            on_value=waiting,
            on_failure=ProgressLog(lambda: self.log, "xAI task states").failure,
        )
        if outcome.action is Action.FINISH:
            yield TriggerEvent({"status": "done", "task_ids": self.task_ids})
        elif outcome.action is Action.TIMEOUT:
            yield TriggerEvent({"status": "timeout", "pending": outcome.value or {"?": "unknown"}})
        else:
            yield TriggerEvent({"status": "error", "message": f"cannot read task states: {outcome.error}"})


def _brief(pending: dict[str, str], limit: int = 10) -> str:
    items = [f"{name}={state}" for name, state in list(pending.items())[:limit]]
    more = f" (+{len(pending) - limit} more)" if len(pending) > limit else ""
    return ", ".join(items) + more
