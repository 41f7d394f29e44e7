"""Trigger that waits for an xAI batch from the triggerer's event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.hooks.batch import timeout_message
from airflow_provider_xai.hooks.policy import is_retryable
from airflow_provider_xai.hooks.xai import XAIHook


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
        max_poll_failures: int = 5,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
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
        failures, last = 0, ""
        try:
            while True:
                try:
                    batch = await hook.aget_batch(self.batch_id)
                    failures = 0
                except XAIError as exc:
                    failures += 1
                    if not is_retryable(exc) or failures >= self.max_poll_failures:
                        raise
                    self.log.warning("Polling xAI batch %s failed (%s); will poll again", self.batch_id, exc)
                else:
                    state = {**base, "outcome": batch.outcome, "state": batch.state.model_dump()}
                    if batch.done:
                        yield TriggerEvent({**state, "status": "success"})
                        return
                    if batch.progress() != last:
                        last = batch.progress()
                        self.log.info("xAI batch %s: %s", self.batch_id, last)
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    yield TriggerEvent(await self._timeout(hook, base))
                    return
                await asyncio.sleep(min(self.poll_interval, remaining))
        except XAIError as exc:
            yield TriggerEvent({**base, "status": "error", "message": str(exc), "http_status": exc.status})
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
