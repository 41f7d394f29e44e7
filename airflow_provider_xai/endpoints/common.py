"""What the endpoint families share: reading a whole answer as a model, ids in paths, fixed
bodies, and the token estimate of a text-generation request (the limiter's charge before it is
sent, corrected to the billed amount after)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.exceptions import XAIAPIError, XAIDeferredExpiredError, XAIError, XAINotFoundError
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


__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_OUTPUT_TOKENS",
    "IMAGE_TOKENS",
    "estimate_tokens",
    "fixed_body",
    "ignore",
    "read",
    "segment",
    "unknown_is_expired",
]
