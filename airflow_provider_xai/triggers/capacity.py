"""Trigger that waits in the triggerer for a task's rate-limit slot: the task reserved it, gave
up its worker, and is handed back shortly before the slot, to send with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: The longest single sleep (a clock that jumps is looked at again within it).
_MAX_NAP = 60.0


class XAIRateLimitSlotTrigger(BaseTrigger):
    """Fire at ``moment`` (epoch seconds): the task goes back to a worker and sends with its
    reserved slot (``slot``, a :class:`~airflow_provider_xai.ratelimit.held.Reservation` as
    text). When the task is cleared or marked while it waits, the slot is given back (Airflow
    3.3 calls :meth:`on_kill` then); a trigger moved to another triggerer keeps it.

    Event payload: ``{"status": "slot", "fired_at": <epoch seconds>, "slot": slot, **carry}``:
    the event brings the task all it needs (``carry``: what else the task asked to get back),
    as the deferral's own kwargs do not always reach the task (``dag.test()`` drops them).
    """

    def __init__(
        self, moment: float, slot: str, xai_conn_id: str = "xai_default", carry: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.moment, self.slot, self.xai_conn_id, self.carry = moment, slot, xai_conn_id, dict(carry or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"moment": self.moment, "slot": self.slot, "xai_conn_id": self.xai_conn_id, "carry": self.carry},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while (left := self.moment - time.time()) > 0:
            await asyncio.sleep(min(left, _MAX_NAP))
        yield TriggerEvent({**self.carry, "status": "slot", "fired_at": time.time(), "slot": self.slot})

    async def on_kill(self) -> None:
        """The task was cleared or marked while it waited: give its slot back."""
        from airflow_provider_xai.hooks.xai import XAIHook
        from airflow_provider_xai.ratelimit.held import Reservation

        held = Reservation.decode(self.slot)
        if held is None:
            return
        hook = XAIHook(xai_conn_id=self.xai_conn_id)
        limiter = await hook.rate_limit.alimiter(await hook.aget_settings())
        if limiter is not None:
            await limiter.arelease(held)
            self.log.info("Gave back the xAI rate-limit slot of a task that no longer waits for it")


__all__ = ["XAIRateLimitSlotTrigger"]
