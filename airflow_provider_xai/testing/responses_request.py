"""``/v1/responses`` requests on the local xAI server: validation and conversation items.

``parse_responses_request`` refuses what xAI refuses (Chat-only fields, bad types, unknown
models, bad ``text.format``/``tool_choice``/tools, ``instructions`` with
``previous_response_id``, an unknown/unstored ``previous_response_id``, a
``function_call_output`` whose ``call_id`` no ``function_call`` precedes) and rehydrates the
stored conversation of ``previous_response_id``. ``item_text`` is what the token count reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.testing.chat import (
    IMAGE_TOKENS,
    check_image,
    check_range,
    unknown_model,
    unsupported_parameter,
)
from airflow_provider_xai.testing.errors import ServedError, invalid_type, missing_field
from airflow_provider_xai.testing.models import ModelSpec, resolve_model
from airflow_provider_xai.testing.responses_tools import check_tools

ROLES = ("system", "developer", "user", "assistant")
#: Chat Completions fields refused on /v1/responses -> what to use instead.
CHAT_ONLY = {"messages": "input", "max_tokens": "max_output_tokens",
             "max_completion_tokens": "max_output_tokens", "response_format": "text.format",
             "reasoning_effort": "reasoning.effort", "n": None, "stream_options": None,
             "deferred": None}
EFFORTS = ("none", "low", "medium", "high", "xhigh")
TEXT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal",
               "summary_text": "text", "reasoning_text": "text"}


@dataclass
class StoredResponse:
    """A ``store: true`` response and the conversation a follow-up turn rehydrates; until
    ``ready_at`` (the server's clock) it reads as in progress."""

    response: dict[str, Any]
    conversation: list[dict[str, Any]]
    ready_at: float = 0.0

    def seen_at(self, now: float) -> dict[str, Any]:
        """What ``GET /v1/responses/{id}`` shows at ``now``: the answer, or its in-progress snapshot."""
        if now >= self.ready_at:
            return self.response
        return {**self.response, "status": "in_progress", "output": [], "usage": None, "completed_at": None}


@dataclass
class ServerResponsesRequest:
    """A validated ``POST /v1/responses`` body."""

    body: dict[str, Any]
    model: ModelSpec
    items: list[dict[str, Any]]  # instructions (as a system message) + new input items
    history: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    text_format: dict[str, Any] = field(default_factory=lambda: {"type": "text"})
    include: set[str] = field(default_factory=set)
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = None

    @property
    def conversation(self) -> list[dict[str, Any]]:
        return [*self.history, *self.items]


# -- parsing ---------------------------------------------------------------------------------
def _int(body: dict[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    val = body.get(name)
    if val is None:
        return None
    if not isinstance(val, int) or isinstance(val, bool):
        raise invalid_type(name, val, "an integer")
    if val < lo or (hi is not None and val > hi):
        bound = f"at least {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ServedError(400, f"Invalid request: {name} must be {bound}, got {val}.")
    return val


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    val = body.get(name)
    if val is None:
        return default
    if not isinstance(val, bool):
        raise invalid_type(name, val, "a boolean")
    return val


def _check_parts(parts: Any, where: str, model: ModelSpec) -> None:
    if not isinstance(parts, list):
        raise invalid_type(where, parts, "a string or a sequence of content parts")
    if not parts:
        raise ServedError(400, "Invalid request content: Each message must have at least one "
                               "content element.")
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS:
            if not isinstance(part.get(TEXT_PARTS[kind]), str):
                raise invalid_type(f"{where}.{TEXT_PARTS[kind]}", part.get(TEXT_PARTS[kind]),
                                   "a string")
        elif kind == "input_image":
            if not model.vision:
                raise ServedError(400, f"Model {model.id} does not support image input.")
            check_image({"url": part.get("image_url"), "detail": part.get("detail") or "auto"})
        elif kind == "input_file":
            given = [k for k in ("file_id", "file_url", "file_data") if part.get(k)]
            if len(given) != 1:
                raise ServedError(400, "Invalid request: input_file needs exactly one of "
                                       "file_id, file_url or file_data.")
            if given == ["file_data"] and not part.get("filename"):
                raise ServedError(400, "Invalid request: input_file with file_data needs a "
                                       "filename.")
        else:
            raise ServedError(422, "Failed to deserialize the JSON body into the target type: "
                                f"{where}: unknown content part {json.dumps(part)[:80]}")


def _input_items(raw: Any, model: ModelSpec) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise invalid_type("input", raw, "a string or a sequence of input items")
    if not raw:
        raise ServedError(400, "Invalid request: input must not be empty.")
    items = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise invalid_type(f"input[{i}]", item, "an input item")
        kind = item.get("type", "message")
        if kind == "message":
            if item.get("role") not in ROLES:
                raise ServedError(422, "Failed to deserialize the JSON body into the target type: "
                                    f"input[{i}].role: unknown variant `{item.get('role')}`")
            if not isinstance(item.get("content"), str):
                _check_parts(item.get("content"), f"input[{i}].content", model)
            item = {"type": "message", **item}
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise missing_field(f"input[{i}].call_id")
            if not isinstance(item.get("output"), str):
                _check_parts(item.get("output"), f"input[{i}].output", model)
        elif kind == "function_call":
            for name in ("call_id", "name", "arguments"):
                if not isinstance(item.get(name), str):
                    raise missing_field(f"input[{i}].{name}")
        elif kind != "reasoning" and not (isinstance(kind, str) and kind.endswith("_call")):
            raise ServedError(422, "Failed to deserialize the JSON body into the target type: "
                                f"input[{i}]: unknown variant `{kind}`")
        items.append(item)
    return items


def _text_format(text: Any) -> dict[str, Any]:
    if text is None:
        return {"type": "text"}
    if not isinstance(text, dict):
        raise invalid_type("text", text, "a map")
    fmt = text.get("format")
    if fmt is None:
        return {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise ServedError(422, "Failed to deserialize the JSON body into the target type: "
                            "text.format: unknown variant, expected `text`, `json_object` or "
                            "`json_schema`")
    if fmt["type"] == "json_schema" and not isinstance(fmt.get("schema"), dict):
        nested = " (it is flat on /v1/responses, not under `json_schema`)" if "json_schema" in fmt else ""
        raise ServedError(400, "Invalid request: text.format.schema must be a JSON schema "
                               f"object{nested}.")
    return fmt


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> Any:
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise ServedError(400, f"Invalid request: tool_choice must be none, auto, required "
                                   f"or a function, got {choice!r}.")
        return choice
    if not isinstance(choice, dict) or choice.get("type") != "function":
        raise ServedError(400, "Invalid request: tool_choice can only force a function tool "
                               "({type: function, name}); server-side tools cannot be forced.")
    name = choice.get("name") or (choice.get("function") or {}).get("name")
    if not any(t.get("type") == "function" and t.get("name") == name for t in tools):
        raise ServedError(400, f"Invalid request: tool_choice names unknown function {name!r}.")
    return choice


def parse_responses_request(
    body: Any, models: Mapping[str, ModelSpec],
    lookup: Callable[[str], StoredResponse | None],
) -> ServerResponsesRequest:
    """Validate a ``/v1/responses`` body like xAI does; raises ``ServedError``."""
    if not isinstance(body, dict):
        raise invalid_type("body", body, "a map")
    if body.get("search_parameters") is not None:
        raise ServedError(410, "Live search is deprecated. Please switch to the Agent Tools API: "
                            "https://docs.x.ai/docs/guides/tools/overview", code=None)
    for name, instead in CHAT_ONLY.items():
        if body.get(name) is not None:
            hint = f"; use `{instead}`" if instead else ""
            raise ServedError(400, f"Invalid request: `{name}` is not supported on /v1/responses"
                                   f"{hint}.")
    for name in ("model", "input"):
        if name not in body:
            raise missing_field(name)
    if not isinstance(body["model"], str):
        raise invalid_type("model", body["model"], "a string")
    model = resolve_model(models, body["model"])
    if model is None:
        raise unknown_model(body["model"])
    check_range(body, "temperature", 0, 2)
    check_range(body, "top_p", 0, 1, lo_open=True)
    for name, camel in (("presence_penalty", "presencePenalty"),
                        ("frequency_penalty", "frequencyPenalty"), ("stop", "stop")):
        if body.get(name) is not None and model.reasoning:
            raise unsupported_parameter(model, camel)
    if _int(body, "top_logprobs", 0, 8) is not None and not body.get("logprobs"):
        raise ServedError(400, "Invalid request: top_logprobs requires logprobs to be true.")
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise invalid_type("reasoning", reasoning, "a map")
    effort = (reasoning or {}).get("effort")
    if effort is not None:
        if not model.reasoning_effort:
            raise unsupported_parameter(model, "reasoningEffort")
        if effort not in EFFORTS:
            raise ServedError(400, f"Invalid reasoning.effort {effort!r}.")
    include = body.get("include") or []
    if not isinstance(include, list) or not all(isinstance(s, str) for s in include):
        raise invalid_type("include", include, "a sequence of strings")
    instructions, prev_id = body.get("instructions"), body.get("previous_response_id")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_type("instructions", instructions, "a string")
    tools = check_tools(body.get("tools"))
    req = ServerResponsesRequest(
        body=body, model=model, items=_input_items(body["input"], model), tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools),
        text_format=_text_format(body.get("text")), include=set(include),
        store=_bool(body, "store", True), stream=_bool(body, "stream", False),
        max_output_tokens=_int(body, "max_output_tokens", 1),
    )
    _int(body, "max_turns", 1)
    _bool(body, "parallel_tool_calls", True)
    if prev_id is not None:
        if instructions is not None:
            raise ServedError(400, "Invalid request: instructions cannot be combined with "
                                   "previous_response_id (the stored system prompt is reused).")
        if not isinstance(prev_id, str):
            raise invalid_type("previous_response_id", prev_id, "a string")
        stored = lookup(prev_id)
        if stored is None:
            raise ServedError(404, f"Response with id {prev_id!r} was not found (unknown, "
                                   "deleted, or created with store=false).")
        req.history = list(stored.conversation)
    elif instructions is not None:
        req.items.insert(0, {"type": "message", "role": "system", "content": instructions})
    calls = {i.get("call_id") for i in req.conversation if i.get("type") == "function_call"}
    for item in req.items:
        if item["type"] == "function_call_output" and item["call_id"] not in calls:
            raise ServedError(400, f"Invalid request: no function_call with call_id "
                                   f"{item['call_id']!r} precedes this function_call_output.")
    return req


# -- token accounting ------------------------------------------------------------------------
def _parts_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(p.get(TEXT_PARTS[p["type"]]) or "" for p in content
                     if isinstance(p, dict) and p.get("type") in TEXT_PARTS)


def item_text(item: dict[str, Any]) -> str:
    """The text of one conversation item, as the token count sees it."""
    kind = item.get("type")
    if kind == "message":
        return _parts_text(item.get("content"))
    if kind == "function_call_output":
        return _parts_text(item.get("output"))
    if kind == "function_call":
        return f"{item.get('name', '')}{item.get('arguments', '')}"
    if kind == "reasoning":
        return _parts_text(item.get("summary"))
    return json.dumps({k: v for k, v in item.items() if k not in ("id", "status")}, sort_keys=True)


def item_image_tokens(item: dict[str, Any]) -> int:
    parts = item.get("content") if item.get("type") == "message" else item.get("output")
    if not isinstance(parts, list):
        return 0
    return sum(IMAGE_TOKENS.get(p.get("detail") or "auto", 1024) for p in parts
               if isinstance(p, dict) and p.get("type") == "input_image")


