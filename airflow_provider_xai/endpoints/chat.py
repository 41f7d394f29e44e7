"""Chat Completions (``/v1/chat/completions``, deprecated by xAI in favour of Responses) and its
deferred completions: the declarations, and the calls the hook sends.

Each call says what to send (a body validated before anything is sent, with the connection's
default model filled in) and how to read the answer; the hook's sync and async methods hand the
same call to the transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.endpoints.common import (
    estimate_tokens,
    forecast_chat,
    read,
    segment,
    unknown_is_expired,
)
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.pipeline.call import Call, Endpoint, OnEvent
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.pricing import Price
from airflow_provider_xai.schemas import (
    ChatCompletion,
    ChatRequest,
    DeferredRequest,
    build_chat_body,
    build_chat_request,
    parse_response,
)
from airflow_provider_xai.streams.chat import StreamAssembler
from airflow_provider_xai.usage import UsageRecord, build_record, served_tier

#: What the chat methods accept: a :class:`ChatRequest`, a mapping of API fields, or None
#: (with the fields as keyword arguments).
RequestLike = ChatRequest | Mapping[str, Any]


def chat_record(
    completion: ChatCompletion, prices: Mapping[str, Price], *, discount: float = 1.0
) -> UsageRecord | None:
    """The usage record of a billed completion (None when it carries no usage); an estimate is
    ``discount`` times the price table's (a batch's)."""
    if completion.usage is None:
        return None
    return build_record(
        completion.usage, completion.model, completion_id=completion.id, prices=prices, discount=discount,
        service_tier=served_tier(completion),
    )


CHAT = Endpoint(
    "chat.completions",
    "POST",
    "chat/completions",
    request=ChatRequest,
    response=ChatCompletion,
    record=chat_record,
    operation="chat",
    estimate=estimate_tokens,
    bucket="model",
    forecast=forecast_chat,
)
#: Submitting a deferred completion: answered with a request id, billed when it is collected.
DEFERRED_SUBMIT = Endpoint(
    "chat.completions",
    "POST",
    "chat/completions",
    request=ChatRequest,
    response=DeferredRequest,
    operation="chat",
    estimate=estimate_tokens,
    bucket="model",
    forecast=forecast_chat,
)
DEFERRED_COMPLETION = Endpoint(
    "chat.completions",
    "GET",
    "chat/deferred-completion/{request_id}",
    response=ChatCompletion,
    record=chat_record,
    operation="chat",
    polled=True,
)
ENDPOINTS = (CHAT, DEFERRED_SUBMIT, DEFERRED_COMPLETION)


def _with_model(settings: ClientSettings, request: RequestLike | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus the connection's default model when neither names one."""
    if (
        not isinstance(request, ChatRequest)
        and "model" not in kwargs
        and not (request.get("model") if isinstance(request, Mapping) else None)
    ):
        return {**kwargs, "model": settings.default_model}
    return dict(kwargs)


def chat_request(settings: ClientSettings, request: RequestLike | None = None, /, **kwargs: Any) -> ChatRequest:
    """Validate a chat request, filling in the connection's default model."""
    return build_chat_request(request, **_with_model(settings, request, kwargs))


def chat_body(request: RequestLike | None, kwargs: Mapping[str, Any], **fields: Any) -> Any:
    """A body builder: the validated chat request plus operator-owned fields."""

    def build(settings: ClientSettings) -> dict[str, Any]:
        body = build_chat_body(request, **_with_model(settings, request, kwargs))
        body.update(fields)
        return body

    return build


#: The header that routes Chat Completions requests to the same prompt cache (Responses has the
#: body field ``prompt_cache_key``; the chat calls take that name too and send it here).
CONVERSATION_HEADER = "x-grok-conv-id"


def routed(request: RequestLike | None, kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """The request and fields without ``prompt_cache_key``, and the header it becomes."""
    fields = dict(kwargs)
    key = fields.pop("prompt_cache_key", None)
    if isinstance(request, Mapping) and "prompt_cache_key" in request:
        request = dict(request)
        key = request.pop("prompt_cache_key") or key
    if key is not None and (not isinstance(key, str) or not key.strip() or len(key) > 256):
        raise XAIValidationError("prompt_cache_key", f"expected a short non-empty text, got {key!r}")
    return request, fields, ({CONVERSATION_HEADER: key} if key else {})


def chat(request: RequestLike | None, kwargs: Mapping[str, Any]) -> Call[ChatCompletion]:
    request, fields, headers = routed(request, kwargs)
    return Call(CHAT, read(ChatCompletion, "completion"), body=chat_body(request, fields), headers=headers)


def stream(
    request: RequestLike | None,
    kwargs: Mapping[str, Any],
    *,
    on_event: OnEvent | None = None,
    restartable: bool = False,
) -> Call[ChatCompletion]:
    """A streamed chat call: the usage chunk is asked for unless the caller chose otherwise."""
    request, kwargs, headers = routed(request, kwargs)
    build = chat_body(request, kwargs, stream=True)

    def with_usage(settings: ClientSettings) -> dict[str, Any]:
        body: dict[str, Any] = build(settings)
        body.setdefault("stream_options", {"include_usage": True})
        return body

    return Call(
        CHAT,
        stream=_assembler,
        body=with_usage,
        on_event=on_event,
        restartable=restartable,
        headers=headers,
    )


def _assembler(body: Mapping[str, Any]) -> StreamAssembler:
    return StreamAssembler(expect_usage=bool((body.get("stream_options") or {}).get("include_usage")))


def start_deferred(request: RequestLike | None, kwargs: Mapping[str, Any]) -> Call[str]:
    def parse(reply: Reply) -> str:
        submitted: DeferredRequest = parse_response(DeferredRequest, reply.content, "deferred submission")
        return submitted.request_id

    request, fields, headers = routed(request, kwargs)
    return Call(DEFERRED_SUBMIT, parse, body=chat_body(request, fields, deferred=True), headers=headers)


def get_deferred(request_id: str) -> Call[ChatCompletion | None]:
    """The finished completion, or None while xAI answers 202; 404 becomes expired."""

    def parse(reply: Reply) -> ChatCompletion | None:
        if reply.status_code == 202:
            return None
        completion: ChatCompletion = parse_response(ChatCompletion, reply.content, "deferred completion")
        return completion

    expired = unknown_is_expired(
        f"Deferred completion {request_id} is unknown to xAI: already collected, expired "
        "(results are kept 24 h) or never created"
    )

    path = f"chat/deferred-completion/{segment(request_id)}"
    return Call(DEFERRED_COMPLETION, parse, path=path, on_error=expired)


__all__ = [
    "CHAT",
    "DEFERRED_COMPLETION",
    "DEFERRED_SUBMIT",
    "ENDPOINTS",
    "RequestLike",
    "chat",
    "chat_body",
    "chat_record",
    "chat_request",
    "get_deferred",
    "start_deferred",
    "stream",
]
