"""What a request may cost and what it did cost, for the shared tokens-per-minute limit.

:func:`estimate_tokens` is charged before a request; :func:`billed_tokens` (an answer) and
:class:`UsageTap` (an event stream, watched as it is read) give the real ``total_tokens`` the
charge is corrected to afterwards.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import httpx

from airflow_provider_xai.endpoints.common import estimate_tokens  # noqa: F401 (the limiter's guard)
from airflow_provider_xai.pipeline.replies import Reply


def billed_tokens(reply: Reply) -> int | None:
    """``usage.total_tokens`` of an answer (None when it has no usage)."""
    try:
        usage = json.loads(reply.content).get("usage")
        total = usage.get("total_tokens") if isinstance(usage, Mapping) else None
    except (ValueError, AttributeError):
        return None
    return total if isinstance(total, int) and total >= 0 else None


class UsageTap:
    """Watches an event stream's bytes as they are read for the last ``data:`` line that
    carries ``total_tokens`` (the chat usage chunk, or the Responses API's terminal event)."""

    def __init__(self) -> None:
        self._partial = b""
        self._last: bytes | None = None

    def feed(self, chunk: bytes) -> None:
        if b"\n" not in chunk:
            self._partial += chunk
            return
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if b'"total_tokens"' in line:
                self._last = line

    def total_tokens(self) -> int | None:
        """The usage's ``total_tokens`` (None when no usage came, e.g. a broken stream)."""
        line = self._last if self._last is not None else self._partial
        if not line.startswith(b"data:") or b'"total_tokens"' not in line:
            return None
        try:
            event = json.loads(line[5:])
        except ValueError:
            return None
        usage = event.get("usage") or (event.get("response") or {}).get("usage") if isinstance(event, dict) else None
        total = usage.get("total_tokens") if isinstance(usage, Mapping) else None
        return total if isinstance(total, int) and total >= 0 else None


class TappedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A streamed response's body, passed through a :class:`UsageTap`; when the response is
    closed (read to its end or not), ``settle``/``asettle`` get the tokens it reported."""

    def __init__(
        self,
        inner: Any,
        settle: Callable[[int | None], None],
        asettle: Callable[[int | None], Awaitable[None]],
    ) -> None:
        self.inner, self.settle, self.asettle = inner, settle, asettle
        self.tap = UsageTap()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.tap.feed(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.tap.feed(chunk)
            yield chunk

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.settle(self.tap.total_tokens())

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            await self.asettle(self.tap.total_tokens())


__all__ = [
    "TappedStream",
    "UsageTap",
    "billed_tokens",
]
