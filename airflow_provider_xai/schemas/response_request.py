"""The Responses API request (``POST /v1/responses``): strict, checked before anything is sent.

:func:`build_response_request` refuses bad input naming the field (``input[0].content[1].type``)
and says what to use instead of a Chat Completions field. The answer side is in
:mod:`airflow_provider_xai.schemas.responses`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError, model_validator

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.schemas.chat import RequestModel, short_repr, unsendable_value
from airflow_provider_xai.tools import attach_secrets, check_tools

RESPONSES_PATH = "responses"

#: Chat Completions fields the Responses API refuses or ignores, with what to use instead.
CHAT_ONLY_FIELDS: dict[str, str] = {
    "messages": "use 'input' (a string or a list of items) and 'instructions' for the system prompt",
    "max_tokens": "use 'max_output_tokens' (it caps visible plus reasoning tokens)",
    "max_completion_tokens": "use 'max_output_tokens' (it caps visible plus reasoning tokens)",
    "response_format": "use text={'format': {'type': 'json_schema', 'schema': {...}}} (flat, no 'json_schema' wrapper)",
    "reasoning_effort": "use reasoning={'effort': ...}",
    "deferred": "deferred completions exist only on Chat Completions; use the chat operator or batch",
    "search_parameters": "Live Search is retired (xAI answers 410); use the web_search / x_search tools",
    "stream_options": "not needed: a streamed response carries its usage in the final event",
    "n": "the Responses API returns one answer per request; send several requests",
    "logit_bias": "not supported by the Responses API",
    "stop": "not supported by the Responses API",
    "frequency_penalty": "not supported by the Responses API",
    "presence_penalty": "not supported by the Responses API",
}
_SERVER_SIDE_TOOLS = frozenset(
    {"web_search", "x_search", "code_interpreter", "code_execution", "file_search", "collections_search", "mcp"}
)
#: Chat-style content parts and roles, with their Responses equivalent.
_CHAT_PARTS = {
    "text": "use {'type': 'input_text', 'text': ...}",
    "image_url": "use {'type': 'input_image', 'image_url': '<https or data URL>'} (a plain string)",
    "file": "use {'type': 'input_file', 'file_id' | 'file_url' | 'file_data': ...}",
}


# --- request side ---------------------------------------------------------------------------
class InputText(RequestModel):
    type: Literal["input_text"] = "input_text"
    text: str


class InputImage(RequestModel):
    type: Literal["input_image"] = "input_image"
    image_url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class InputFile(RequestModel):
    """A file: exactly one of ``file_id`` (Files API), ``file_url`` or ``file_data`` (base64,
    with ``filename``). Any file makes the request agentic (billed ``attachment_search``)."""

    type: Literal["input_file"] = "input_file"
    file_id: str | None = Field(default=None, min_length=1)
    file_url: str | None = Field(default=None, min_length=1)
    file_data: str | None = Field(default=None, min_length=1)
    filename: str | None = None
    mime_type: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputFile:
        given = [name for name in ("file_id", "file_url", "file_data") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of file_id, file_url or file_data (got {given or 'none'})")
        if self.file_data is not None and not self.filename:
            raise ValueError("file_data needs a filename")
        return self


class OutputTextInput(RequestModel):
    """An assistant turn's text replayed as history."""

    model_config = ConfigDict(extra="allow")
    type: Literal["output_text"] = "output_text"
    text: str


class RefusalInput(RequestModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["refusal"] = "refusal"
    refusal: str


InputPart = Annotated[
    InputText | InputImage | InputFile | OutputTextInput | RefusalInput, Field(discriminator="type")
]


class InputMessage(RequestModel):
    """A message turn. Replayed output ``message`` items (with ``id``, ``status``) fit too."""

    model_config = ConfigDict(extra="allow")
    type: Literal["message"] | None = None
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[InputPart] = Field(min_length=1)
    name: str | None = None


class FunctionCallOutput(RequestModel):
    """The result of a ``function_call``, sent back in the next request's ``input``."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function_call_output"] = "function_call_output"
    call_id: str = Field(min_length=1)
    output: str | list[dict[str, Any]]


class OtherInputItem(RequestModel):
    """Any other item: replayed output items (``reasoning`` with ``encrypted_content``,
    ``function_call``, server-side ``*_call``), ``compaction``... sent as given."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1)


def _input_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None)
    if kind is None or kind == "message":
        return "~message"
    return "~function_call_output" if kind == "function_call_output" else "~item"


