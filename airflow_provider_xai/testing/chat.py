"""Chat-completion logic of the local xAI server (validation, replies, usage, SSE chunks).

Token counting (documented, deterministic):

* ``tokenize(text)`` cuts text into 4-character pieces, so ``count_tokens(text) ==
  ceil(len(text) / 4)`` and ``POST /v1/tokenize-text`` agrees with it.
* Prompt text tokens = sum over messages of ``max(1, count_tokens(message_text))``, where
  ``message_text`` is the string content, or the text parts joined with ``"\\n"``, plus the
  JSON of any assistant ``tool_calls``.
* Image tokens: ``detail`` ``low`` = 256, ``high``/``auto`` (default) = 1024 per image.
* Cached tokens: the server remembers, per model, every whole-message prefix of earlier
  prompts (since the last reset). ``cached_tokens`` = text tokens of the longest leading run
  of messages already seen as a prefix of an earlier request (so repeating a request caches
  its whole text). Models without a cached price (grok-2-vision-1212) never cache.
* Completion tokens = ``count_tokens`` of each choice's content (or tool-call name +
  arguments), summed over choices; reasoning tokens = ``count_tokens(reasoning_content)``
  summed over choices; ``total = prompt + completion + reasoning``.
* ``cost_in_usd_ticks`` = uncached_text * input + cached * cached_input + image * image_price
  + (completion + reasoning) * output, with prices in ticks per token (USD/1M * 1e4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.testing.errors import ServedError, invalid_type, missing_field
from airflow_provider_xai.testing.models import ModelSpec, resolve_model
from airflow_provider_xai.testing.schema_gen import generate

IMAGE_TOKENS = {"low": 256, "high": 1024, "auto": 1024}
MAX_IMAGE_BYTES = 20 * 1024 * 1024
REPLY_PREFIX = "Grok (local) heard: "
ROLES = {"system", "user", "assistant", "tool", "function", "developer"}
_DATA_URI = re.compile(r"^data:([^;,]+);base64,(.*)$", re.DOTALL)
_MAGIC = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
    "image/jpg": b"\xff\xd8\xff",
}
_NUM = (int, float)


def count_tokens(text: str) -> int:
    """Deterministic token count: one token per 4 characters (rounded up)."""
    return math.ceil(len(text) / 4)


def tokenize(text: str) -> list[dict[str, Any]]:
    """Tokens as ``POST /v1/tokenize-text`` returns them."""
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    return [
        {"token_id": zlib.crc32(p.encode()) % 131_072, "string_token": p,
         "token_bytes": list(p.encode())}
        for p in pieces
    ]


def unknown_model(name: str) -> ServedError:
    return ServedError(404, f"The model {name} does not exist or your team "
                         "00000000-0000-0000-0000-000000000000 does not have access to it. "
                         "Please ensure you're using the correct API key.")


@dataclass
class ServerChatRequest:
    """A validated chat-completion request."""

    body: dict[str, Any]
    model: ModelSpec
    messages: list[dict[str, Any]]
    message_texts: list[str]
    image_tokens: int = 0
    n: int = 1
    max_tokens: int | None = None
    stream: bool = False
    include_usage: bool = False
    deferred: bool = False
    response_format: dict[str, Any] | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None


def _message_text(msg: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    content = msg.get("content")
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image_url" and isinstance(part.get("image_url"), dict):
                images.append(part["image_url"])
            elif kind != "file":
                raise ServedError(422, "Failed to deserialize the JSON body into the target type: "
                                    f"messages: unknown content part {json.dumps(part)[:80]}")
        text = "\n".join(texts)
    else:
        raise invalid_type("messages.content", content, "a string or a sequence of parts")
    if msg.get("tool_calls"):
        text += json.dumps(msg["tool_calls"], sort_keys=True)
    return text, images


def check_image(image: dict[str, Any]) -> int:
    url = image.get("url")
    detail = image.get("detail", "auto")
    if not isinstance(url, str):
        raise invalid_type("image_url.url", url, "a string")
    if detail not in IMAGE_TOKENS:
        raise ServedError(400, f"Invalid image detail {detail!r}: expected one of auto, low, high.")
    m = _DATA_URI.match(url)
    if m:
        mime = m.group(1).lower()
        if mime not in _MAGIC:
            raise ServedError(400, f"Unsupported image type {mime}. Only jpg/jpeg and png images "
                                "are supported.")
        try:
            raw = base64.b64decode(m.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise ServedError(400, "Invalid image: the data URI is not valid base64.") from None
        if len(raw) > MAX_IMAGE_BYTES:
            raise ServedError(400, "Image is larger than the maximum of 20 MiB.")
        if not raw.startswith(_MAGIC[mime]):
            raise ServedError(400, f"Invalid image: data is not a valid {mime} image.")
    elif not url.startswith(("https://", "http://")):
        raise ServedError(400, "Invalid image URL: expected an https URL or a base64 data URI.")
    return IMAGE_TOKENS[detail]


def check_range(body: dict[str, Any], name: str, lo: float, hi: float, lo_open: bool = False) -> None:
    if name not in body or body[name] is None:
        return
    val = body[name]
    if not isinstance(val, _NUM) or isinstance(val, bool):
        raise invalid_type(name, val, "a number")
    if val < lo or val > hi or (lo_open and val == lo):
        raise ServedError(400, f"Invalid request: {name} must be in {'(' if lo_open else '['}"
                            f"{lo}, {hi}], got {val}.")


def unsupported_parameter(model: ModelSpec, camel: str) -> ServedError:
    return ServedError(400, f"Model {model.id} does not support parameter {camel}.")


def parse_chat_request(body: Any, models: Mapping[str, ModelSpec]) -> ServerChatRequest:
    """Validate a chat-completion body like xAI does; raises ``ServedError``."""
    if not isinstance(body, dict):
        raise invalid_type("body", body, "a map")
    if body.get("search_parameters") is not None:
        raise ServedError(410, "Live search is deprecated. Please switch to the Agent Tools API: "
                            "https://docs.x.ai/docs/guides/tools/overview", code=None)
    for name in ("model", "messages"):
        if name not in body:
            raise missing_field(name)
    if not isinstance(body["model"], str):
        raise invalid_type("model", body["model"], "a string")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise invalid_type("messages", messages, "a sequence")
    for msg in messages:
        if not isinstance(msg, dict):
            raise invalid_type("messages", msg, "a message object")
        if msg.get("role") not in ROLES:
            raise ServedError(422, "Failed to deserialize the JSON body into the target type: "
                                f"messages: unknown variant `{msg.get('role')}`")
    model = resolve_model(models, body["model"])
    if model is None:
        raise unknown_model(body["model"])
    if not messages:
        raise ServedError(400, "Invalid request: messages must not be empty.")
    check_range(body, "temperature", 0, 2)
    check_range(body, "top_p", 0, 1, lo_open=True)
    req = ServerChatRequest(body=body, model=model, messages=messages, message_texts=[])
    for msg in messages:
        text, images = _message_text(msg)
        req.message_texts.append(text)
        if images and not model.vision:
            raise ServedError(400, f"Model {model.id} does not support image input.")
        req.image_tokens += sum(check_image(i) for i in images)
    for name in ("n", "max_completion_tokens", "max_tokens"):
        val = body.get(name)
        if val is not None and (not isinstance(val, int) or isinstance(val, bool)):
            raise invalid_type(name, val, "an integer")
        if val is not None and val < 1:
            raise ServedError(400, f"Invalid request: {name} must be at least 1.")
    req.n = body.get("n") or 1
    if req.n > 16:
        raise ServedError(400, "Invalid request: n must be at most 16.")
    mct = body.get("max_completion_tokens")
    req.max_tokens = mct if mct is not None else body.get("max_tokens")
    for name in ("stream", "deferred"):
        if not isinstance(body.get(name, False), (bool, type(None))):
            raise invalid_type(name, body[name], "a boolean")
    req.stream, req.deferred = bool(body.get("stream")), bool(body.get("deferred"))
    if req.stream and req.deferred:
        raise ServedError(400, "Invalid request: deferred completions cannot be streamed.")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise invalid_type("stream_options", opts, "a map")
    req.include_usage = bool(opts.get("include_usage"))
    for name, camel in (("presence_penalty", "presencePenalty"),
                        ("frequency_penalty", "frequencyPenalty"), ("stop", "stop")):
        if body.get(name) is not None and model.reasoning:
            raise unsupported_parameter(model, camel)
    check_range(body, "presence_penalty", -2, 2)
    check_range(body, "frequency_penalty", -2, 2)
    if body.get("reasoning_effort") is not None:
        if not model.reasoning_effort:
            raise unsupported_parameter(model, "reasoningEffort")
        if body["reasoning_effort"] not in ("none", "low", "medium", "high", "xhigh"):
            raise ServedError(400, f"Invalid reasoning_effort {body['reasoning_effort']!r}.")
    stop = body.get("stop")
    req.stop = [stop] if isinstance(stop, str) else list(stop or [])
    if len(req.stop) > 4 or not all(isinstance(s, str) for s in req.stop):
        raise ServedError(400, "Invalid request: stop must be a string or at most 4 strings.")
    req.response_format = _response_format(body.get("response_format"))
    req.tools = body.get("tools") or []
    if not isinstance(req.tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str) for t in req.tools
    ):
        raise ServedError(422, "Failed to deserialize the JSON body into the target type: tools: "
                            "expected a sequence of {type: function, function: {name, ...}}")
    req.tool_choice = body.get("tool_choice")
    return req


def _response_format(rf: Any) -> dict[str, Any] | None:
    if rf is None:
        return None
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise ServedError(422, "Failed to deserialize the JSON body into the target type: "
                            "response_format: unknown variant")
    if rf["type"] == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("schema"), dict):
            raise ServedError(400, "Invalid request: response_format.json_schema.schema must be "
                                "a JSON schema object.")
    return None if rf["type"] == "text" else rf


def _source_text(req: ServerChatRequest) -> str:
    """The text the reply echoes: a trailing tool result, else the last user message."""
    if req.messages[-1].get("role") == "tool":
        return req.message_texts[-1]
    for msg, text in zip(reversed(req.messages), reversed(req.message_texts), strict=True):
        if msg.get("role") == "user":
            return text
    return ""


def _generated(schema: dict[str, Any], req: ServerChatRequest, source: str) -> Any:
    """A value for ``schema`` about the request: ``source``, the conversation's user texts and
    the images of the last user message (so two images asked the same question differ)."""
    users = [t for m, t in zip(req.messages, req.message_texts, strict=True) if m.get("role") == "user"]
    last_user: dict[str, Any] = next((m for m in reversed(req.messages) if m.get("role") == "user"), {})
    parts = last_user.get("content")
    images = [str(p["image_url"].get("url", "")) for p in parts if isinstance(p, dict)
              and isinstance(p.get("image_url"), dict)] if isinstance(parts, list) else []
    seed = hashlib.sha256("\x00".join(images).encode()).hexdigest() if images else ""
    return generate(schema, source, context=users, seed=seed)


def _pick_tool(req: ServerChatRequest, source: str) -> dict[str, Any] | None:
    """Call a tool if ``tool_choice`` names one, is ``required``, or (``auto``) the user
    message mentions a tool's name; never right after a tool result."""
    if not req.tools or req.tool_choice == "none" or req.messages[-1].get("role") == "tool":
        return None
    choice = req.tool_choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        tool = next((t for t in req.tools if t["function"]["name"] == name), None)
        if tool is None:
            raise ServedError(400, f"Invalid request: tool_choice names unknown function {name!r}.")
        return tool
    mentioned = next((t for t in req.tools if t["function"]["name"] in source), None)
    if choice == "required":
        return mentioned or req.tools[0]
    return mentioned


