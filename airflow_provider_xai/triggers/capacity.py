"""Trigger that waits in the triggerer for a task's rate-limit slot: the task reserved it and
gave up its worker. At the slot the trigger sends the task's request itself and hands the task
the answer; or, for a request it was not given, hands the task back shortly before the slot,
to send it from a worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: The longest single sleep (a clock that jumps is looked at again within it).
_MAX_NAP = 60.0


class XAIRateLimitSlotTrigger(BaseTrigger):
    """Fire at ``moment`` (epoch seconds) for the task's reserved slot (``slot``, a
    :class:`~airflow_provider_xai.ratelimit.held.Reservation` as text). When the task is cleared
    or marked while it waits, the slot is given back (Airflow 3.3 calls :meth:`on_kill` then); a
    trigger moved to another triggerer keeps it.

    With ``request`` (a :class:`~airflow_provider_xai.ratelimit.held.HandedOver` as a dict) the
    trigger sends it with the slot (its hook sleeps until the slot's microsecond) and the event
    carries the answer: ``{"status": "answered", "answer": <body>, "request_id": ...}``, or
    ``{"status": "failed", "error": <message>}`` when it was refused or could not be sent (the
    task then sends it from its worker, with a new slot). Without, ``{"status": "slot"}``: the
    task sends with its slot from a worker. Every event also carries ``fired_at`` (epoch
    seconds), ``slot`` and ``carry`` (what else the task asked to get back), as the deferral's
    own kwargs do not always reach the task (``dag.test()`` drops them).
    """

    def __init__(
        self,
        moment: float,
        slot: str,
        xai_conn_id: str = "xai_default",
        carry: dict[str, Any] | None = None,
        request: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.moment, self.slot, self.xai_conn_id, self.carry = moment, slot, xai_conn_id, dict(carry or {})
        self.request = request

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"moment": self.moment, "slot": self.slot, "xai_conn_id": self.xai_conn_id, "carry": self.carry,
             "request": self.request},
        )  # fmt: skip

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while (left := self.moment - time.time()) > 0:
            await asyncio.sleep(min(left, _MAX_NAP))
        event = {**self.carry, "status": "slot", "fired_at": time.time(), "slot": self.slot}
        if self.request is not None:
            event.update(await self._sent())
        yield TriggerEvent(event)

    async def _sent(self) -> dict[str, Any]:
        """Send the handed-over request with the held slot: the answer, or why not."""
        from airflow_provider_xai.exceptions import XAIError
        from airflow_provider_xai.hooks.xai import XAIHook
        from airflow_provider_xai.ratelimit.held import HandedOver, Reservation
        from airflow_provider_xai.ratelimit.layer import FirstCall
        from airflow_provider_xai.task_state import fingerprint

        request, held = HandedOver.of(self.request), Reservation.decode(self.slot)
        if request is None or held is None:
            return {"status": "failed", "error": "the handed-over request or its slot could not be read"}
        hook = XAIHook(xai_conn_id=self.xai_conn_id)  # its own: the held slot is asked of its first call
        hook.rate_limit.expect(FirstCall(held=held, inputs=fingerprint(request.body)))
        try:
            reply = await hook.arequest(request.method, request.path, request.body, headers=request.headers)
        except XAIError as exc:
            self.log.warning("The xAI request handed over by the task failed in the triggerer: %s", exc)
            return {"status": "failed", "error": exc.message}
        finally:
            await hook.aclose()
        self.log.info("Sent the task's xAI request at its rate-limit slot; the task resumes with the answer")
        return {
            "status": "answered",
            "answer": reply.content.decode("utf-8", "replace"),
            "request_id": reply.headers.get("x-request-id"),
        }

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
