"""The Responses API path of the chat and vision operators (``api="responses"``).

Plain functions over the operator's arguments: choosing the endpoint, turning the rendered
messages into Responses input items, the checks that need no I/O, and what the operator pushes
to XCom. Light imports only: this module is imported at DAG parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import XAIValidationError

#: Operator arguments that exist only on the Responses API: giving one selects it (``api="auto"``).
RESPONSES_ONLY = ("tools", "previous_response_id", "store", "include", "max_turns", "prompt_cache_key")
APIS = ("auto", "chat", "responses")
XCOM_RESPONSE_ID_KEY = "xai_response_id"
XCOM_CITATIONS_KEY = "xai_citations"
XCOM_FUNCTION_CALLS_KEY = "xai_function_calls"


def choose_api(api: Any, given: Mapping[str, Any]) -> str:
    """``"chat"`` or ``"responses"``: what ``api`` says, and for ``"auto"`` Responses exactly
    when a Responses-only argument is given (so existing DAGs stay on Chat Completions)."""
    if api not in APIS:
        raise XAIValidationError("api", f"must be one of {', '.join(map(repr, APIS))}, got {api!r}")
    asked = [name for name in RESPONSES_ONLY if given.get(name) is not None]
    if api == "chat" and asked:
        raise XAIValidationError(asked[0], "exists only on the Responses API: use api='responses' (or 'auto')")
    if api == "auto":
        return "responses" if asked else "chat"
    return str(api)


def check_responses_arguments(op: Any) -> None:
    """Checks of a Responses task that need no rendering, at DAG parse, naming the argument."""
    if op.deferrable:
        raise XAIValidationError(
            "deferrable",
            "xAI offers no deferred mode for the Responses API; a long request would run inside the "
            "triggerer, where a restart loses a billed answer. Use deferrable=False (or api='chat')",
        )
    if op.system_prompt is not None and op.previous_response_id is not None:
        raise XAIValidationError(
            "system_prompt",
            "cannot be combined with previous_response_id: the stored response's instructions are reused",
        )
    for name in ("stop", "seed"):
        if getattr(op, name) is not None:
            raise XAIValidationError(name, "has no equivalent on the Responses API (use api='chat')")
    if op.store is not None and not isinstance(op.store, bool):
        raise XAIValidationError("store", f"expected True or False, got {op.store!r}")
    check_number("max_turns", op.max_turns, 1, integer=True)
    if op.tools is not None:
        from airflow_provider_xai.tools import check_tools

        check_tools(op.tools)  # values that still hold a template are checked after rendering


def check_previous_response_id(value: Any) -> str | None:
    """The rendered ``previous_response_id``; an upstream task that stored nothing (``store=False``)
    pushed no id, which renders as ``None`` or an empty string."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip() in ("", "None"):
        raise XAIValidationError(
            "previous_response_id",
            f"rendered to {value!r}: the upstream task pushed no xai_response_id (it ran with store=False, "
            "or on Chat Completions), so there is no stored response to continue",
        )
    return value.strip()


def _input_part(part: Mapping[str, Any], path: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        converted: dict[str, Any] = {"type": "input_image", "image_url": url}
        if isinstance(image, Mapping) and image.get("detail"):
            converted["detail"] = image["detail"]
        return converted
    if kind in ("input_text", "input_image", "input_file"):
        return dict(part)
    raise XAIValidationError(path, f"content part type {kind!r} has no Responses equivalent")


def to_input(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-shaped messages (as the operators build them) as Responses input items; typed items
    (``function_call_output``, replayed output items) pass through."""
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if "role" not in message and isinstance(message.get("type"), str):
            items.append(dict(message))  # already a Responses input item (function_call_output...)
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = [_input_part(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content)]
        items.append({"role": message.get("role", "user"), "content": content if content is not None else ""})
    return items


def xcom_values(response: Any, store: bool | None) -> dict[str, Any]:
    """What a Responses task pushes besides usage: the id to continue from (None when nothing
    was stored), the citations and the function calls for a downstream task to act on."""
    return {
        XCOM_RESPONSE_ID_KEY: None if store is False else response.id,
        XCOM_CITATIONS_KEY: [{"url": c.url, "title": c.title} for c in response.citations()],
        XCOM_FUNCTION_CALLS_KEY: [
            {"name": call.name, "call_id": call.call_id, "arguments": call.arguments}
            for call in response.function_calls
        ],
    }
