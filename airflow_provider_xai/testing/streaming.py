"""Server-sent-event chunks of a streamed chat completion."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from fastapi.responses import StreamingResponse


def split_pieces(text: str) -> list[str]:
    """Split into word pieces (whitespace kept, newline ends a piece); ``"".join`` == text."""
    return [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]


def stream_events(completion: dict[str, Any], include_usage: bool, truncate: bool = False,
                  malformed: bool = False, error: dict[str, Any] | None = None) -> Iterator[str]:
    """SSE events: role delta, (reasoning,) content pieces, finish chunk, usage, [DONE].

    ``truncate`` stops after two content pieces (no finish chunk, no ``[DONE]``);
    ``malformed`` inserts ``data: {not json`` after the first content piece; ``error`` (an
    xAI error body, ``{"code", "error"}``) is sent as an event after two content pieces, and
    the stream ends there, as a mid-stream failure does.
    """
    base = {"id": completion["id"], "object": "chat.completion.chunk",
            "created": completion["created"], "model": completion["model"]}
    fp = {"system_fingerprint": completion["system_fingerprint"]}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return "data: " + json.dumps({**base, "choices": [choice], "usage": None, **fp}) + "\n\n"

    sent = 0
    for choice in completion["choices"]:
        i, msg = choice["index"], choice["message"]
        yield chunk(i, {"role": "assistant", "content": ""})
        for piece in split_pieces(msg.get("reasoning_content") or ""):
            yield chunk(i, {"reasoning_content": piece})
        if msg.get("tool_calls"):
            calls = [{"index": k, **c} for k, c in enumerate(msg["tool_calls"])]
            yield chunk(i, {"tool_calls": calls})
        for piece in split_pieces(msg.get("content") or ""):
            if (truncate or error is not None) and sent == 2:
                if error is not None:
                    yield "data: " + json.dumps(error) + "\n\n"
                return
            yield chunk(i, {"content": piece})
            sent += 1
            if malformed and sent == 1:
                yield "data: {not json\n\n"
        if truncate or error is not None:  # fewer than two pieces: cut (or fail) at the end
            if error is not None:
                yield "data: " + json.dumps(error) + "\n\n"
            return
        yield chunk(i, {}, choice["finish_reason"])
    if include_usage:
        usage = {**base, "choices": [], "usage": completion["usage"], **fp}
        yield "data: " + json.dumps(usage) + "\n\n"
    yield "data: [DONE]\n\n"


def paced_event_stream(
    frames: Iterable[str], interval: float, pause: tuple[int, float] = (0, 0.0)
) -> StreamingResponse:
    """An event-stream answer sending ``frames`` ``interval`` seconds apart (chat and Responses),
    and ``pause[1]`` seconds more before frame ``pause[0]`` (server-side tools at work)."""

    async def body() -> AsyncIterator[str]:
        for i, frame in enumerate(frames):
            if i and interval:
                await asyncio.sleep(interval)
            if i == pause[0] and pause[1]:
                await asyncio.sleep(pause[1])
            yield frame

    return StreamingResponse(body(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
