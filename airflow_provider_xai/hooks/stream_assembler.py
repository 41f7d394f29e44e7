"""StreamAssembler: xAI's streamed chunks folded into the answer a non-streamed call returns.

I/O-free: the sync and async stream readers both feed it raw SSE ``data`` strings; it validates
each chunk, tracks completeness (``[DONE]``, finish reasons, the usage chunk) and builds the
final :class:`ChatCompletion`.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_xai.exceptions import XAIResponseError, XAITruncatedStreamError
from airflow_provider_xai.hooks.errors import error_from_response
from airflow_provider_xai.schemas import ChatCompletion, ChatCompletionChunk, Usage, parse_response

DONE = "[DONE]"


class StreamAssembler:
    """Accumulates chunks of one streamed answer; raises on malformed or truncated streams."""

    def __init__(self, *, expect_usage: bool = True, secret: str | None = None) -> None:
        self.expect_usage = expect_usage
        self.secret = secret
        self.done = False
        self.id = ""
        self.model = ""
        self.created = 0
        self.system_fingerprint: str | None = None
        self.usage: Usage | None = None
        self._texts: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._finish: dict[int, str | None] = {}

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
        for choice in chunk.choices:
            if choice.delta.content:
                self._texts.setdefault(choice.index, []).append(choice.delta.content)
            if choice.delta.reasoning_content:
                self._reasoning.setdefault(choice.index, []).append(choice.delta.reasoning_content)
            if choice.finish_reason is not None or choice.index not in self._finish:
                self._finish[choice.index] = choice.finish_reason or self._finish.get(choice.index)
        return chunk

    def _raise_if_error_event(self, data: str) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            return  # parse_response reports it as malformed
        if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
            status = payload["status"] if isinstance(payload.get("status"), int) else 500
            raise error_from_response(status, {}, data.encode(), self.secret)

    @property
    def finished(self) -> bool:
        """True once every choice has a finish reason (and usage arrived, if asked for)."""
        has_reasons = bool(self._finish) and all(self._finish.values())
        return self.done or (has_reasons and (self.usage is not None or not self.expect_usage))

    def check_complete(self) -> None:
        if not self.finished:
            received = sum(len("".join(t)) for t in self._texts.values())
            raise XAITruncatedStreamError(
                f"xAI stream ended before [DONE] or a finish reason after {received} characters; "
                "the answer is incomplete"
            )

    def completion(self) -> ChatCompletion:
        """The assembled answer, as if it had been requested without streaming."""
        self.check_complete()
        if not self.id:
            raise XAIResponseError("xAI stream carried no chunks")
        choices: list[dict[str, Any]] = []
        for index in sorted(set(self._texts) | set(self._finish)):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(self._texts.get(index, []))}
            if index in self._reasoning:
                message["reasoning_content"] = "".join(self._reasoning[index])
            choices.append({"index": index, "message": message, "finish_reason": self._finish.get(index)})
        return ChatCompletion.model_validate(
            {
                "id": self.id,
                "model": self.model,
                "created": self.created,
                "choices": choices,
                "usage": self.usage,
                "system_fingerprint": self.system_fingerprint,
            }
        )
