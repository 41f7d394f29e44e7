"""xAI Responses API methods of :class:`XAIHook` (``/v1/responses``): create, stream, get and
delete a response, on the same transport, retries, bounds and typed errors as chat.

Requests are validated before anything is sent (:func:`build_response_request`); an MCP tool's
``authorization_conn_id`` is resolved to the connection's secret only here, when the task runs,
so the secret never appears in DAG code, a rendered template or XCom.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_xai import secrets
from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.exceptions import XAIError, XAIValidationError
from airflow_provider_xai.hooks.calls import read, segment
from airflow_provider_xai.pipeline.sse import aiter_sse_data, iter_sse_data
from airflow_provider_xai.pipeline.transport import Call, XAITransport
from airflow_provider_xai.schemas.response_request import (
    RESPONSES_PATH,
    ResponseRequest,
    build_response_request,
)
from airflow_provider_xai.schemas.responses import DeletedResponse, Response, ResponseStreamEvent
from airflow_provider_xai.streams.responses import ResponseStreamAssembler
from airflow_provider_xai.structured import OutputSpec
from airflow_provider_xai.tools import resolve_tools
from airflow_provider_xai.tracing import spans as tracing

ResponseLike = ResponseRequest | Mapping[str, Any]
#: Called with each stream event and the assembler (for logging text and tool steps).
OnEvent = Callable[[ResponseStreamEvent, ResponseStreamAssembler], None]


@dataclass(frozen=True)
class StructuredResponse:
    """A validated structured answer (JSON-safe ``value``) and the response it came from."""

    value: Any
    response: Response


def response_fields(request: ResponseLike | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
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


def response_body(fields: Mapping[str, Any], secrets: Mapping[str, str], **extra: Any) -> Any:
    """A body builder for :class:`Call`: the validated request with the connection's default
    model and the MCP secrets filled in."""

    def build(settings: ClientSettings) -> dict[str, Any]:
        data = {"model": settings.default_model, **fields, **extra}
        if isinstance(data.get("tools"), list | tuple):
            data["tools"] = resolve_tools(data["tools"], secrets.get)
        return build_response_request(data).to_body()

    return build


def with_output(fields: dict[str, Any], output: Any) -> tuple[dict[str, Any], OutputSpec]:
    """``fields`` asking for structured output (``text.format``, flat) matching ``output``."""
    spec = output if isinstance(output, OutputSpec) else OutputSpec.from_user(output)
    if spec is None:
        raise XAIValidationError("output", "needs a pydantic model, a JSON schema or 'json_object'")
    chat_format = spec.response_format
    if chat_format.get("type") == "json_schema":
        wrapped = chat_format["json_schema"]
        text_format = {"type": "json_schema", "name": wrapped.get("name", "output"), "schema": wrapped["schema"]}
        if "strict" in wrapped:
            text_format["strict"] = wrapped["strict"]
    else:
        text_format = {"type": chat_format.get("type", "json_object")}
    return {**fields, "text": {**(fields.get("text") or {}), "format": text_format}}, spec


class XAIResponsesMixin:
    """Responses API methods of :class:`XAIHook`; they need only its ``transport``."""

    transport: XAITransport

    # --- secrets ---------------------------------------------------------------------------
    def _secrets(self, fields: Mapping[str, Any]) -> dict[str, str]:
        return {conn_id: _secret(self.transport.connection(conn_id)) for conn_id in mcp_connection_ids(fields)}

    async def _asecrets(self, fields: Mapping[str, Any]) -> dict[str, str]:
        return {conn_id: _secret(await self.transport.aconnection(conn_id)) for conn_id in mcp_connection_ids(fields)}

    def _create_call(self, fields: Mapping[str, Any], secrets: Mapping[str, str]) -> Call[Response]:
        return Call("POST", RESPONSES_PATH, read(Response, "response"), response_body(fields, secrets))

    # --- create ----------------------------------------------------------------------------
    def create_response(self, request: ResponseLike | None = None, /, **kwargs: Any) -> Response:
        """``POST /v1/responses``: accepts a :class:`ResponseRequest`, a dict, or fields as kwargs."""
        fields = response_fields(request, kwargs)
        return self.transport.send(self._create_call(fields, self._secrets(fields)))

    async def acreate_response(self, request: ResponseLike | None = None, /, **kwargs: Any) -> Response:
        """Async :meth:`create_response`."""
        fields = response_fields(request, kwargs)
        return await self.transport.asend(self._create_call(fields, await self._asecrets(fields)))

    def create_response_structured(
        self, request: ResponseLike | None = None, /, *, output: Any, **kwargs: Any
    ) -> StructuredResponse:
        """Ask for an answer matching ``output`` (pydantic model class, JSON schema or
        ``"json_object"``); raises :class:`XAIStructuredOutputError` (carrying the billed
        response) if it does not validate."""
        fields, spec = with_output(response_fields(request, kwargs), output)
        response = self.create_response(fields)
        return StructuredResponse(spec.parse(response.text, response), response)

    # --- stream ----------------------------------------------------------------------------
    def _events(self, fields: Mapping[str, Any], assembler: ResponseStreamAssembler) -> Iterator[ResponseStreamEvent]:
        t = self.transport
        body = response_body(fields, self._secrets(fields), stream=True)(t.settings)
        with tracing.start("POST", RESPONSES_PATH, body, t.settings).recording() as span:
            with span.active():
                opened = t.retrying(lambda: t.open_stream(RESPONSES_PATH, body), t.policy())
            data = iter_sse_data(opened, t.stream_limit())
            try:
                # The terminal event ends the answer, [DONE] or not (the assembler ignores what
                # follows); the rest of the body is still read so the connection returns to the pool.
                for payload in data:
                    if (event := _feed(assembler, payload)) is not None:
                        yield event
            finally:
                data.close()
            assembler.check_complete()
            if span:
                span.answered(assembler.response())

    async def _aevents(
        self, fields: Mapping[str, Any], assembler: ResponseStreamAssembler
    ) -> AsyncIterator[ResponseStreamEvent]:
        t = self.transport
        body = response_body(fields, await self._asecrets(fields), stream=True)(await t.asettings())
        with tracing.start("POST", RESPONSES_PATH, body, t.settings).recording() as span:
            with span.active():
                opened = await t.aretrying(lambda: t.aopen_stream(RESPONSES_PATH, body), t.policy())
            data = aiter_sse_data(opened, t.stream_limit())
            try:
                async for payload in data:
                    if (event := _feed(assembler, payload)) is not None:
                        yield event
            finally:
                await data.aclose()
            assembler.check_complete()
            if span:
                span.answered(assembler.response())

    def iter_response_events(
        self, request: ResponseLike | None = None, /, **kwargs: Any
    ) -> Iterator[ResponseStreamEvent]:
        """Stream a response as typed events, ending with the terminal one (``[DONE]`` or not).
        Opening the stream is retried; a stream that breaks or fails afterwards raises typed."""
        fields = response_fields(request, kwargs)
        yield from self._events(fields, ResponseStreamAssembler())

    def stream_response(
        self, request: ResponseLike | None = None, /, *, on_event: OnEvent | None = None, **kwargs: Any
    ) -> Response:
        """Stream a response, calling ``on_event`` with each typed event and the assembler;
        return the assembled response (what :meth:`create_response` would return)."""
        fields = response_fields(request, kwargs)
        assembler = ResponseStreamAssembler()
        for event in self._events(fields, assembler):
            if on_event is not None:
                on_event(event, assembler)
        return assembler.response()

    async def astream_response(
        self, request: ResponseLike | None = None, /, *, on_event: OnEvent | None = None, **kwargs: Any
    ) -> Response:
        """Async :meth:`stream_response`."""
        fields = response_fields(request, kwargs)
        assembler = ResponseStreamAssembler()
        async for event in self._aevents(fields, assembler):
            if on_event is not None:
                on_event(event, assembler)
        return assembler.response()

    # --- stored responses --------------------------------------------------------------------
    def get_response(self, response_id: str) -> Response:
        """``GET /v1/responses/{id}``: a stored response (404 once deleted, expired or never stored)."""
        return self.transport.send(Call("GET", _path(response_id), read(Response, "response")))

    async def aget_response(self, response_id: str) -> Response:
        """Async :meth:`get_response`."""
        return await self.transport.asend(Call("GET", _path(response_id), read(Response, "response")))

    def delete_response(self, response_id: str) -> DeletedResponse:
        """``DELETE /v1/responses/{id}``."""
        return self.transport.send(Call("DELETE", _path(response_id), read(DeletedResponse, "deletion")))

    async def adelete_response(self, response_id: str) -> DeletedResponse:
        """Async :meth:`delete_response`."""
        return await self.transport.asend(Call("DELETE", _path(response_id), read(DeletedResponse, "deletion")))


def _feed(assembler: ResponseStreamAssembler, payload: str) -> ResponseStreamEvent | None:
    """Feed one event; a failure carries what the stream said so far (``response.failed`` and
    ``.incomplete`` carry the billed usage) as ``error.billed``."""
    try:
        return assembler.feed(payload)
    except XAIError as exc:
        exc.billed = assembler.snapshot()
        raise


def _path(response_id: str) -> str:
    return f"{RESPONSES_PATH}/{segment(response_id)}"


def _secret(conn: Any) -> str:
    """The MCP authorization secret of a connection (its password), registered with the masker."""
    secret: str = getattr(conn, "password", None) or ""
    secrets.register(secret)
    return secret


__all__ = ["StructuredResponse", "XAIResponsesMixin"]
