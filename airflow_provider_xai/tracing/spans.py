"""OpenTelemetry GenAI spans for xAI requests: one CLIENT span per generation request (an
endpoint whose declaration names a GenAI ``operation``), named ``"chat {model}"``, with the
GenAI semantic-convention attributes, the cost and the Airflow identity, retries as span
events, typed errors as ``ERROR`` status. :class:`RequestSpan` is the tracing layer's part in
one call (:mod:`airflow_provider_xai.tracing.layer`).

Spans go to whatever tracer provider the process has. Airflow installs one when
``[traces] otel_on`` is true; the task runner makes the task's span current while ``execute``
runs, and the triggerer makes a ``trigger.*`` span current while a trigger runs, so a span
started here is their child without any wiring. With no provider (the default) nothing is made,
after one look at OpenTelemetry's global tracer provider. The attributes are built in
:mod:`airflow_provider_xai.tracing.attributes`.

Nothing of the prompt or the answer is recorded unless the environment variable
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` opts in (see
:mod:`airflow_provider_xai.tracing.content`). No secret reaches a span: request attributes are
read from the body (MCP secrets in ``tools`` are not read), and error messages are the typed
errors' own, which the one scrubber has cleaned.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, Status, StatusCode

from airflow_provider_xai import __version__
from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.tracing.attributes import (
    OPERATION,
    airflow_identity,
    request_attributes,
    response_attributes,
)
from airflow_provider_xai.tracing.content import capture_mode, input_attributes, output_attributes

if TYPE_CHECKING:
    from airflow_provider_xai.usage import UsageRecord

TRACER_NAME = "airflow_provider_xai"
log = logging.getLogger(__name__)


#: ``trace.get_tracer_provider()`` costs ~0.5-2 us with no provider (it looks up an unset
#: environment variable, which raises and catches a KeyError inside ``os.environ``) on every
#: request; the global it reads is checked directly instead, unless that variable was set.
_FAST_CHECK = hasattr(trace, "_TRACER_PROVIDER") and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ


def tracing_on() -> bool:
    """Whether a tracer provider is installed (Airflow's ``otel_on`` or the user's own)."""
    if _FAST_CHECK and trace._TRACER_PROVIDER is None:
        return False
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


_cached: tuple[trace.TracerProvider, trace.Tracer] | None = None


def _tracer() -> trace.Tracer:
    """The provider's tracer for this package, made once per provider."""
    global _cached
    provider = trace.get_tracer_provider()
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer(TRACER_NAME, __version__))
    return _cached[1]


class RequestSpan:
    """The span of one xAI request: answer, retries and failure recorded on it.

    A deferred-completion poll is ``lazy``: its span is created only when the poll brings the
    answer or fails (a 202 "still pending" leaves no span), backdated to the poll's start, so
    waiting in the triggerer adds one span, not one per poll.
    """

    def __init__(
        self, api: str, body: Mapping[str, Any], settings: ClientSettings, *, lazy: bool = False,
        operation: str = OPERATION,
    ) -> None:
        self.settings = settings
        self.operation = operation
        self.attributes = request_attributes(api, body, settings, operation)
        if lazy:
            self.attributes["xai.deferred"] = True
        self.attributes.update(airflow_identity())
        self.capture = capture_mode()
        self.inputs = input_attributes(api, body) if self.capture else {}
        if self.capture.span:
            self.attributes.update(self.inputs)
        self.started = time.time_ns()
        self.parent = otel_context.get_current()
        self.events: list[tuple[str, dict[str, Any], int]] = []
        self.span: trace.Span | None = None if lazy else self._open()

    def _open(self) -> trace.Span:
        model = self.attributes.get("gen_ai.request.model")
        name = f"{self.operation} {model}" if model else self.operation
        span = _tracer().start_span(
            name, self.parent, SpanKind.CLIENT, self.attributes, start_time=self.started
        )
        for event, attributes, timestamp in self.events:
            span.add_event(event, attributes, timestamp)
        return span

    def event(self, name: str, attributes: dict[str, Any]) -> None:
        if self.span is None:
            self.events.append((name, attributes, time.time_ns()))
        else:
            self.span.add_event(name, attributes)

    def retried(self, exc: BaseException, attempt: int, wait: float) -> None:
        """A retry: which attempt failed, why (its type), how long until the next."""
        self.event(
            "xai.retry",
            {"xai.retry.attempt": attempt, "xai.retry.wait_s": round(wait, 3), "error.type": type(exc).__name__},
        )

    def record(self, result: Any, usage: UsageRecord | None) -> None:
        """Record an answer (a completion, a Response, a deferred request id, or None while a
        poll is pending) with its usage record."""
        _guarded(lambda: self._record(result, usage))

    def _record(self, result: Any, usage: UsageRecord | None) -> None:
        if result is None:
            return  # a pending poll: nothing to say (and, lazily, no span)
        if self.span is None:
            self.span = self._open()
        if isinstance(result, str):
            self.span.set_attribute("xai.deferred.request_id", result)
            return
        self.span.set_attributes(response_attributes(result, usage))
        if self.capture:
            self._content(output_attributes(result))

    def failed(self, exc: BaseException) -> None:
        """ERROR status with ``error.type`` (the typed exception class); the usage of a billed
        answer that came with the failure was recorded by :meth:`record` before."""
        _guarded(lambda: self._failed(exc))

    def _failed(self, exc: BaseException) -> None:
        if self.span is None:
            self.span = self._open()
        kind = type(exc).__name__
        self.span.set_attribute("error.type", kind)
        message = str(exc) if isinstance(exc, XAIError) else kind  # typed errors are scrubbed
        self.span.set_status(Status(StatusCode.ERROR, message))
        self.span.add_event("exception", {"exception.type": kind, "exception.message": message})
        if isinstance(exc, XAIError):
            if (status := getattr(exc, "status", None)) is not None:
                self.span.set_attribute("http.response.status_code", status)
            if exc.request_id:
                self.span.set_attribute("xai.request_id", exc.request_id)
        if self.capture.event:
            self._content({})  # what was asked, for the failed request

    def _content(self, outputs: dict[str, Any]) -> None:
        """The opted-in content: outputs on the span, and/or inputs and outputs on an event."""
        if self.span is None:
            return
        if self.capture.span:
            self.span.set_attributes(outputs)
        if self.capture.event:
            self.span.add_event("gen_ai.client.inference.operation.details", {**self.inputs, **outputs})

    def end(self) -> None:
        if self.span is not None:
            self.span.end()

    @contextmanager
    def active(self) -> Iterator[None]:
        """Make this span OpenTelemetry's current one while the request is sent, so spans of
        libraries such as httpx nest under it."""
        otel_token = otel_context.attach(trace.set_span_in_context(self.span)) if self.span else None
        try:
            yield
        finally:
            if otel_token is not None:
                otel_context.detach(otel_token)


def _guarded(record: Callable[[], None]) -> None:
    """Run ``record``: tracing must never fail a request, so a fault is only logged."""
    try:
        record()
    except Exception:
        log.debug("xAI span attributes could not be recorded", exc_info=True)


__all__ = ["RequestSpan", "tracing_on"]
