"""Trigger that waits in the triggerer for a stored Responses answer (a deferrable Responses
call): it polls ``GET /v1/responses/{id}`` until the response is no longer in progress."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Action, Poller, ProgressLog, apoll

#: Statuses of a response that is still being made.
IN_PROGRESS = frozenset({"in_progress", "queued"})


class XAIResponseTrigger(BaseTrigger):
    """Poll a stored response until it is completed, incomplete or failed.

    The response id is all it carries, so a restarted triggerer (or a second copy during
    failover) polls the same response again and never sends the request twice; a stored
    response can be read any number of times. ``end_time`` is wall-clock (epoch seconds).

    Event payload: ``{"status": "success"|"timeout"|"error", "response_id", ...}``; on
    success ``response`` is the whole response (its usage included, also when it failed).
    """

    def __init__(
        self,
        response_id: str,
        xai_conn_id: str = "xai_default",
        poll_interval: float = 5.0,
        end_time: float | None = None,
        max_poll_failures: int = DEFAULT_MAX_POLL_FAILURES,
    ) -> None:
        super().__init__()
        self.response_id = response_id
        self.xai_conn_id = xai_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time if end_time is not None else time.time() + 24 * 3600
        self.max_poll_failures = max_poll_failures

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "response_id": self.response_id,
                "xai_conn_id": self.xai_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_poll_failures": self.max_poll_failures,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = XAIHook(xai_conn_id=self.xai_conn_id)
        base = {"response_id": self.response_id}
        poller = Poller(self.poll_interval, self.end_time, self.max_poll_failures)
        progress = ProgressLog(lambda: self.log, f"xAI response {self.response_id}")
        try:
            outcome = await apoll(
                poller,
                lambda: hook.aget_response(self.response_id),
                lambda response: response.status not in IN_PROGRESS,
                on_failure=progress.failure,
                spread_start=True,
            )
        finally:
            await hook.aclose()
        if outcome.action is Action.FINISH and outcome.value is not None:
            yield TriggerEvent({**base, "status": "success", "response": outcome.value.model_dump(mode="json")})
        elif outcome.action is Action.TIMEOUT:
            message = (
                f"xAI response {self.response_id} was still in progress at the deferred_timeout; "
                "it may still finish and be billed"
            )
            yield TriggerEvent({**base, "status": "timeout", "message": message})
        else:
            error = outcome.error
            status = error.status if isinstance(error, XAIError) else None
            yield TriggerEvent({**base, "status": "error", "message": str(error), "http_status": status,
                                "error": error.to_dict() if isinstance(error, XAIError) else None})


__all__ = ["IN_PROGRESS", "XAIResponseTrigger"]
