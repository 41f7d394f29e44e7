"""What a Responses answer is made of: output items, content parts, annotations, usage.

Tolerant like every response model here (``extra="allow"``, enums as open strings): an item,
part or annotation of a type not known here, or of a known type in a shape not known yet, is
kept as an ``Unknown*`` model holding every field, never an error. Both the 2026 shapes and the
2025 ones (server-side calls as ``name`` + JSON ``arguments``) are read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, TypeVar, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from airflow_provider_xai.schemas.chat import ToolUsage

M = TypeVar("M", bound=BaseModel)


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class TolerantList:
    """A list whose elements dispatch on ``type``: a known type is validated as its model,
    falling back to ``unknown`` (which keeps every field) when its shape is not the one known;
    None is an empty list; a non-object element is kept as ``{"value": ...}``.

    :attr:`type` is the annotation: the list is validated by pydantic-core as a tagged union
    (the common case, in one pass), and only a list that does not fit is read element by
    element by :meth:`parse`, which never fails."""

    def __init__(self, kinds: Mapping[str, type[BaseModel]], unknown: type[BaseModel]) -> None:
        self.kinds, self.unknown = dict(kinds), unknown
        self.classes = (*kinds.values(), unknown)
        #: The tag of each declared type (the discriminator runs for every element read).
        self.tags = {kind: model.__name__ for kind, model in self.kinds.items()}
        members = {id(model): model for model in self.classes}.values()  # each model once
        tagged = tuple(Annotated[model, Tag(model.__name__)] for model in members)
        element = Annotated[Union[tagged], Discriminator(self._tag)]  # type: ignore[valid-type]  # noqa: UP007
        self.type: Any = Annotated[list[element], WrapValidator(self._validate)]  # type: ignore[valid-type]

    def _model(self, kind: str) -> type[BaseModel]:
        model = self.kinds.get(kind)
        if model is None and kind.endswith("_call") and "*_call" in self.kinds:
            model = self.kinds["*_call"]
        return model or self.unknown

    def _tag(self, element: Any) -> str | None:
        mapping = type(element) is dict or isinstance(element, Mapping)  # JSON gives dicts: no ABC check
        kind = element.get("type") if mapping else getattr(element, "type", None)
        if not isinstance(kind, str):
            return None
        return self.tags.get(kind) or self._model(kind).__name__

    def _validate(self, value: Any, handler: ValidatorFunctionWrapHandler) -> list[Any]:
        try:
            result: list[Any] = handler(value)
            return result
        except ValidationError:
            return self.parse(value)

    def parse(self, value: Any) -> list[Any]:
        """The elements of ``value`` one by one, never failing."""
        if value is None:
            return []
        return [self._one(element) for element in (value if isinstance(value, list | tuple) else [value])]

    def _one(self, element: Any) -> Any:
        if isinstance(element, self.classes):
            return element
        if isinstance(element, BaseModel):
            element = element.model_dump()
        if not isinstance(element, Mapping):
            return self.unknown.model_validate({"type": "", "value": element})
        kind = element.get("type")
        if not isinstance(kind, str):
            element = {**element, "type": "" if kind is None else str(kind)}
            kind = element["type"]
        model = self._model(kind)
        if model is not self.unknown:
            try:
                return model.model_validate(element)
            except (ValidationError, RecursionError):
                pass
        try:
            return self.unknown.model_validate(element)
        except (ValidationError, RecursionError):
            return self.unknown.model_validate({"type": kind})


def _text_list(value: Any) -> Any:
    """``content: "text"`` (an input-style message replayed) read as one output_text part."""
    return [{"type": "output_text", "text": value}] if isinstance(value, str) else value


# --- annotations and content parts ----------------------------------------------------------
class UrlCitation(_Tolerant):
    """A cited source. ``title`` is the visible number (``"1"``) and ``text[start_index:end_index]``
    the whole inline ``[[1]](url)`` link; both absent without inline citations."""

    type: str = "url_citation"
    url: str = ""
    title: str | None = None
    start_index: int | None = None
    end_index: int | None = None


class UnknownAnnotation(_Tolerant):
    type: str = ""


AnnotationT = Union[UrlCitation, UnknownAnnotation]  # noqa: UP007 (a runtime alias for pydantic)
_annotations = TolerantList({"url_citation": UrlCitation}, UnknownAnnotation)
if TYPE_CHECKING:  # what the annotations are, statically; pydantic reads the tolerant list
    Annotations = list[AnnotationT]
else:
    Annotations = _annotations.type


class OutputText(_Tolerant):
    type: str = "output_text"
    text: str = ""
    annotations: Annotations = Field(default_factory=list)
    logprobs: list[Any] | None = None


class Refusal(_Tolerant):
    type: str = "refusal"
    refusal: str = ""


class TextPart(_Tolerant):
    """A ``summary_text`` (reasoning summary) or ``reasoning_text`` part."""

    type: str = "summary_text"
    text: str = ""


class UnknownPart(_Tolerant):
    type: str = ""


PartT = Union[OutputText, Refusal, TextPart, UnknownPart]  # noqa: UP007
_parts = TolerantList(
    {"output_text": OutputText, "refusal": Refusal, "summary_text": TextPart, "reasoning_text": TextPart},
    UnknownPart,
)
if TYPE_CHECKING:
    Parts = list[PartT]
else:
    Parts = _parts.type


# --- output items ---------------------------------------------------------------------------
class MessageItem(_Tolerant):
    """The assistant's answer: ``output_text`` parts (with citations) or a ``refusal``."""

    type: str = "message"
    id: str | None = None
    role: str = "assistant"
    status: str | None = None
    content: Annotated[Parts, BeforeValidator(_text_list)] = Field(default_factory=list)


