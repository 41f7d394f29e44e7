"""The API calls of :class:`XAIHook`, described without I/O (see :class:`Call`).

Each function says what to send (a body validated before anything is sent, with the
connection's default model filled in) and how to read the answer into a typed model. The hook's
sync and async methods hand the same call to the transport's ``send`` or ``asend``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.exceptions import XAIAPIError, XAIDeferredExpiredError, XAIError, XAINotFoundError
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.pipeline.transport import Call
from airflow_provider_xai.schemas import (
    ChatCompletion,
    ChatRequest,
    DeferredRequest,
    build_chat_body,
    build_chat_request,
    parse_response,
)
from airflow_provider_xai.schemas.chat import CHAT_PATH, DEFERRED_COMPLETION_PATH

M = TypeVar("M", bound=BaseModel)
#: What the chat methods accept: a :class:`ChatRequest`, a mapping of API fields, or None
#: (with the fields as keyword arguments).
RequestLike = ChatRequest | Mapping[str, Any]


def segment(value: str) -> str:
    """One URL path segment (an id given by the user or the API), quoted so it stays one."""
    return quote(str(value), safe="")


def _with_model(settings: ClientSettings, request: RequestLike | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus the connection's default model when neither names one."""
    if (
        not isinstance(request, ChatRequest)
        and "model" not in kwargs
        and not (request.get("model") if isinstance(request, Mapping) else None)
    ):
        return {**kwargs, "model": settings.default_model}
    return dict(kwargs)


def chat_request(
    settings: ClientSettings, request: RequestLike | None = None, /, **kwargs: Any
) -> ChatRequest:
    """Validate a chat request, filling in the connection's default model."""
    return build_chat_request(request, **_with_model(settings, request, kwargs))


def chat_body(
    request: RequestLike | None, kwargs: Mapping[str, Any], **fields: Any
) -> Any:
    """A body builder for :class:`Call`: the validated chat request plus operator-owned fields."""

    def build(settings: ClientSettings) -> dict[str, Any]:
        body = build_chat_body(request, **_with_model(settings, request, kwargs))
        body.update(fields)
        return body

    return build


def fixed_body(body: Any) -> Callable[[ClientSettings], Any] | None:
    """A body builder for :class:`Call` when the body needs nothing from the settings."""
    return None if body is None else (lambda _settings: body)


def read(model: type[M], what: str) -> Any:
    """A ``parse`` for :class:`Call`: the reply body validated as ``model``."""

    def parse(reply: Reply) -> M:
        result: M = parse_response(model, reply.content, what)
        return result

    return parse


def get(path: str, model: type[M]) -> Call[M]:
    """``GET path`` read as ``model``."""
    return Call("GET", path, read(model, path))


def chat(request: RequestLike | None, kwargs: Mapping[str, Any]) -> Call[ChatCompletion]:
    return Call("POST", CHAT_PATH, read(ChatCompletion, "completion"), chat_body(request, kwargs))


def start_deferred(request: RequestLike | None, kwargs: Mapping[str, Any]) -> Call[str]:
    def parse(reply: Reply) -> str:
        submitted: DeferredRequest = parse_response(DeferredRequest, reply.content, "deferred submission")
        return submitted.request_id

    return Call("POST", CHAT_PATH, parse, chat_body(request, kwargs, deferred=True))


def get_deferred(request_id: str) -> Call[ChatCompletion | None]:
    """The finished completion, or None while xAI answers 202; 404 becomes expired."""

    def parse(reply: Reply) -> ChatCompletion | None:
        if reply.status_code == 202:
            return None
        completion: ChatCompletion = parse_response(ChatCompletion, reply.content, "deferred completion")
        return completion

    def expired(exc: XAIAPIError) -> XAIError:
        if not isinstance(exc, XAINotFoundError):
            return exc
        return XAIDeferredExpiredError(
            f"Deferred completion {request_id} is unknown to xAI: already collected, expired "
            f"(results are kept 24 h) or never created. xAI said: {exc.xai_message}",
            status=exc.status,
            code=exc.code,
            request_id=exc.request_id,
        )

    return Call("GET", f"{DEFERRED_COMPLETION_PATH}{segment(request_id)}", parse, on_error=expired)


def stream_body(request: RequestLike | None, kwargs: Mapping[str, Any]) -> Any:
    """A streamed chat body: the usage chunk is asked for unless the caller chose otherwise."""
    build = chat_body(request, kwargs, stream=True)

    def with_usage(settings: ClientSettings) -> dict[str, Any]:
        body: dict[str, Any] = build(settings)
        body.setdefault("stream_options", {"include_usage": True})
        return body

    return with_usage
