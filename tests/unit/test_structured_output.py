"""structured.py: deep answers and schemas are refused with typed errors, and a schema's `$ref`s
resolve inside the schema only (checked when it is given, never fetched)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from airflow_provider_xai.exceptions import XAIStructuredOutputError, XAIValidationError
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.schemas import MAX_JSON_DEPTH
from airflow_provider_xai.structured import OutputSpec, excerpt

BILLED = object()  # stands for the billed completion an error must carry


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Ticket(BaseModel):
    title: str
    owner: Node  # a nested model: pydantic's schema refers to it as '#/$defs/Node'


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


# --- $ref: local only ---------------------------------------------------------------------------
@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local socket that would see any attempt to fetch a remote schema."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(2.0)  # should a fetch happen anyway, it fails instead of hanging
    try:
        yield sock
    finally:
        socket.setdefaulttimeout(previous)
        sock.close()


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def remote_schemas(port: int) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/schema.json"
    return [
        {"type": "object", "properties": {"a": {"$ref": url}}},
        {"$ref": f"{url}#/$defs/a"},
        {"$id": f"http://127.0.0.1:{port}/base/", "$ref": "other.json"},  # relative to a remote base
        {"definitions": {"a": {"$ref": url}}, "$ref": "#/definitions/a"},  # reached through a local ref
        {"type": "object", "properties": {"a": {"$dynamicRef": url}}},
    ]


def test_a_remote_ref_is_refused_when_the_schema_is_given_and_never_fetched(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for schema in remote_schemas(port):
        for value, field in ((schema, "response_format"), (wrapped(schema), "response_format.json_schema.schema")):
            with pytest.raises(XAIValidationError) as info:
                OutputSpec.from_user(value)
            assert info.value.field == field
            assert "does not resolve inside the schema; remote schemas are never fetched" in info.value.problem
        with pytest.raises(XAIValidationError) as info:
            XAIChatOperator(task_id="ask", prompt="hi", response_format=schema)
        assert info.value.field == "response_format"
    assert connections(listener) == 0


def test_answers_are_validated_without_fetching_even_for_an_unchecked_schema(listener: socket.socket) -> None:
    """OutputSpec built by hand skips from_user's check: validation still never fetches."""
    schema = {"type": "object", "properties": {"a": {"$ref": f"http://127.0.0.1:{listener.getsockname()[1]}/s"}}}
    spec = OutputSpec({"type": "json_object"}, schema=schema)
    with pytest.raises(XAIStructuredOutputError) as info:
        spec.parse('{"a": 1}', BILLED)
    assert info.value.completion is BILLED
    assert "the schema's reference cannot be resolved" in str(info.value)
    assert connections(listener) == 0


