"""tools.py: typed tool constructors, the same checks on raw dicts, MCP secrets resolved late."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_xai import tools
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.tools import (
    check_tools,
    code_interpreter,
    file_search,
    function,
    mcp,
    resolve_tools,
    web_search,
    x_search,
)

NOTE_SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def refused(field: str, build: Any, *words: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        build()
    assert info.value.field == field, info.value
    for word in words:
        assert word in info.value.problem, info.value.problem


class TestConstructors:
    def test_bodies_are_plain_json(self) -> None:
        built = [
            web_search(excluded_domains=("spam.example",), enable_image_understanding=True),
            x_search(
                allowed_x_handles=["xai"],
                from_date=datetime.date(2026, 9, 1),
                to_date="2026-09-07",
                enable_video_understanding=False,
            ),
            code_interpreter(),
            file_search(["col_1", "col_2"], max_num_results=5),
            mcp(
                "https://mcp.example.com/mcp",
                "silo",
                allowed_tools=["get_rows"],
                server_description="Rows",
                headers={"X-Team": "ops"},
                authorization_conn_id="silo_mcp",
            ),
            function("save_note", NOTE_SCHEMA, description="Store a note"),
        ]
        assert json.loads(json.dumps(built)) == [
            {"type": "web_search", "excluded_domains": ["spam.example"], "enable_image_understanding": True},
            {"type": "x_search", "allowed_x_handles": ["xai"], "from_date": "2026-09-01", "to_date": "2026-09-07",
             "enable_video_understanding": False},
            {"type": "code_interpreter"},
            {"type": "file_search", "vector_store_ids": ["col_1", "col_2"], "max_num_results": 5},
            {"type": "mcp", "server_url": "https://mcp.example.com/mcp", "server_label": "silo",
             "allowed_tools": ["get_rows"], "server_description": "Rows", "headers": {"X-Team": "ops"},
             "authorization_conn_id": "silo_mcp"},
            {"type": "function", "name": "save_note", "description": "Store a note", "parameters": NOTE_SCHEMA},
        ]  # fmt: skip
        assert check_tools(built) == built

    def test_reference_example_tools(self) -> None:
        assert x_search(from_date="2026-09-01", to_date="2026-09-07") == {
            "type": "x_search", "from_date": "2026-09-01", "to_date": "2026-09-07"
        }
        assert file_search("col_1") == {"type": "file_search", "vector_store_ids": ["col_1"]}

    def test_templates_are_checked_after_rendering(self) -> None:
        tool = x_search(from_date="{{ ds }}", to_date="{{ macros.ds_add(ds, 7) }}", allowed_x_handles=["{{ h }}"])
        assert tool["from_date"] == "{{ ds }}"
        rendered = {**tool, "from_date": "2026-09-08", "to_date": "2026-09-01", "allowed_x_handles": ["xai"]}
        refused("tools[0].to_date", lambda: check_tools([rendered]), "before from_date")

    def test_the_module_is_a_leaf(self) -> None:
        """Imported at DAG parse: none of the provider's heavier modules come with it."""
        code = (
            "import sys, airflow_provider_xai.tools\n"
            "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_xai')))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        loaded = out.strip().splitlines()[-1]
        assert "'airflow_provider_xai.tools'" in loaded
        for heavy in ("schemas", "hooks", "operators", "usage", "images"):
            assert f"airflow_provider_xai.{heavy}" not in loaded


class TestChecks:
    @pytest.mark.parametrize(
        ("field", "build", "words"),
        [
            ("tool.excluded_domains", lambda: web_search(allowed_domains=["a.com"], excluded_domains=["b.com"]),
             ("allowed_domains",)),
            ("tool.allowed_domains", lambda: web_search(allowed_domains=[f"d{i}.com" for i in range(6)]),
             ("at most 5", "6")),
            ("tool.allowed_domains[0]", lambda: web_search(allowed_domains=["https://x.ai"]), ("bare domain",)),
            ("tool.allowed_domains[1]", lambda: web_search(allowed_domains=["x.ai", "x.ai/news"]), ("bare",)),
            ("tool.allowed_domains", lambda: web_search(allowed_domains=[]), ("empty",)),
            ("tool.allowed_domains", lambda: web_search(allowed_domains="x.ai"), ("list",)),
            ("tool.enable_image_search", lambda: web_search(enable_image_search="yes"), ("true or false",)),
            ("tool.excluded_x_handles", lambda: x_search(allowed_x_handles=["a"], excluded_x_handles=["b"]),
             ("allowed_x_handles",)),
            ("tool.allowed_x_handles", lambda: x_search(allowed_x_handles=[f"h{i}" for i in range(11)]),
             ("at most 10",)),
            ("tool.allowed_x_handles[0]", lambda: x_search(allowed_x_handles=["@xai"]), ("without '@'",)),
            ("tool.excluded_x_handles[0]", lambda: x_search(excluded_x_handles=["https://x.com/xai"]), ("bare",)),
            ("tool.from_date", lambda: x_search(from_date="01/09/2026"), ("YYYY-MM-DD",)),
            ("tool.to_date", lambda: x_search(to_date="2026-02-30"), ("calendar date",)),
            ("tool.to_date", lambda: x_search(from_date="2026-09-07", to_date="2026-09-01"), ("before",)),
            ("tool.vector_store_ids", lambda: file_search([]), ("empty",)),
            ("tool.vector_store_ids[1]", lambda: file_search(["c1", ""]), ("non-empty",)),
            ("tool.vector_store_ids", lambda: file_search([f"c{i}" for i in range(11)]), ("at most 10",)),
            ("tool.max_num_results", lambda: file_search(["c1"], max_num_results=0), ("at least 1",)),
            ("tool.server_url", lambda: mcp("http://mcp.example.com", "silo"), ("https",)),
            ("tool.server_url", lambda: mcp("", "silo"), ("required",)),
            ("tool.server_label", lambda: mcp("https://mcp.example.com", ""), ("required",)),
            ("tool.headers", lambda: mcp("https://m.example", "s", headers={"Authorization": "Bearer x"}),
             ("authorization_conn_id",)),
            ("tool.headers", lambda: mcp("https://m.example", "s", headers={"X-N": 1}), ("strings",)),
            ("tool.authorization_conn_id", lambda: mcp("https://m.example", "s", authorization_conn_id=" "),
             ("connection id",)),
            ("tool.name", lambda: function("", NOTE_SCHEMA), ("required",)),
            ("tool.parameters", lambda: function("f", {"type": "string"}), ("root must be an object",)),
            ("tool.parameters", lambda: function("f", {"type": "array", "items": {}}), ("object",)),
            ("tool.parameters", lambda: function("f", "{}"), ("JSON Schema object",)),  # type: ignore[arg-type]
        ],
    )
    def test_bad_options_are_refused_naming_the_field(self, field: str, build: Any, words: tuple[str, ...]) -> None:
        refused(field, build, *words)

    def test_any_of_objects_is_an_object_root(self) -> None:
        either = {"anyOf": [{"type": "object", "properties": {}}, {"type": "object", "properties": {"a": {}}}]}
        assert function("f", either)["parameters"] == either
        refused("tool.parameters", lambda: function("f", {"oneOf": [{"type": "object"}, {"type": "string"}]}))

    @pytest.mark.parametrize(
        ("tool", "field", "word"),
        [
            ({"type": "web_search", "search_context_size": "high"}, "tools[0].search_context_size", "not supported"),
            ({"type": "web_search", "filters": {"allowed_domains": ["a"] * 6}}, "tools[0].filters.allowed_domains",
             "at most 5"),
            ({"type": "web_search", "filters": {}, "allowed_domains": ["a.com"]}, "tools[0].filters", "not both"),
            ({"type": "file_search", "collection_ids": ["c"]}, "tools[0].collection_ids", "vector_store_ids"),
            ({"type": "file_search"}, "tools[0].vector_store_ids", "required"),
            ({"type": "mcp", "server_url": "https://m.example", "server_label": "s", "require_approval": "never"},
             "tools[0].require_approval", "not supported"),
            ({"type": "mcp", "server_url": "https://m.example", "server_label": "s", "authorization": "a",
              "authorization_conn_id": "c"}, "tools[0].authorization_conn_id", "not both"),
            ({"type": "function", "function": {"name": "f", "parameters": {}}}, "tools[0].function", "flat"),
            ({"name": "f"}, "tools[0].type", "required"),
            ("web_search", "tools[0]", "object"),
        ],
    )
    def test_raw_dicts_are_checked_the_same_way(self, tool: Any, field: str, word: str) -> None:
        refused(field, lambda: check_tools([tool]), word)

    def test_filters_shape_and_unknown_types_pass(self) -> None:
        raw = [{"type": "web_search", "filters": {"allowed_domains": ["x.ai"]}},
               {"type": "image_generation", "action": "auto"}, {"type": "code_execution"}]  # fmt: skip
        assert check_tools(raw) == raw

    def test_list_rules(self) -> None:
        refused("tools", lambda: check_tools({"type": "web_search"}), "list")
        refused("tools", lambda: check_tools([code_interpreter()] * (tools.MAX_TOOLS + 1)), "at most 128")
        twice = [function("f", NOTE_SCHEMA), function("f", NOTE_SCHEMA)]
        refused("tools[1].name", lambda: check_tools(twice), "declared twice")


class TestMcpSecrets:
    def test_resolved_at_run_time_from_the_connection(self) -> None:
        declared = [web_search(), mcp("https://mcp.example.com", "silo", authorization_conn_id="silo_mcp")]
        asked: list[str] = []

        def get_secret(conn_id: str) -> str:
            asked.append(conn_id)
            return "Bearer s3cret"

        bodies = resolve_tools(declared, get_secret)
        assert asked == ["silo_mcp"]
        assert bodies[1] == {"type": "mcp", "server_url": "https://mcp.example.com", "server_label": "silo",
                             "authorization": "Bearer s3cret"}  # fmt: skip
        assert "authorization" not in declared[1] and declared[1]["authorization_conn_id"] == "silo_mcp"
        assert "s3cret" not in repr(declared)

    def test_a_connection_without_a_secret_is_named(self) -> None:
        declared = [mcp("https://mcp.example.com", "silo", authorization_conn_id="empty")]
        refused("tools[0].authorization_conn_id", lambda: resolve_tools(declared, lambda _: None), "'empty'")

    def test_tools_without_secrets_are_left_alone(self) -> None:
        declared = [code_interpreter(), mcp("https://mcp.example.com", "open")]
        assert resolve_tools(declared, lambda _: pytest.fail("no secret needed")) == declared
