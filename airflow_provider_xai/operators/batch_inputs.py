"""Inputs of :class:`XAIBatchOperator`: a list of prompts or request dicts, or a JSONL file at
an ``ObjectStoragePath``, validated and turned into chat bodies before anything is sent. A line
whose ``url`` names an image or video endpoint (``/v1/images/generations``, ``/v1/images/edits``,
``/v1/videos/generations``, ``/v1/videos/extensions``) carries that request's ``body`` instead,
checked as the image and video operators check theirs.

A bad input (an unreadable line, a bad field) is refused on its own: it is never sent and its
output line says why, while the others go through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.arguments import coerce_messages, nesting_problem
from airflow_provider_xai.exceptions import XAIValidationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_xai.schemas import ChatRequest

ITEM_KEYS = frozenset({"custom_id", "prompt", "messages", "body", "model", "method", "url"})


@dataclass(frozen=True)
class PreparedRequest:
    """One input: its join key, its body and the kind of request it is (a chat completion, or an
    image or video request), or why it was refused (never sent)."""

    custom_id: str
    body: dict[str, Any]
    refused: str | None = None
    kind: str = "chat_get_completion"

    @property
    def is_media(self) -> bool:
        return self.kind != "chat_get_completion"


@dataclass(frozen=True)
class UnreadableLine:
    """A JSONL line that is no input at all (not UTF-8, not JSON, too deep), kept in its place."""

    error: XAIValidationError


@dataclass(frozen=True)
class RequestDefaults:
    """Shared settings applied to every input that does not set them itself."""

    system_prompt: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: dict[str, Any] | None = None
    request_kwargs: dict[str, Any] = field(default_factory=dict)


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
    build: Callable[[dict[str, Any]], ChatRequest],
    max_bytes: int | None = None,
) -> list[PreparedRequest]:
    """Validate every input and build its chat body, in input order. A bad input is refused on
    its own (``refused`` says why), as is one over ``max_bytes`` (one add-requests call); only if
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
            request = _prepare_one(i, item, defaults, build, max_bytes)
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
    i: int,
    item: Any,
    defaults: RequestDefaults,
    build: Callable[[dict[str, Any]], ChatRequest],
    max_bytes: int | None,
) -> PreparedRequest:
    if isinstance(item, UnreadableLine):
        raise item.error
    prepared = media_request(i, item)
    if prepared is None:
        custom_id, body = item_body(i, item, defaults)
        try:
            request = build(body)
        except XAIValidationError as exc:
            raise XAIValidationError(f"inputs[{i}].{exc.field}", exc.problem) from None
        if request.stream or request.deferred:
            raise XAIValidationError(f"inputs[{i}]", "batch requests cannot be streamed or deferred")
        prepared = PreparedRequest(custom_id, request.to_body())
    if max_bytes is not None:
        from airflow_provider_xai.hooks import batch as api

        try:
            api.chunk_batch_requests([api.batch_request(prepared.custom_id, prepared.body, prepared.kind)], max_bytes)
        except XAIValidationError as exc:
            raise XAIValidationError(f"inputs[{i}]", exc.problem) from None
    return prepared


def _given_custom_id(i: int, item: Any) -> str:
    """The custom_id a refused input asked for, if usable, else its positional one."""
    given = item.get("custom_id") if isinstance(item, Mapping) else None
    return given if isinstance(given, str) and given.strip() else f"req-{i:06d}"


def media_kind(url: Any) -> str | None:
    """The batch kind of an image or video endpoint's URL (``/v1/images/generations``...)."""
    from airflow_provider_xai.schemas.batch import BATCH_KINDS

    path = str(url or "").strip().lstrip("/").removeprefix("v1/")
    kind = BATCH_KINDS.get(path)
    return kind if kind is not None and kind != "chat_get_completion" else None


def media_request(i: int, item: Any) -> PreparedRequest | None:
    """An image or video request (``url`` naming its endpoint, ``body`` its fields), checked;
    None for any other input."""
    if not isinstance(item, Mapping) or (kind := media_kind(item.get("url"))) is None:
        return None
    from airflow_provider_xai.schemas.media import image_request, video_request

    where = f"inputs[{i}]"
    custom_id = _checked_custom_id(where, i, item)
    body = item.get("body")
    if not isinstance(body, Mapping):
        problem = f"expected the request's fields for {item.get('url')}, got {body!r:.80}"
        raise XAIValidationError(f"{where}.body", problem)
    try:
        request: Any = (
            image_request(body) if kind.startswith("image")
            else video_request(body, "generate" if kind == "video_generation" else "extend")
        )  # fmt: skip
    except XAIValidationError as exc:
        raise XAIValidationError(f"{where}.body.{exc.field}", exc.problem) from None
    if getattr(request, "deferred", None):
        raise XAIValidationError(f"{where}.body.deferred", "batch requests cannot be deferred")
    return PreparedRequest(custom_id, request.model_dump(exclude_none=True), kind=kind)


def _checked_custom_id(where: str, i: int, item: Mapping[str, Any]) -> str:
    if unknown := sorted(set(item) - ITEM_KEYS):
        raise XAIValidationError(
            f"{where}.{unknown[0]}", f"unknown key; expected some of {sorted(ITEM_KEYS)}"
        )
    custom_id = item.get("custom_id") or f"req-{i:06d}"
    if not isinstance(custom_id, str) or not custom_id.strip():
        raise XAIValidationError(f"{where}.custom_id", f"expected a non-empty string, got {custom_id!r}")
    if not _is_unicode(custom_id):
        raise XAIValidationError(f"{where}.custom_id", "contains a lone surrogate (not valid Unicode)")
    return custom_id


def item_body(i: int, item: Any, defaults: RequestDefaults) -> tuple[str, dict[str, Any]]:
    """(custom_id, chat body with the shared defaults applied) of one input."""
    where = f"inputs[{i}]"
    item = {"prompt": item} if isinstance(item, str) else item
    if not isinstance(item, Mapping):
        raise XAIValidationError(where, f"expected a prompt string or a dict, got {type(item).__name__}")
    custom_id = _checked_custom_id(where, i, item)
    forms = [k for k in ("prompt", "messages", "body") if k in item]
    if len(forms) != 1:
        raise XAIValidationError(where, "give exactly one of 'prompt', 'messages' or 'body'")
    form, value = forms[0], item[forms[0]]
    if form == "prompt" and (not isinstance(value, str) or not value.strip()):
        raise XAIValidationError(f"{where}.prompt", f"expected non-empty text, got {value!r}")
    if form == "body" and not (
        isinstance(value, Mapping) and str(item.get("url", "chat/completions")).endswith("chat/completions")
    ):
        raise XAIValidationError(
            f"{where}.body", "expected a chat-completions request dict (url .../chat/completions)"
        )
    body = dict(value) if form == "body" else {}
    if form == "prompt":
        messages = [{"role": "user", "content": value}]
    else:
        messages = coerce_messages(body.get("messages") if form == "body" else value, f"{where}.{form}")
    if defaults.system_prompt is not None and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": defaults.system_prompt}, *messages]
    shared = {**defaults.request_kwargs, "model": defaults.model, "temperature": defaults.temperature}
    shared["max_completion_tokens"] = defaults.max_tokens
    shared["response_format"] = defaults.response_format
    body = {**{k: v for k, v in shared.items() if v is not None}, **body, "messages": messages}
    for name, model in ((f"{where}.model", item.get("model")), ("model", defaults.model)):
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise XAIValidationError(name, f"expected a model id, got {model!r}")
    if item.get("model") is not None:
        body["model"] = item["model"]
    return custom_id, body


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
