"""What the triggers share on one event loop: the pick-up-bound poll schedule (``Poller``'s
``within_interval``) and one hook per connection (``hooks/shared.py``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from airflow_provider_xai.hooks import shared as shared_hooks
from airflow_provider_xai.polling import FIRST_POLL_SPAN, PICKUP_MARGIN, Action, Poller


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_pick_up_bound_wait_starts_each_poll_early_by_the_last_ones_time() -> None:
    clock = Clock()
    bound, plain = Poller(1.0, None, clock=clock, within_interval=True), Poller(1.0, None, clock=clock)
    for poller in (bound, plain):
        poller.begin()
    clock.now += 0.05  # the poll took 50 ms
    # Plain: the next poll starts an interval after this one started (0.95 s from now);
    # bound: early by this poll's time (and a margin for a late loop), so what became ready just
    # after xAI saw this poll is seen by the next one within an interval of that moment.
    assert plain.on_result(False).delay == pytest.approx(0.95)
    assert bound.on_result(False).delay == pytest.approx(0.90 - PICKUP_MARGIN)
    bound.begin()
    clock.now += 3.0  # a stalled poll never makes the next one wait less than half an interval
    assert bound.on_result(False) == bound.on_result(False)
    assert bound.on_result(True).action is Action.FINISH


def test_a_pick_up_bound_wait_polls_first_within_the_first_part_of_an_interval() -> None:
    bound = Poller(2.0, None, within_interval=True)
    assert max(bound.first_delay() for _ in range(2000)) <= 2.0 * FIRST_POLL_SPAN
    assert max(Poller(2.0, None).first_delay() for _ in range(2000)) > 2.0 * FIRST_POLL_SPAN


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The xAI connection, as an env var whose reads are counted, and a server's requests."""
    seen: dict[str, Any] = {"lookups": 0, "requests": 0, "in_flight": 0, "most": 0}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps({"conn_type": "xai", "password": "xai-shared-key-123"}))
    real = shared_hooks.XAIHook.aget_connection

    async def lookup(conn_id: str) -> Any:
        seen["lookups"] += 1
        return await real(conn_id)

    monkeypatch.setattr(shared_hooks.XAIHook, "aget_connection", staticmethod(lookup))

    async def answer(request: httpx.Request) -> httpx.Response:
        seen["requests"] += 1
        seen["in_flight"] += 1
        seen["most"] = max(seen["most"], seen["in_flight"])
        await asyncio.sleep(0.001)
        seen["in_flight"] -= 1
        return httpx.Response(202)

    real_init = shared_hooks.XAIHook.__init__

    def init(self: Any, *args: Any, client_kwargs: Any = None, **kwargs: Any) -> None:
        real_init(self, *args, client_kwargs={**(client_kwargs or {}), "transport": httpx.MockTransport(answer)},
                  **kwargs)  # fmt: skip

    monkeypatch.setattr(shared_hooks.XAIHook, "__init__", init)
    return seen


def test_the_triggers_of_a_connection_share_one_hook_and_its_settings(counted: dict[str, Any]) -> None:
    async def waits() -> list[Any]:
        async def one(i: int) -> Any:
            async with shared_hooks.shared_hook("xai_default") as shared:
                await shared.call(lambda hook: hook.aget_video(f"v{i}"))
                return shared

        found = await asyncio.gather(*(one(i) for i in range(200)))
        assert shared_hooks._HOOKS == {}  # the last one out closed it
        return found

    found = asyncio.run(waits())
    assert len({id(s) for s in found}) == 1 and counted["lookups"] == 1
    assert counted["requests"] == 200 and counted["most"] <= shared_hooks.POOL_SIZE


def test_a_shared_hook_is_renewed_for_new_triggers_after_its_age(
    counted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def waits() -> None:
        async with shared_hooks.shared_hook("xai_default") as first:
            monkeypatch.setattr(shared_hooks, "MAX_AGE", -1.0)
            async with shared_hooks.shared_hook("xai_default") as second:
                assert second is not first  # a newer trigger reads the connection again
                async with shared_hooks.shared_hook("xai_default") as third:
                    assert third is not second
            # the newer ones are closed; the first still serves the trigger that holds it
            assert first.users == 1 and (await first.call(lambda hook: hook.aget_video("v"))).status == "pending"
        assert shared_hooks._HOOKS == {}

    asyncio.run(waits())
    assert counted["lookups"] == 3
