"""Trigger that waits for an xAI batch from the triggerer's event loop."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, check_number, check_wait
from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.hooks.batch import timeout_message
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Action, Poller, ProgressLog, apoll


class XAIBatchTrigger(BaseTrigger):
    """Poll ``GET /v1/batches/{batch_id}`` until the batch is done (or the deadline passes).

    Only counters travel in the event: the operator pages through the results itself on
    resume, so thousands of answers never pass through the trigger table. ``end_time`` is
    wall-clock (epoch seconds) so a restarted triggerer keeps the deadline; ``timeout`` (seconds)
    is only used in messages. At the deadline
    the batch is cancelled (``cancel_on_timeout``). Transient poll failures are tolerated up
    to ``max_poll_failures`` in a row. A user killing the task cancels the batch (``on_kill``).

    Event: ``{"status": "success"|"timeout"|"error", "batch_id", "outcome", "state", ...}``.
    """

    def __init__(
        self,
        batch_id: str,
        xai_conn_id: str = "xai_default",
        poll_interval: float = 30.0,
        end_time: float | None = None,
        cancel_on_timeout: bool = True,
        max_poll_failures: int = DEFAULT_MAX_POLL_FAILURES,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        check_wait(poll_interval, end_time, max_poll_failures)
        check_number("timeout", timeout, 0, MAX_WAIT_SECONDS)
        self.batch_id = batch_id
        self.xai_conn_id = xai_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time if end_time is not None else time.time() + 24 * 3600
        self.cancel_on_timeout = cancel_on_timeout
        self.max_poll_failures = max_poll_failures
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_id": self.batch_id,
                "xai_conn_id": self.xai_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_timeout": self.cancel_on_timeout,
                "max_poll_failures": self.max_poll_failures,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = XAIHook(xai_conn_id=self.xai_conn_id)
        base: dict[str, Any] = {"batch_id": self.batch_id}
        progress = ProgressLog(lambda: self.log, f"xAI batch {self.batch_id}")
        try:
            outcome = await apoll(
                Poller(self.poll_interval, self.end_time, self.max_poll_failures),
                lambda: hook.aget_batch(self.batch_id),
                lambda batch: batch.done,
                on_value=lambda batch: progress.update(batch.progress()),
                on_failure=progress.failure,
            )
            if outcome.action is Action.FINISH and outcome.value is not None:
                batch = outcome.value
                state = {"outcome": batch.outcome, "state": batch.state.model_dump()}
                yield TriggerEvent({**base, **state, "status": "success"})
            elif outcome.action is Action.TIMEOUT:
                yield TriggerEvent(await self._timeout(hook, base))
            else:
                error = outcome.error
                status = error.status if isinstance(error, XAIError) else None
                yield TriggerEvent({**base, "status": "error", "message": str(error), "http_status": status,
                                    "error": error.to_dict() if isinstance(error, XAIError) else None})
        except XAIError as exc:  # cancelling or reading the batch at the deadline failed
            yield TriggerEvent({**base, "status": "error", "message": str(exc), "http_status": exc.status,
                                "error": exc.to_dict()})
        finally:
            await hook.aclose()

    async def _timeout(self, hook: XAIHook, base: dict[str, Any]) -> dict[str, Any]:
        if self.cancel_on_timeout:
            batch = await hook.acancel_batch(self.batch_id)
        else:
            batch = await hook.aget_batch(self.batch_id)
        message = timeout_message(batch, self.timeout, self.cancel_on_timeout)
        self.log.warning(message)
        return {
            **base,
            "status": "timeout",
            "outcome": batch.outcome,
            "state": batch.state.model_dump(),
            "cancelled": self.cancel_on_timeout,
            "message": message,
        }

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed/success, clear): cancel the batch."""
        hook = XAIHook(xai_conn_id=self.xai_conn_id)
        try:
            batch = await hook.acancel_batch(self.batch_id)
            self.log.info("Cancelled xAI batch %s on kill: %s", self.batch_id, batch.progress())
        finally:
            await hook.aclose()
