"""arguments.py: the shared argument checks name the argument and never run code."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_xai.arguments import check_number, coerce_messages, parse_rendered_list
from airflow_provider_xai.exceptions import XAIValidationError


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
    assert parse_rendered_list(text) == expected


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
