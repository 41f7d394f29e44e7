"""xAI Responses API methods of :class:`XAIHook` (``/v1/responses``): create, stream, get and
delete a response, through the same transport, retries, bounds and typed errors as chat.

The calls are described in :mod:`airflow_provider_xai.endpoints.responses`; here an MCP tool's
``authorization_conn_id`` is looked up (its connection's password, registered with the one
scrubber) when the task runs, so the secret never appears in DAG code, a template or XCom.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_xai import secrets
from airflow_provider_xai.endpoints import responses as api
from airflow_provider_xai.endpoints.responses import ResponseLike
from airflow_provider_xai.exceptions import XAIResponseError, XAIValidationError
from airflow_provider_xai.pipeline.call import OnEvent
from airflow_provider_xai.pipeline.transport import XAITransport
from airflow_provider_xai.schemas.responses import DeletedResponse, Response, ResponseStreamEvent
from airflow_provider_xai.structured import OutputSpec


@dataclass(frozen=True)
class StructuredResponse:
    """A validated structured answer (JSON-safe ``value``) and the response it came from."""

    value: Any
    response: Response


class XAIResponsesMixin:
    """Responses API methods of :class:`XAIHook`; they need only its ``transport``."""

    transport: XAITransport

    # --- secrets ---------------------------------------------------------------------------
    def _secrets(self, fields: Mapping[str, Any]) -> dict[str, str]:
        return {conn_id: _secret(self.transport.connection(conn_id)) for conn_id in api.mcp_connection_ids(fields)}

    async def _asecrets(self, fields: Mapping[str, Any]) -> dict[str, str]:
        ids = api.mcp_connection_ids(fields)
        return {conn_id: _secret(await self.transport.aconnection(conn_id)) for conn_id in ids}

    # --- create ----------------------------------------------------------------------------
    def create_response(self, request: ResponseLike | None = None, /, **kwargs: Any) -> Response:
        """``POST /v1/responses``: accepts a :class:`ResponseRequest`, a dict, or fields as kwargs."""
        fields = api.api_fields(request, kwargs)
        return self.transport.send(api.create(fields, self._secrets(fields)))

    async def acreate_response(self, request: ResponseLike | None = None, /, **kwargs: Any) -> Response:
        """Async :meth:`create_response`."""
        fields = api.api_fields(request, kwargs)
        return await self.transport.asend(api.create(fields, await self._asecrets(fields)))

    def create_response_structured(
        self, request: ResponseLike | None = None, /, *, output: Any, **kwargs: Any
    ) -> StructuredResponse:
        """Ask for an answer matching ``output`` (pydantic model class, JSON schema or
        ``"json_object"``); raises :class:`XAIStructuredOutputError` (carrying the billed
        response) if it does not validate."""
        spec = OutputSpec.required(output)
        response = self.create_response(api.with_output(api.api_fields(request, kwargs), spec))
        return StructuredResponse(spec.parse(response.text, response), response)

    # --- stream ----------------------------------------------------------------------------
    def iter_response_events(
        self, request: ResponseLike | None = None, /, **kwargs: Any
    ) -> Iterator[ResponseStreamEvent]:
        """Stream a response as typed events, ending with the terminal one (``[DONE]`` or not).
        Opening the stream is retried; a stream that breaks or fails afterwards raises typed."""
        fields = api.api_fields(request, kwargs)
        yield from self.transport.iterate(api.stream(fields, self._secrets(fields)))

    async def aiter_response_events(
        self, request: ResponseLike | None = None, /, **kwargs: Any
    ) -> AsyncIterator[ResponseStreamEvent]:
        """Async :meth:`iter_response_events`."""
        fields = api.api_fields(request, kwargs)
        async for event in self.transport.aiterate(api.stream(fields, await self._asecrets(fields))):
            yield event

    def stream_response(
        self, request: ResponseLike | None = None, /, *, on_event: OnEvent | None = None, **kwargs: Any
    ) -> Response:
        """Stream a response, calling ``on_event`` with each typed event and the assembler;
        return the assembled response (what :meth:`create_response` would return)."""
        fields = api.api_fields(request, kwargs)
        return self.transport.send(api.stream(fields, self._secrets(fields), on_event))

    async def astream_response(
        self, request: ResponseLike | None = None, /, *, on_event: OnEvent | None = None, **kwargs: Any
    ) -> Response:
        """Async :meth:`stream_response`."""
        fields = api.api_fields(request, kwargs)
        return await self.transport.asend(api.stream(fields, await self._asecrets(fields), on_event))

    # --- deferrable calls ------------------------------------------------------------------------
    def start_response(self, request: ResponseLike | None = None, /, **kwargs: Any) -> str:
        """Send a stored Responses request and return its id as soon as xAI names it (the first
        event of the stream), leaving the answer to be collected with :meth:`get_response`
        (``XAIResponseTrigger``): the way a deferrable Responses task frees its worker slot.
        The request must be stored (``store`` not False)."""
        fields = api.api_fields(request, kwargs)
        if fields.get("store") is False:
            raise XAIValidationError("store", "a deferred Responses call is collected from xAI's store: store=False")
        events = self.transport.iterate(api.stream(fields, self._secrets(fields)))
        try:
            for event in events:
                if isinstance(event.response, dict) and isinstance(event.response.get("id"), str):
                    return str(event.response["id"])
        finally:
            events.close()
        raise XAIResponseError("xAI's response stream named no response id")

    # --- stored responses --------------------------------------------------------------------
    def get_response(self, response_id: str) -> Response:
        """``GET /v1/responses/{id}``: a stored response (404 once deleted, expired or never stored)."""
        return self.transport.send(api.get(response_id))

    async def aget_response(self, response_id: str) -> Response:
        """Async :meth:`get_response`."""
        return await self.transport.asend(api.get(response_id))

    def delete_response(self, response_id: str) -> DeletedResponse:
        """``DELETE /v1/responses/{id}``."""
        return self.transport.send(api.delete(response_id))

    async def adelete_response(self, response_id: str) -> DeletedResponse:
        """Async :meth:`delete_response`."""
        return await self.transport.asend(api.delete(response_id))


def _secret(conn: Any) -> str:
    """The MCP authorization secret of a connection (its password), registered with the scrubber."""
    secret: str = getattr(conn, "password", None) or ""
    secrets.register(secret)
    return secret


__all__ = ["StructuredResponse", "XAIResponsesMixin"]