InputItem = Annotated[
    Union[  # noqa: UP007
        Annotated[InputMessage, Tag("~message")],
        Annotated[FunctionCallOutput, Tag("~function_call_output")],
        Annotated[OtherInputItem, Tag("~item")],
    ],
    Discriminator(_input_kind),
]


class TextFormat(RequestModel):
    """``text.format``: flat, ``{"type": "json_schema", "schema": {...}, "name"?, "strict"?}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_with_json_schema(self) -> TextFormat:
        if self.type == "json_schema" and self.schema_ is None:
            raise ValueError("a json_schema format needs 'schema' (a JSON Schema object)")
        if self.type != "json_schema" and self.schema_ is not None:
            raise ValueError(f"'schema' goes with type 'json_schema', not {self.type!r}")
        return self


class TextConfig(RequestModel):
    model_config = ConfigDict(extra="allow")
    format: TextFormat | None = None


class ReasoningConfig(RequestModel):
    """``effort`` is model-dependent: some models refuse it (400); send it only when asked."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponseRequest(RequestModel):
    """Body of ``POST /v1/responses``. Unknown keys pass through (``extra="allow"``), except the
    Chat Completions fields of :data:`CHAT_ONLY_FIELDS`, refused with what to use instead."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[InputItem]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=8)
    store: bool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1)
    include: list[str] | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    max_turns: int | None = Field(default=None, ge=1)
    #: Set by :func:`build_response_request`, which checked the rules across fields.
    _checked: bool = PrivateAttr(default=False)

    def to_body(self, get_secret: Callable[[str], str | None] | None = None) -> dict[str, Any]:
        """The JSON body to send, dumped afresh: unset fields left out. Refuses (naming the
        field) what JSON cannot carry. An MCP tool's ``authorization_conn_id`` is replaced by
        the secret ``get_secret`` gives for it, and refused without one (see
        :func:`airflow_provider_xai.tools.resolve_tools`). The rules across fields are checked
        here unless :func:`build_response_request` built (and so checked) the request."""
        if not self._checked:
            check_request(self)
        try:
            data = self.model_dump(by_alias=True, exclude_none=True)
        except (ValueError, TypeError, RecursionError) as exc:
            raise XAIValidationError("request", f"cannot be sent as JSON: {exc}") from None
        if problem := unsendable_value(data, ""):
            raise XAIValidationError(problem[0] or "request", problem[1])
        tools = data.get("tools") or []
        if get_secret is not None:
            attach_secrets(tools, get_secret)
        for i, tool in enumerate(tools):
            if "authorization_conn_id" in tool:
                raise XAIValidationError(
                    f"tools[{i}].authorization_conn_id",
                    "resolve it to the secret with airflow_provider_xai.tools.resolve_tools() before sending",
                )
        return data


def check_request(request: ResponseRequest, tools: list[dict[str, Any]] | None = None) -> None:
    """Rules across fields, raising :class:`XAIValidationError` naming the field (``tools``:
    the request's tools, already checked, when the caller has them)."""
    for name in request.model_extra or {}:
        if name in CHAT_ONLY_FIELDS:
            raise XAIValidationError(name, f"is a Chat Completions field: {CHAT_ONLY_FIELDS[name]}")
    if request.instructions is not None and request.previous_response_id is not None:
        raise XAIValidationError(
            "instructions",
            "cannot be combined with previous_response_id (the stored response's instructions are "
            "reused); leave one out",
        )
    if request.top_logprobs is not None and not request.logprobs:
        raise XAIValidationError("top_logprobs", "needs logprobs=True")
    if tools is None:
        tools = check_tools(request.tools) if request.tools is not None else []
    choice = request.tool_choice
    if isinstance(choice, dict):
        kind = choice.get("type")
        if not isinstance(kind, str) or not kind:
            raise XAIValidationError("tool_choice.type", "is required ({'type': 'function', 'name': ...})")
        if kind == "function":
            nested = choice.get("function")
            forced = choice.get("name") or (nested.get("name") if isinstance(nested, Mapping) else None)
            if not isinstance(forced, str) or not forced:
                raise XAIValidationError("tool_choice.name", "names the function to call")
            declared = {t.get("name") for t in tools if t.get("type") == "function"}
            if request.tools is not None and forced not in declared:
                raise XAIValidationError("tool_choice.name", f"{forced!r} is not one of the function tools")
        elif kind in _SERVER_SIDE_TOOLS:
            raise XAIValidationError(
                "tool_choice.type", f"only a function can be forced ({kind!r}: server-side tools cannot)"
            )


def _chat_shapes(data: Mapping[str, Any]) -> None:
    """Chat Completions shapes in ``input`` and ``text``, refused with the Responses one."""
    items = data.get("input")
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, Mapping):
            continue
        if item.get("role") == "tool" or "tool_call_id" in item:
            raise XAIValidationError(
                f"input[{i}].role",
                "tool results are {'type': 'function_call_output', 'call_id': ..., 'output': '<string>'} items",
            )
        content = item.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, Mapping) and part.get("type") in _CHAT_PARTS:
                raise XAIValidationError(
                    f"input[{i}].content[{j}].type",
                    f"{part['type']!r} is a Chat Completions part: {_CHAT_PARTS[part['type']]}",
                )
    text = data.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(fmt, Mapping) and "json_schema" in fmt:
        raise XAIValidationError(
            "text.format.json_schema",
            "the Responses format is flat: put 'schema', 'name' and 'strict' directly in text.format",
        )


