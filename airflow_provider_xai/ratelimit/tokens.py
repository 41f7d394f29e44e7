"""What a request may cost and what it did cost, for the shared tokens-per-minute limit.

:func:`estimate_tokens` is charged before a request; :func:`billed_tokens` (an answer) and
:class:`UsageTap` (an event stream, watched as it is read) give the real ``total_tokens`` the
charge is corrected to afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import httpx
import msgspec

from airflow_provider_xai.pipeline.replies import Reply

#: Tokens assumed for an answer whose request sets no ``max_tokens``-like bound (corrected after).
DEFAULT_OUTPUT_TOKENS = 1024
#: Tokens assumed for each image of a request (xAI tiles an image into up to ~1,800 tokens).
IMAGE_TOKENS = 1800
#: Characters per token of the prompt estimate (the usual English average of BPE tokenizers).
CHARS_PER_TOKEN = 4


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """Tokens a chat or Responses request may spend, before sending it.

    Prompt: the characters of every string in ``messages``/``input``/``instructions``/``tools``
    divided by :data:`CHARS_PER_TOKEN`, plus :data:`IMAGE_TOKENS` per image (an ``image_url``
    or a ``data:`` URI). Answer: ``max_tokens``, ``max_completion_tokens`` or
    ``max_output_tokens`` when set, else :data:`DEFAULT_OUTPUT_TOKENS`. The real usage
    corrects the charge after the answer, so the estimate only needs to be the right size.
    """
    chars, images = 0, 0
    pending: list[Any] = [body.get(k) for k in ("messages", "input", "instructions", "tools")]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if item.startswith("data:"):
                images += 1
            else:
                chars += len(item)
        elif isinstance(item, Mapping):
            for key, value in item.items():
                if key in ("image_url", "file_id") or (key == "type" and value in ("image_url", "input_image")):
                    images += key != "type"
                else:
                    pending.append(value)
        elif isinstance(item, list):
            pending.extend(item)
    answer = next(
        (v for k in ("max_tokens", "max_completion_tokens", "max_output_tokens") if isinstance(v := body.get(k), int)),
        DEFAULT_OUTPUT_TOKENS,
    )
    return -(-chars // CHARS_PER_TOKEN) + images * IMAGE_TOKENS + max(answer, 0)


class _Usage(msgspec.Struct):
    total_tokens: Any = None


class _Billed(msgspec.Struct):
    usage: _Usage | None = None


class _Event(msgspec.Struct):
    """A stream event with usage: the chat usage chunk, or the Responses API's terminal event."""

    usage: _Usage | None = None
    response: _Billed | None = None


_BILLED, _EVENT = msgspec.json.Decoder(_Billed), msgspec.json.Decoder(_Event)


def billed_tokens(reply: Reply) -> int | None:
    """``usage.total_tokens`` of an answer (None when it has no usage, or no integer there; the
    limiter judges the number). Reads only that field: a tenth of a full JSON parse."""
    try:
        usage = _BILLED.decode(reply.content).usage
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return _count(usage.total_tokens if usage is not None else None)


def _count(total: Any) -> int | None:
    return total if isinstance(total, int) and not isinstance(total, bool) else None


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
            event = _EVENT.decode(line[5:])
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        usage = event.usage or (event.response.usage if event.response is not None else None)
        return _count(usage.total_tokens if usage is not None else None)


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
    "CHARS_PER_TOKEN",
    "DEFAULT_OUTPUT_TOKENS",
    "IMAGE_TOKENS",
    "TappedStream",
    "UsageTap",
    "billed_tokens",
    "estimate_tokens",
]
