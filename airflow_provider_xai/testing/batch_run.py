"""How the local server answers one batch request, by kind (``chat_get_completion``,
``responses``, ``image_generation``, ``image_edit``, ``video_generation``, ``video_extension``),
as xAI's Batch API does.

* A request whose text contains ``[fail]``, or whose body the real-time route would refuse,
  fails with ``{"error": "..."}``.
* A chat request answers a ``chat.completion`` (the chat route's answer).
* A Responses request is answered as ``/v1/responses`` answers it (server-side tools run), then
  sent in the shape ``state.batch_responses_shape`` says: ``"chat"`` (the default: xAI sends
  batch results of Responses requests in chat-completion shape, under ``chat_get_completion``,
  each server-side tool step a choice of role ``tool`` before the answer, the cited URLs in
  ``citations``) or ``"responses"`` (the Responses object, under ``responses``).
* An image or video request is answered as its endpoint answers it (``testing/media.py``: real
  files at this server's URLs, the prompt's markers), a finished video at once, under
  ``image_generation`` or ``video_generation`` (an edit's and an extension's too).
* ``usage.cost_in_usd_ticks`` is discounted by :data:`BATCH_DISCOUNT`.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_xai.testing.billing_ledger import bill
from airflow_provider_xai.testing.chat import build_completion, parse_chat_request
from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.responses import build_response
from airflow_provider_xai.testing.responses_request import parse_responses_request
from airflow_provider_xai.testing.state import ServerState

BATCH_DISCOUNT = 0.5
FAIL_MARKER = "[fail]"
#: The kinds a batch request may be (one key of ``batch_request``); the server runs the first two.
KINDS = ("chat_get_completion", "responses", "image_generation", "image_edit", "video_generation",
         "video_extension")  # fmt: skip
RUNS = KINDS
#: JSONL ``url`` -> kind, for batches made from an input file.
URLS = {"/v1/chat/completions": "chat_get_completion", "/v1/responses": "responses",
        "/v1/images/generations": "image_generation", "/v1/images/edits": "image_edit",
        "/v1/videos/generations": "video_generation", "/v1/videos/extensions": "video_extension"}  # fmt: skip
#: The key a finished image or video request's answer comes under.
MEDIA_RESULTS = {"image_generation": "image_generation", "image_edit": "image_generation",
                 "video_generation": "video_generation", "video_extension": "video_generation"}  # fmt: skip


def _has_marker(body: dict[str, Any]) -> bool:
    said = body.get("messages") if "messages" in body else body.get("input", body.get("prompt"))
    return FAIL_MARKER in json.dumps(said)


def _chat(state: ServerState, body: dict[str, Any]) -> dict[str, Any]:
    req = parse_chat_request(body, state.models)
    if req.stream:
        raise ServedError(400, "Invalid request: batch requests cannot be streamed.")
    return {"chat_get_completion": build_completion(req, state.cached_prefix, None, state.omit_cost)}


def _responses(state: ServerState, body: dict[str, Any]) -> dict[str, Any]:
    req = parse_responses_request(body, state.models, state.get_response)
    if req.stream:
        raise ServedError(400, "Invalid request: batch requests cannot be streamed.")
    response, _stored = build_response(req, state)
    if state.batch_responses_shape == "responses":
        return {"responses": response}
    return {"chat_get_completion": chat_shaped(response)}


def _media(state: ServerState, kind: str, body: dict[str, Any], root: str) -> dict[str, Any]:
    from airflow_provider_xai.testing.media import MediaRoutes

    media = MediaRoutes(state)
    if kind.startswith("image"):
        answer = media.image_answer(root, dict(body), edit=kind == "image_edit")
    else:
        answer = media.video_answer(root, dict(body), "extend" if kind == "video_extension" else "generate")
        if answer.get("status") == "failed":
            raise ServedError(500, answer["error"]["message"])
    return {MEDIA_RESULTS[kind]: answer}


def run(state: ServerState, kind: str, body: dict[str, Any], root: str = "") -> tuple[str, dict[str, Any]]:
    """Answer one request: ("succeeded", {"response": {...}}) or ("failed", {"error": ...});
    ``root`` is this server's address, for the URLs of image and video results."""
    if _has_marker(body):
        return "failed", {"error": f"Request failed: simulated failure ({FAIL_MARKER} in the prompt)."}
    try:
        if kind in MEDIA_RESULTS:
            answer = _media(state, kind, body, root)
        else:
            answer = _chat(state, body) if kind == "chat_get_completion" else _responses(state, body)
    except ServedError as exc:
        return "failed", {"error": exc.message}
    for value in answer.values():
        usage = value.get("usage") or {}
        if "cost_in_usd_ticks" in usage:
            usage["cost_in_usd_ticks"] = round(usage["cost_in_usd_ticks"] * BATCH_DISCOUNT)
        bill(state, "batch", value)
    return "succeeded", {"response": answer}


def chat_shaped(response: dict[str, Any]) -> dict[str, Any]:
    """A Responses answer as xAI's batch results carry it: a ``chat.completion`` whose server-side
    tool steps are ``tool`` choices before the assistant's answer."""
    choices: list[dict[str, Any]] = []
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    calls, citations = [], []
    for item in response["output"]:
        kind = item.get("type", "")
        if kind == "reasoning":
            message["reasoning_content"] = "".join(p.get("text", "") for p in item.get("summary") or [])
        elif kind == "message":
            parts = [p for p in item.get("content") or [] if p.get("type") == "output_text"]
            message["content"] = "".join(p["text"] for p in parts)
            citations += [a["url"] for p in parts for a in p.get("annotations") or [] if a.get("url")]
        elif kind == "function_call":
            calls.append({"id": item["call_id"], "type": "function",
                          "function": {"name": item["name"], "arguments": item["arguments"]}})  # fmt: skip
        elif kind.endswith("_call"):
            step = {"id": item["id"], "type": "function",
                    "function": {"name": kind.removesuffix("_call"), "arguments": json.dumps(item.get("action") or {})}}
            choices.append({"index": len(choices), "message": {"role": "tool", "content": None, "tool_calls": [step]},
                            "finish_reason": "tool_calls"})  # fmt: skip
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else ("length" if response.get("status") == "incomplete" else "stop")
    choices.append({"index": len(choices), "message": message, "finish_reason": finish})
    return {
        "id": response["id"], "object": "chat.completion", "created": response["created_at"],
        "model": response["model"], "choices": choices, "usage": _chat_usage(response.get("usage")),
        "citations": list(dict.fromkeys(citations)),
    }  # fmt: skip


def _chat_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses usage in chat names: reasoning beside the completion, the same total."""
    if usage is None:
        return None
    reasoning = usage["output_tokens_details"]["reasoning_tokens"]
    chat = {
        "prompt_tokens": usage["input_tokens"],
        "completion_tokens": usage["output_tokens"] - reasoning,
        "total_tokens": usage["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": usage["input_tokens_details"]["cached_tokens"]},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    keys = ("num_sources_used", "num_server_side_tools_used", "server_side_tool_usage_details", "cost_in_usd_ticks")
    return {**chat, **{k: usage[k] for k in keys if k in usage}}
