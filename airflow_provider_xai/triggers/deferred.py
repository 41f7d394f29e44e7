"""Trigger that polls an xAI deferred completion from the triggerer's event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, check_number, check_wait
from airflow_provider_xai.exceptions import XAIDeferredExpiredError, XAIError
from airflow_provider_xai.hooks.shared import shared_hook
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Action, Poller, ProgressLog, apoll

#: How long a copy of this trigger that met 404 stays silent before reporting the request
#: expired (see :class:`XAIDeferredCompletionTrigger`).
EXPIRED_GRACE = 60.0


class XAIDeferredCompletionTrigger(BaseTrigger):
    """Poll ``GET /v1/chat/deferred-completion/{request_id}`` until the answer is ready.

    xAI hands a result out exactly once, so the whole completion travels in the event.
    ``end_time`` is wall-clock (epoch seconds) so a restarted triggerer keeps the deadline.
    Transient poll failures never end the wait by themselves (``max_poll_failures`` in a row do).

    During triggerer failover Airflow may run two copies of one trigger at once. The copy that
    polls second gets 404 for an answer the other collected; it waits ``expired_grace``
    seconds before reporting ``expired``, by which time the task has resumed with the other
    copy's answer and Airflow has cancelled this copy. A request that really expired is
    reported that much later.

    Event payload: ``{"status": "success"|"timeout"|"expired"|"error", "request_id", ...}``.
    """

    def __init__(
        self,
        request_id: str,
        xai_conn_id: str = "xai_default",
        poll_interval: float = 5.0,
        end_time: float | None = None,
        max_poll_failures: int = DEFAULT_MAX_POLL_FAILURES,
        expired_grace: float = EXPIRED_GRACE,
    ) -> None:
        super().__init__()
        check_wait(poll_interval, end_time, max_poll_failures)
        check_number("expired_grace", expired_grace, 0, MAX_WAIT_SECONDS)
        self.request_id = request_id
        self.xai_conn_id = xai_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time if end_time is not None else time.time() + 24 * 3600
        self.max_poll_failures = max_poll_failures
        self.expired_grace = expired_grace

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "xai_conn_id": self.xai_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_poll_failures": self.max_poll_failures,
                "expired_grace": self.expired_grace,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        base = {"request_id": self.request_id}
        poller = Poller(self.poll_interval, self.end_time, self.max_poll_failures, within_interval=True)
        progress = ProgressLog(lambda: self.log, f"xAI deferred completion {self.request_id}")
        async with shared_hook(self.xai_conn_id) as shared:
            outcome = await apoll(
                poller,
                lambda: shared.call(lambda hook: hook.aget_deferred(self.request_id)),
                lambda completion: completion is not None,
                on_failure=progress.failure,
                spread_start=True,
            )
        if outcome.action is Action.FINISH and outcome.value is not None:
            yield TriggerEvent({**base, "status": "success", "completion": outcome.value.model_dump(mode="json")})
        elif outcome.action is Action.TIMEOUT:
            message = (
                f"xAI deferred completion {self.request_id} was not ready before the deferred_timeout; "
                "it may still finish and be billed"
            )
            yield TriggerEvent({**base, "status": "timeout", "message": message})
        elif isinstance(outcome.error, XAIDeferredExpiredError):
            self.log.warning(
                "%s; reporting it in %.0fs unless another copy collected it", outcome.error, self.expired_grace
            )
            await asyncio.sleep(self.expired_grace)
            yield TriggerEvent({**base, "status": "expired", "message": str(outcome.error)})
        else:
            error = outcome.error
            status = error.status if isinstance(error, XAIError) else None
            yield TriggerEvent({**base, "status": "error", "message": str(error), "http_status": status,
                                "error": error.to_dict() if isinstance(error, XAIError) else None})
