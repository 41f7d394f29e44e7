"""Token-paged lists (files, collections, documents): every item, a page at a time.

A page names the next one with ``pagination_token``; xAI may return a token on the last page
too, so a page shorter than the limit ends the list, and so does a token seen before (a server
that keeps answering the same page cannot loop a task forever).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from airflow_provider_xai.pipeline.call import Call

P = TypeVar("P")
I = TypeVar("I")  # noqa: E741


def _next_token(page: Any, got: Sequence[Any], limit: int, seen: set[str]) -> str | None:
    token = getattr(page, "pagination_token", None)
    if not token or len(got) < limit or token in seen:
        return None
    seen.add(token)
    return str(token)


def pages(
    send: Callable[[Call[P]], P],
    page_call: Callable[[int, str | None], Call[P]],
    items: Callable[[P], Sequence[I]],
    limit: int,
) -> Iterator[I]:
    """Every item of a paged list, fetched lazily (blocking)."""
    token: str | None = None
    seen: set[str] = set()
    while True:
        page = send(page_call(limit, token))
        got = items(page)
        yield from got
        if (token := _next_token(page, got, limit, seen)) is None:
            return


async def apages(
    send: Callable[[Call[P]], Awaitable[P]],
    page_call: Callable[[int, str | None], Call[P]],
    items: Callable[[P], Sequence[I]],
    limit: int,
) -> AsyncIterator[I]:
    """Async :func:`pages`."""
    token: str | None = None
    seen: set[str] = set()
    while True:
        page = await send(page_call(limit, token))
        got = items(page)
        for item in got:
            yield item
        if (token := _next_token(page, got, limit, seen)) is None:
            return


__all__ = ["apages", "pages"]
