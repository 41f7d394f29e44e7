"""What the endpoint families share: reading a whole answer as a model, ids in paths, fixed
bodies, and the token estimate of a text-generation request (the limiter's charge before it is
sent, corrected to the billed amount after)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.exceptions import XAIAPIError, XAIDeferredExpiredError, XAIError, XAINotFoundError
from airflow_provider_xai.forecast import (
    FORMAT_TOKENS_PER_MESSAGE,
    IMAGE_TOKENS_BOUND,
    TOOL_RESULT_TOKENS,
    TOOL_USAGE_KEYS,
    UNBOUNDED_OUTPUT_TOKENS,
    UNBOUNDED_TOOL_TURNS,
    Forecast,
    TokenCount,
)
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.schemas import parse_response

M = TypeVar("M", bound=BaseModel)
#: Tokens assumed for an answer whose request sets no ``max_tokens``-like bound (corrected after).
DEFAULT_OUTPUT_TOKENS = 1024
#: Tokens assumed for each image of a request (xAI tiles an image into up to ~1,800 tokens).
IMAGE_TOKENS = 1800
#: Characters per token of the prompt estimate (the usual English average of BPE tokenizers).
CHARS_PER_TOKEN = 4
_OUTPUT_BOUNDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def segment(value: str) -> str:
    """One URL path segment (an id given by the user or the API), quoted so it stays one."""
    return quote(str(value), safe="")


def read(model: type[M], what: str) -> Callable[[Reply], M]:
    """A ``read`` for :class:`~airflow_provider_xai.pipeline.call.Call`: the body as ``model``."""

    def parse(reply: Reply) -> M:
        result: M = parse_response(model, reply.content, what)
        return result

    return parse


def ignore(reply: Reply) -> None:
    """A ``read`` for answers whose content nothing needs (an empty acknowledgement)."""


def unknown_is_expired(what: str) -> Callable[[XAIAPIError], XAIError]:
    """An ``on_error`` for polls: a 404 means xAI no longer knows the request id, raised as
    :class:`XAIDeferredExpiredError` (``what`` says which request and why that may be)."""

    def expired(exc: XAIAPIError) -> XAIError:
        if not isinstance(exc, XAINotFoundError):
            return exc
        return XAIDeferredExpiredError(
            f"{what}. xAI said: {exc.xai_message}", status=exc.status, code=exc.code, request_id=exc.request_id
        )

    return expired


def fixed_body(body: Any) -> Callable[[ClientSettings], Any] | None:
    """A body builder for a body that needs nothing from the settings."""
    return None if body is None else (lambda _settings: body)


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """Tokens a chat or Responses request may spend, before sending it.

    Prompt: the characters of every string in ``messages``/``input``/``instructions``/``tools``
    divided by :data:`CHARS_PER_TOKEN`, plus :data:`IMAGE_TOKENS` per image (an ``image_url``
    or a ``data:`` URI). Answer: ``max_tokens``, ``max_completion_tokens`` or
    ``max_output_tokens`` when set, else :data:`DEFAULT_OUTPUT_TOKENS`. The real usage
    corrects the charge after the answer, so the estimate only needs to be the right size.
    """
    chars, images = 0, 0
    pending: list[Any] = [body.get(k) for k in ("messages", "input", "instructions", "tools")]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if item.startswith("data:"):
                images += 1
            else:
                chars += len(item)
        elif isinstance(item, Mapping):
            for key, value in item.items():
                if key in ("image_url", "file_id") or (key == "type" and value in ("image_url", "input_image")):
                    images += key != "type"
                else:
                    pending.append(value)
        elif isinstance(item, list):
            pending.extend(item)
    answer = next((v for k in _OUTPUT_BOUNDS if isinstance(v := body.get(k), int)), DEFAULT_OUTPUT_TOKENS)
    return -(-chars // CHARS_PER_TOKEN) + images * IMAGE_TOKENS + max(answer, 0)


# --- forecasts: what a request body may bill at most (pipeline/call.py Endpoint.forecast) -------
def _output_bound(body: Mapping[str, Any], forecast: Forecast, *names: str) -> int:
    bound = next((v for k in names if isinstance(v := body.get(k), int) and not isinstance(v, bool)), None)
    if bound is None:
        forecast.bounded, forecast.unbounded = False, names[0]
        return UNBOUNDED_OUTPUT_TOKENS
    return max(bound, 0)


def _texts_of(parts: Any, text_types: tuple[str, ...], image_types: tuple[str, ...]) -> tuple[str, int]:
    """The text of a message's content (parts joined by a newline) and its number of images."""
    if isinstance(parts, str):
        return parts, 0
    if not isinstance(parts, list):
        return "", 0
    texts, images = [], 0
    for part in parts:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in text_types:
            text = part.get("text", part.get("output"))
            texts.append(text if isinstance(text, str) else "")
        elif kind in image_types:
            images += 1
    return "\n".join(texts), images


