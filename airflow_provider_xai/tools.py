"""Typed constructors of the tools a Responses request can use, checked before anything is sent.

Each constructor returns a plain JSON-safe ``dict`` (the REST tool body), so tools sit in operator
arguments, templates, serialized DAGs and XCom like any other value. The server-side tools
(``web_search``, ``x_search``, ``code_interpreter``, ``file_search``, ``mcp``) run inside xAI
during one request; :func:`function` declares a tool that *your* code executes.

A remote MCP server's secret is never written in DAG code: :func:`mcp` keeps only the id of an
Airflow connection (``authorization_conn_id``), and :func:`resolve_tools` fills in
``authorization`` when the task runs, so the secret never lands in a rendered template or XCom.

A leaf module: it is imported when DAG files are parsed and imports nothing heavy. Values that
are still Jinja templates (``"{{ ds }}"``) are checked after rendering, by :func:`check_tools`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_xai.exceptions import XAIValidationError

MAX_TOOLS = 128  # R1's limit; the 2026 function-calling page says 200: the conservative one
MAX_DOMAINS = 5
MAX_X_HANDLES = 10  # R1 and Vercel; the 2026 docs say 20: the conservative one
MAX_COLLECTIONS = 10
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

#: Fields xAI documents as rejected ("rejected if set" or unsupported), with what to do instead.
_REJECTED: dict[str, dict[str, str]] = {
    "web_search": {
        "search_context_size": "not supported by xAI; leave it out",
        "user_location": "not supported by xAI; leave it out",
        "external_web_access": "not supported by xAI; leave it out",
    },
    "file_search": {
        "filters": "not supported by xAI; leave it out",
        "ranking_options": "not supported by xAI; leave it out",
        "collection_ids": "the REST API takes collection ids as 'vector_store_ids'",
    },
    "mcp": {
        "require_approval": "not supported by xAI (MCP tools run without approval); leave it out",
        "connector_id": "not supported by xAI; give server_url instead",
    },
}


def _templated(value: Any) -> bool:
    """A Jinja template not rendered yet (checked again after rendering)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _fail(path: str, problem: str) -> XAIValidationError:
    return XAIValidationError(path, problem)


