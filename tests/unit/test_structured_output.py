"""structured.py: deep answers and schemas are refused with typed errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from airflow_provider_xai.exceptions import XAIStructuredOutputError, XAIValidationError
from airflow_provider_xai.schemas import MAX_JSON_DEPTH
from airflow_provider_xai.structured import OutputSpec

BILLED = object()  # stands for the billed completion an error must carry


class Node(BaseModel):
    name: str
    children: list[Node] = []


def wrapped(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}


# --- deep nesting ---------------------------------------------------------------------------
@pytest.mark.parametrize("response_format", [Node, "json_object", {"type": "object"}])
def test_a_deeply_nested_answer_is_a_structured_output_error_that_keeps_the_completion(
    response_format: Any,
) -> None:
    spec = OutputSpec.from_user(response_format)
    assert spec is not None
    answer = '{"name": "root", "children": [' * 100_000 + "]}" * 100_000
    with pytest.raises(XAIStructuredOutputError) as info:
        spec.parse(answer, BILLED)
    assert info.value.completion is BILLED
    where = ".".join(["children[0]"] * (MAX_JSON_DEPTH // 2))  # the 65th object or list
    assert f": {where} is nested more than {MAX_JSON_DEPTH} levels deep. Answer excerpt: " in str(info.value)


def test_an_answer_nested_to_the_limit_is_validated() -> None:
    spec = OutputSpec.from_user(Node)
    assert spec is not None
    levels = MAX_JSON_DEPTH // 2  # an object and a list per level
    leaf = '{"name": "leaf", "children": []}'
    answer = '{"name": "n", "children": [' * (levels - 1) + leaf + "]}" * (levels - 1)
    data = spec.parse(answer)
    for _ in range(levels - 1):
        data = data["children"][0]
    assert data == {"name": "leaf", "children": []}


def test_a_deeply_nested_schema_is_refused_naming_where() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5_000):
        schema = {"type": "object", "properties": {"a": schema}}
    for value, field in ((schema, "response_format"), (wrapped(schema), "response_format.json_schema.schema")):
        with pytest.raises(XAIValidationError) as info:
            OutputSpec.from_user(value)
        assert info.value.field == field + ".properties.a" * (MAX_JSON_DEPTH // 2)
        assert info.value.problem == f"is nested more than {MAX_JSON_DEPTH} levels deep"
