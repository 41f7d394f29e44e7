"""StreamAssembler: xAI's streamed chunks folded into the answer a non-streamed call returns.

I/O-free: the sync and async stream readers both feed it raw SSE ``data`` strings; it validates
each chunk, tracks completeness (``[DONE]``, finish reasons, the usage chunk) and builds the
final :class:`ChatCompletion`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.exceptions import XAIResponseError, XAITruncatedStreamError
from airflow_provider_xai.pipeline.errors import error_from_response
from airflow_provider_xai.schemas import ChatCompletion, ChatCompletionChunk, Usage, parse_response
from airflow_provider_xai.schemas.chat import ChoiceLogprobs, ChunkChoice, ToolCallDelta

DONE = "[DONE]"


@dataclass
class ChoiceParts:
    """What the deltas of one choice add up to: text, reasoning, tool calls, logprobs."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: dict[str, list[dict[str, Any]]] | None = None
    finish_reason: str | None = None

    def add(self, choice: ChunkChoice) -> None:
        delta = choice.delta
        if delta.content:
            self.text.append(delta.content)
        if delta.reasoning_content:
            self.reasoning.append(delta.reasoning_content)
        for position, fragment in enumerate(delta.tool_calls or []):
            self._add_tool_call(position if fragment.index is None else fragment.index, fragment)
        if choice.logprobs is not None:
            self._add_logprobs(choice.logprobs)
        if choice.finish_reason is not None and (choice.finish_reason or self.finish_reason is None):
            self.finish_reason = choice.finish_reason

    def _add_tool_call(self, index: int, fragment: ToolCallDelta) -> None:
        """id, type and name come in a call's first fragment; ``arguments`` in pieces."""
        call = self.tool_calls.setdefault(
            index, {"id": None, "type": None, "function": {"name": None, "arguments": ""}}
        )
        call["id"] = call["id"] or fragment.id
        call["type"] = call["type"] or fragment.type
        if fragment.function is not None:
            call["function"]["name"] = call["function"]["name"] or fragment.function.name
            call["function"]["arguments"] += fragment.function.arguments or ""

    def _add_logprobs(self, logprobs: ChoiceLogprobs) -> None:
        merged = {} if self.logprobs is None else self.logprobs
        for kind in ("content", "refusal"):
            tokens = getattr(logprobs, kind)
            if tokens is not None:
                merged.setdefault(kind, []).extend(tokens)
        self.logprobs = merged

    def message(self) -> dict[str, Any]:
        """The ``message`` a non-streamed answer would carry."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text)}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [
                {**call, "type": call["type"] or "function"} for _, call in sorted(self.tool_calls.items())
            ]
        return message


class StreamAssembler:
    """Accumulates chunks of one streamed answer; raises on malformed or truncated streams."""

    def __init__(self, *, expect_usage: bool = True) -> None:
        self.expect_usage = expect_usage
        self.done = False
        self.id = ""
        self.model = ""
        self.created = 0
        self.system_fingerprint: str | None = None
        self.usage: Usage | None = None
        self.citations: list[Any] | None = None
        self._choices: dict[int, ChoiceParts] = {}

    def feed(self, data: str) -> ChatCompletionChunk | None:
        """Take one SSE ``data`` payload; return its chunk (None for ``[DONE]``)."""
        if data.strip() == DONE:
            self.done = True
            return None
        if '"error"' in data[:200]:
            self._raise_if_error_event(data)
        chunk: ChatCompletionChunk = parse_response(ChatCompletionChunk, data, "stream chunk")
        self.id = self.id or chunk.id
        self.model = self.model or chunk.model
        self.created = self.created or chunk.created
        self.system_fingerprint = self.system_fingerprint or chunk.system_fingerprint
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.citations is not None and (chunk.citations or self.citations is None):
            self.citations = chunk.citations  # sent whole, usually on the last chunk
        for choice in chunk.choices:
            self._choices.setdefault(choice.index, ChoiceParts()).add(choice)
        return chunk

    def _raise_if_error_event(self, data: str) -> None:
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            return  # parse_response reports it as malformed
        if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
            status = payload["status"] if isinstance(payload.get("status"), int) else 500
            raise error_from_response(status, {}, data.encode())

    @property
    def finished(self) -> bool:
        """True once every choice has a finish reason (and usage arrived, if asked for)."""
        reasons = [parts.finish_reason for parts in self._choices.values()]
        has_reasons = bool(reasons) and all(reasons)
        return self.done or (has_reasons and (self.usage is not None or not self.expect_usage))

    def check_complete(self) -> None:
        if not self.finished:
            received = sum(len("".join(parts.text)) for parts in self._choices.values())
            raise XAITruncatedStreamError(
                f"xAI stream ended before [DONE] or a finish reason after {received} characters; "
                "the answer is incomplete"
            )

    def snapshot(self) -> None:
        """A chat stream's usage comes only with its end: nothing billed is known before."""
        return None

    def result(self) -> ChatCompletion:
        """The assembled answer (see :meth:`completion`)."""
        return self.completion()

    def completion(self) -> ChatCompletion:
        """The assembled answer, as if it had been requested without streaming."""
        self.check_complete()
        if not self.id:
            raise XAIResponseError("xAI stream carried no chunks")
        choices = [
            {
                "index": index,
                "message": parts.message(),
                "finish_reason": parts.finish_reason,
                "logprobs": parts.logprobs,
            }
            for index, parts in sorted(self._choices.items())
        ]
        return ChatCompletion.model_validate(
            {
                "id": self.id,
                "model": self.model,
                "created": self.created,
                "choices": choices,
                "usage": self.usage,
                "system_fingerprint": self.system_fingerprint,
                "citations": self.citations,
            }
        )
