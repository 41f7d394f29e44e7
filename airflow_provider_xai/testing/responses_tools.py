"""Tools of ``/v1/responses`` on the local server: validation and deterministic runs.

Validation (400 in xAI's ``{"code", "error"}`` shape, the message naming the tool and field):
at most 128 tools; function tools are flat (``{type, name, parameters}``), with unique names
and a ``parameters`` root of type ``object`` (or ``anyOf``/``oneOf`` of objects);
``web_search`` takes at most 5 ``allowed_domains`` or ``excluded_domains`` (not both; bare
domains, also accepted inside ``filters``) and refuses ``user_location``,
``external_web_access``; ``x_search`` takes at most ``MAX_X_HANDLES`` allowed or excluded
handles (not both) and ``YYYY-MM-DD`` ``from_date`` <= ``to_date``; ``file_search`` needs 1 to
10 ``vector_store_ids`` (``collections_search`` with ``collection_ids`` is an alias) and
refuses ``filters``/``ranking_options``; ``mcp`` needs ``server_url`` (http/https) and
``server_label`` and refuses ``require_approval``/``connector_id``.

Runs (one call per server-side tool, in ``tools`` order, capped by ``max_turns``): see
``run_server_tools``. Prices per call: ``TOOL_PRICE_TICKS`` (1 USD = 1e10 ticks).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.testing.chat import count_tokens
from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.responses_corpus import (
    WEB,
    X_POSTS,
    WebPage,
    XPost,
    overlap,
    rank,
    run_code,
    words,
)

MAX_TOOLS = 128
MAX_DOMAINS = 5
MAX_X_HANDLES = 20
MAX_COLLECTIONS = 10
WEB_RESULTS = 3
X_RESULTS = 3
DEFAULT_FILE_RESULTS = 10
#: Tool type as sent -> the kind the server runs.
ALIASES = {"web_search": "web_search", "x_search": "x_search",
           "code_interpreter": "code_interpreter", "code_execution": "code_interpreter",
           "file_search": "file_search", "collections_search": "file_search", "mcp": "mcp"}
ITEM_TYPES = {"web_search": "web_search_call", "x_search": "x_search_call",
              "code_interpreter": "code_interpreter_call", "file_search": "file_search_call",
              "mcp": "mcp_call"}
ID_PREFIXES = {"web_search": "ws", "x_search": "xs", "code_interpreter": "ci",
               "file_search": "fs", "mcp": "mcp"}
USAGE_KEYS = {"web_search": "web_search_calls", "x_search": "x_search_calls",
              "code_interpreter": "code_interpreter_calls", "file_search": "file_search_calls",
              "mcp": "mcp_calls"}
#: Every key of ``server_side_tool_usage_details`` the server reports (zeros included).
USAGE_DETAIL_KEYS = (*USAGE_KEYS.values(), "document_search_calls")
#: Per successful call: web/X search and code $5 per 1,000, file search $2.50, MCP tokens only.
TOOL_PRICE_TICKS = {"web_search": 50_000_000, "x_search": 50_000_000,
                    "code_interpreter": 50_000_000, "file_search": 25_000_000, "mcp": 0}


def _bad(message: str) -> ServedError:
    return ServedError(400, message)


# -- validation ------------------------------------------------------------------------------
def check_tools(tools: Any) -> list[dict[str, Any]]:
    """Validate ``tools`` like xAI does; returns the list (``[]`` for None)."""
    if tools is None:
        return []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ServedError(422, "Failed to deserialize the JSON body into the target type: tools: "
                            "expected a sequence of tool objects")
    if len(tools) > MAX_TOOLS:
        raise _bad(f"Invalid request: at most {MAX_TOOLS} tools are allowed, got {len(tools)}.")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind == "function":
            name = _check_function(i, tool)
            if name in names:
                raise _bad(f"Invalid request: tools[{i}]: duplicate function name {name!r}.")
            names.add(name)
        elif kind in ALIASES:
            {"web_search": _check_web, "x_search": _check_x, "code_interpreter": _check_code,
             "file_search": _check_files, "mcp": _check_mcp}[ALIASES[kind]](i, tool)
        else:
            raise ServedError(422, "Failed to deserialize the JSON body into the target type: "
                                f"tools[{i}]: unknown variant `{kind}`, expected one of "
                                f"`function`, {', '.join(f'`{k}`' for k in ALIASES)}")
    return tools


def _check_function(i: int, tool: dict[str, Any]) -> str:
    if isinstance(tool.get("function"), dict) and "name" not in tool:
        raise ServedError(422, f"Failed to deserialize the JSON body into the target type: "
                            f"tools[{i}]: missing field `name` (function tools are flat on "
                            "/v1/responses: {type, name, parameters}, not nested under `function`)")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise ServedError(422, f"Failed to deserialize the JSON body into the target type: "
                            f"tools[{i}]: missing field `name`")
    params = tool.get("parameters")
    if params is not None and not _object_root(params):
        raise _bad(f"Invalid function tool {name!r}: the root of `parameters` must be a JSON "
                   "schema of type 'object' (or anyOf/oneOf of objects).")
    return name


def _object_root(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("type") == "object":
        return True
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches and "type" not in schema:
            return all(_object_root(b) for b in branches)
    return False


def _exclusive(i: int, tool: dict[str, Any], what: str, limit: int, src: dict[str, Any]) -> None:
    allowed, excluded = src.get(f"allowed_{what}"), src.get(f"excluded_{what}")
    label = tool["type"]
    if allowed is not None and excluded is not None:
        raise _bad(f"Invalid tool {label} (tools[{i}]): allowed_{what} and excluded_{what} "
                   "are mutually exclusive; set only one.")
    for verb, values in (("allowed", allowed), ("excluded", excluded)):
        if values is None:
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise _bad(f"Invalid tool {label} (tools[{i}]): {verb}_{what} must be a list of "
                       "strings.")
        if len(values) > limit:
            noun = "domains" if what == "domains" else "X handles"
            raise _bad(f"A maximum of {limit} {noun} can be {verb}, but {len(values)} were "
                       "provided.")


def _web_filters(tool: dict[str, Any]) -> dict[str, Any]:
    filters = tool.get("filters")
    return filters if isinstance(filters, dict) else tool


def _check_web(i: int, tool: dict[str, Any]) -> None:
    for name in ("user_location", "external_web_access"):
        if tool.get(name) is not None:
            raise _bad(f"Invalid tool web_search (tools[{i}]): {name} is not supported.")
    src = _web_filters(tool)
    _exclusive(i, tool, "domains", MAX_DOMAINS, src)
    for d in (src.get("allowed_domains") or []) + (src.get("excluded_domains") or []):
        if "://" in d or "/" in d or " " in d:
            raise _bad(f"Invalid tool web_search (tools[{i}]): {d!r} is not a bare domain "
                       "(no scheme, path or spaces).")


def _date(i: int, name: str, value: Any) -> dt.date | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _bad(f"Invalid tool x_search (tools[{i}]): {name} must be a date in YYYY-MM-DD "
                   f"format, got {value!r}.") from None


def _check_x(i: int, tool: dict[str, Any]) -> None:
    _exclusive(i, tool, "x_handles", MAX_X_HANDLES, tool)
    start = _date(i, "from_date", tool.get("from_date"))
    end = _date(i, "to_date", tool.get("to_date"))
    if start and end and start > end:
        raise _bad(f"Invalid tool x_search (tools[{i}]): from_date {start} is after "
                   f"to_date {end}.")


def _check_code(i: int, tool: dict[str, Any]) -> None:
    del i, tool  # no options (``container`` is tolerated)


def collection_ids(tool: dict[str, Any]) -> Any:
    return tool.get("vector_store_ids", tool.get("collection_ids"))


def _check_files(i: int, tool: dict[str, Any]) -> None:
    for name in ("filters", "ranking_options"):
        if tool.get(name) is not None:
            raise _bad(f"Invalid tool file_search (tools[{i}]): {name} is not supported.")
    ids = collection_ids(tool)
    if not isinstance(ids, list) or not ids or not all(isinstance(c, str) for c in ids):
        raise _bad(f"Invalid tool file_search (tools[{i}]): vector_store_ids must be a "
                   "non-empty list of collection ids.")
    if len(ids) > MAX_COLLECTIONS:
        raise _bad(f"Invalid tool file_search (tools[{i}]): at most {MAX_COLLECTIONS} "
                   f"collections can be searched, but {len(ids)} were provided.")
    n = tool.get("max_num_results")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise _bad(f"Invalid tool file_search (tools[{i}]): max_num_results must be an "
                   "integer >= 1.")


def _check_mcp(i: int, tool: dict[str, Any]) -> None:
    for name in ("server_url", "server_label"):
        if not isinstance(tool.get(name), str) or not tool[name]:
            raise _bad(f"Invalid tool mcp (tools[{i}]): {name} is required.")
    if not tool["server_url"].startswith(("https://", "http://")):
        raise _bad(f"Invalid tool mcp (tools[{i}]): server_url must be an http(s) URL.")
    for name in ("require_approval", "connector_id"):
        if tool.get(name) is not None:
            raise _bad(f"Invalid tool mcp (tools[{i}]): {name} is not supported.")
    allowed = tool.get("allowed_tools")
    if allowed is not None and (not isinstance(allowed, list)
                                or not all(isinstance(a, str) for a in allowed)):
        raise _bad(f"Invalid tool mcp (tools[{i}]): allowed_tools must be a list of strings.")


# -- runs ------------------------------------------------------------------------------------
@dataclass
class Cite:
    """A source the answer cites (one ``url_citation``)."""

    url: str
    title: str
    text: str


@dataclass
class ToolRun:
    """One server-side tool call: its output item (no ``id`` yet) and what the answer uses."""

    kind: str
    item: dict[str, Any]
    note: str = ""
    cites: list[Cite] = field(default_factory=list)
    result_tokens: int = 0  # tokens of the results the model read (billed as input)


def run_server_tools(
    tools: list[dict[str, Any]], query: str, include: set[str],
    collections: Mapping[str, list[dict[str, str]]], mcp_table: Mapping[str, Any],
    max_turns: int | None = None,
) -> list[ToolRun]:
    """Run every server-side tool once (each configured MCP tool once), in order."""
    runs: list[ToolRun] = []
    for tool in tools:
        kind = ALIASES.get(tool.get("type", ""))
        if kind == "web_search":
            runs.append(_web(tool, query, include))
        elif kind == "x_search":
            runs.append(_x(tool, query, include))
        elif kind == "code_interpreter":
            code, logs = run_code(query)
            runs.append(ToolRun(kind, {"type": ITEM_TYPES[kind], "status": "completed",
                                       "code": code, "outputs": [{"type": "logs", "logs": logs}]},
                                note=f"The code printed: {logs.strip()}.",
                                result_tokens=count_tokens(logs)))
        elif kind == "file_search":
            runs.append(_files(tool, query, include, collections))
        elif kind == "mcp":
            runs.extend(_mcp(tool, query, mcp_table))
    return runs if max_turns is None else runs[:max_turns]


def _search_item(kind: str, query: str, cites: list[Cite], include: set[str],
                 include_flag: str) -> dict[str, Any]:
    sources = [{"type": "url", "url": c.url} for c in cites] if include_flag in include else []
    return {"type": ITEM_TYPES[kind], "status": "completed",
            "action": {"type": "search", "query": query, "sources": sources}}


def _web(tool: dict[str, Any], query: str, include: set[str]) -> ToolRun:
    src = _web_filters(tool)
    allowed = [d.lower() for d in src.get("allowed_domains") or []]
    excluded = [d.lower() for d in src.get("excluded_domains") or []]

    def on(page: WebPage, domains: list[str]) -> bool:
        return any(page.host == d or page.host.endswith("." + d) for d in domains)

    pages = [p for p in WEB if (not allowed or on(p, allowed)) and not on(p, excluded)]
    if not pages:  # an allowed domain the corpus lacks: one page per domain
        pages = [WebPage(f"https://{d}/", d, f"{d} has a page about {query[:80]}.")
                 for d in allowed]
    hits = rank(query, pages, lambda p: f"{p.title} {p.text}", WEB_RESULTS)
    cites = [Cite(p.url, p.title, p.text) for p in hits]
    return ToolRun("web_search", _search_item("web_search", query, cites, include,
                                              "web_search_call.action.sources"),
                   cites=cites, result_tokens=sum(count_tokens(p.text) for p in hits))


def _x(tool: dict[str, Any], query: str, include: set[str]) -> ToolRun:
    allowed = [h.lstrip("@").lower() for h in tool.get("allowed_x_handles") or []]
    excluded = [h.lstrip("@").lower() for h in tool.get("excluded_x_handles") or []]
    start, end = tool.get("from_date") or "0000-00-00", tool.get("to_date") or "9999-99-99"
    posts = [p for p in X_POSTS
             if (not allowed or p.handle.lower() in allowed) and p.handle.lower() not in excluded
             and start <= p.date <= end]
    if not posts:
        handle = allowed[0] if allowed else "grok"
        day = tool.get("from_date") or tool.get("to_date") or "2026-01-01"
        posts = [XPost(handle, day, "1879000000000000099", f"A post about {query[:80]}.")]
    hits = rank(query, posts, lambda p: p.text, X_RESULTS)
    cites = [Cite(p.url, f"@{p.handle} on {p.date}", p.text) for p in hits]
    return ToolRun("x_search", _search_item("x_search", query, cites, include,
                                            "x_search_call.outputs"),
                   cites=cites, result_tokens=sum(count_tokens(p.text) for p in hits))


def _files(tool: dict[str, Any], query: str, include: set[str],
           collections: Mapping[str, list[dict[str, str]]]) -> ToolRun:
    docs: list[tuple[str, dict[str, str]]] = []
    for cid in collection_ids(tool):
        if cid not in collections:
            raise ServedError(404, f"Collection {cid} was not found (configure it with "
                                "responses_collections).")
        docs.extend((cid, d) for d in collections[cid])
    k = tool.get("max_num_results") or DEFAULT_FILE_RESULTS
    hits = rank(query, docs, lambda d: f"{d[1]['filename']} {d[1]['text']}", k)
    qwords = max(1, len(words(query)))

    def score(d: dict[str, str]) -> float:
        return round(overlap(query, f"{d['filename']} {d['text']}") / qwords, 4)

    results = [{"file_id": d["file_id"], "filename": d["filename"], "text": d["text"],
                "score": score(d),
                "attributes": {"collection_id": cid}} for cid, d in hits]
    item: dict[str, Any] = {"type": "file_search_call", "status": "completed", "queries": [query],
                            "results": results if "file_search_call.results" in include else None}
    cites = [Cite(f"collections://{cid}/files/{d['file_id']}", d["filename"], d["text"][:200])
             for cid, d in hits]
    return ToolRun("file_search", item, cites=cites,
                   result_tokens=sum(count_tokens(d["text"]) for _, d in hits))


def _mcp(tool: dict[str, Any], query: str, table: Mapping[str, Any]) -> list[ToolRun]:
    label, allowed = tool["server_label"], tool.get("allowed_tools")
    runs = []
    for key, value in table.items():
        server, _, name = key.partition(".")
        if server != label or (allowed is not None and name not in allowed):
            continue
        output = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        item = {"type": "mcp_call", "status": "completed", "server_label": label, "name": name,
                "arguments": json.dumps({"query": query[:200]}), "output": output, "error": None}
        runs.append(ToolRun("mcp", item, note=f"{label}.{name} returned: {output}",
                            result_tokens=count_tokens(output)))
    return runs
