"""Bounded-concurrency fan-out of XAIHook (mixed in as :class:`XAIFanOutMixin`).

``achat_many`` sends many chat requests with at most N in flight and returns results in input
order, a typed error in the slot of each request that failed after its retries.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.schemas import ChatCompletion, ChatRequest

if TYPE_CHECKING:
    from airflow_provider_xai.hooks.policy import ClientSettings

RequestLike = ChatRequest | Mapping[str, Any]
#: Connections per client in a wide fan-out. httpcore's pool bookkeeping runs over all its
#: connections (partly quadratically) on every request and response, so one client with 64
#: connections spends milliseconds per request on it; :meth:`XAIFanOutMixin.achat_many` spreads
#: wider fan-outs over several clients of at most this many connections ("lanes").
LANE_SIZE = 16
#: The lane client of the current fan-out task (None: the hook's own async client).
current_lane: contextvars.ContextVar[httpx.AsyncClient | None] = contextvars.ContextVar(
    "xai_lane", default=None
)


class XAIFanOutMixin:
    """``achat_many``/``chat_many``: many requests, at most N in flight, results in input order."""

    if TYPE_CHECKING:  # provided by XAIHook
        client_kwargs: dict[str, Any]

        def _client_options(self, s: ClientSettings) -> dict[str, Any]: ...

        async def achat(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatCompletion: ...

        async def astream_chat_completion(
            self, request: RequestLike | None = None, /, **kwargs: Any
        ) -> ChatCompletion: ...

        async def aclose(self) -> None: ...

        def build_request(self, request: RequestLike | None = None, /, **kwargs: Any) -> ChatRequest: ...

        async def get_async_conn(self) -> httpx.AsyncClient: ...

        async def aget_settings(self) -> ClientSettings: ...

    async def achat_many(
        self, requests: Sequence[RequestLike], *, max_concurrency: int = 8, stream: bool = False
    ) -> list[ChatCompletion | XAIError]:
        """Send many chat requests with at most ``max_concurrency`` in flight.

        Every request is validated first (one bad request sends nothing). Results come back
        in input order; an item that fails after its retries holds its typed error instead.
        """
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        settings = await self.aget_settings()
        bodies = [self.build_request(r) for r in requests]
        lanes = self._lanes(settings, max_concurrency, len(bodies))
        # One slot per request in flight; a slot is a lane's client (None: the hook's own client).
        slots: asyncio.Queue[httpx.AsyncClient | None] = asyncio.Queue()
        for i in range(max_concurrency):
            slots.put_nowait(lanes[i % len(lanes)] if lanes else None)

        async def one(req: ChatRequest) -> ChatCompletion | XAIError:
            client = await slots.get()
            token = current_lane.set(client)  # this task's context only
            try:
                return await (self.astream_chat_completion(req) if stream else self.achat(req))
            except XAIError as exc:
                return exc
            finally:
                current_lane.reset(token)
                slots.put_nowait(client)

        try:
            return list(await asyncio.gather(*(one(b) for b in bodies)))
        finally:
            for lane in lanes:
                await lane.aclose()

    def _lanes(self, s: ClientSettings, max_concurrency: int, count: int) -> list[httpx.AsyncClient]:
        """Extra clients for a fan-out wider than :data:`LANE_SIZE` (none for narrow ones, or
        when ``client_kwargs`` chose the transport or pool limits)."""
        width = min(max_concurrency, count)
        if width <= LANE_SIZE or {"transport", "limits"} & set(self.client_kwargs):
            return []
        n = -(-width // LANE_SIZE)
        per = -(-width // n)
        options = {
            **self._client_options(s),
            "limits": httpx.Limits(max_connections=per, max_keepalive_connections=per),
        }
        return [httpx.AsyncClient(**options) for _ in range(n)]

    def chat_many(
        self, requests: Sequence[RequestLike], *, max_concurrency: int = 8, stream: bool = False
    ) -> list[ChatCompletion | XAIError]:
        """Blocking :meth:`achat_many` (runs its own event loop; not for use inside one)."""

        async def run() -> list[ChatCompletion | XAIError]:
            try:
                return await self.achat_many(requests, max_concurrency=max_concurrency, stream=stream)
            finally:
                await self.aclose()

        return _run_loop(run())


def _run_loop(coro: Any) -> Any:
    """Run ``coro`` on a new event loop: uvloop's when it is installed (it comes with uvicorn,
    which Airflow's api-server needs; its I/O path is lighter), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
