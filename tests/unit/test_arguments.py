"""arguments.py: the shared argument checks name the argument and never run code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_xai.arguments import (
    check_number,
    coerce_messages,
    nesting_problem,
    parse_rendered_list,
    value_nesting_problem,
)
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.schemas import MAX_JSON_DEPTH


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["a.png", "b.png"]', ["a.png", "b.png"]),
        ("['a.png', 'b.png']", ["a.png", "b.png"]),
        ('[{"role": "user", "content": "hi"}]', [{"role": "user", "content": "hi"}]),
        ("[__import__('os').system('true')]", None),
        ("not a list", None),
    ],
)
def test_parse_rendered_list(text: str, expected: Any) -> None:
    assert parse_rendered_list(text, "images") == expected


@pytest.mark.parametrize(
    ("value", "kwargs", "ok"),
    [
        (1.5, {"low": 0, "high": 2}, True),
        (2.5, {"low": 0, "high": 2}, False),
        (True, {"low": 0, "high": 2}, False),
        ("1", {"low": 0, "high": 2}, False),
        (1, {"low": 1, "integer": True}, True),
        (1.0, {"low": 1, "integer": True}, False),
        (0, {"low": 0, "positive": True}, False),
        (None, {"low": 0, "positive": True}, True),
    ],
)
def test_check_number(value: Any, kwargs: dict[str, Any], ok: bool) -> None:
    if ok:
        check_number("arg", value, **kwargs)
    else:
        with pytest.raises(XAIValidationError, match="Invalid arg"):
            check_number("arg", value, **kwargs)


def test_coerce_messages_names_the_bad_message() -> None:
    assert coerce_messages("[{'role': 'user', 'content': 'x'}]") == [{"role": "user", "content": "x"}]
    with pytest.raises(XAIValidationError) as info:
        coerce_messages([{"role": "user", "content": "x"}, {"role": "bot"}], "inputs[3].messages")
    assert info.value.field == "inputs[3].messages[1].role"


def _nested(levels: int, bottom: Any = "bottom") -> Any:
    for _ in range(levels):
        bottom = [bottom]
    return bottom


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 1_000, 100_000])
def test_deeply_nested_rendered_messages_are_refused_naming_the_field(levels: int) -> None:
    inner = "[" * levels + "]" * levels
    for text in (f'[{{"role": "user", "content": {inner}}}]', f"[{{'role': 'user', 'content': {inner}}}]"):
        with pytest.raises(XAIValidationError) as info:
            coerce_messages(text)
        # the list and the message are two levels: the 65th container is the 63rd of `content`
        assert info.value.field == "messages[0].content" + "[0]" * (MAX_JSON_DEPTH - 2)
        assert info.value.problem == f"is nested more than {MAX_JSON_DEPTH} levels deep"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    inner = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    assert coerce_messages(f'[{{"role": "user", "content": {inner}}}]')[0]["content"] == _nested(MAX_JSON_DEPTH - 3, [])


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('["' + "[" * 100 + '"]', None),  # brackets inside strings do not count
        ("['" + "{" * 100 + "']", None),
        ('["a \\\\", ' + "[" * 70, "[1]" + "[0]" * 63),  # a string ending in an escaped backslash
        ('["a \\", ' + "[" * 70, None),  # an escaped quote: the string runs to the end
        ('{"a": 1, "b": [0, ' + "{" * 70, "b[1]" + ".?" * 62),  # keys that are not strings
        ('{"a": 1, "b" : [0, {"c": ' + "(" * 70, "b[1].c" + "[0]" * 61),  # Python tuples
    ],
)
def test_nesting_problem_reads_strings_keys_and_indexes(text: str, path: str | None) -> None:
    problem = nesting_problem(text)
    assert (problem[0] if problem else None) == path


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(value=json_values, levels=st.integers(min_value=0, max_value=MAX_JSON_DEPTH + 2))
def test_text_and_value_checks_agree_on_json_and_python_literals(value: Any, levels: int) -> None:
    nested = _nested(levels, value)
    expected = value_nesting_problem(nested, "field")
    assert nesting_problem(json.dumps(nested), "field") == expected
    if all(len(str(key)) < 40 for key in _keys(nested)):  # longer keys are shortened in a path
        assert nesting_problem(repr(nested), "field") == expected


def _keys(value: Any) -> list[Any]:
    pending, keys = [value], []
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            keys.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return keys
