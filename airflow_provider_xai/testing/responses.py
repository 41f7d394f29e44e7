"""``/v1/responses`` logic of the local xAI server: request validation and the response body.

Deterministic rules (documented for tests; token counts as in ``chat.py``: 4 characters a token):

* The *conversation* of a request = the stored conversation of ``previous_response_id`` (its
  own conversation plus its output items), then ``instructions`` as a system message, then the
  new ``input`` items. ``instructions`` with ``previous_response_id`` -> 400; an unknown,
  deleted or ``store: false`` id -> 404.
* Input tokens = sum over conversation items of ``max(1, count_tokens(item_text))`` (message
  text, function-call name + arguments, function output, reasoning summary, else the item's
  JSON) + image tokens (256 ``low``, 1024 otherwise) + the tokens of server-side tool results
  the model read (search hits, file texts, code logs, MCP outputs). ``cached_tokens`` = tokens of
  the longest run of leading items seen before in a conversation *or its output* (so a chained
  turn's whole history, and a repeated request, is cached); models without a cached price and
  ``prompt_cache=False`` never cache.
* Output: a ``reasoning`` item (reasoning models only), then either ``function_call`` items (no
  message) or one call item per server-side tool and a ``message``. Output tokens = reasoning +
  message text + function-call name/arguments tokens; ``total = input + output``;
  ``max_output_tokens`` cuts the text (status ``incomplete``, ``max_output_tokens``).
* Function calls happen when ``tool_choice`` names a function or is ``required`` (the functions
  the last user text mentions, else the first), or is ``auto`` and the text mentions a
  function's name; never right after a ``function_call_output``. ``parallel_tool_calls: false``
  keeps one.
* The message echoes the last user text (``Grok (local) heard: ...``), or the function output
  it follows, then each tool's note and each cited source's snippet with an inline
  ``[[n]](url)`` marker and a ``url_citation`` (no markers/positions with
  ``include: ["no_inline_citations"]``). Structured output (``text.format``) is JSON only.
* ``cost_in_usd_ticks`` = uncached * input + cached * cached + images * image + output * output
  prices of the served model, plus ``responses_tools.TOOL_PRICE_TICKS`` per tool call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.testing.chat import (
    IMAGE_TOKENS,
    REPLY_PREFIX,
    _check_image,
    _number,
    _unsupported,
    count_tokens,
    unknown_model,
)
from airflow_provider_xai.testing.errors import ServedError, invalid_type, missing_field
from airflow_provider_xai.testing.models import ModelSpec, resolve_model
from airflow_provider_xai.testing.responses_tools import (
    ID_PREFIXES,
    TOOL_PRICE_TICKS,
    USAGE_DETAIL_KEYS,
    USAGE_KEYS,
    ToolRun,
    check_tools,
    run_server_tools,
)
from airflow_provider_xai.testing.schema_gen import generate
from airflow_provider_xai.testing.state import ServerState

ROLES = ("system", "developer", "user", "assistant")
#: Chat Completions fields refused on /v1/responses -> what to use instead.
CHAT_ONLY = {"messages": "input", "max_tokens": "max_output_tokens",
             "max_completion_tokens": "max_output_tokens", "response_format": "text.format",
             "reasoning_effort": "reasoning.effort", "n": None, "stream_options": None,
             "deferred": None}
EFFORTS = ("none", "low", "medium", "high", "xhigh")
_TEXT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal",
               "summary_text": "text", "reasoning_text": "text"}


@dataclass
class StoredResponse:
    """A ``store: true`` response and the conversation a follow-up turn rehydrates."""

    response: dict[str, Any]
    conversation: list[dict[str, Any]]


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
        if kind in _TEXT_PARTS:
            if not isinstance(part.get(_TEXT_PARTS[kind]), str):
                raise invalid_type(f"{where}.{_TEXT_PARTS[kind]}", part.get(_TEXT_PARTS[kind]),
                                   "a string")
        elif kind == "input_image":
            if not model.vision:
                raise ServedError(400, f"Model {model.id} does not support image input.")
            _check_image({"url": part.get("image_url"), "detail": part.get("detail") or "auto"})
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
    fmt = text.get("format") if isinstance(text, dict) else None
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
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1, lo_open=True)
    for name, camel in (("presence_penalty", "presencePenalty"),
                        ("frequency_penalty", "frequencyPenalty"), ("stop", "stop")):
        if body.get(name) is not None and model.reasoning:
            raise _unsupported(model, camel)
    if _int(body, "top_logprobs", 0, 8) is not None and not body.get("logprobs"):
        raise ServedError(400, "Invalid request: top_logprobs requires logprobs to be true.")
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise invalid_type("reasoning", reasoning, "a map")
    effort = (reasoning or {}).get("effort")
    if effort is not None:
        if not model.reasoning_effort:
            raise _unsupported(model, "reasoningEffort")
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
    return "\n".join(p.get(_TEXT_PARTS[p["type"]]) or "" for p in content
                     if isinstance(p, dict) and p.get("type") in _TEXT_PARTS)


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


def _prefix_keys(model: ModelSpec, items: list[dict[str, Any]]) -> list[str]:
    keys, h = [], hashlib.sha256(b"responses\x00" + model.id.encode())
    for item in items:
        h.update(json.dumps(item, sort_keys=True).encode() + b"\x00")
        keys.append(h.hexdigest())
    return keys


def _source(req: ServerResponsesRequest) -> str:
    """The text the answer echoes: a trailing function output, else the last user text."""
    if req.items and req.items[-1]["type"] == "function_call_output":
        return item_text(req.items[-1])
    for item in reversed(req.conversation):
        if item.get("type") == "message" and item.get("role") == "user":
            return item_text(item)
    return ""


def _pick_functions(req: ServerResponsesRequest, source: str) -> list[dict[str, Any]]:
    functions = [t for t in req.tools if t.get("type") == "function"]
    choice = req.tool_choice
    if not functions or choice == "none" or req.items[-1]["type"] == "function_call_output":
        return []
    if isinstance(choice, dict):
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        return [f for f in functions if f["name"] == name]
    mentioned = [f for f in functions if f["name"] in source]
    if req.body.get("parallel_tool_calls") is False:
        mentioned = mentioned[:1]
    if choice == "required":
        return mentioned or functions[:1]
    return mentioned


# -- building --------------------------------------------------------------------------------
def _message(req: ServerResponsesRequest, source: str, runs: list[ToolRun],
             forced: str | None) -> tuple[str, list[dict[str, Any]]]:
    fmt = req.text_format["type"]
    if forced is not None:
        return forced, []
    cites = list({c.url: c for run in runs for c in run.cites}.values())
    if fmt != "text":
        value = (generate(req.text_format["schema"], source) if fmt == "json_schema"
                 else {"reply": REPLY_PREFIX + source[:200]})
        return json.dumps(value), [{"type": "url_citation", "url": c.url, "title": c.title}
                                   for c in cites]
    text = REPLY_PREFIX + source[:200]
    text += "".join(f" {run.note}" for run in runs if run.note)
    annotations: list[dict[str, Any]] = []
    inline = "no_inline_citations" not in req.include
    for n, cite in enumerate(cites, 1):
        text += f" {cite.text}"
        if inline:
            marker = f"[[{n}]]({cite.url})"
            annotations.append({"type": "url_citation", "url": cite.url, "title": str(n),
                                "start_index": len(text), "end_index": len(text) + len(marker)})
            text += marker
        else:
            annotations.append({"type": "url_citation", "url": cite.url, "title": cite.title})
    return text, annotations


def _reasoning_text(req: ServerResponsesRequest, source: str, runs: list[ToolRun]) -> str:
    effort = (req.body.get("reasoning") or {}).get("effort") or "default"
    used = sorted({run.kind for run in runs})
    tools = f" I used {', '.join(used)}." if used else ""
    return (f"Reasoning ({effort}): the user wrote {len(source)} characters;{tools} "
            "I will answer deterministically.")


def build_response(req: ServerResponsesRequest, state: ServerState,
                   forced_content: str | None = None) -> tuple[dict[str, Any], StoredResponse]:
    """The full ``response`` object for ``req`` and what storing it keeps."""
    rid, created, source = str(uuid.uuid4()), int(time.time()), _source(req)
    functions = [] if forced_content is not None else _pick_functions(req, source)
    runs: list[ToolRun] = []
    if not functions and forced_content is None and req.tool_choice != "none":
        runs = run_server_tools(req.tools, source, req.include, state.responses_collections,
                                state.responses_mcp_tools, req.body.get("max_turns"))
    budget = req.max_output_tokens
    output: list[dict[str, Any]] = []
    reasoning_tokens = visible = 0
    if req.model.reasoning:
        summary = _reasoning_text(req, source, runs)
        if budget is not None:
            summary = summary[: 4 * budget]
        reasoning_tokens = count_tokens(summary)
        item: dict[str, Any] = {"type": "reasoning", "id": f"rs_{rid}", "status": "completed",
                                "summary": [{"type": "summary_text", "text": summary}]}
        if "reasoning.encrypted_content" in req.include:
            blob = json.dumps({"v": 1, "model": req.model.id, "summary": summary})
            item["encrypted_content"] = base64.b64encode(blob.encode()).decode()
        output.append(item)
    for n, run in enumerate(runs):
        output.append({"id": f"{ID_PREFIXES[run.kind]}_{rid}_{n}", **run.item})
    for n, fn in enumerate(functions):
        args = json.dumps(generate(fn.get("parameters") or {"type": "object"}, source))
        call_id = "call_" + hashlib.sha1(f"{rid}:{n}:{fn['name']}".encode()).hexdigest()[:20]
        output.append({"type": "function_call", "id": f"fc_{rid}_{n}", "call_id": call_id,
                       "name": fn["name"], "arguments": args, "status": "completed"})
        visible += count_tokens(fn["name"] + args)
    incomplete = None
    if not functions:
        text, annotations = _message(req, source, runs, forced_content)
        room = None if budget is None else max(0, budget - reasoning_tokens)
        if room is not None and count_tokens(text) > room:
            text, incomplete = text[: 4 * room], {"reason": "max_output_tokens"}
            annotations = [a for a in annotations if a.get("end_index", 0) <= len(text)]
        visible += count_tokens(text)
        output.append({"type": "message", "id": f"msg_{rid}", "role": "assistant",
                       "status": "incomplete" if incomplete else "completed",
                       "content": [{"type": "output_text", "text": text, "logprobs": [],
                                    "annotations": annotations}]})
    usage = _usage(req, state, output, runs, reasoning_tokens + visible, reasoning_tokens)
    response = response_json(req, rid, created, "incomplete" if incomplete else "completed",
                             output, usage, incomplete)
    return response, StoredResponse(response, [*req.conversation, *output])


def _usage(req: ServerResponsesRequest, state: ServerState, output: list[dict[str, Any]],
           runs: list[ToolRun], out_tokens: int, reasoning: int) -> dict[str, Any]:
    model, price, conv = req.model, req.model.price, req.conversation
    per_item = [max(1, count_tokens(item_text(i))) for i in conv]
    images = sum(item_image_tokens(i) for i in conv)
    text_tokens = sum(per_item) + sum(run.result_tokens for run in runs)
    cached = 0
    if price.cached_input is not None:
        cached = sum(per_item[: state.cached_prefix(_prefix_keys(model, conv))])
        state.cached_prefix(_prefix_keys(model, [*conv, *output]))  # remember the answer too
    details = dict.fromkeys(USAGE_DETAIL_KEYS, 0)
    for run in runs:
        details[USAGE_KEYS[run.kind]] += 1
    usage: dict[str, Any] = {
        "input_tokens": text_tokens + images,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": text_tokens + images + out_tokens,
        "num_sources_used": len({c.url for run in runs for c in run.cites}),
        "num_server_side_tools_used": len(runs),
        "server_side_tool_usage_details": details,
    }
    if not state.omit_cost:
        usage["cost_in_usd_ticks"] = (
            (text_tokens - cached) * price.input_ticks + cached * price.cached_ticks
            + images * price.image_ticks + out_tokens * price.output_ticks
            + sum(TOOL_PRICE_TICKS[run.kind] for run in runs)
        )
    return usage


def response_json(req: ServerResponsesRequest, rid: str, created: int, status: str,
                  output: list[dict[str, Any]], usage: dict[str, Any] | None,
                  incomplete: dict[str, Any] | None) -> dict[str, Any]:
    """The ``response`` object, echoing the normalised request configuration."""
    body, reasoning = req.body, req.body.get("reasoning") or {}
    return {
        "id": rid, "object": "response", "created_at": created,
        "completed_at": None if status == "in_progress" else created,
        "model": req.model.id, "status": status, "output": output, "usage": usage,
        "incomplete_details": incomplete, "error": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": req.max_output_tokens, "max_tool_calls": None,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": None, "service_tier": "default", "store": req.store,
        "temperature": body.get("temperature"), "top_p": body.get("top_p"),
        "text": {"format": req.text_format}, "tool_choice": req.tool_choice, "tools": req.tools,
        "top_logprobs": body.get("top_logprobs"), "truncation": "disabled", "background": False,
        "presence_penalty": 0, "frequency_penalty": 0, "metadata": {}, "user": body.get("user"),
    }
