"""Tracing as a layer of the pipeline: a span around every call whose endpoint declaration
names a GenAI operation, while a tracer provider is installed (else no scope, and no cost)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from airflow_provider_xai.pipeline.layers import Exchange, Layer, Scope, Withdrawn
from airflow_provider_xai.tracing.spans import RequestSpan, tracing_on

log = logging.getLogger(__name__)


class TracingLayer(Layer):
    """One :class:`RequestSpan` per traced call."""

    def scope(self, exchange: Exchange) -> Scope | None:
        endpoint = exchange.call.endpoint
        if endpoint.operation is None or not tracing_on():
            return None
        body = exchange.body if isinstance(exchange.body, dict) else {}
        try:
            operation = endpoint.operation
            span = RequestSpan(endpoint.name, body, exchange.settings, lazy=endpoint.polled, operation=operation)
        except Exception:  # tracing must never stop a request
            log.debug("xAI span could not be started", exc_info=True)
            return None
        return _TracedCall(span, exchange)


class _TracedCall(Scope):
    def __init__(self, span: RequestSpan, exchange: Exchange) -> None:
        self.span, self.exchange = span, exchange

    @contextmanager
    def active(self) -> Iterator[None]:
        with self.span.active():
            yield

    def retried(self, exc: BaseException, attempt: int, wait: float) -> None:
        self.span.retried(exc, attempt, wait)

    def answered(self) -> None:
        self.span.record(self.exchange.answer, self.exchange.record)

    def finish(self, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, Withdrawn):  # withdrawn: nothing was sent
            self.span.failed(exc)
        self.span.end()