class ReasoningItem(_Tolerant):
    """The model's reasoning: a summary, sometimes raw text, and (with ``include``) the
    ``encrypted_content`` to replay in a later request's ``input``."""

    type: str = "reasoning"
    id: str | None = None
    status: str | None = None
    summary: Parts = Field(default_factory=list)
    content: Parts | None = None
    encrypted_content: str | None = None


class FunctionCallItem(_Tolerant):
    """A call of one of your ``function`` tools: the only item your code must execute."""

    type: str = "function_call"
    id: str | None = None
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    status: str | None = None


class ToolStep(NamedTuple):
    """One server-side tool call, for logs: what ran and on what (``query`` or ``code``)."""

    type: str  # the item type: "web_search_call", "x_search_call", "mcp_call"...
    tool: str  # "web_search", "x_search", "code_interpreter", "mcp:<label>.<name>", sub-tool names
    query: str | None
    code: str | None
    status: str | None
    item_id: str | None

    def describe(self) -> str:
        """``"x_search: 'solar sails'"``, ``"code_interpreter: running"``."""
        if self.query:
            return f"{self.tool}: {_clip(self.query)!r}"
        if self.code:
            return f"{self.tool}: {_clip(self.code.strip().splitlines()[0] if self.code.strip() else '')!r}"
        return f"{self.tool}: {self.status or 'called'}"


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_field(text: str | None, key: str) -> str | None:
    """``key`` of a JSON-object string (the 2025 ``arguments`` / ``input`` shapes), else None."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


class ToolCallItem(_Tolerant):
    """Base of the server-side tool calls (``*_call`` items): informational, xAI already ran
    them; never execute or answer them. ``isinstance(item, ToolCallItem)`` finds them all."""

    type: str = ""
    id: str | None = None
    status: str | None = None
    # The 2025 shape: the tool's name and its arguments as a JSON string, call_id "".
    name: str | None = None
    arguments: str | None = None
    call_id: str | None = None

    def _tool(self) -> str:
        return self.type.removesuffix("_call") or "tool"

    def _query(self) -> str | None:
        return _json_field(self.arguments, "query")

    def _code(self) -> str | None:
        return _json_field(self.arguments, "code")

    def step(self) -> ToolStep:
        """What ran, on what: the tool, its query (or code) and status."""
        return ToolStep(self.type, self._tool(), self._query(), self._code(), self.status, self.id)


class ServerToolCallItem(ToolCallItem):
    """A ``*_call`` type not modelled separately (``view_image_call``, ``code_execution_call``,
    ``image_generation_call``, ``shell_call``...)."""


class _SearchCall(ToolCallItem):
    action: dict[str, Any] | None = None

    def _query(self) -> str | None:
        action = self.action or {}
        for key in ("query", "url", "pattern"):  # search, open_page, find
            if isinstance(action.get(key), str) and action[key]:
                return str(action[key])
        return _json_field(self.arguments, "query")


class WebSearchCallItem(_SearchCall):
    type: str = "web_search_call"


class XSearchCallItem(_SearchCall):
    type: str = "x_search_call"


class CodeInterpreterCallItem(ToolCallItem):
    type: str = "code_interpreter_call"
    code: str | None = None
    outputs: list[Any] | None = None

    def _code(self) -> str | None:
        return self.code if self.code else _json_field(self.arguments, "code")


class FileSearchCallItem(ToolCallItem):
    type: str = "file_search_call"
    queries: list[Any] | None = None
    results: list[Any] | None = None

    def _query(self) -> str | None:
        queries = [q for q in self.queries or [] if isinstance(q, str) and q]
        return "; ".join(queries) if queries else _json_field(self.arguments, "query")


class McpCallItem(ToolCallItem):
    type: str = "mcp_call"
    server_label: str | None = None
    output: Any = None
    error: Any = None

    def _tool(self) -> str:
        return f"mcp:{self.server_label}.{self.name}" if self.server_label else f"mcp:{self.name or '?'}"

    def _query(self) -> str | None:
        return self.arguments or None


class CustomToolCallItem(ToolCallItem):
    """Seen in Dec-2025 streams for X sub-tools (``x_keyword_search``, ``view_x_video``)."""

    type: str = "custom_tool_call"
    input: str | None = None

    def _tool(self) -> str:
        return self.name or "custom_tool"

    def _query(self) -> str | None:
        return _json_field(self.input, "query") or _json_field(self.arguments, "query")


class UnknownItem(_Tolerant):
    """An output item of a type not known here, kept whole."""

    type: str = ""
    id: str | None = None
    status: str | None = None


OutputItem = Union[  # noqa: UP007
    MessageItem,
    ReasoningItem,
    FunctionCallItem,
    WebSearchCallItem,
    XSearchCallItem,
    CodeInterpreterCallItem,
    FileSearchCallItem,
    McpCallItem,
    CustomToolCallItem,
    ServerToolCallItem,
    UnknownItem,
]
ITEM_TYPES: dict[str, type[BaseModel]] = {
    "message": MessageItem,
    "reasoning": ReasoningItem,
    "function_call": FunctionCallItem,
    "web_search_call": WebSearchCallItem,
    "x_search_call": XSearchCallItem,
    "code_interpreter_call": CodeInterpreterCallItem,
    "file_search_call": FileSearchCallItem,
    "mcp_call": McpCallItem,
    "custom_tool_call": CustomToolCallItem,
    "*_call": ServerToolCallItem,
}
_items = TolerantList(ITEM_TYPES, UnknownItem)
parse_items = _items.parse
if TYPE_CHECKING:
    OutputItems = list[OutputItem]
else:
    OutputItems = _items.type


def parse_item(raw: Any) -> OutputItem:
    """One output item from its JSON object, never failing (unknown shapes give :class:`UnknownItem`)."""
    item: OutputItem = parse_items([raw])[0]
    return item


# --- convenience results --------------------------------------------------------------------
class Citation(NamedTuple):
    url: str
    title: str | None


@dataclass(frozen=True)
class FunctionCall:
    """A ``function_call`` item with its arguments parsed."""

    name: str
    call_id: str
    arguments: dict[str, Any]
    item_id: str | None = None

    def output(self, result: Any) -> dict[str, Any]:
        """The ``function_call_output`` input item answering this call (non-strings as JSON)."""
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        return {"type": "function_call_output", "call_id": self.call_id, "output": text}


# --- usage ----------------------------------------------------------------------------------
#: A token count; ``null`` (sent for counts not measured) reads as 0.
Count = Annotated[int, BeforeValidator(lambda value: 0 if value is None else value)]


class InputTokensDetails(_Tolerant):
    cached_tokens: Count = 0


class OutputTokensDetails(_Tolerant):
    reasoning_tokens: Count = 0


class ResponseUsage(ToolUsage):
    """Usage of one Responses answer. ``reasoning_tokens`` are **inside** ``output_tokens`` and
    ``cached_tokens`` inside ``input_tokens``; ``total_tokens`` is kept as sent (never recomputed).
    ``cost_in_usd_ticks`` (1 USD = 1e10 ticks) includes server-side tool fees."""

    input_tokens: Count = 0
    output_tokens: Count = 0
    total_tokens: Count = 0
    input_tokens_details: InputTokensDetails | None = None
    output_tokens_details: OutputTokensDetails | None = None
    num_sources_used: Count = 0  # xAI may send null counts in Responses usage
    num_server_side_tools_used: Count = 0
    cost_in_nano_usd: int | None = None

    @property
    def cached_tokens(self) -> int:
        return self.input_tokens_details.cached_tokens if self.input_tokens_details else 0

    @property
    def reasoning_tokens(self) -> int:
        return self.output_tokens_details.reasoning_tokens if self.output_tokens_details else 0

    @property
    def image_tokens(self) -> int:
        extra = (self.input_tokens_details.model_extra or {}) if self.input_tokens_details else {}
        value = extra.get("image_tokens")
        return value if type(value) is int else 0
