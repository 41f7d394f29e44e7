"""Reserved slots: the shared limit's one state transition, without I/O.

A store key (one API key and model, or the Batch API's add-requests pace) holds three times in
integer microseconds since the epoch, stored as the text ``"next,empty,cool"``:

- ``next``: the next free request slot (GCRA's theoretical arrival time, burst 1);
- ``empty``: when the tokens-per-minute bucket will be empty (GCRA's arrival time for tokens);
- ``cool``: when the last shared 429 cool-down ends.

An :class:`Update` is one store operation, applied atomically by :func:`transition` (the
embedded store, in one SQLite transaction) or by its Lua twin in ``redis_store.py`` (one
round trip). An update first applies its token ``correction`` (a settled answer's debt, or
tokens given back), its cool-down and the slot it gives back, then, when it takes a slot,
reserves it. Taking a slot never refuses: it answers *when* the caller may send, the first
moment every limit admits it, and books that moment so no other caller gets it::

    empty = max(empty, now) + correction          (never below now: an empty bucket)
    cool  = max(cool, cool_until)
    next  = release + 1         if release > now and next == release + spacing   (given back)
    at    = max(now, next, cool, empty + tokens - depth)
    next  = at + spacing
    empty = max(empty, at) + tokens

Giving a slot back (a task killed or cleared while it held one, a held slot its task no longer
needs): the key keeps one time per limit, not a list of bookings, so a slot can be handed to the
next caller only while it is still to come and the last one booked (``next`` is one ``spacing``
after it); then ``next`` moves back to it, plus 1 us. A slot with bookings after it stays a
gap: that second sees one request fewer, never one more. The 1 us makes the slot, once booked
again, another slot: giving the old one back twice (a cleared task's trigger, then its next
try) cannot hand it out twice. A past slot gives nothing back. Its tokens are given back by the
caller (a negative ``correction``) only while the slot is to come and only by the one holder
sure that nobody gave them back before.

Stored values are read leniently (:func:`decode`): a value that is not three
times, or one past :data:`HORIZON`, is treated as an empty key, and the answer says so.
"""

from __future__ import annotations

import logging
import re
from typing import Any, NamedTuple

log = logging.getLogger(__name__)
SECOND_US = 1_000_000
#: The furthest ahead a stored time may lie. Queued reservations and token debts stay far
#: below it; a stored time past it is corruption (or a lock-out no server would impose).
HORIZON = 24 * 3600 * SECOND_US
_STATE = re.compile(r"(\d{1,19}),(\d{1,19}),(\d{1,19})")


class Update(NamedTuple):
    """One store operation on a key, all times and amounts in microseconds.

    ``correction``: tokens charged (> 0) or given back (< 0) first. ``cool_until``: no slot
    before it (a shared 429 cool-down). ``release``: a booked slot's time, given back when it
    is still to come and the last one booked (0: none). ``slot``: then take the next request slot,
    reserving ``tokens`` with it; ``spacing``: between two request slots (0: no requests
    limit); ``depth``: the tokens bucket's depth, one minute's budget (0: no tokens limit).
    """

    now: int
    correction: int = 0
    cool_until: int = 0
    slot: bool = False
    spacing: int = 0
    tokens: int = 0
    depth: int = 0
    release: int = 0


class Outcome(NamedTuple):
    """What an update answered: the slot's time (``now`` without a slot), the key's cool-down
    end, and whether the stored value was unreadable (then treated as empty)."""

    at: int
    cool_until: int
    garbled: bool = False


def decode(value: Any, now: int) -> tuple[tuple[int, int, int], bool]:
    """The stored ``(next, empty, cool)`` and whether it was garbled (then all zero)."""
    if value is None:
        return (0, 0, 0), False
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _STATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return (0, 0, 0), True
    nxt, empty, cool = match.groups()
    times = int(nxt), int(empty), int(cool)
    if max(times) > now + HORIZON:
        return (0, 0, 0), True
    return times, False


def encode(times: tuple[int, int, int]) -> str:
    nxt, empty, cool = times
    return f"{nxt},{empty},{cool}"


def transition(stored: Any, update: Update) -> tuple[str, Outcome]:
    """Apply ``update`` to a key's stored value: the value to store and the answer."""
    times, garbled = decode(stored, update.now)
    after, outcome = advance(times, update, garbled)
    return encode(after), outcome


def advance(times: tuple[int, int, int], update: Update, garbled: bool = False) -> tuple[tuple[int, int, int], Outcome]:
    """Apply ``update`` to a key's decoded ``(next, empty, cool)``: the times after it and the
    answer (``garbled``: the stored value was unreadable, as the answer says)."""
    nxt, empty, cool = times
    now, tokens = update.now, update.tokens
    empty = max(max(empty, now) + update.correction, now)
    cool = max(cool, update.cool_until)
    if update.release > now and nxt == update.release + update.spacing:
        nxt = update.release + 1
    at = now
    if update.slot:
        at = max(now, nxt, cool, empty + tokens - update.depth)
        nxt = at + update.spacing
        empty = max(empty, at) + tokens
    return (nxt, empty, cool), Outcome(at, cool, garbled)


class SlotStore:
    """What both stores share: the count of unreadable values they met (each logged once,
    reset to empty, and counted in the ``xai.rate_limit.garbled_values`` metric)."""

    garbled = 0

    def describe(self) -> str:
        raise NotImplementedError

    def counted(self, key: str, outcome: Outcome) -> Outcome:
        if outcome.garbled:
            self.garbled += 1
            log.warning("xAI rate-limit %s held an unreadable value under %s; it was reset", self.describe(), key)
            _metric()
        return outcome


def _metric() -> None:
    from airflow_provider_xai.usage import METRIC_PREFIX, airflow_stats

    if (stats := airflow_stats()) is not None:
        stats.incr(f"{METRIC_PREFIX}.rate_limit.garbled_values")


__all__ = ["HORIZON", "SECOND_US", "Outcome", "SlotStore", "Update", "advance", "decode", "encode", "transition"]
