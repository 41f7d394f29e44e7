"""The Responses API answer (``/v1/responses``): tolerant, with what callers reach for.

:class:`Response` reads whatever xAI sends and offers ``text``, ``citations()``,
``function_calls``, ``tool_calls``, ``reasoning_summary``, ``incomplete_reason``. Items, parts and
usage live in :mod:`airflow_provider_xai.schemas.response_items`; the request (re-exported here)
in :mod:`airflow_provider_xai.schemas.response_request`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from airflow_provider_xai.exceptions import XAIResponseError
from airflow_provider_xai.schemas.billed import Billed
from airflow_provider_xai.schemas.chat import short_repr
from airflow_provider_xai.schemas.response_items import (
    Citation,
    FunctionCall,
    FunctionCallItem,
    MessageItem,
    OutputItems,
    OutputText,
    ReasoningItem,
    Refusal,
    ResponseUsage,
    TextPart,
    ToolCallItem,
    ToolStep,
    UrlCitation,
)
from airflow_provider_xai.schemas.response_request import (  # re-exported: one import for both sides
    CHAT_ONLY_FIELDS,
    RESPONSES_PATH,
    FunctionCallOutput,
    InputMessage,
    ResponseRequest,
    build_response_request,
    check_request,
    describe_response_error,
)

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- response side --------------------------------------------------------------------------
def _error_object(value: Any) -> Any:
    return {"message": value} if isinstance(value, str) else value


class ResponseErrorInfo(_Tolerant):
    """``error`` of a failed response: ``{code, message}``."""

    code: Any = None
    message: str | None = None


class IncompleteDetails(_Tolerant):
    reason: str | None = None  # max_output_tokens, max_prompt_tokens, max_time_limit, turn_limit...


_INLINE_CITATION = re.compile(r"\s?\[\[[^\[\]]{1,12}\]\]\((?:[^()\s]|\([^()\s]*\))*\)")


def strip_inline_citations(text: str, urls: tuple[str, ...] | list[str] = ()) -> str:
    """``text`` without its inline ``[[n]](url)`` citation links (and the space before one).

    ``urls`` (the cited sources) lets a URL holding odd characters be matched exactly."""
    for url in urls:
        if url and f"]]({url})" in text:
            text = re.sub(r"\s?\[\[[^\[\]]{1,12}\]\]\(" + re.escape(url) + r"\)", "", text)
    return _INLINE_CITATION.sub("", text)


class Response(_Tolerant, Billed):
    """A Responses answer (``object: "response"``), the same from create, GET and a stream."""

    id: str
    object: str = "response"
    created_at: int | float | None = None
    completed_at: int | float | None = None
    model: str = ""
    status: str | None = None  # completed, in_progress, incomplete, failed (open)
    output: OutputItems = Field(default_factory=list)
    usage: ResponseUsage | None = None
    incomplete_details: IncompleteDetails | None = None
    error: Annotated[ResponseErrorInfo | None, BeforeValidator(_error_object)] = None
    previous_response_id: str | None = None
    store: bool | None = None
    instructions: Any = None
    user: str | None = None

    def _messages(self) -> list[MessageItem]:
        return [item for item in self.output if isinstance(item, MessageItem)]

    def _texts(self) -> list[OutputText]:
        return [p for m in self._messages() for p in m.content if isinstance(p, OutputText)]

    @property
    def text(self) -> str:
        """The answer: every ``output_text`` part of the ``message`` items, concatenated (with
        inline ``[[n]](url)`` citations when xAI added them; see :attr:`text_without_citations`)."""
        return "".join(part.text for part in self._texts())

    @property
    def text_without_citations(self) -> str:
        """:attr:`text` with the inline citation links removed."""
        return strip_inline_citations(self.text, [c.url for c in self.citations()])

    @property
    def refusal(self) -> str | None:
        refusals = [p.refusal for m in self._messages() for p in m.content if isinstance(p, Refusal)]
        return "".join(refusals) if refusals else None

    def citations(self) -> list[Citation]:
        """The cited sources, ``(url, title)`` in order of appearance, each URL once."""
        seen: dict[str, Citation] = {}
        for part in self._texts():
            for note in part.annotations:
                if isinstance(note, UrlCitation) and note.url and note.url not in seen:
                    seen[note.url] = Citation(note.url, note.title)
        return list(seen.values())

    @property
    def function_calls(self) -> list[FunctionCall]:
        """The calls of your ``function`` tools, arguments parsed. Raises :class:`XAIResponseError`
        naming the call when its arguments are not a JSON object."""
        calls = []
        for item in self.output:
            if not isinstance(item, FunctionCallItem):
                continue
            try:
                arguments = json.loads(item.arguments) if item.arguments.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise XAIResponseError(
                    f"xAI returned function call {item.name!r} (call_id {item.call_id!r}) with arguments "
                    f"that are not valid JSON: {exc}: {short_repr(item.arguments)}"
                ) from None
            if not isinstance(arguments, dict):
                raise XAIResponseError(
                    f"xAI returned function call {item.name!r} (call_id {item.call_id!r}) with arguments "
                    f"that are not a JSON object: {short_repr(item.arguments)}"
                )
            calls.append(FunctionCall(item.name, item.call_id, arguments, item.id))
        return calls

    @property
    def tool_calls(self) -> list[ToolStep]:
        """The server-side tool calls xAI ran (web/X/file search, code, MCP...), in order."""
        return [item.step() for item in self.output if isinstance(item, ToolCallItem)]

    @property
    def reasoning_summary(self) -> str:
        """The reasoning items' summaries (raw reasoning text when there is no summary)."""
        texts = []
        for item in self.output:
            if isinstance(item, ReasoningItem):
                parts = item.summary or item.content or []
                texts += [p.text for p in parts if isinstance(p, TextPart) and p.text]
        return "\n\n".join(texts)

    @property
    def incomplete_reason(self) -> str | None:
        return self.incomplete_details.reason if self.incomplete_details else None

    @property
    def finish_reason(self) -> str | None:
        """A Chat-style reason derived from ``status``: ``tool_calls`` when a function call
        waits for its output, ``stop``, ``length`` (``max_output_tokens``), else the status or
        incomplete reason as sent."""
        if self.status == "completed":
            return "tool_calls" if any(isinstance(i, FunctionCallItem) for i in self.output) else "stop"
        if self.status == "incomplete":
            return "length" if self.incomplete_reason == "max_output_tokens" else self.incomplete_reason
        return self.status

    def output_as_input(self) -> list[dict[str, Any]]:
        """The output items as sent, to replay in a next request's ``input`` (the way to continue
        without ``store``; ask for ``include=["reasoning.encrypted_content"]`` to keep reasoning)."""
        return [item.model_dump(mode="json", exclude_unset=True) for item in self.output]


class DeletedResponse(_Tolerant):
    """``DELETE /v1/responses/{id}``: ``{"id", "object": "response", "deleted": true}``."""

    id: str
    object: str = "response"
    deleted: bool = False


class ResponseStreamEvent(_Tolerant):
    """One event of a streamed response. Dispatch on ``type``; every other field is kept."""

    type: str
    sequence_number: int | None = None
    output_index: int | None = None
    item_id: str | None = None
    content_index: int | None = None
    delta: Any = None
    item: Any = None
    response: Any = None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    @property
    def text_delta(self) -> str | None:
        """The answer text this event adds (``response.output_text.delta``), else None."""
        if self.type == "response.output_text.delta" and isinstance(self.delta, str):
            return self.delta
        return None


__all__ = [
    "CHAT_ONLY_FIELDS",
    "RESPONSES_PATH",
    "TERMINAL_EVENTS",
    "DeletedResponse",
    "FunctionCallOutput",
    "IncompleteDetails",
    "InputMessage",
    "Response",
    "ResponseErrorInfo",
    "ResponseRequest",
    "ResponseStreamEvent",
    "build_response_request",
    "check_request",
    "describe_response_error",
    "strip_inline_citations",
]
