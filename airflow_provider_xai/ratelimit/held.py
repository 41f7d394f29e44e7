"""A reserved slot kept across a deferral: the task that reserved it waits in the triggerer,
not in a worker, and sends with it when it is back on a worker.

A :class:`Reservation` is what the store booked for one call (its key, its time, the tokens
reserved with it, the spacing it was booked with) and when its task gave up its worker. It is
kept as text in the task state store and in the trigger (:meth:`Reservation.encode`), and read
back leniently (:meth:`Reservation.decode`: anything else is None, for the caller to skip and
count). :class:`CapacityWait` is how the rate-limit layer hands one to the operator: the call
is withdrawn before anything was sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_xai.pipeline.layers import Withdrawn
from airflow_provider_xai.ratelimit.slots import HORIZON, SECOND_US

_KEY_PREFIX = "xai-rate-limit:"
#: The largest time (us since the epoch) a reservation may name: the year 9999.
_MAX_TIME_US = 253402300799 * SECOND_US


@dataclass(frozen=True)
class Reservation:
    """A booked request slot not yet used.

    :param key: the store key (the API key's fingerprint and the model), never the API key.
    :param at: the slot's time, microseconds since the epoch.
    :param tokens: the tokens reserved with it (0 without a tokens limit).
    :param spacing: the spacing it was booked with (giving it back needs it).
    :param since: when its task gave up its worker to wait (epoch seconds).
    """

    key: str
    at: int
    tokens: int
    spacing: int
    since: float

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: Any) -> Reservation | None:
        """A stored reservation, or None when ``text`` is none (not JSON, a field missing or out
        of bounds: a time past the year 9999, a negative count, a key of another kind)."""
        try:
            data = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        key, since = data.get("key"), data.get("since")
        at, tokens, spacing = (_count(data.get(name)) for name in ("at", "tokens", "spacing"))
        if not (isinstance(key, str) and key.startswith(_KEY_PREFIX)):
            return None
        if at is None or tokens is None or spacing is None or spacing > HORIZON:
            return None
        if isinstance(since, bool) or not isinstance(since, int | float) or not 0 <= since <= _MAX_TIME_US / SECOND_US:
            return None
        return cls(key, at, tokens, spacing, float(since))


def _count(value: Any) -> int | None:
    """``value`` when it is an integer from 0 to the year 9999 in microseconds, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_TIME_US:
        return value
    return None


@dataclass(frozen=True)
class DeferRule:
    """When a call is withdrawn (:class:`CapacityWait`) rather than sleep for its slot: the slot
    is more than ``after`` seconds away, and more than ``lead()``, how long before its slot the
    task would be handed back (read only for such a slot: a store operation)."""

    after: float
    lead: Callable[[], float] | None = None


class CapacityWait(Withdrawn):
    """A call's slot is further away than its task waits in a worker: nothing was sent, and the
    slot is booked for it. ``reservation`` is to be kept and sent with (the layer's
    :meth:`~airflow_provider_xai.ratelimit.layer.RateLimitLayer.expect`); ``wait``: seconds
    from now to the slot; ``inputs``: the fingerprint of the call's body; ``request``: the
    request itself when it may be sent from the triggerer (:class:`HandedOver`), else None."""

    def __init__(self, reservation: Reservation, wait: float, inputs: str = "") -> None:
        super().__init__(f"the shared xAI rate limit's next slot is {wait:.1f}s away")
        self.reservation, self.wait, self.inputs = reservation, wait, inputs
        self.request: HandedOver | None = None


@dataclass(frozen=True)
class HandedOver:
    """A request handed to the triggerer whole, to be sent there at its slot: its method, path
    (under the base URL), JSON body and headers, all JSON-safe (they travel in the trigger)."""

    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: Any) -> HandedOver | None:
        """Read back from the trigger's kwargs (None: not one)."""
        if not isinstance(data, dict):
            return None
        method, path, body, headers = (data.get(k) for k in ("method", "path", "body", "headers"))
        if not (isinstance(method, str) and isinstance(path, str) and isinstance(body, dict)):
            return None
        headers = {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
        return cls(method, path, body, headers)


__all__ = ["CapacityWait", "DeferRule", "HandedOver", "Reservation"]
