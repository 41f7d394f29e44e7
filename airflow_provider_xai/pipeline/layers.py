"""Layers around the one send, like middleware: tracing, the shared rate limit, (later) budgets.

A :class:`Layer` is asked once per call for its :class:`Scope` of that call (None when it has
nothing to do, so a call with no tracer and no limit pays for no layer). The transport then
runs every scope at fixed points of the call:

- ``active()`` around the whole call (a span is current while the request is sent);
- ``attempt()``/``aattempt()`` around each request attempt (a rate-limit slot per attempt);
- ``retried()`` when an attempt failed and another follows;
- ``answered()``/``aanswered()`` once the billed answer and its usage record are known (also
  for a failure that carries a billed answer);
- ``finish()`` once, when the call ended (with its error, if any).

A layer may withdraw a call before anything is sent (the rate limit, when the task should wait
for its slot elsewhere) by raising a :class:`Withdrawn`: the call ends with it, which is no
failure of the call.

Layers read the call's :class:`~airflow_provider_xai.pipeline.call.Endpoint` declaration from
the :class:`Exchange`; the transport never imports a layer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from airflow_provider_xai.connection.settings import ClientSettings
    from airflow_provider_xai.pipeline.call import Call
    from airflow_provider_xai.pipeline.replies import Reply
    from airflow_provider_xai.pricing import Price
    from airflow_provider_xai.usage import UsageRecord

R = TypeVar("R")
log = logging.getLogger(__name__)
#: An answer with no usage record of its own (not a billed answer).
_UNREAD = object()


@dataclass
class Exchange:
    """One call in flight, as its layers see it: the call, the settings it was sent with, the
    body (built and validated once), and, once answered, the answer and its usage record."""

    call: Call[Any]
    settings: ClientSettings
    body: Any
    #: The price table a usage record is estimated with when xAI sends no cost.
    prices: Mapping[str, Price] = field(default_factory=dict)
    request_id: str | None = None
    answer: Any = None
    #: The stream began (events were read): a non-restartable call is not sent again.
    started: bool = False
    #: Attempts the server refused with 429 (rate limited), and the seconds the call waited
    #: for rate-limit capacity in a worker and deferred (the rate-limit layer notes them before
    #: the answer comes): on the answer's usage record.
    rate_limited: int = 0
    waited_s: float = 0.0
    deferred_s: float = 0.0
    #: The answer to this very request, made elsewhere (the triggerer sent it at the call's
    #: rate-limit slot): a layer sets it before the attempt, which reads it instead of sending.
    supplied: Reply | None = None
    _record: UsageRecord | None = field(default=None, repr=False)
    _recorded: bool = field(default=False, repr=False)

    @property
    def record(self) -> UsageRecord | None:
        """The answer's usage record, read once through the endpoint's declaration when first
        asked for (by a layer, or by whoever records the answer); None when nothing was billed.
        A billed answer keeps it (:meth:`usage_reader` attached), so all read the same record."""
        if not self._recorded and self.answer is not None:
            record: Any = getattr(self.answer, "usage_record", _UNREAD)  # a billed answer reads it once
            self._record = self.usage_reader()(self.answer) if record is _UNREAD else record
            self._recorded = True
        return self._record

    def usage_reader(self) -> Callable[[Any], UsageRecord | None]:
        """What reads the usage record of an answer to this call (holding no reference to the
        exchange or the answer)."""
        waits = (self.rate_limited, self.waited_s, self.deferred_s)
        return functools.partial(read_record, self.call.endpoint.record, self.prices, self.request_id, waits)

    @property
    def model(self) -> str | None:
        """The model the body names, if any."""
        body = self.body
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None


def read_record(
    record_of: Callable[..., UsageRecord | None] | None,
    prices: Mapping[str, Price],
    request_id: str | None,
    waits: tuple[int, float, float],
    answer: Any,
) -> UsageRecord | None:
    """The usage record of ``answer`` as its endpoint declares it, with the request id and the
    waits before it: ``(attempts refused with 429, seconds waited in a worker, deferred)``."""
    record = record_of(answer, prices) if record_of is not None else None
    if record is not None:
        record.request_id = request_id or record.request_id
        record.rate_limited = waits[0]
        record.waited_s, record.deferred_s = round(waits[1], 3), round(waits[2], 3)
    return record


class Withdrawn(Exception):
    """A layer withdrew the call before anything was sent (not a failure of the call)."""


class Scope:
    """A layer's part in one call. Every method does nothing unless a layer overrides it."""

    @contextmanager
    def active(self) -> Iterator[None]:
        yield

    def attempt(self, send: Callable[[], R]) -> R:
        return send()

    async def aattempt(self, send: Callable[[], Awaitable[R]]) -> R:
        return await send()

    def retried(self, exc: BaseException, attempt: int, wait: float) -> None:
        pass

    def answered(self) -> None:
        pass

    async def aanswered(self) -> None:
        self.answered()

    def finish(self, exc: BaseException | None) -> None:
        pass


class Layer:
    """Something that wraps every call (see the module docstring)."""

    def scope(self, exchange: Exchange) -> Scope | None:
        """This layer's scope of one call, or None when it has nothing to do for it."""
        return None


def scopes_of(layers: tuple[Layer, ...], exchange: Exchange) -> list[Scope]:
    """The scopes of one call; a layer that fails to start is left out (logged), never the call."""
    scopes: list[Scope] = []
    for layer in layers:
        try:
            scope = layer.scope(exchange)
        except Exception as exc:
            if not _is_typed(exc):
                log.debug("xAI layer %s could not start", type(layer).__name__, exc_info=True)
                continue
            raise  # a typed error (a store that is down) fails the call, as it would unlayered
        if scope is not None:
            scopes.append(scope)
    return scopes


def _is_typed(exc: Exception) -> bool:
    from airflow_provider_xai.exceptions import XAIError

    return isinstance(exc, XAIError)


__all__ = ["Exchange", "Layer", "Scope", "Withdrawn", "scopes_of"]