def _names(value: Any, path: str, *, limit: int, what: str) -> list[str]:
    """A list of non-empty strings (``what``: 'domain', 'handle'...) of at most ``limit``."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(path, f"must be a list of {what}s, got {type(value).__name__}")
    names = list(value)
    if not names:
        raise _fail(path, f"is empty: give at least one {what} or leave the option out")
    if len(names) > limit:
        raise _fail(path, f"at most {limit} {what}s are allowed, got {len(names)}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise _fail(f"{path}[{i}]", f"must be a non-empty string, got {name!r}")
    return names


def _check_domains(tool: Mapping[str, Any], path: str) -> None:
    allowed, excluded = tool.get("allowed_domains"), tool.get("excluded_domains")
    if allowed is not None and excluded is not None:
        raise _fail(f"{path}.excluded_domains", "cannot be combined with allowed_domains: give one of them")
    for key, value in (("allowed_domains", allowed), ("excluded_domains", excluded)):
        if value is None or _templated(value):
            continue
        for i, domain in enumerate(_names(value, f"{path}.{key}", limit=MAX_DOMAINS, what="domain")):
            if _templated(domain):
                continue
            if _SCHEME.match(domain) or "/" in domain or any(c.isspace() for c in domain):
                raise _fail(f"{path}.{key}[{i}]", f"must be a bare domain such as 'example.com', got {domain!r}")


def _check_flags(tool: Mapping[str, Any], path: str, names: Iterable[str]) -> None:
    for name in names:
        value = tool.get(name)
        if value is not None and not isinstance(value, bool) and not _templated(value):
            raise _fail(f"{path}.{name}", f"must be true or false, got {value!r}")


def _date(value: Any, path: str) -> datetime.date | None:
    if value is None or _templated(value):
        return None
    if not isinstance(value, str) or not _DATE.match(value):
        raise _fail(path, f"must be a date as YYYY-MM-DD, got {value!r}")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise _fail(path, f"is not a calendar date: {value!r}") from None


def _check_web_search(tool: Mapping[str, Any], path: str) -> None:
    _check_domains(tool, path)
    filters = tool.get("filters")
    if filters is not None:
        if not isinstance(filters, Mapping):
            raise _fail(f"{path}.filters", f"must be an object, got {type(filters).__name__}")
        if any(k in tool for k in ("allowed_domains", "excluded_domains")):
            raise _fail(f"{path}.filters", "give the domain lists either in filters or on the tool, not both")
        _check_domains(filters, f"{path}.filters")
    _check_flags(tool, path, ("enable_image_understanding", "enable_image_search"))


def _check_x_search(tool: Mapping[str, Any], path: str) -> None:
    allowed, excluded = tool.get("allowed_x_handles"), tool.get("excluded_x_handles")
    if allowed is not None and excluded is not None:
        raise _fail(f"{path}.excluded_x_handles", "cannot be combined with allowed_x_handles: give one of them")
    for key, value in (("allowed_x_handles", allowed), ("excluded_x_handles", excluded)):
        if value is None or _templated(value):
            continue
        for i, handle in enumerate(_names(value, f"{path}.{key}", limit=MAX_X_HANDLES, what="handle")):
            if _templated(handle):
                continue
            if handle.startswith("@") or _SCHEME.match(handle) or "/" in handle or " " in handle:
                raise _fail(f"{path}.{key}[{i}]", f"must be a bare X handle without '@', got {handle!r}")
    start = _date(tool.get("from_date"), f"{path}.from_date")
    end = _date(tool.get("to_date"), f"{path}.to_date")
    if start is not None and end is not None and start > end:
        raise _fail(f"{path}.to_date", f"{end.isoformat()} is before from_date {start.isoformat()}")
    _check_flags(tool, path, ("enable_image_understanding", "enable_video_understanding"))


def _check_file_search(tool: Mapping[str, Any], path: str) -> None:
    ids = tool.get("vector_store_ids")
    if ids is None:
        raise _fail(f"{path}.vector_store_ids", "is required: the ids of the collections to search")
    if not _templated(ids):
        _names(ids, f"{path}.vector_store_ids", limit=MAX_COLLECTIONS, what="collection id")
    limit = tool.get("max_num_results")
    if limit is not None and not _templated(limit) and (type(limit) is not int or limit < 1):
        raise _fail(f"{path}.max_num_results", f"must be a whole number of at least 1, got {limit!r}")


def _check_mcp(tool: Mapping[str, Any], path: str) -> None:
    url = tool.get("server_url")
    if not isinstance(url, str) or not url.strip():
        raise _fail(f"{path}.server_url", "is required: the https URL of the MCP server")
    if not _templated(url) and not url.lower().startswith("https://"):
        raise _fail(f"{path}.server_url", f"must be an https URL (xAI calls it from its cloud), got {url!r}")
    label = tool.get("server_label")
    if not isinstance(label, str) or not label.strip():
        raise _fail(f"{path}.server_label", "is required: a short name for the server (tools are '<label>.<tool>')")
    if (allowed := tool.get("allowed_tools")) is not None and not _templated(allowed):
        _names(allowed, f"{path}.allowed_tools", limit=10_000, what="tool name")
    if (description := tool.get("server_description")) is not None and not isinstance(description, str):
        raise _fail(f"{path}.server_description", f"must be a string, got {type(description).__name__}")
    headers = tool.get("headers")
    if headers is not None and not _templated(headers):
        if not isinstance(headers, Mapping):
            raise _fail(f"{path}.headers", f"must map header names to strings, got {type(headers).__name__}")
        for name, value in headers.items():
            if not isinstance(name, str) or not name or not isinstance(value, str):
                problem = f"names and values must be strings, got {name!r}: {type(value).__name__}"
                raise _fail(f"{path}.headers", problem)
    conn_id = tool.get("authorization_conn_id")
    if conn_id is not None:
        if "authorization" in tool:
            raise _fail(f"{path}.authorization_conn_id", "give authorization_conn_id or authorization, not both")
        if not isinstance(conn_id, str) or not conn_id.strip():
            raise _fail(f"{path}.authorization_conn_id", f"must be an Airflow connection id, got {conn_id!r}")


def _check_function(tool: Mapping[str, Any], path: str) -> None:
    if "function" in tool and "name" not in tool:
        raise _fail(
            f"{path}.function",
            "Responses function tools are flat: {'type': 'function', 'name': ..., 'parameters': ...} "
            "(not nested under 'function' as in Chat Completions)",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"{path}.name", "is required: the function's name")
    if (description := tool.get("description")) is not None and not isinstance(description, str):
        raise _fail(f"{path}.description", f"must be a string, got {type(description).__name__}")
    parameters = tool.get("parameters")
    if parameters is None or _templated(parameters):
        return
    if not isinstance(parameters, Mapping):
        raise _fail(f"{path}.parameters", f"must be a JSON Schema object, got {type(parameters).__name__}")
    if not _is_object_schema(parameters):
        raise _fail(
            f"{path}.parameters",
            "the schema's root must be an object ({'type': 'object', 'properties': {...}}) "
            "or anyOf/oneOf of objects",
        )


def _is_object_schema(schema: Mapping[str, Any]) -> bool:
    if schema.get("type") == "object":
        return True
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return all(isinstance(o, Mapping) and o.get("type") == "object" for o in options)
    return False


_CHECKS: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    "web_search": _check_web_search,
    "x_search": _check_x_search,
    "file_search": _check_file_search,
    "mcp": _check_mcp,
    "function": _check_function,
}


def check_tool(tool: Any, path: str = "tool") -> dict[str, Any]:
    """Check one tool body, raising :class:`XAIValidationError` naming the bad field; a copy.

    Tool types this module does not know (``image_generation``, newer tools) pass unchecked.
    """
    if hasattr(tool, "to_body") and callable(tool.to_body):
        tool = tool.to_body()
    if not isinstance(tool, Mapping):
        raise _fail(path, f"must be an object with a 'type', got {type(tool).__name__}")
    kind = tool.get("type")
    if not isinstance(kind, str) or not kind:
        raise _fail(f"{path}.type", "is required: 'web_search', 'x_search', 'code_interpreter', 'function'...")
    for key, problem in _REJECTED.get(kind, {}).items():
        if key in tool:
            raise _fail(f"{path}.{key}", problem)
    checked = dict(tool)
    ids = checked.get("vector_store_ids")
    if kind == "file_search" and isinstance(ids, str) and ids.strip() and not _templated(ids):
        checked["vector_store_ids"] = [ids]  # one collection id, as a template renders an upstream's
    if check := _CHECKS.get(kind):
        check(checked, path)
    return checked


def check_tools(tools: Any, path: str = "tools") -> list[dict[str, Any]]:
    """Check a list of tool bodies (raw dicts or the constructors' results) the way the
    constructors do, raising :class:`XAIValidationError` naming the field (``tools[0].allowed_domains``).

    Returns plain-dict copies. Function names must be unique; at most :data:`MAX_TOOLS` tools.
    """
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Iterable):
        raise _fail(path, f"must be a list of tools, got {type(tools).__name__}")
    checked = [check_tool(tool, f"{path}[{i}]") for i, tool in enumerate(tools)]
    if len(checked) > MAX_TOOLS:
        raise _fail(path, f"at most {MAX_TOOLS} tools are allowed, got {len(checked)}")
    seen: set[str] = set()
    for i, tool in enumerate(checked):
        if tool["type"] == "function":
            if tool["name"] in seen:
                raise _fail(f"{path}[{i}].name", f"function {tool['name']!r} is declared twice")
            seen.add(tool["name"])
    return checked


def resolve_tools(tools: Any, get_secret: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """The tool bodies to send: each ``authorization_conn_id`` replaced by ``authorization``.

    Call it when the task runs, right before the request (never in a template or XCom):
    ``get_secret(conn_id)`` returns the secret, for example
    ``lambda conn_id: BaseHook.get_connection(conn_id).password``; it is sent as given (include
    ``"Bearer "`` if the MCP server expects it). The tools are checked first (:func:`check_tools`).
    """
    return attach_secrets(check_tools(tools), get_secret)


def attach_secrets(tools: list[dict[str, Any]], get_secret: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """Checked tool bodies with each ``authorization_conn_id`` replaced, in place, by the
    ``authorization`` that ``get_secret(conn_id)`` returns."""
    for i, tool in enumerate(tools):
        conn_id = tool.pop("authorization_conn_id", None)
        if conn_id is None:
            continue
        secret = get_secret(conn_id)
        if not isinstance(secret, str) or not secret:
            raise _fail(f"tools[{i}].authorization_conn_id", f"connection {conn_id!r} holds no secret (password)")
        tool["authorization"] = secret
    return tools


def _put(body: dict[str, Any], **options: Any) -> dict[str, Any]:
    body.update({key: value for key, value in options.items() if value is not None})
    return body


def _list(value: Iterable[str] | None) -> list[str] | str | None:
    """A list copy of an iterable of names (a template string stays as it is)."""
    if value is None or isinstance(value, str):
        return value
    return list(value)


def _iso(value: datetime.date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime.date) else value


def web_search(
    *,
    allowed_domains: Iterable[str] | None = None,
    excluded_domains: Iterable[str] | None = None,
    enable_image_understanding: bool | None = None,
    enable_image_search: bool | None = None,
) -> dict[str, Any]:
    """Search the web (billed per successful call). Domains are bare (``"example.com"``), at
    most 5, either allowed or excluded. ``enable_image_search`` lets answers embed images."""
    body = _put(
        {"type": "web_search"},
        allowed_domains=_list(allowed_domains),
        excluded_domains=_list(excluded_domains),
        enable_image_understanding=enable_image_understanding,
        enable_image_search=enable_image_search,
    )
    return check_tool(body)


def x_search(
    *,
    allowed_x_handles: Iterable[str] | None = None,
    excluded_x_handles: Iterable[str] | None = None,
    from_date: datetime.date | str | None = None,
    to_date: datetime.date | str | None = None,
    enable_image_understanding: bool | None = None,
    enable_video_understanding: bool | None = None,
) -> dict[str, Any]:
    """Search posts on X. Handles without ``@`` (at most 10, allowed or excluded); dates are
    inclusive, as ``date`` objects or ``"YYYY-MM-DD"`` (templates such as ``"{{ ds }}"`` work)."""
    body = _put(
        {"type": "x_search"},
        allowed_x_handles=_list(allowed_x_handles),
        excluded_x_handles=_list(excluded_x_handles),
        from_date=_iso(from_date),
        to_date=_iso(to_date),
        enable_image_understanding=enable_image_understanding,
        enable_video_understanding=enable_video_understanding,
    )
    return check_tool(body)


def code_interpreter() -> dict[str, Any]:
    """Run Python in xAI's sandbox (no network, nothing kept between requests)."""
    return {"type": "code_interpreter"}


def file_search(collection_ids: Iterable[str] | str, *, max_num_results: int | None = None) -> dict[str, Any]:
    """Search your xAI collections (created beforehand); sent as ``vector_store_ids``, at most 10.
    A template that renders to one id works too: ``"{{ ti.xcom_pull(task_ids='sync', key='xai_collection_id') }}"``."""
    ids = [collection_ids] if isinstance(collection_ids, str) and not _templated(collection_ids) else collection_ids
    body = _put({"type": "file_search", "vector_store_ids": _list(ids)}, max_num_results=max_num_results)
    return check_tool(body)


def mcp(
    server_url: str,
    server_label: str,
    *,
    allowed_tools: Iterable[str] | None = None,
    server_description: str | None = None,
    headers: Mapping[str, str] | None = None,
    authorization_conn_id: str | None = None,
) -> dict[str, Any]:
    """A remote MCP server (Streamable HTTP or SSE) that xAI calls during the request.

    ``authorization_conn_id`` names the Airflow connection whose password xAI sends as the
    ``Authorization`` header; it is filled in at run time by :func:`resolve_tools`. Secrets do
    not belong in ``headers`` (they would be stored with the DAG): use the connection.
    """
    if headers is not None and isinstance(headers, Mapping):
        if any(isinstance(name, str) and name.lower() == "authorization" for name in headers):
            raise _fail("tool.headers", "keep the Authorization secret in a connection: use authorization_conn_id")
        headers = dict(headers)
    body = _put(
        {"type": "mcp", "server_url": server_url, "server_label": server_label},
        allowed_tools=_list(allowed_tools),
        server_description=server_description,
        headers=headers,
        authorization_conn_id=authorization_conn_id,
    )
    return check_tool(body)


def function(
    name: str,
    parameters: Mapping[str, Any],
    *,
    description: str | None = None,
) -> dict[str, Any]:
    """A function your code executes: the answer carries a ``function_call`` to run and send back
    as a ``function_call_output``. ``parameters`` is a JSON Schema whose root is an object."""
    body = _put(
        {"type": "function", "name": name},
        description=description,
        parameters=dict(parameters) if isinstance(parameters, Mapping) else parameters,
    )
    if "parameters" not in body:
        raise _fail("tool.parameters", "is required: a JSON Schema object describing the arguments")
    return check_tool(body)


__all__ = [
    "MAX_COLLECTIONS",
    "MAX_DOMAINS",
    "MAX_TOOLS",
    "MAX_X_HANDLES",
    "attach_secrets",
    "check_tool",
    "check_tools",
    "code_interpreter",
    "file_search",
    "function",
    "mcp",
    "resolve_tools",
    "web_search",
    "x_search",
]
