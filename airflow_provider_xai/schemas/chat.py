"""Pydantic models of the xAI REST API: requests (strict) and responses (tolerant).

Request models refuse bad input before anything is sent; response models accept fields
xAI adds later (``extra="allow"``) so a new API field never breaks a scheduled DAG.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from airflow_provider_xai.exceptions import XAIResponseError, XAIValidationError
from airflow_provider_xai.schemas.billed import Billed

CHAT_PATH = "chat/completions"
#: A deferred completion is fetched at this prefix + its request id.
DEFERRED_COMPLETION_PATH = "chat/deferred-completion/"

Role = Literal["system", "user", "assistant", "tool", "function", "developer"]
Detail = Literal["auto", "low", "high"]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- request side ---------------------------------------------------------------------------
class TextPart(RequestModel):
    type: Literal["text"] = "text"
    text: str


class ImageURL(RequestModel):
    url: str = Field(min_length=1)
    detail: Detail | None = None


class ImagePart(RequestModel):
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class FilePart(RequestModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["file"] = "file"
    file: dict[str, Any]


ContentPart = Annotated[TextPart | ImagePart | FilePart, Field(discriminator="type")]


class Message(RequestModel):
    """One chat message in the OpenAI/xAI shape."""

    model_config = ConfigDict(extra="allow")
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _content_needed(cls, value: Any, info: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("content parts list is empty")
        return value


class JSONSchemaFormat(RequestModel):
    name: str = Field(default="output", min_length=1, max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = True

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormat(RequestModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(RequestModel):
    include_usage: bool = True


class ChatRequest(RequestModel):
    """Body of ``POST /v1/chat/completions``. Unknown keys pass through (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    deferred: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    def to_body(self) -> dict[str, Any]:
        """The JSON body to send, dumped afresh (so in-place edits are never lost): unset fields
        left out, aliases applied. Raises :class:`XAIValidationError` naming a value that JSON
        cannot carry (see :func:`check_sendable`)."""
        return check_sendable(self)


def describe_validation_error(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """First pydantic error as (field path, problem), e.g. ``("messages[0].role", "...")``."""
    err = exc.errors()[0]
    path = prefix
    for part in err["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("function-after", "list[...]") and not str(part).startswith(("str", "list[")):
            path += f".{part}" if path else str(part)
    problem = err["msg"]
    if err.get("input") is not None and err["type"] not in ("missing",):
        problem += f" (got {short_repr(err['input'])})"
    return path or "request", problem


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


#: Leaf types JSON carries as they are (a float only when finite, a str only without lone
#: surrogates: both checked in :func:`_value_problem`).
_PLAIN = frozenset({str, int, bool, float, type(None)})


def _value_problem(value: Any) -> str | None:
    """What JSON cannot carry faithfully in a value that is not a list or mapping (None: fine)."""
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    if isinstance(value, str):
        if value.isascii() or not _SURROGATE.search(value):
            return None
        return "contains a lone surrogate (not valid Unicode)"
    return f"{type(value).__name__} values cannot be sent as JSON (got {short_repr(value)})"


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def unsendable_value(value: Any, path: str) -> tuple[str, str] | None:
    """(field path, problem) of the first value that JSON cannot carry faithfully, else None.

    Free-form fields (extra API fields, tools, file parts) take any Python value; without this
    check a NaN would silently become ``null`` and bytes, sets, lone surrogates or very deep
    nesting would fail while sending, with an unrelated exception. It runs on every request, so
    plain values are recognised by their exact type first, and the path is spelled out only for
    the value that is wrong.
    """
    found = _first_unsendable(value, 0)
    if found is None:
        return None
    keys, problem = found
    for key in keys:
        path = _child(path, key)
    return path, problem


def _first_unsendable(value: Any, depth: int) -> tuple[list[str | int], str] | None:
    """(keys leading to it, problem) of the first unsendable value in ``value``."""
    kind = type(value)
    items: Any
    if kind is dict or (kind not in _PLAIN and kind is not list and isinstance(value, Mapping)):
        keyed, items = True, value.items()
    elif kind is list or kind is tuple or isinstance(value, list | tuple):
        keyed, items = False, enumerate(value)
    else:
        problem = _value_problem(value)
        return None if problem is None else ([], problem)
    if depth >= MAX_JSON_DEPTH:
        return [], f"is nested more than {MAX_JSON_DEPTH} levels deep"
    for key, item in items:
        if keyed and not isinstance(key, str):
            return [], f"has a non-string key {short_repr(key)}"
        kind = type(item)
        if kind in _PLAIN:
            needs_look = (kind is str and not item.isascii()) or kind is float
            if needs_look and (text := _value_problem(item)) is not None:
                return [key], text
        elif (found := _first_unsendable(item, depth + 1)) is not None:
            found[0].insert(0, key)
            return found
    return None


def check_sendable(request: ChatRequest) -> dict[str, Any]:
    """The request's body, refused if JSON cannot carry it faithfully (see :func:`unsendable_value`).

    Dumped in python mode so that bytes, sets or NaN are seen (JSON mode would quietly convert
    them); what passes holds only JSON types and is sent as it is.
    """
    try:
        data = request.model_dump(by_alias=True, exclude_none=True)
    except (ValueError, TypeError, RecursionError) as exc:  # pydantic serialization errors
        raise XAIValidationError("request", f"cannot be sent as JSON: {exc}") from None
    if problem := unsendable_value(data, ""):
        raise XAIValidationError(problem[0] or "request", problem[1])
    return data


def _validated(request: ChatRequest | Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> ChatRequest:
    """The request as a validated model (pydantic's checks only)."""
    if isinstance(request, ChatRequest):
        if not kwargs:
            return request
        request = request.model_dump(by_alias=True, exclude_unset=True)  # re-validated below
    elif request is not None and not isinstance(request, Mapping):
        raise XAIValidationError(
            "request", f"expected a ChatRequest or a mapping of API fields, got {type(request).__name__}"
        )
    data = {**(request or {}), **kwargs}
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        raise XAIValidationError(*describe_validation_error(exc)) from None
    except RecursionError:
        raise XAIValidationError("request", "is nested too deeply") from None


def build_chat_request(request: ChatRequest | Mapping[str, Any] | None = None, **kwargs: Any) -> ChatRequest:
    """Validate a chat request, raising :class:`XAIValidationError` naming the bad field."""
    validated = _validated(request, kwargs)
    check_sendable(validated)
    return validated


def build_chat_body(request: ChatRequest | Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Validate a chat request and return the body to send (one dump: what was checked is sent)."""
    return check_sendable(_validated(request, kwargs))


# --- response side --------------------------------------------------------------------------
class PromptTokensDetails(_Response):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0
    cached_tokens: int = 0


class CompletionTokensDetails(_Response):
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class ToolUsage(_Response):
    """Server-side tool counts and cost: the part both usage shapes (Chat Completions and
    Responses) share."""

    num_sources_used: int = 0
    num_server_side_tools_used: int = 0
    server_side_tool_usage_details: dict[str, Any] | None = None
    cost_in_usd_ticks: int | None = None

    @property
    def server_side_tool_usage(self) -> dict[str, int]:
        """Server-side tool calls by kind, as xAI counts them; zero counts left out."""
        details = self.server_side_tool_usage_details or {}
        return {name: count for name, count in details.items() if type(count) is int and count > 0}

    @property
    def server_side_tools_used(self) -> int:
        """xAI's ``num_server_side_tools_used``; the sum by kind when only those were sent."""
        if "num_server_side_tools_used" in self.model_fields_set:
            return self.num_server_side_tools_used
        return sum(self.server_side_tool_usage.values())


class Usage(ToolUsage):
    """Token usage of one billed response. ``total_tokens`` includes reasoning tokens.

    Agentic answers add server-side tool counts: ``num_server_side_tools_used`` and, by tool,
    ``server_side_tool_usage_details`` (``{"web_search_calls": 1, ...}``); the two need not agree.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @property
    def reasoning_tokens(self) -> int:
        """``completion_tokens_details.reasoning_tokens``, else the older top-level field (read once)."""
        details = self.completion_tokens_details
        if details is not None and "reasoning_tokens" in details.model_fields_set:
            return details.reasoning_tokens
        older = (self.model_extra or {}).get("reasoning_tokens")
        return older if type(older) is int else 0

    @property
    def cached_tokens(self) -> int:
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0

    @property
    def image_tokens(self) -> int:
        return self.prompt_tokens_details.image_tokens if self.prompt_tokens_details else 0


class ToolCallFunction(_Response):
    name: str | None = None
    arguments: str | None = None


class ToolCall(_Response):
    id: str | None = None
    type: str = "function"
    function: ToolCallFunction | None = None


class ResponseMessage(_Response):
    role: str = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChoiceLogprobs(_Response):
    """Log probabilities of a choice's tokens (``content``) and refusal tokens, in order."""

    content: list[dict[str, Any]] | None = None
    refusal: list[dict[str, Any]] | None = None


class Choice(_Response):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(_Response, Billed):
    """A ``chat.completion`` answer."""

    id: str
    object: str = "chat.completion"
    created: int = 0
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    citations: list[Any] | None = None

    @property
    def text(self) -> str:
        """The first answer's text (raises :class:`XAIResponseError` if there is none). Choices
        of role ``tool`` are skipped: a batch result of a Responses request lists the server-side
        tool steps that way, before the answer."""
        if not self.choices:
            raise XAIResponseError("xAI returned a completion with no choices")
        answer = next((c for c in self.choices if c.message.role != "tool"), self.choices[0])
        return answer.message.content or ""


class ToolCallDelta(ToolCall):
    """A fragment of a streamed tool call: merged with the others of the same ``index``."""

    index: int | None = None
    type: str | None = None  # type: ignore[assignment]  # only in a call's first fragment


class Delta(_Response):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(_Response):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(_Response):
    """One server-sent event of a streamed answer."""

    id: str
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    citations: list[Any] | None = None


class DeferredRequest(_Response):
    request_id: str = Field(min_length=1)


class Model(_Response):
    id: str
    created: int = 0
    object: str = "model"
    owned_by: str = "xai"


class ModelList(_Response):
    data: list[Model]


class LanguageModel(_Response):
    """An entry of ``/v1/language-models``; prices are US cents per 100 million tokens."""

    id: str
    aliases: list[str] = Field(default_factory=list)
    input_modalities: list[str] = Field(default_factory=list)
    output_modalities: list[str] = Field(default_factory=list)
    prompt_text_token_price: int | None = None
    cached_prompt_text_token_price: int | None = None
    prompt_image_token_price: int | None = None
    completion_text_token_price: int | None = None


class LanguageModelList(_Response):
    models: list[LanguageModel]


class ApiKeyInfo(_Response):
    redacted_api_key: str  # always sent by xAI: its absence means the body is not key info
    name: str | None = None
    team_id: str | None = None
    api_key_id: str | None = None
    acls: list[str] = Field(default_factory=list)
    team_blocked: bool = False
    api_key_blocked: bool = False
    api_key_disabled: bool = False


class Token(_Response):
    token_id: int
    string_token: str = ""
    token_bytes: list[int] = Field(default_factory=list)


class TokenizeResponse(_Response):
    token_ids: list[Token]


def parse_response(model: type[BaseModel], content: bytes | str, what: str) -> Any:
    """Validate a 200 body, turning any shape problem into :class:`XAIResponseError`."""
    try:
        return model.model_validate_json(content)
    except ValidationError as exc:
        field, problem = describe_validation_error(exc)
        raise XAIResponseError(f"Malformed {what} from xAI: {field}: {problem}") from None