def _counted(forecast: Forecast, texts: list[str], images: int, extra: list[str], count: TokenCount) -> Forecast:
    """The prompt's tokens: each message or item at least one, as xAI bills them; ``extra``
    (tool definitions) and the per-message formatting go to the overhead."""
    counts = list(count([*texts, *extra], forecast.model)) if texts or extra else []
    forecast.input_tokens = sum(max(1, n) for n in counts[: len(texts)])
    forecast.overhead_tokens = sum(counts[len(texts) :]) + FORMAT_TOKENS_PER_MESSAGE * len(texts)
    forecast.image_tokens = images * IMAGE_TOKENS_BOUND
    return forecast


def forecast_chat(body: Mapping[str, Any], count: TokenCount) -> Forecast:
    """A Chat Completions body at its worst: every message's text counted, each image at its
    most, ``max_completion_tokens`` (or ``max_tokens``) per choice for the answer and as much
    again for reasoning, which Chat Completions bills beside that bound."""
    forecast = Forecast(str(body.get("model") or ""), "chat.completions", service_tier=body.get("service_tier"))
    texts, images = [], 0
    for message in body.get("messages") or []:
        if not isinstance(message, Mapping):
            continue
        text, pictures = _texts_of(message.get("content"), ("text",), ("image_url",))
        if message.get("tool_calls"):
            text += json.dumps(message["tool_calls"], sort_keys=True)
        texts.append(text)
        images += pictures
    tools = [json.dumps(body["tools"], sort_keys=True)] if body.get("tools") else []
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    answer = _output_bound(body, forecast, "max_completion_tokens", "max_tokens")
    forecast.output_tokens = 2 * answer * choices
    return _counted(forecast, texts, images, tools, count)


def _item_text(item: Mapping[str, Any]) -> tuple[str, int]:
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        return _texts_of(item.get("content"), ("input_text", "output_text", "text"), ("input_image",))
    if kind == "function_call_output":
        return _texts_of(item.get("output"), ("input_text", "output_text", "text"), ("input_image",))
    if kind == "function_call":
        return f"{item.get('name', '')}{item.get('arguments', '')}", 0
    if kind == "reasoning":
        return _texts_of(item.get("summary"), ("summary_text",), ())
    return json.dumps({k: v for k, v in item.items() if k not in ("id", "status")}, sort_keys=True), 0


def forecast_responses(body: Mapping[str, Any], count: TokenCount) -> Forecast:
    """A Responses body at its worst: the instructions and every input item counted, a stored
    conversation it continues re-read (``history_of``), ``max_output_tokens`` for the answer
    (reasoning included); with server-side tools, each of ``max_turns`` turns may call every
    tool and re-read the conversation."""
    forecast = Forecast(str(body.get("model") or ""), "responses", service_tier=body.get("service_tier"))
    previous = body.get("previous_response_id")
    forecast.history_of = previous if isinstance(previous, str) else None
    raw = body.get("input")
    items = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else list(raw or [])
    if isinstance(body.get("instructions"), str):
        items.insert(0, {"type": "message", "role": "system", "content": body["instructions"]})
    texts, images = [], 0
    for item in items:
        if isinstance(item, Mapping):
            text, pictures = _item_text(item)
            texts.append(text)
            images += pictures
    tools = [t for t in body.get("tools") or [] if isinstance(t, Mapping)]
    functions = [t for t in tools if t.get("type") == "function"]
    server = [TOOL_USAGE_KEYS[t["type"]] for t in tools if t.get("type") in TOOL_USAGE_KEYS]
    forecast.output_tokens = _output_bound(body, forecast, "max_output_tokens")
    if server:
        turns = body.get("max_turns")
        if not (isinstance(turns, int) and not isinstance(turns, bool) and turns > 0):
            turns, forecast.bounded, forecast.unbounded = UNBOUNDED_TOOL_TURNS, False, "max_turns"
        forecast.turns = turns
        for key in server:
            forecast.tool_calls[key] = forecast.tool_calls.get(key, 0) + turns
        forecast.tool_input_tokens = TOOL_RESULT_TOKENS * sum(forecast.tool_calls.values())
    extra = [json.dumps(functions, sort_keys=True)] if functions else []
    return _counted(forecast, texts, images, extra, count)


__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_OUTPUT_TOKENS",
    "IMAGE_TOKENS",
    "estimate_tokens",
    "fixed_body",
    "forecast_chat",
    "forecast_responses",
    "ignore",
    "read",
    "segment",
    "unknown_is_expired",
]
