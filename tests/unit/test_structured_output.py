"""structured.py: deep answers and schemas are refused with typed errors, and a schema's `$ref`s
resolve inside the schema only (checked when it is given, never fetched)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import date, datetime
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
    assert info.value.permanent is True  # the schema is at fault: a retry would fail (and bill) again
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


# --- pinned by make mutate: what a DAG and xAI get back -------------------------------------------
class Event(BaseModel):
    day: date
    at: datetime


def test_a_pydantic_answer_is_returned_as_json_safe_data() -> None:
    """XCom takes JSON: dates come back as ISO text, never as Python objects."""
    spec = OutputSpec.from_user(Event)
    assert spec is not None
    assert spec.parse('{"day": "2026-11-02", "at": "2026-11-02T14:05:00Z"}') == {
        "day": "2026-11-02", "at": "2026-11-02T14:05:00Z"}


@pytest.mark.parametrize(
    ("title", "name"),
    [("Ticket label", "Ticket_label"), ("", "output"), ("x" * 80, "x" * 64), ("é/ü?", "____"), (None, "output")],
)
def test_the_schema_name_sent_to_xai_is_one_it_accepts_and_strict(title: Any, name: str) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    spec = OutputSpec.from_user({**schema, "title": title} if title is not None else schema)
    assert spec is not None
    assert spec.response_format["json_schema"]["name"] == name
    assert spec.response_format["json_schema"]["strict"] is True  # xAI then holds the answer to it


def refusal(response_format: Any, answer: str) -> XAIStructuredOutputError:
    """The error parsing ``answer`` raises for ``response_format``."""
    spec = OutputSpec.from_user(response_format)
    assert spec is not None
    with pytest.raises(XAIStructuredOutputError) as info:
        spec.parse(answer)
    return info.value


def test_the_error_names_the_model_or_the_schema_and_lists_at_most_five_problems_in_order() -> None:
    class Many(BaseModel):
        a: int
        b: int
        c: int
        d: int
        e: int
        f: int

    error = refusal(Many, "{}")
    assert str(error).startswith("The model's answer does not match Many: a: Field required; b: Field required")
    assert "e: Field required. Answer excerpt: '{}'" in str(error) and "f: Field" not in str(error)
    assert error.permanent is False
    schema = {"type": "object", "required": list("fedcba"), "properties": {k: {"type": "integer"} for k in "abcdef"}}
    message = str(refusal(schema, '{"a": "x", "b": "y"}'))
    assert message.startswith("The model's answer does not match the JSON schema: ")
    problems = message.split(": ", 1)[1].split(". Answer excerpt")[0].split("; ")
    assert problems == [  # the same order every time (by message), five at most
        "<root>: 'c' is a required property", "<root>: 'd' is a required property",
        "<root>: 'e' is a required property", "<root>: 'f' is a required property",
        "a: 'x' is not of type 'integer'",
    ]
    nested = {"type": "object", "properties": {"o": {"type": "object", "required": ["x"]}}}
    assert "the JSON schema: o: 'x' is a required property" in str(refusal(nested, '{"o": {}}'))
    assert "does not match Ticket: <root>: Input should be an object" in str(refusal(Ticket, "[]"))


@pytest.mark.parametrize(
    ("text", "shown"),
    [("a\n  b\tc", "a b c"), ("x" * 200, "x" * 200), ("x" * 201, "x" * 197 + "..."), ("", "")],
)
def test_the_answer_excerpt_is_one_short_line(text: str, shown: str) -> None:
    assert excerpt(text) == shown


@pytest.mark.parametrize(("value", "shown"), [(5, "5"), ("yaml", "'yaml'"), (["x" * 100], "['" + "x" * 75 + "...")])
def test_an_unknown_response_format_is_refused_naming_the_field_and_showing_the_value(value: Any, shown: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        OutputSpec.from_user(value, field="inputs[3].response_format")
    assert info.value.field == "inputs[3].response_format"
    assert info.value.problem.endswith(f"or 'json_object', got {shown}")


# --- every form a DAG may give, and what xAI is sent ----------------------------------------------
ANY_OF = {"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "array"}]}
NO_TYPE = {"properties": {"a": {"type": "string"}}}
BY_REF = {"$defs": {"a": {"type": "object"}}, "$ref": "#/$defs/a"}


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}


@pytest.mark.parametrize(
    ("value", "response_format", "schema"),
    [
        ("json_object", {"type": "json_object"}, None),
        ({"type": "json_object"}, {"type": "json_object"}, None),
        (wrapped(SCHEMA), {"type": "json_schema", "json_schema": {"name": "out", "schema": SCHEMA}}, SCHEMA),
        (SCHEMA, strict(SCHEMA), SCHEMA),
        (NO_TYPE, strict(NO_TYPE), NO_TYPE),
        (ANY_OF, strict(ANY_OF), ANY_OF),
        (BY_REF, strict(BY_REF), BY_REF),
    ],
    ids=["json_object", "json_object dict", "json_schema format", "schema", "no type", "anyOf", "$ref"],
)
def test_every_accepted_form_becomes_the_response_format_xai_expects(
    value: Any, response_format: dict[str, Any], schema: dict[str, Any] | None
) -> None:
    spec = OutputSpec.from_user(value)
    assert spec is not None and (spec.response_format, spec.schema, spec.model) == (response_format, schema, None)


@pytest.mark.parametrize("value", [None, "text", {"type": "text"}])
def test_plain_text_needs_no_check(value: Any) -> None:
    assert OutputSpec.from_user(value) is None


@pytest.mark.parametrize(
    ("value", "field", "problem"),
    [
        ({"type": "json_schema", "json_schema": "x"}, "response_format", "json_schema.schema must be a JSON-schema"),
        ({"type": "json_schema", "json_schema": {"schema": 3}}, "response_format", "json_schema.schema must be a JSON"),
        ({"type": "object", "properties": 5}, "response_format", "not a valid JSON schema: 5 is not of type 'object'"),
        ({"description": "no schema keyword"}, "response_format", "expected a pydantic model class"),
        ({"anyof": []}, "response_format", "expected a pydantic model class"),
    ],
)
def test_a_form_that_is_no_schema_is_refused_naming_the_field(value: Any, field: str, problem: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        OutputSpec.from_user(value)
    assert info.value.field == field and info.value.problem.startswith(problem)


@pytest.mark.parametrize("order", ["local refs first", "remote ref first"])
def test_a_remote_ref_is_found_however_many_times_a_local_definition_is_reached_first(order: str) -> None:
    """The walk over a schema meets the same definition more than once; it must go on past it."""
    local = {f"l{n}": {"$ref": "#/$defs/shared"} for n in range(4)}
    remote = {"r": {"$ref": "https://schemas.example.com/r.json"}}
    properties = {**local, **remote} if order == "local refs first" else {**remote, **local}
    schema = {"$defs": {"shared": {"type": "object", "properties": {"s": {"$ref": "#/$defs/shared"}}}},
              "type": "object", "properties": properties}
    with pytest.raises(XAIValidationError, match="does not resolve inside the schema"):
        OutputSpec.from_user(schema)
