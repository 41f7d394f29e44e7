"""Checks and coercions shared by the operators' arguments (a leaf: imports only exceptions,
and the request schema's depth limit when text is parsed).

Each raises :class:`XAIValidationError` naming the argument, before any request is sent.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_xai.exceptions import XAIValidationError

VALID_ROLES = ("system", "user", "assistant", "tool", "function", "developer")
_KEY_CHARS = 40
# A quoted string (JSON's "...", or a Python literal's '...'; unterminated ones run to the end,
# so every character is read once) with the ':' that makes it a key, or one structural character.
_TOKEN = re.compile(
    r"""("[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)|'[^'\\]*(?:\\[\s\S][^'\\]*)*(?:'|\\?\Z))(\s*:)?"""
    r"|[\[\](){},]"
)


def _depth_limit() -> int:
    from airflow_provider_xai.schemas.chat import MAX_JSON_DEPTH  # lazily: not at DAG parse

    return MAX_JSON_DEPTH


def _too_deep(path: str) -> tuple[str, str]:
    return path, f"is nested more than {_depth_limit()} levels deep"


def nesting_problem(text: str, prefix: str = "") -> tuple[str, str] | None:
    """(path, problem) where JSON or Python-literal ``text`` nests deeper than the request
    schema's ``MAX_JSON_DEPTH`` (the most a sent body may nest), else None. Scans without
    recursion, so any depth is safe.

    The path starts at ``prefix`` (``messages[0].content[0]...``), like the schema's own checks.
    """
    limit = _depth_limit()
    segments: list[str] = []  # the path of each open container
    positions: list[list[Any]] = []  # per open container: [is_list, index or current key]
    for token in _TOKEN.finditer(text):
        quoted, colon = token.group(1), token.group(2)
        char = token.group()
        if quoted is not None:
            if colon and positions and not positions[-1][0]:
                key = _unquote(quoted)
                positions[-1][1] = key if len(key) <= _KEY_CHARS else key[: _KEY_CHARS - 3] + "..."
        elif char in "[({":
            if positions:
                is_list, at = positions[-1]
                segments.append(f"[{at}]" if is_list else f".{'?' if at is None else at}")
            else:
                segments.append("")
            if len(positions) >= limit:
                return _too_deep((prefix + "".join(segments)).removeprefix("."))
            positions.append([char != "{", None if char == "{" else 0])
        elif char in "])}":
            if positions:
                positions.pop()
                segments.pop()
        elif positions:  # a comma: the next item, or a key to come
            positions[-1][1] = positions[-1][1] + 1 if positions[-1][0] else None
    return None


def _unquote(quoted: str) -> str:
    """The text of a quoted key (JSON first, else a Python literal; as written if neither)."""
    for parse in (json.loads, ast.literal_eval):
        with contextlib.suppress(Exception):
            return str(parse(quoted))
    return quoted[1:-1]


def value_nesting_problem(value: Any, prefix: str = "") -> tuple[str, str] | None:
    """(path, problem) where a dict/list ``value`` nests deeper than ``MAX_JSON_DEPTH`` (as
    :func:`nesting_problem` does for text), else None. Walks without recursion."""
    limit = _depth_limit()
    pending: list[tuple[Any, str, int]] = [(value, prefix, 0)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, Mapping):
            children = [(child, f"{path}.{key}" if path else str(key)) for key, child in item.items()]
        elif isinstance(item, list | tuple):
            children = [(child, f"{path}[{i}]") for i, child in enumerate(item)]
        else:
            continue
        if depth >= limit:
            return _too_deep(path)
        pending.extend((child, child_path, depth + 1) for child, child_path in reversed(children))
    return None


def check_nesting(text: str, field: str) -> None:
    """Refuse JSON or Python-literal ``text`` nested deeper than the schema allows, before it
    is parsed: an :class:`XAIValidationError` naming ``field`` and where, never a
    ``RecursionError``."""
    if problem := nesting_problem(text, field):
        raise XAIValidationError(*problem)


def parse_rendered_list(text: str, field: str) -> Any:
    """A list a template rendered into a string: JSON (``| tojson``), else a Python literal (what
    ``{{ ti.xcom_pull(...) }}`` renders). Literals only, never code; None if neither. Too deep
    a nesting is refused first (:func:`check_nesting`)."""
    check_nesting(text, field)
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


def coerce_messages(value: Any, field: str = "messages", *, typed_items: bool = False) -> list[dict[str, Any]]:
    """Accept a list of message dicts, or a JSON (or Python-literal) string of one: what a
    template renders without ``render_template_as_native_obj``. With ``typed_items`` (the
    Responses API), items that carry a ``type`` and no role (``function_call_output``,
    replayed output items) are accepted as they are."""
    if isinstance(value, str):
        parsed = parse_rendered_list(value, field)
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
        if typed_items and "role" not in message and isinstance(message.get("type"), str):
            continue
        if message.get("role") not in VALID_ROLES:
            raise XAIValidationError(
                f"{field}[{i}].role", f"unknown role {message.get('role')!r}; expected one of {VALID_ROLES}"
            )
    return value


#: The longest wait an argument may ask for (seconds): a timeout or interval of more than a
#: year is a mistake, and would overflow the sleeps and dates it feeds.
MAX_WAIT_SECONDS = 366 * 24 * 3600.0


def is_finite_number(value: Any, *, integer: bool = False) -> bool:
    """A number (an int, or a float unless ``integer``; never a bool) that is neither NaN nor
    infinite: every range check starts here, since NaN passes any comparison unrefused."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def check_wait(poll_interval: Any, end_time: Any, max_poll_failures: Any = 1) -> None:
    """A trigger's wait arguments (what :class:`~airflow_provider_xai.polling.Poller`
    takes): a poll interval of 0 to :data:`MAX_WAIT_SECONDS`, a finite deadline (epoch seconds)
    or none, at least one tolerated failure."""
    check_number("poll_interval", poll_interval, 0, MAX_WAIT_SECONDS)
    check_number("end_time", end_time, 0)
    check_number("max_poll_failures", max_poll_failures, 1, integer=True)


def check_number(
    field: str,
    value: Any,
    low: float,
    high: float | None = None,
    *,
    integer: bool = False,
    positive: bool = False,
) -> None:
    """``value`` is None or a finite number (not a bool) in ``[low, high]`` (``> 0`` with
    ``positive``)."""
    if value is None:
        return
    if not is_finite_number(value, integer=integer) or not (
        value >= low and (value > 0 or not positive) and (high is None or value <= high)
    ):
        bounds = ["> 0" if positive else f">= {low:.10g}", *([f"<= {high:.10g}"] if high is not None else [])]
        rule = " and ".join(bounds)
        raise XAIValidationError(
            field, f"must be {'an integer' if integer else 'a finite number'} {rule}, got {value!r}"
        )
