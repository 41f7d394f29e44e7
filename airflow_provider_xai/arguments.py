"""Checks and coercions shared by the operators' arguments (a leaf: imports only exceptions).

Each raises :class:`XAIValidationError` naming the argument, before any request is sent.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from airflow_provider_xai.exceptions import XAIValidationError

VALID_ROLES = ("system", "user", "assistant", "tool", "function", "developer")


def parse_rendered_list(text: str) -> Any:
    """A list a template rendered into a string: JSON (``| tojson``), else a Python literal (what
    ``{{ ti.xcom_pull(...) }}`` renders). Literals only, never code; None if neither."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text.lstrip().startswith("["):
        try:
            return ast.literal_eval(text.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
    return None


def coerce_messages(value: Any, field: str = "messages") -> list[dict[str, Any]]:
    """Accept a list of message dicts, or a JSON (or Python-literal) string of one: what a
    template renders without ``render_template_as_native_obj``."""
    if isinstance(value, str):
        parsed = parse_rendered_list(value)
        if parsed is None:
            raise XAIValidationError(
                field, "expected a list of messages, got a string that is neither JSON nor a Python list"
            )
        value = parsed
    if not isinstance(value, list) or not value:
        raise XAIValidationError(field, f"expected a non-empty list of messages, got {type(value).__name__}")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise XAIValidationError(f"{field}[{i}]", f"expected a dict, got {type(message).__name__}")
        if message.get("role") not in VALID_ROLES:
            raise XAIValidationError(
                f"{field}[{i}].role", f"unknown role {message.get('role')!r}; expected one of {VALID_ROLES}"
            )
    return value


def check_number(
    field: str,
    value: Any,
    low: float,
    high: float | None = None,
    *,
    integer: bool = False,
    positive: bool = False,
) -> None:
    """``value`` is None or a number (not a bool) in ``[low, high]`` (``> 0`` with ``positive``)."""
    if value is None:
        return
    typed = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not typed or value < low or (positive and value <= 0) or (high is not None and value > high):
        rule = f"from {low} to {high}" if high is not None else ("> 0" if positive else f">= {low}")
        raise XAIValidationError(
            field, f"must be {'an integer' if integer else 'a number'} {rule}, got {value!r}"
        )
