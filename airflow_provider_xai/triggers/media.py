"""Trigger that waits for an xAI image or video job from the triggerer's event loop."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xai.arguments import check_wait
from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.hooks.media import progress_of
from airflow_provider_xai.hooks.shared import shared_hook
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Action, Poller, ProgressLog, apoll

KINDS = ("images", "videos")


class XAIMediaTrigger(BaseTrigger):
    """Poll ``GET /v1/videos/{request_id}`` (or ``/v1/images/{request_id}``) through the one
    poll decision until the job is no longer pending; its progress goes to the task log.

    The job (URLs, never files) travels in the event; the task downloads on resuming.
    ``end_time`` is wall-clock (epoch seconds) so a restarted triggerer keeps the deadline.
    Transient poll failures never end the wait by themselves (``max_poll_failures`` in a row do).

    Event payload: ``{"status": "success"|"timeout"|"error", "request_id", "kind", "job"?,
    "message"?, "error"?}``; a finished job may have failed or expired (``job.status``).
    """

    def __init__(
        self,
        request_id: str,
        kind: str = "videos",
        xai_conn_id: str = "xai_default",
        poll_interval: float = 5.0,
        end_time: float | None = None,
        max_poll_failures: int = DEFAULT_MAX_POLL_FAILURES,
        model: str | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        check_wait(poll_interval, end_time, max_poll_failures)
        self.request_id = request_id
        self.kind = kind
        self.xai_conn_id = xai_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time if end_time is not None else time.time() + 3600
        self.max_poll_failures = max_poll_failures
        self.model = model

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "kind": self.kind,
                "xai_conn_id": self.xai_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_poll_failures": self.max_poll_failures,
                "model": self.model,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        base = {"request_id": self.request_id, "kind": self.kind}
        poller = Poller(self.poll_interval, self.end_time, self.max_poll_failures, within_interval=True)
        what = f"xAI {'video' if self.kind == 'videos' else 'images'} {self.request_id}"
        progress = ProgressLog(lambda: self.log, what)
        async with shared_hook(self.xai_conn_id) as shared:

            def fetch() -> Any:
                if self.kind == "videos":
                    return shared.call(lambda hook: hook.aget_video(self.request_id))
                return shared.call(lambda hook: hook.aget_images(self.request_id, self.model))

            outcome = await apoll(
                poller,
                fetch,
                lambda job: job.status != "pending",
                on_value=lambda job: progress.update(progress_of(job)),
                on_failure=progress.failure,
                spread_start=True,
            )
        if outcome.action is Action.FINISH and outcome.value is not None:
            job = outcome.value.model_dump(mode="json", exclude_none=True)
            yield TriggerEvent({**base, "status": "success", "job": job})
        elif outcome.action is Action.TIMEOUT:
            message = f"{what} was not ready before the timeout; it may still finish and be billed"
            yield TriggerEvent({**base, "status": "timeout", "message": message})
        else:
            error = outcome.error
            typed = error.to_dict() if isinstance(error, XAIError) else None
            yield TriggerEvent({**base, "status": "error", "message": str(error), "error": typed})


__all__ = ["XAIMediaTrigger"]