def build_completion(
    req: ServerChatRequest,
    cached_prefix: Callable[[list[str]], int],
    forced_content: str | None = None,
    omit_cost: bool = False,
) -> dict[str, Any]:
    """Build the full ``chat.completion`` body for ``req``."""
    model, source = req.model, _source_text(req)
    rf = req.response_format
    tool = None if forced_content is not None else _pick_tool(req, source)
    choices, completion_tokens, reasoning_tokens = [], 0, 0
    for index in range(req.n):
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish = "stop"
        if tool is not None:
            fn = tool["function"]
            args = json.dumps(_generated(fn.get("parameters") or {"type": "object"}, req, source))
            digest = hashlib.sha1(f"{index}:{fn['name']}:{args}".encode()).hexdigest()
            call_id = "call_" + digest[:20]
            message["tool_calls"] = [{"id": call_id, "type": "function",
                                      "function": {"name": fn["name"], "arguments": args}}]
            completion_tokens += count_tokens(fn["name"] + args)
            finish = "tool_calls"
        else:
            if forced_content is not None:
                content = forced_content
            elif rf and rf["type"] == "json_schema":
                content = json.dumps(_generated(rf["json_schema"]["schema"], req, source))
            elif rf and rf["type"] == "json_object":
                content = json.dumps({"reply": REPLY_PREFIX + source[:200]})
            else:
                content = REPLY_PREFIX + source[:200]
            if forced_content is None:
                cuts = [content.find(s) for s in req.stop if s and s in content]
                if cuts:
                    content = content[: min(cuts)]
                if req.max_tokens is not None and count_tokens(content) > req.max_tokens:
                    content, finish = content[: 4 * req.max_tokens], "length"
            message["content"] = content
            completion_tokens += count_tokens(content)
        if model.reasoning:
            effort = req.body.get("reasoning_effort") or "default"
            reasoning = (f"Reasoning ({effort}): the user wrote {len(source)} characters; "
                         "I will answer deterministically.")
            message["reasoning_content"] = reasoning
            reasoning_tokens += count_tokens(reasoning)
        choices.append({"index": index, "message": message, "finish_reason": finish,
                        "logprobs": None})
    usage = _usage(req, cached_prefix, completion_tokens, reasoning_tokens, omit_cost)
    return {
        "id": str(uuid.uuid4()),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.id,
        "choices": choices,
        "usage": usage,
        "system_fingerprint": model.fingerprint,
        "service_tier": served_tier(req.body),
    }