#: Location parts pydantic adds for union members and validators (not field names).
_UNION_PARTS = ("function-", "list[", "tagged-union[", "literal[", "dict[")
_SCALARS = frozenset({"str", "int", "float", "bool", "none"})


def describe_response_error(exc: ValidationError) -> tuple[str, str]:
    """The most specific pydantic error as (field path, problem): ``input[0].content[1].image_url``."""
    err = max(exc.errors(), key=lambda e: len(e["loc"]))
    path, previous = "", None
    for part in err["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (isinstance(previous, int) or part in _SCALARS or str(part).startswith(_UNION_PARTS)):
            path += f".{part}" if path else str(part)
        previous = part
    problem = err["msg"]
    if err.get("input") is not None and err["type"] != "missing":
        problem += f" (got {short_repr(err['input'])})"
    return path or "request", problem


def build_response_request(
    request: ResponseRequest | Mapping[str, Any] | None = None, **kwargs: Any
) -> ResponseRequest:
    """Validate a Responses request (a :class:`ResponseRequest`, a mapping of API fields, or
    keyword arguments on top), raising :class:`XAIValidationError` naming the bad field.

    Tools may be dicts or objects with ``to_body()``; they are checked like
    :func:`airflow_provider_xai.tools.check_tools` does.
    """
    if isinstance(request, ResponseRequest):
        if not kwargs:
            check_request(request)
            request._checked = True
            return request
        request = request.model_dump(by_alias=True, exclude_unset=True)
    elif request is not None and not isinstance(request, Mapping):
        raise XAIValidationError(
            "request", f"expected a ResponseRequest or a mapping of API fields, got {type(request).__name__}"
        )
    data = {**(request or {}), **kwargs}
    for name in data:
        if name in CHAT_ONLY_FIELDS:
            raise XAIValidationError(name, f"is a Chat Completions field: {CHAT_ONLY_FIELDS[name]}")
    tools = None
    if isinstance(data.get("tools"), list | tuple):
        data["tools"] = tools = check_tools(data["tools"])
    _chat_shapes(data)
    try:
        validated = ResponseRequest.model_validate(data)
    except ValidationError as exc:
        raise XAIValidationError(*describe_response_error(exc)) from None
    except RecursionError:
        raise XAIValidationError("request", "is nested too deeply") from None
    check_request(validated, tools)
    validated._checked = True
    return validated
