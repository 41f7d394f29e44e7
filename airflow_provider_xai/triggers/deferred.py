"""Trigger that polls an xAI deferred completion from the triggerer's event loop."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xai.exceptions import XAIDeferredExpiredError, XAIError
from airflow_provider_xai.hooks.xai import XAIHook


class XAIDeferredCompletionTrigger(BaseTrigger):
    """Poll ``GET /v1/chat/deferred-completion/{request_id}`` until the answer is ready.

    xAI hands a result out exactly once, so the whole completion travels in the event.
    ``end_time`` is wall-clock (epoch seconds) so a restarted triggerer keeps the deadline.

    Event payload: ``{"status": "success"|"timeout"|"expired"|"error", "request_id", ...}``.
    """

    def __init__(
        self,
        request_id: str,
        xai_conn_id: str = "xai_default",
        poll_interval: float = 5.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.request_id = request_id
        self.xai_conn_id = xai_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time if end_time is not None else time.time() + 24 * 3600

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "xai_conn_id": self.xai_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = XAIHook(xai_conn_id=self.xai_conn_id)
        base = {"request_id": self.request_id}
        # Triggers deferred together would all poll in the same loop iteration, every interval:
        # start at a random point of the first interval, then poll at a fixed rate.
        next_poll = time.monotonic() + random.uniform(0, min(self.poll_interval, self.end_time - time.time()))
        try:
            while True:
                await asyncio.sleep(max(0.0, next_poll - time.monotonic()))
                next_poll = time.monotonic() + self.poll_interval
                completion = await hook.aget_deferred(self.request_id)
                if completion is not None:
                    yield TriggerEvent(
                        {**base, "status": "success", "completion": completion.model_dump(mode="json")}
                    )
                    return
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    yield TriggerEvent(
                        {
                            **base,
                            "status": "timeout",
                            "message": f"xAI deferred completion {self.request_id} was not ready before the "
                            "deferred_timeout; it may still finish and be billed",
                        }
                    )
                    return
                next_poll = min(next_poll, time.monotonic() + remaining)
        except XAIDeferredExpiredError as exc:
            yield TriggerEvent({**base, "status": "expired", "message": str(exc)})
        except XAIError as exc:
            yield TriggerEvent({**base, "status": "error", "message": str(exc), "http_status": exc.status})
        finally:
            await hook.aclose()
