"""Prompt and answer content for the GenAI spans, recorded only when the user opts in.

The opt-in is OpenTelemetry's own environment variable,
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``: ``SPAN_ONLY`` (or ``true``) puts
``gen_ai.input.messages``, ``gen_ai.output.messages`` and ``gen_ai.system_instructions`` on the
span as JSON strings; ``EVENT_ONLY`` puts them on a ``gen_ai.client.inference.operation.details``
span event instead; ``SPAN_AND_EVENT`` does both. Unset, ``NO_CONTENT`` or ``false``: nothing.
Messages follow the conventions' shape: ``{"role", "parts": [{"type": "text", "content"}...]}``.
Only messages are read: tool definitions (which may carry MCP secrets) never are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
#: A data URL is replaced by this in captured content (it can be megabytes of image).
DATA_URL = "data:...(inline data not recorded)"


class Capture(NamedTuple):
    span: bool
    event: bool

    def __bool__(self) -> bool:
        return self.span or self.event


def capture_mode() -> Capture:
    """Where content goes, from :data:`CAPTURE_ENV` (read on each request, so a test or a
    deployment can switch it without restarting)."""
    value = os.environ.get(CAPTURE_ENV, "").strip().upper()
    if value in ("TRUE", "1", "SPAN_ONLY"):
        return Capture(True, False)
    if value == "EVENT_ONLY":
        return Capture(False, True)
    if value == "SPAN_AND_EVENT":
        return Capture(True, True)
    return Capture(False, False)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _part(part: Any) -> dict[str, Any]:
    """One content part (chat or Responses shape) in the conventions' shape."""
    if isinstance(part, str):
        return {"type": "text", "content": part}
    if not isinstance(part, Mapping):
        return {"type": "unknown"}
    kind = part.get("type")
    if isinstance(part.get("text"), str):
        return {"type": "text", "content": part["text"]}
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if isinstance(url, str):
        return {"type": "uri", "modality": "image", "uri": DATA_URL if url.startswith("data:") else url}
    return {"type": str(kind or "unknown")}


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str | Mapping):
        return [_part(content)]
    return [_part(p) for p in content] if isinstance(content, list) else []


def _tool_call(call: Any) -> dict[str, Any]:
    function = (call.get("function") if isinstance(call, Mapping) else None) or {}
    name, arguments = function.get("name"), function.get("arguments")
    return {"type": "tool_call", "id": call.get("id"), "name": name, "arguments": arguments}


def _message(message: Any) -> dict[str, Any]:
    """A chat message or a Responses input item in the conventions' shape."""
    if not isinstance(message, Mapping):
        return {"role": "user", "parts": _parts(message)}
    if message.get("role") == "tool" or message.get("type") == "function_call_output":
        response = message.get("content", message.get("output"))
        call_id = message.get("tool_call_id", message.get("call_id"))
        return {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id, "response": response}]}
    if message.get("type") == "function_call":
        call = {"id": message.get("call_id"), "function": message}
        return {"role": "assistant", "parts": [_tool_call(call)]}
    parts = _parts(message.get("content"))
    parts += [_tool_call(c) for c in message.get("tool_calls") or [] if isinstance(c, Mapping)]
    return {"role": str(message.get("role", "user")), "parts": parts}


def input_attributes(api: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``gen_ai.input.messages`` (and ``gen_ai.system_instructions`` for Responses) of a body."""
    if not body:
        return {}
    if api == "responses":
        given = body.get("input")
        items = [{"role": "user", "content": given}] if isinstance(given, str) else given or []
        attributes = {"gen_ai.input.messages": _json([_message(i) for i in items])}
        if isinstance(body.get("instructions"), str):
            attributes["gen_ai.system_instructions"] = _json([{"type": "text", "content": body["instructions"]}])
        return attributes
    return {"gen_ai.input.messages": _json([_message(m) for m in body.get("messages") or []])}


def output_attributes(result: Any) -> dict[str, Any]:
    """``gen_ai.output.messages`` of a completion (one message per choice) or a Response."""
    choices = getattr(result, "choices", None)
    if choices is not None:
        messages = []
        for choice in choices:
            message = choice.message.model_dump(exclude_none=True)
            messages.append({**_message(message), "finish_reason": choice.finish_reason})
        return {"gen_ai.output.messages": _json(messages)}
    parts: list[dict[str, Any]] = [{"type": "text", "content": result.text}] if result.text else []
    parts += [
        {"type": "tool_call", "id": item.call_id, "name": item.name, "arguments": item.arguments}
        for item in result.output
        if getattr(item, "type", None) == "function_call"  # as sent: parsing could fail
    ]
    message = {"role": "assistant", "parts": parts, "finish_reason": result.finish_reason}
    return {"gen_ai.output.messages": _json([message])}
