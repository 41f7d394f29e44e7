"""Inputs of :class:`XAIBatchOperator`: a list of prompts or request dicts, or a JSONL file at
an ``ObjectStoragePath``, validated and turned into request bodies before anything is sent.

The kinds of request a batch takes are the entries of :data:`KINDS` (chat completions,
Responses, image generations and edits, video generations and extensions): what an input of
that kind looks like, how the shared defaults apply, how it is
validated, how xAI carries it (in a batch request and in a JSONL line) and how its answer is
read and costed. Adding a kind is adding one entry.

A bad input (an unreadable line, a bad field) is refused on its own: it is never sent and its
output line says why, while the others go through.

Every sent request is named ``<custom_id>~<fingerprint>``: the fingerprint is a digest of its
kind and body as sent. Answers are joined to inputs by that whole name, so an answer can only
ever be paired with the very request it answers (see ``batch_attach``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.arguments import coerce_messages, nesting_problem
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.operators.base import fingerprint as digest

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_xai.structured import OutputSpec
    from airflow_provider_xai.usage import UsageRecord

ITEM_KEYS = frozenset({"custom_id", "prompt", "messages", "input", "body", "model", "tools", "method", "url",
                       "image_generation", "image_edit", "video_generation", "video_extension"})  # fmt: skip
#: Hex digits of a request's fingerprint, and what joins it to the custom id.
FINGERPRINT_LENGTH = 16
ID_SEPARATOR = "~"
_REQUEST_ID = re.compile(rf"^(?P<custom_id>.+){ID_SEPARATOR}(?P<fingerprint>[0-9a-f]{{{FINGERPRINT_LENGTH}}})$", re.S)


@dataclass(frozen=True)
class RequestDefaults:
    """Shared settings applied to every input that does not set them itself. ``api`` is the
    kind a plain prompt becomes (``chat``, ``responses``, or ``auto``: Responses when tools
    apply, else chat)."""

    system_prompt: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    output: OutputSpec | None = None
    tools: list[Any] | None = None
    request_kwargs: dict[str, Any] = field(default_factory=dict)
    api: str = "chat"


@dataclass(frozen=True)
class RequestKind:
    """One kind of request a batch takes, written once.

    :param api: its name (the operator's ``api`` value, an output line's ``api``).
    :param wire: its key in a batch request (``{"batch_request": {wire: body}}``) and in a
        result (``{"batch_result": {"response": {wire: answer}}}``).
    :param url: its ``url`` in a JSONL input line.
    :param form: the key of an input dict that holds this kind's own form of the request.
    :param start: the body of an input given as ``prompt`` or in this kind's own ``form``.
    :param defaults: the body with the shared defaults applied (the input's own fields win).
    :param check: the validated body to send, given the connection's default model; raises
        :class:`XAIValidationError` naming the field within the body.
    :param answer: the model an answer in this kind's shape is read as, and the record
        function of its endpoint (imported when a task runs).
    :param files: its answers are files (images, a video), written to object storage by the
        operator, not text.
    """

    api: str
    wire: str
    url: str
    form: str
    start: Callable[[str, Any, str], dict[str, Any]]
    defaults: Callable[[dict[str, Any], RequestDefaults], dict[str, Any]]
    check: Callable[[dict[str, Any], str], dict[str, Any]]
    answer: Callable[[], tuple[type, Callable[..., UsageRecord | None]]]
    files: bool = False


def _shared(defaults: RequestDefaults, **named: Any) -> dict[str, Any]:
    fields = {**defaults.request_kwargs, "model": defaults.model, "temperature": defaults.temperature, **named}
    return {k: v for k, v in fields.items() if v is not None}


# --- chat completions ------------------------------------------------------------------------
def _chat_start(form: str, value: Any, where: str) -> dict[str, Any]:
    if form == "prompt":
        return {"messages": [{"role": "user", "content": value}]}
    return {"messages": coerce_messages(value, f"{where}.{form}")}


def _chat_defaults(body: dict[str, Any], defaults: RequestDefaults) -> dict[str, Any]:
    messages = coerce_messages(body.get("messages"), "messages")
    if defaults.system_prompt is not None and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": defaults.system_prompt}, *messages]
    spec = defaults.output
    shared = _shared(
        defaults,
        max_completion_tokens=defaults.max_tokens,
        response_format=None if spec is None else spec.response_format,
    )
    return {**shared, **body, "messages": messages}


def _chat_check(body: dict[str, Any], default_model: str) -> dict[str, Any]:
    from airflow_provider_xai.schemas import build_chat_request

    request = build_chat_request({"model": default_model, **body})
    if request.stream or request.deferred:
        raise XAIValidationError("stream", "batch requests cannot be streamed or deferred")
    return request.to_body()


def _chat_answer() -> tuple[type, Callable[..., UsageRecord | None]]:
    from airflow_provider_xai.endpoints.chat import chat_record
    from airflow_provider_xai.schemas import ChatCompletion

    return ChatCompletion, chat_record


# --- Responses -------------------------------------------------------------------------------
def _responses_start(form: str, value: Any, where: str) -> dict[str, Any]:
    if form == "prompt" or isinstance(value, str):
        return {"input": value}
    return {"input": coerce_messages(value, f"{where}.{form}", typed_items=True)}


def _responses_defaults(body: dict[str, Any], defaults: RequestDefaults) -> dict[str, Any]:
    given = body.get("input")
    items = given if isinstance(given, list) else []
    has_system = any(isinstance(i, Mapping) and i.get("role") in ("system", "developer") for i in items)
    instructions = None if has_system or body.get("previous_response_id") else defaults.system_prompt
    fields = {**_shared(defaults, instructions=instructions, max_output_tokens=defaults.max_tokens), **body}
    if defaults.tools is not None and "tools" not in body:
        fields["tools"] = defaults.tools
    if defaults.output is not None:
        from airflow_provider_xai.endpoints.responses import with_output

        fields = with_output(fields, defaults.output) if "text" not in body else fields
    return fields


def _responses_check(body: dict[str, Any], default_model: str) -> dict[str, Any]:
    from airflow_provider_xai.schemas import build_response_request

    request = build_response_request({"model": default_model, **body})
    if request.stream:
        raise XAIValidationError("stream", "batch requests cannot be streamed")
    for i, tool in enumerate(request.tools or []):
        if "authorization_conn_id" in tool or "authorization" in tool:
            raise XAIValidationError(
                f"tools[{i}].authorization_conn_id" if "authorization_conn_id" in tool else f"tools[{i}].authorization",
                "an MCP server's secret is not sent in batch requests (xAI keeps their bodies); "
                "use XAIResponsesOperator for an MCP server that needs one",
            )
    return request.to_body()


def _responses_answer() -> tuple[type, Callable[..., UsageRecord | None]]:
    from airflow_provider_xai.endpoints.responses import response_record
    from airflow_provider_xai.schemas import Response

    return Response, response_record


# --- images and video --------------------------------------------------------------------------
def _media_start(form: str, value: Any, where: str) -> dict[str, Any]:
    if form == "prompt":
        return {"prompt": value}
    if not isinstance(value, Mapping):
        raise XAIValidationError(f"{where}.{form}", f"expected the request's fields, got {type(value).__name__}")
    return dict(value)


def _media_defaults(body: dict[str, Any], defaults: RequestDefaults) -> dict[str, Any]:
    """As given: the shared defaults (a system prompt, a chat model...) are chat's and Responses'."""
    return body


def _media_check(action: str) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    def check(body: dict[str, Any], default_model: str) -> dict[str, Any]:
        from airflow_provider_xai.schemas.media import image_request, video_request

        request: Any = image_request(body) if action == "image" else video_request(body, action)  # type: ignore[arg-type]
        if getattr(request, "deferred", None):
            raise XAIValidationError("deferred", "batch requests cannot be deferred")
        return dict(request.model_dump(exclude_none=True))

    return check


def _image_answer() -> tuple[type, Callable[..., UsageRecord | None]]:
    from airflow_provider_xai.endpoints.images import image_record
    from airflow_provider_xai.schemas.media import ImageResult

    return ImageResult, image_record


def _video_answer() -> tuple[type, Callable[..., UsageRecord | None]]:
    from airflow_provider_xai.endpoints.videos import video_record
    from airflow_provider_xai.schemas.media import FinishedVideo

    return FinishedVideo, video_record


#: The kinds of request a batch takes, by ``api`` name. Adding a kind is adding an entry.
KINDS: dict[str, RequestKind] = {
    kind.api: kind
    for kind in (
        RequestKind("chat", "chat_get_completion", "/v1/chat/completions", "messages",
                    _chat_start, _chat_defaults, _chat_check, _chat_answer),
        RequestKind("responses", "responses", "/v1/responses", "input",
                    _responses_start, _responses_defaults, _responses_check, _responses_answer),
        RequestKind("image_generation", "image_generation", "/v1/images/generations", "image_generation",
                    _media_start, _media_defaults, _media_check("image"), _image_answer, files=True),
        RequestKind("image_edit", "image_edit", "/v1/images/edits", "image_edit",
                    _media_start, _media_defaults, _media_check("image"), _image_answer, files=True),
        RequestKind("video_generation", "video_generation", "/v1/videos/generations", "video_generation",
                    _media_start, _media_defaults, _media_check("generate"), _video_answer, files=True),
        RequestKind("video_extension", "video_extension", "/v1/videos/extensions", "video_extension",
                    _media_start, _media_defaults, _media_check("extend"), _video_answer, files=True),
    )
}  # fmt: skip
#: A result is read by the kind whose shape it comes in (a Responses request's answer often
#: comes back as a chat completion).
KINDS_BY_WIRE: dict[str, RequestKind] = {kind.wire: kind for kind in KINDS.values()}


def fingerprint(kind: str, body: Mapping[str, Any]) -> str:
    """A digest of a request as sent: its kind and its body (key order does not matter)."""
    return digest({"kind": kind, "body": body})[:FINGERPRINT_LENGTH]


def split_request_id(request_id: str) -> tuple[str, str | None]:
    """(custom_id, fingerprint) of a sent request's name; the fingerprint is None for a name
    without one (a request sent before fingerprints, or by someone else)."""
    match = _REQUEST_ID.match(request_id)
    return (match["custom_id"], match["fingerprint"]) if match else (request_id, None)


@dataclass(frozen=True)
class PreparedRequest:
    """One input: its join key, kind and body, or why it was refused (never sent)."""

    custom_id: str
    body: dict[str, Any]
    refused: str | None = None
    kind: str = "chat"

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(KINDS[self.kind].wire, self.body)

    @cached_property
    def request_id(self) -> str:
        """Its name at xAI: ``<custom_id>~<fingerprint>``."""
        return f"{self.custom_id}{ID_SEPARATOR}{self.fingerprint}"

    def item(self) -> dict[str, Any]:
        """Its add-requests item."""
        return {"batch_request_id": self.request_id, "batch_request": {KINDS[self.kind].wire: self.body}}

    def line(self) -> dict[str, Any]:
        """Its line of a JSONL input file."""
        return {"custom_id": self.request_id, "method": "POST", "url": KINDS[self.kind].url, "body": self.body}


@dataclass(frozen=True)
class UnreadableLine:
    """A JSONL line that is no input at all (not UTF-8, not JSON, too deep), kept in its place."""

    error: XAIValidationError


def load_inputs(value: Any) -> list[Any]:
    """The raw input items: the list itself, or the lines of the JSONL file."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        hint = "pass the upstream task's output itself, or use render_template_as_native_obj=True"
        raise XAIValidationError("inputs", f"got a list rendered as text, not a list or a path; {hint}")
    if isinstance(value, str) and value.strip():
        value = ObjectStoragePath(value.strip())
    if isinstance(value, ObjectStoragePath):
        return _read_jsonl(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    raise XAIValidationError(
        "inputs", f"expected a list of prompts or request dicts, or a JSONL path; got {value!r:.80}"
    )


def prepare_requests(
    items: list[Any],
    defaults: RequestDefaults,
    default_model: str,
    max_bytes: int | None = None,
) -> list[PreparedRequest]:
    """Validate every input and build its body, in input order. A bad input is refused on its
    own (``refused`` says why), as is one over ``max_bytes`` (one add-requests call); only if
    none is left does this raise, before anything is sent."""
    if not items:
        raise XAIValidationError("inputs", "no requests to submit")
    if not isinstance(defaults.request_kwargs, dict):
        raise XAIValidationError("request_kwargs", f"expected a dict, got {defaults.request_kwargs!r:.80}")
    prepared: list[PreparedRequest] = []
    seen: dict[str, int] = {}
    first_refusal: XAIValidationError | None = None
    for i, item in enumerate(items):
        try:
            request = _prepare_one(i, item, defaults, default_model, max_bytes)
            if request.custom_id in seen:
                raise XAIValidationError(
                    f"inputs[{i}].custom_id", f"{request.custom_id!r} is also inputs[{seen[request.custom_id]}]"
                )
        except XAIValidationError as exc:
            first_refusal = first_refusal or exc
            prepared.append(PreparedRequest(_given_custom_id(i, item), {}, refused=exc.message))
            continue
        seen[request.custom_id] = i
        prepared.append(request)
    if first_refusal is not None and not seen:
        raise first_refusal
    return prepared


def _prepare_one(
    i: int, item: Any, defaults: RequestDefaults, default_model: str, max_bytes: int | None
) -> PreparedRequest:
    if isinstance(item, UnreadableLine):
        raise item.error
    custom_id, kind, body = item_body(i, item, defaults)
    try:
        prepared = PreparedRequest(custom_id, KINDS[kind].check(body, default_model), kind=kind)
    except XAIValidationError as exc:
        raise XAIValidationError(f"inputs[{i}].{exc.field}", exc.problem) from None
    if max_bytes is not None:
        from airflow_provider_xai.hooks import batch as api

        try:
            api.chunk_batch_requests([prepared.item()], max_bytes)
        except XAIValidationError as exc:  # named by its custom id, not its name at xAI
            problem = exc.problem.replace(repr(prepared.request_id), repr(custom_id), 1)
            raise XAIValidationError(f"inputs[{i}]", problem) from None
    return prepared


def _given_custom_id(i: int, item: Any) -> str:
    """The custom_id a refused input asked for, if usable, else its positional one."""
    given = item.get("custom_id") if isinstance(item, Mapping) else None
    return given if isinstance(given, str) and given.strip() else f"req-{i:06d}"


def _kind_of(where: str, item: Mapping[str, Any], form: str, defaults: RequestDefaults) -> str:
    """The kind of an input: its ``body``'s ``url``'s, its own form's (in a ``body`` too), else
    the ``api`` a prompt takes (``auto``: Responses when tools apply)."""
    if form == "body" and item.get("url") is not None:
        url = str(item["url"])
        kind = next((k.api for k in KINDS.values() if url.rstrip("/").endswith(k.url.removeprefix("/v1"))), None)
        if kind is None:
            urls = ", ".join(k.url for k in KINDS.values())
            raise XAIValidationError(f"{where}.url", f"{url!r} is no batch request url; expected one of {urls}")
        return kind
    given = item.get("body") if form == "body" else None
    body = given if isinstance(given, Mapping) else {}
    own = next((k.api for k in KINDS.values() if k.form == form or k.form in body), None)
    if own is not None:
        return own
    if defaults.api != "auto":
        return defaults.api
    return "responses" if item.get("tools") is not None or defaults.tools is not None else "chat"


def item_body(i: int, item: Any, defaults: RequestDefaults) -> tuple[str, str, dict[str, Any]]:
    """(custom_id, kind, body with the shared defaults applied) of one input."""
    where = f"inputs[{i}]"
    item = {"prompt": item} if isinstance(item, str) else item
    if not isinstance(item, Mapping):
        raise XAIValidationError(where, f"expected a prompt string or a dict, got {type(item).__name__}")
    if unknown := sorted(set(item) - ITEM_KEYS):
        raise XAIValidationError(
            f"{where}.{unknown[0]}", f"unknown key; expected some of {sorted(ITEM_KEYS)}"
        )
    custom_id = item.get("custom_id") or f"req-{i:06d}"
    if not isinstance(custom_id, str) or not custom_id.strip():
        raise XAIValidationError(f"{where}.custom_id", f"expected a non-empty string, got {custom_id!r}")
    if not _is_unicode(custom_id):
        raise XAIValidationError(f"{where}.custom_id", "contains a lone surrogate (not valid Unicode)")
    forms = [k for k in ("prompt", "body", *(k.form for k in KINDS.values())) if k in item]
    if len(forms) != 1:
        shapes = ", ".join(repr(k) for k in ("prompt", *(k.form for k in KINDS.values()), "body"))
        raise XAIValidationError(where, f"give exactly one of {shapes}")
    form, value = forms[0], item[forms[0]]
    kind = _kind_of(where, item, form, defaults)
    if form == "prompt" and (not isinstance(value, str) or not value.strip()):
        raise XAIValidationError(f"{where}.prompt", f"expected non-empty text, got {value!r}")
    if form == "body" and not isinstance(value, Mapping):
        raise XAIValidationError(f"{where}.body", f"expected a request dict, got {type(value).__name__}")
    body = dict(value) if form == "body" else KINDS[kind].start(form, value, where)
    if item.get("tools") is not None:
        if kind != "responses":
            raise XAIValidationError(f"{where}.tools", "tools go with Responses requests ('input', or api='responses')")
        body["tools"] = item["tools"]
    try:
        body = KINDS[kind].defaults(body, defaults)
    except XAIValidationError as exc:
        at = f"{where}.body" if form == "body" else where
        raise XAIValidationError(f"{at}.{exc.field}", exc.problem) from None
    for name, model in ((f"{where}.model", item.get("model")), ("model", defaults.model)):
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise XAIValidationError(name, f"expected a model id, got {model!r}")
    if item.get("model") is not None:
        body["model"] = item["model"]
    return custom_id, kind, body


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_jsonl(path: ObjectStoragePath) -> list[Any]:
    """The items of a JSONL file; a line that is not one becomes an :class:`UnreadableLine`."""
    if not path.exists():
        raise XAIValidationError("inputs", f"JSONL file {path} does not exist")
    items: list[Any] = []
    with path.open("rb") as handle:
        for n, raw in enumerate(handle, 1):
            field, where = f"inputs[{len(items)}]", f"line {n} of {path}"
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8").rstrip("\r\n")  # a BOM is no JSON
            except UnicodeDecodeError as exc:
                items.append(UnreadableLine(XAIValidationError(field, f"{where} is not UTF-8 text ({exc.reason})")))
                continue
            if not text.strip():
                continue
            if too_deep := nesting_problem(text, field):
                items.append(UnreadableLine(XAIValidationError(too_deep[0], f"{too_deep[1]} ({where})")))
                continue
            try:
                items.append(json.loads(text))
            except ValueError as exc:  # also a number too long to convert
                detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
                problem = f"{where} is not valid JSON ({detail})"
                items.append(UnreadableLine(XAIValidationError(field, problem)))
    return items
