"""``/v1/responses`` answers of the local xAI server: output items, usage and cost.

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
from typing import Any

from airflow_provider_xai.testing.chat import REPLY_PREFIX, count_tokens, served_tier, tier_factor
from airflow_provider_xai.testing.models import ModelSpec
from airflow_provider_xai.testing.responses_request import (
    ServerResponsesRequest,
    StoredResponse,
    item_image_tokens,
    item_text,
)
from airflow_provider_xai.testing.responses_tools import (
    ID_PREFIXES,
    TOOL_PRICE_TICKS,
    USAGE_DETAIL_KEYS,
    USAGE_KEYS,
    ToolRun,
    run_server_tools,
)
from airflow_provider_xai.testing.schema_gen import generate
from airflow_provider_xai.testing.state import ServerState


# -- choosing --------------------------------------------------------------------------------
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


def _generated(schema: dict[str, Any], req: ServerResponsesRequest, source: str) -> Any:
    """A value for ``schema`` about the request: ``source``, the conversation's user texts (a
    continued conversation keeps its topic) and the images of the last user message."""
    users = [item for item in req.conversation
             if item.get("type") == "message" and item.get("role") == "user"]
    parts = users[-1].get("content") if users else None
    images = [str(p.get("image_url") or p.get("file_id") or "") for p in parts or []
              if isinstance(p, dict) and p.get("type") == "input_image"]
    seed = hashlib.sha256("\x00".join(images).encode()).hexdigest() if images else ""
    return generate(schema, source, context=[item_text(item) for item in users], seed=seed)


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


# -- building ------------------------------------------------------------------------------
def _message(req: ServerResponsesRequest, source: str, runs: list[ToolRun],
             forced: str | None) -> tuple[str, list[dict[str, Any]]]:
    fmt = req.text_format["type"]
    if forced is not None:
        return forced, []
    cites = list({c.url: c for run in runs for c in run.cites}.values())
    if fmt != "text":
        value = (_generated(req.text_format["schema"], req, source) if fmt == "json_schema"
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
        runs = run_server_tools(req.tools, source, req.include, state.file_search_collections(),
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
        args = json.dumps(_generated(fn.get("parameters") or {"type": "object"}, req, source))
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
        route = req.body.get("prompt_cache_key")
        route = route if isinstance(route, str) else None
        cached = sum(per_item[: state.cached_prefix(_prefix_keys(model, conv), route)])
        state.cached_prefix(_prefix_keys(model, [*conv, *output]), route)  # remember the answer too
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
        usage["cost_in_usd_ticks"] = tier_factor(req.body) * (
            (text_tokens - cached) * price.input_ticks + cached * price.cached_ticks
            + images * price.image_ticks + out_tokens * price.output_ticks
        ) + sum(TOOL_PRICE_TICKS[run.kind] for run in runs)
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
        "safety_identifier": None, "service_tier": served_tier(body), "store": req.store,
        "temperature": body.get("temperature"), "top_p": body.get("top_p"),
        "text": {"format": req.text_format}, "tool_choice": req.tool_choice, "tools": req.tools,
        "top_logprobs": body.get("top_logprobs"), "truncation": "disabled", "background": False,
        "presence_penalty": 0, "frequency_penalty": 0, "metadata": {}, "user": body.get("user"),
    }
