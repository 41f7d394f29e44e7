"""The Responses API (``/v1/responses``): the declarations, and the calls the hook sends.

A request is validated before anything is sent (:func:`build_response_request`); an MCP tool's
``authorization_conn_id`` is resolved to its connection's secret only in the body builder, when
the call is sent, so the secret never appears in DAG code, a rendered template or XCom.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.endpoints.common import estimate_tokens, forecast_responses, read, segment
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.pipeline.call import Call, Endpoint, OnEvent
from airflow_provider_xai.pricing import Price
from airflow_provider_xai.schemas.response_request import ResponseRequest, build_response_request
from airflow_provider_xai.schemas.responses import DeletedResponse, Response
from airflow_provider_xai.streams.responses import ResponseStreamAssembler
from airflow_provider_xai.structured import OutputSpec
from airflow_provider_xai.usage import UsageRecord, build_record, served_tier

#: What the Responses methods accept: a :class:`ResponseRequest`, a mapping of API fields, or
#: None (with the fields as keyword arguments).
ResponseLike = ResponseRequest | Mapping[str, Any]


def response_record(
    response: Response, prices: Mapping[str, Price], *, discount: float = 1.0
) -> UsageRecord | None:
    """The usage record of a billed response (None when it carries no usage); an estimate is
    ``discount`` times the price table's (a batch's)."""
    if response.usage is None:
        return None
    return build_record(
        response.usage, response.model, completion_id=response.id, prices=prices, discount=discount,
        service_tier=served_tier(response),
    )


CREATE = Endpoint(
    "responses",
    "POST",
    "responses",
    request=ResponseRequest,
    response=Response,
    record=response_record,
    operation="chat",
    estimate=estimate_tokens,
    bucket="model",
    forecast=forecast_responses,
)
GET = Endpoint("responses", "GET", "responses/{response_id}", response=Response)
DELETE = Endpoint("responses", "DELETE", "responses/{response_id}", response=DeletedResponse)
ENDPOINTS = (CREATE, GET, DELETE)


def api_fields(request: ResponseLike | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """One mapping of API fields from a request (model or mapping) and keyword arguments."""
    if isinstance(request, ResponseRequest):
        base: Mapping[str, Any] = request.model_dump(by_alias=True, exclude_unset=True)
    elif request is None or isinstance(request, Mapping):
        base = request or {}
    else:
        raise XAIValidationError(
            "request", f"expected a ResponseRequest or a mapping of API fields, got {type(request).__name__}"
        )
    return {**base, **kwargs}


def mcp_connection_ids(fields: Mapping[str, Any]) -> list[str]:
    """The connection ids whose secrets the request's MCP tools need."""
    tools = fields.get("tools")
    if not isinstance(tools, list | tuple):
        return []
    return [
        t["authorization_conn_id"]
        for t in tools
        if isinstance(t, Mapping) and isinstance(t.get("authorization_conn_id"), str)
    ]


def with_output(fields: Mapping[str, Any], spec: OutputSpec) -> dict[str, Any]:
    """``fields`` asking for structured output (``text.format``, flat) matching ``spec``."""
    chat_format = spec.response_format
    if chat_format.get("type") == "json_schema":
        wrapped = chat_format["json_schema"]
        text_format = {"type": "json_schema", "name": wrapped.get("name", "output"), "schema": wrapped["schema"]}
        if "strict" in wrapped:
            text_format["strict"] = wrapped["strict"]
    else:
        text_format = {"type": chat_format.get("type", "json_object")}
    return {**fields, "text": {**(fields.get("text") or {}), "format": text_format}}


def response_body(fields: Mapping[str, Any], secrets: Mapping[str, str], **extra: Any) -> Any:
    """A body builder: the validated request with the connection's default model and the MCP
    secrets filled in."""

    def build(settings: ClientSettings) -> dict[str, Any]:
        return build_response_request({"model": settings.default_model, **fields, **extra}).to_body(secrets.get)

    return build


def create(fields: Mapping[str, Any], secrets: Mapping[str, str]) -> Call[Response]:
    return Call(CREATE, read(Response, "response"), body=response_body(fields, secrets))


def stream(fields: Mapping[str, Any], secrets: Mapping[str, str], on_event: OnEvent | None = None) -> Call[Response]:
    """A streamed response. Once events flow it is never requested again: server-side tools
    may already have run (and been billed)."""
    body = response_body(fields, secrets, stream=True)
    return Call(CREATE, stream=lambda _body: ResponseStreamAssembler(), body=body, on_event=on_event)


def get(response_id: str) -> Call[Response]:
    return Call(GET, read(Response, "response"), path=f"responses/{segment(response_id)}")


def delete(response_id: str) -> Call[DeletedResponse]:
    return Call(DELETE, read(DeletedResponse, "deletion"), path=f"responses/{segment(response_id)}")


__all__ = [
    "CREATE",
    "DELETE",
    "ENDPOINTS",
    "GET",
    "ResponseLike",
    "api_fields",
    "create",
    "delete",
    "get",
    "mcp_connection_ids",
    "response_body",
    "response_record",
    "stream",
    "with_output",
]
