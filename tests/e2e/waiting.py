"""Wait on slow end-to-end work by its progress, not by a fixed deadline.

On a loaded machine a DAG run or a starting Airflow process may take many times its usual
time while still moving. ``wait_while_moving`` fails only when what it watches has not changed
for ``stall`` seconds, or when the whole wait passes a very generous ``ceiling``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

#: Seconds without any change before a wait fails (well above the example batch's 60 s poll).
STALL = 300.0
#: Seconds one wait may take in all, however much it moves.
CEILING = 1800.0
#: pytest-timeout for an end-to-end test: a backstop above its own waits' failures.
TEST_TIMEOUT = 3600
#: Errors a poll may hit while a process is still starting: not done yet, try again.
TRANSIENT = (httpx.HTTPError, OSError, ValueError, KeyError)
_NOTHING_YET = object()


def wait_while_moving(
    done: Callable[[], Any],
    progress: Callable[[], Any],
    what: str,
    *,
    stall: float = STALL,
    ceiling: float = CEILING,
    interval: float = 0.5,
) -> Any:
    """Poll ``done()`` until it returns something truthy, and return that.

    ``progress()`` returns a snapshot (anything comparable with ``==``) of what moves while
    the work goes on: task states, parsed DAGs, output written. Fail when that snapshot stays
    the same for ``stall`` seconds, or after ``ceiling`` seconds in all.
    """
    started = moved = time.monotonic()
    snapshot: Any = _NOTHING_YET
    last_error: Exception | None = None
    while True:
        try:
            result = done()
        except TRANSIENT as exc:
            last_error, result = exc, None
        if result:
            return result
        try:
            now_seen = progress()
        except TRANSIENT as exc:
            last_error, now_seen = exc, snapshot
        now = time.monotonic()
        if now_seen != snapshot:
            snapshot, moved = now_seen, now
        if now - moved > stall:
            raise AssertionError(
                f"nothing moved for {stall:.0f}s while waiting for {what}; "
                f"last seen: {snapshot!r} (last error: {last_error!r})"
            )
        if now - started > ceiling:
            raise AssertionError(
                f"still waiting for {what} after {ceiling:.0f}s, though it moves; "
                f"last seen: {snapshot!r} (last error: {last_error!r})"
            )
        time.sleep(interval)


def file_sizes(*paths: Any) -> tuple[int, ...]:
    """Sizes of ``paths`` (0 for a missing file): output a process is still writing moves."""
    return tuple(p.stat().st_size if p.exists() else 0 for p in paths)
