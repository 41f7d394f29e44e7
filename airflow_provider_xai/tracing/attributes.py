"""The attributes of the GenAI spans (:mod:`airflow_provider_xai.tracing.spans`): what a
request asks for, what its answer says (tokens, cost, tool calls) and the Airflow task it runs
in. Pure functions of the request body, the parsed answer and the settings: never the API key,
never a tool's settings (an MCP tool's secret is not read).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_xai.connection.settings import ClientSettings

if TYPE_CHECKING:
    from airflow_provider_xai.usage import UsageRecord

#: ``gen_ai.provider.name``: the semantic conventions' well-known value for xAI.
PROVIDER_NAME = "x_ai"
#: ``gen_ai.system`` (deprecated for ``gen_ai.provider.name``; still read by older backends).
SYSTEM = "xai"
OPERATION = "chat"
#: Request fields recorded as ``gen_ai.request.*`` (body field -> attribute).
REQUEST_FIELDS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}


@functools.lru_cache(maxsize=16)
def server_attributes(base_url: str) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of the API's base URL."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname or "", "server.port": port}


def airflow_identity() -> dict[str, Any]:
    """The running task instance (dag, run, task, map index, try), under the names Airflow's own
    task span uses; empty outside a task (the triggerer's ``trigger.*`` parent span has them)."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # not in a task, or an Airflow without it: the span simply lacks them
        return {}
    return {
        "airflow.dag_id": ti.dag_id,
        "airflow.task_id": ti.task_id,
        "airflow.dag_run.run_id": ti.run_id,
        "airflow.task_instance.map_index": ti.map_index if ti.map_index is not None else -1,
        "airflow.task_instance.try_number": ti.try_number,
    }


def request_attributes(
    api: str, body: Mapping[str, Any], settings: ClientSettings, operation: str = OPERATION
) -> dict[str, Any]:
    """The span's attributes known before sending: operation, provider, model, parameters (a
    deferred-completion poll has no body: only the first four)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": PROVIDER_NAME,
        "gen_ai.system": SYSTEM,
        "xai.api": api,
        **server_attributes(settings.base_url),
    }
    if isinstance(model := body.get("model"), str):
        attributes["gen_ai.request.model"] = model
    for name, key in REQUEST_FIELDS.items():
        if isinstance(value := body.get(name), int | float) and not isinstance(value, bool):
            attributes[key] = value
    if isinstance(stop := body.get("stop"), str | list):
        attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    if isinstance(n := body.get("n"), int) and n != 1:
        attributes["gen_ai.request.choice.count"] = n
    if body.get("stream"):
        attributes["gen_ai.request.stream"] = True
    if body.get("deferred"):
        attributes["xai.deferred"] = True
    effort = body.get("reasoning_effort") or _field(body.get("reasoning"), "effort")
    if isinstance(effort, str):
        attributes["xai.request.reasoning_effort"] = effort
    output_format = _field(body.get("response_format") or _field(body.get("text"), "format"), "type")
    if output_format in ("json_object", "json_schema"):
        attributes["gen_ai.output.type"] = "json"
    if isinstance(tools := body.get("tools"), list) and tools:
        attributes["xai.request.tools"] = [_tool_name(t) for t in tools]
    if isinstance(previous := body.get("previous_response_id"), str):
        attributes["xai.request.previous_response_id"] = previous
    return attributes


def _field(value: Any, name: str) -> Any:
    """``value[name]`` when ``value`` is a mapping, else None."""
    return value.get(name) if isinstance(value, Mapping) else None


def _tool_name(tool: Any) -> str:
    """A tool's kind (``web_search``, ``mcp``...), or a function tool's name: never its secrets."""
    if not isinstance(tool, Mapping):
        return "unknown"
    kind = str(tool.get("type", "unknown"))
    name = tool.get("name") or _field(tool.get("function"), "name")
    return f"function:{name}" if kind == "function" and name else kind


def response_attributes(result: Any, record: UsageRecord | None) -> dict[str, Any]:
    """Response id and model, finish reasons, tokens, cost and tool calls of a completion or a
    Response; tokens and cost from its usage record (the one the pipeline read, which the task's
    usage ledger records too)."""
    attributes: dict[str, Any] = {}
    if getattr(result, "id", None):
        attributes["gen_ai.response.id"] = result.id
    if getattr(result, "model", None):
        attributes["gen_ai.response.model"] = result.model
    if (choices := getattr(result, "choices", None)) is not None:
        reasons = [c.finish_reason for c in choices if c.finish_reason]
    else:
        reasons = [reason] if (reason := getattr(result, "finish_reason", None)) else []
        if (status := getattr(result, "status", None)) is not None:
            attributes["xai.response.status"] = status
        if steps := getattr(result, "tool_calls", None):
            attributes["xai.response.tool_calls"] = [step.tool for step in steps]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    if record is None:
        return attributes
    attributes.update(
        {
            "gen_ai.usage.input_tokens": record.prompt_tokens,
            "gen_ai.usage.output_tokens": record.completion_tokens + record.reasoning_tokens,
            "gen_ai.usage.reasoning.output_tokens": record.reasoning_tokens,
            "gen_ai.usage.cache_read.input_tokens": record.cached_tokens,
            "xai.usage.image_tokens": record.image_tokens,
            "xai.usage.total_tokens": record.total_tokens,
            "xai.usage.sources_used": record.num_sources_used,
            "xai.usage.server_side_tools_used": record.num_server_side_tools_used,
            "xai.cost_source": record.cost_source,
        }
    )
    if record.cost_usd is not None:
        attributes["xai.cost_usd"] = record.cost_usd
    if record.unit:
        attributes.update({"xai.usage.units": record.units, "xai.usage.unit": record.unit})
    for tool, calls in record.server_side_tool_usage.items():
        attributes[f"xai.usage.server_side_tool_usage.{tool}"] = calls
    return attributes


__all__ = ["OPERATION", "airflow_identity", "request_attributes", "response_attributes"]