def _usage(req: ServerChatRequest, cached_prefix: Callable[[list[str]], int], completion: int,
           reasoning: int, omit_cost: bool) -> dict[str, Any]:
    model, price = req.model, req.model.price
    per_msg = [max(1, count_tokens(t)) for t in req.message_texts]
    text_tokens = sum(per_msg)
    cached = 0
    if price.cached_input is not None:
        keys, h = [], hashlib.sha256(model.id.encode())
        for msg in req.messages:
            h.update(json.dumps(msg, sort_keys=True).encode() + b"\x00")
            keys.append(h.hexdigest())
        cached = sum(per_msg[: cached_prefix(keys)])
    prompt = text_tokens + req.image_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"text_tokens": text_tokens, "audio_tokens": 0,
                                  "image_tokens": req.image_tokens, "cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
        "num_sources_used": 0,
    }
    if not omit_cost:
        usage["cost_in_usd_ticks"] = tier_factor(req.body) * (
            (text_tokens - cached) * price.input_ticks + cached * price.cached_ticks
            + req.image_tokens * price.image_ticks + (completion + reasoning) * price.output_ticks
        )
    return usage


def tier_factor(body: dict[str, Any]) -> int:
    """xAI bills the ``priority`` service tier twice (this fake always serves it so)."""
    return 2 if body.get("service_tier") == "priority" else 1


def served_tier(body: dict[str, Any]) -> str:
    return "priority" if body.get("service_tier") == "priority" else "default"
