"""How long before its slot a task waiting in the triggerer is handed back: the resume lead,
learned from how long this deployment takes to run a deferred task again. Pure, no I/O.

Each task back from the triggerer measures ``came_back``: seconds from its trigger firing to
its first call coming to the held slot (the scheduler, the pool, the executor, the task's start,
its code up to the request: all the lead must cover). It notes that in the connection's shared
store (``SharedRateLimiter.returns``: one entry per
return, under the API key's ``resume-lead`` key, kept :data:`MAX_AGE_MS` and at most
:data:`WINDOW` of them); a task about to defer reads them back and is handed back

    lead = min(rate_limit_resume_lead, max(LEAD_FLOOR, q75(recent returns) + LEAD_MARGIN))

seconds before its slot. ``rate_limit_resume_lead`` is the lead until returns are measured and
the longest it may grow (a deployment slower than it comes back late: the log says so).

Why the 75th percentile: a task back early waits the rest out in its worker (worker-slot seconds
wasted, the very thing deferral is for), one back late has lost its slot (the limiter never sends
late, see ``SharedRateLimiter._late``) and takes the next free one, deferring again: a second
start-up, a slot of the limit unused. A late return costs a few early seconds; so most returns
should be in time, not all. :data:`LEAD_MARGIN` covers the trigger's own lag in firing and
the spread of the next return, :data:`LEAD_FLOOR` a first, lucky sample.

Entries are ``"<noted at, ms since the epoch>:<came_back, ms>"``; anything else, or an entry
older than :data:`MAX_AGE_MS` or from the future, is ignored (read leniently, as the slots are).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: The shortest learned lead, seconds.
LEAD_FLOOR = 0.5
#: Added to the percentile of recent returns, seconds: the trigger's lag, the next return's spread.
LEAD_MARGIN = 0.25
#: The share of recent returns the lead covers.
LEAD_QUANTILE = 0.75
#: Returns remembered per key: the recent ones (a deployment's load changes).
WINDOW = 16
#: A return older than this says nothing about the deployment now (an hour, in ms).
MAX_AGE_MS = 3600 * 1000
#: The longest return believed, ms (an hour: a task that waited longer was stuck, not slow).
_MAX_CAME_BACK_MS = 3600 * 1000


def entry(now_ms: int, came_back: float) -> str:
    """The store entry of one return ``came_back`` seconds after its trigger fired."""
    return f"{now_ms}:{min(max(0, round(came_back * 1000)), _MAX_CAME_BACK_MS)}"


def recent(entries: Iterable[object], now_ms: int) -> list[float]:
    """The returns (seconds) of readable entries noted within :data:`MAX_AGE_MS` of ``now_ms``,
    the last :data:`WINDOW` of them, oldest first."""
    kept: list[tuple[int, float]] = []
    for raw in entries:
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
        if not isinstance(text, str):
            continue
        noted, _, took = text.partition(":")
        if not (noted.isdigit() and took.isdigit() and len(noted) <= 16 and len(took) <= 16):
            continue
        at, ms = int(noted), int(took)
        if now_ms - MAX_AGE_MS <= at <= now_ms + 60_000 and ms <= _MAX_CAME_BACK_MS:
            kept.append((at, ms / 1000))
    kept.sort(key=lambda pair: pair[0])
    return [seconds for _, seconds in kept[-WINDOW:]]


def trimmed(stored: str | None, now_ms: int, new: str | None = None) -> str:
    """The embedded store's text of a key's entries: ``stored`` (comma-separated) with ``new``
    appended, what :func:`recent` would drop left out."""
    entries = [e for e in (stored or "").split(",") if e] + ([new] if new else [])
    keep = []
    for text in entries:
        if recent([text], now_ms):
            keep.append(text)
    return ",".join(keep[-WINDOW:])


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank: one of the values, never interpolated)."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def learned_lead(returns: Sequence[float], ceiling: float) -> float:
    """The lead for recent ``returns`` (seconds), at most ``ceiling`` (the connection's
    ``rate_limit_resume_lead``; also the lead while nothing is measured)."""
    if not returns:
        return ceiling
    return min(ceiling, max(LEAD_FLOOR, quantile(returns, LEAD_QUANTILE) + LEAD_MARGIN))


__all__ = [
    "LEAD_FLOOR",
    "LEAD_MARGIN",
    "LEAD_QUANTILE",
    "MAX_AGE_MS",
    "WINDOW",
    "entry",
    "learned_lead",
    "quantile",
    "recent",
    "trimmed",
]