@pytest.mark.parametrize(
    ("schema", "ref"),
    [
        ({"$ref": "#/$defs/missing"}, "#/$defs/missing"),
        ({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a/properties/b"}, "#/$defs/a/properties/b"),
        ({"$ref": "#nowhere"}, "#nowhere"),
        ({"$ref": "sibling.json"}, "sibling.json"),
    ],
)
def test_an_unresolvable_local_ref_is_refused_when_the_schema_is_given(schema: dict[str, Any], ref: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        OutputSpec.from_user(schema)
    assert info.value.field == "response_format"
    assert info.value.problem.startswith(f"$ref {ref!r} does not resolve inside the schema")


def test_local_refs_keep_working() -> None:
    node = {
        "type": "object",
        "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "additionalProperties": {"type": "integer"},
    }
    recursive = {"$defs": {"node": node}, "$ref": "#/$defs/node"}
    by_id = {  # an absolute $id, an embedded one, an anchor, and a relative ref to the root
        "$id": "https://example.com/ticket",
        "$defs": {
            "id": {"$id": "https://example.com/id", "type": "integer"},
            "tag": {"$anchor": "tag", "type": "string"},
        },
        "type": "object",
        "properties": {"n": {"$ref": "https://example.com/id"}, "t": {"$ref": "#tag"}, "self": {"$ref": "ticket"}},
    }
    ticket = OutputSpec.from_user(Ticket)
    assert ticket is not None and "$defs" in ticket.response_format["json_schema"]["schema"]
    assert ticket.parse('{"title": "t", "owner": {"name": "ann"}}')["owner"] == {"name": "ann", "children": []}
    for schema, good, bad, where in (
        (recursive, '{"kids": [{"kids": [{"x": 1}]}]}', '{"kids": [{"kids": [{"x": "one"}]}]}', "kids/0/kids/0/x"),
        (by_id, '{"n": 1, "t": "a", "self": {"n": 2}}', '{"n": 1, "self": {"t": 3}}', "self/t"),
    ):
        spec = OutputSpec.from_user(schema)
        assert spec is not None
        assert spec.parse(good) == json.loads(good)
        with pytest.raises(XAIStructuredOutputError, match=f"{where}: "):
            spec.parse(bad, BILLED)


# --- answers that are not what was asked, whatever the spec ---------------------------------------
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
SPECS = {
    "pydantic model": Ticket,
    "json_object": "json_object",
    "json_object dict": {"type": "json_object"},
    "JSON-schema dict": SCHEMA,
    "json_schema format": wrapped(SCHEMA),
}
NOT_JSON = [
    "Sure! Here is the JSON you asked for.",
    "",
    '{"city": "Lisbon"',  # cut short
    "```json\n{\"city\": \"Lisbon\"}\n```",  # fenced
    "{'city': 'Lisbon'}",  # a Python literal
    '{"city": "Lisbon"} and more',
]


@pytest.mark.parametrize("text", NOT_JSON)
@pytest.mark.parametrize("response_format", list(SPECS.values()), ids=list(SPECS))
def test_an_answer_that_is_not_json_is_an_error_never_returned_as_text(response_format: Any, text: str) -> None:
    spec = OutputSpec.from_user(response_format)
    assert spec is not None
    with pytest.raises(XAIStructuredOutputError) as info:
        spec.parse(text, BILLED)
    error = info.value
    assert error.completion is BILLED and not error.permanent  # the next answer may be right
    assert "does not match" in str(error) and f"Answer excerpt: {excerpt(text)!r}" in str(error)
    if not isinstance(response_format, type):
        assert "not valid JSON" in str(error)


@pytest.mark.parametrize(
    ("response_format", "text", "where"),
    [
        ("json_object", "[1, 2]", "expected a JSON object, got list"),
        ("json_object", '"Lisbon"', "expected a JSON object, got str"),
        ("json_object", "NaN", "expected a JSON object, got float"),
        ({"type": "json_object"}, "null", "expected a JSON object, got NoneType"),
        (SCHEMA, '{"town": "Lisbon"}', "<root>: 'city' is a required property"),
        (SCHEMA, '{"city": 7}', "city: 7 is not of type 'string'"),
        (wrapped(SCHEMA), "[]", "<root>: [] is not of type 'object'"),
        (Ticket, '{"title": "t"}', "owner: Field required"),
    ],
)
def test_valid_json_of_the_wrong_shape_is_an_error_naming_where(response_format: Any, text: str, where: str) -> None:
    spec = OutputSpec.from_user(response_format)
    assert spec is not None
    with pytest.raises(XAIStructuredOutputError, match="does not match") as info:
        spec.parse(text, BILLED)
    assert where in str(info.value) and info.value.completion is BILLED


@pytest.mark.parametrize("response_format", list(SPECS.values()), ids=list(SPECS))
def test_a_matching_answer_is_returned_as_data(response_format: Any) -> None:
    spec = OutputSpec.from_user(response_format)
    assert spec is not None
    answer = {"city": "Lisbon", "title": "t", "owner": {"name": "ana", "children": []}}
    assert spec.parse(json.dumps(answer)) == (answer if not isinstance(response_format, type) else
                                              {"title": "t", "owner": {"name": "ana", "children": []}})
