"""xAI Batch API methods of :class:`XAIHook` (mixed in as :class:`XAIBatchMixin`).

A batch is a named container: create it, add requests (chunked under the 25 MB per-call limit
and paced to 100 calls per 30 s) or create it from an uploaded JSONL input file (which then
takes no added requests), poll its counters, page through results, cancel it. There is
no status field: a batch is done when ``num_pending == 0 and num_requests > 0``, or when it was
cancelled or has expired. :meth:`XAIBatchMixin.find_batch` looks a batch up by name, which is
how a retried Airflow task re-attaches to the batch it already paid for.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from airflow_provider_xai.endpoints import batches as api
from airflow_provider_xai.endpoints import files as file_api
from airflow_provider_xai.exceptions import XAIDeferredTimeoutError, XAIValidationError
from airflow_provider_xai.pipeline.call import Call
from airflow_provider_xai.pipeline.transport import XAITransport
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Poller, ProgressLog, poll
from airflow_provider_xai.ratelimit.layer import RateLimitLayer
from airflow_provider_xai.schemas.batch import (
    Batch,
    BatchRequestMetadata,
    BatchResult,
    batch_request,
)
from airflow_provider_xai.schemas.files import FileObject

#: xAI accepts at most 25 MB per add-requests call (counted here in bytes of compact JSON).
MAX_ADD_REQUESTS_BYTES = 25_000_000
#: ... and at most 100 add-requests calls per 30 seconds.
ADD_REQUESTS_CALLS = 100
ADD_REQUESTS_WINDOW = 30.0
#: Page size for listing batches, request metadata and results.
PAGE_SIZE = 100
#: Batch price as a fraction of the real-time price (for estimates when xAI sends no cost).
BATCH_DISCOUNT = 0.5
#: Largest JSONL input file: xAI's files take 50 MB (some of its pages say 48 MB: the lower).
MAX_INPUT_FILE_BYTES = 48_000_000
#: Seconds an uploaded input file is kept: past xAI's 24 h batch lifetime, then it expires.
INPUT_FILE_TTL = 3 * 24 * 3600

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as httpx sends it (compact UTF-8 JSON)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8"))


def chunk_batch_requests(
    items: Sequence[Mapping[str, Any]], max_bytes: int = MAX_ADD_REQUESTS_BYTES
) -> list[list[Mapping[str, Any]]]:
    """Split add-requests items into call bodies of at most ``max_bytes`` each, in order.

    Raises :class:`XAIValidationError` for an item that alone exceeds the limit (before
    anything is sent).
    """
    overhead = encoded_size({"batch_requests": []})
    chunks: list[list[Mapping[str, Any]]] = []
    current: list[Mapping[str, Any]] = []
    size = overhead
    for i, item in enumerate(items):
        n = encoded_size(item)
        if overhead + n > max_bytes:
            raise XAIValidationError(
                f"batch_requests[{i}]",
                f"request {item.get('batch_request_id')!r} is {n} bytes; one add-requests call "
                f"may carry at most {max_bytes} bytes",
            )
        extra = n + (1 if current else 0)  # the comma between items
        if current and size + extra > max_bytes:
            chunks.append(current)
            current, size, extra = [], overhead, n
        current.append(item)
        size += extra
    if current:
        chunks.append(current)
    return chunks


class Pacer(Protocol):
    def acquire(self) -> float:
        """Wait for room, then count one call; return the seconds waited."""


class CallPacer:
    """At most ``calls`` calls in any ``period`` seconds (sliding window); waits when full.

    ``clock`` and ``sleep`` are injectable so tests can check pacing without waiting.
    """

    def __init__(
        self,
        calls: int = ADD_REQUESTS_CALLS,
        period: float = ADD_REQUESTS_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls < 1 or period <= 0:
            raise ValueError("CallPacer needs calls >= 1 and period > 0")
        self.calls, self.period, self.clock, self.sleep = calls, period, clock, sleep
        self._stamps: deque[float] = deque()

    def delay(self) -> float:
        """Seconds until the next call may start (0 when the window has room)."""
        now = self.clock()
        while self._stamps and self._stamps[0] <= now - self.period:
            self._stamps.popleft()
        return 0.0 if len(self._stamps) < self.calls else self._stamps[0] + self.period - now

    def acquire(self) -> float:
        """Wait for room, then count one call; return the seconds waited."""
        waited = 0.0
        while (pause := self.delay()) > 0:
            self.sleep(pause)
            waited += pause
        self._stamps.append(self.clock())
        return waited


class XAIBatchMixin:
    """Batch API methods of :class:`XAIHook`; they need only its ``transport``."""

    transport: XAITransport
    rate_limit: RateLimitLayer
    _batch_pacer: Pacer | None = None
    #: ``limit`` of list calls (batches, request metadata, results).
    batch_page_size: int = PAGE_SIZE

    @property
    def batch_pacer(self) -> Pacer:
        """The add-requests pacer of this hook's calls: the connection's shared rate limiter's
        (every worker of the team) when it sets one, else this hook's own."""
        if self._batch_pacer is None:
            limiter = self.rate_limit.limiter(self.transport.settings)
            self._batch_pacer = limiter.batch_pacer() if limiter is not None else CallPacer()
        return self._batch_pacer

    # --- batches -------------------------------------------------------------------------------
    def create_batch(self, name: str, *, input_file_id: str | None = None) -> Batch:
        """``POST /v1/batches``: a batch called ``name``, empty, or made from the JSONL lines of
        an uploaded file (:meth:`upload_batch_input_file`; it shows ``num_requests: 0`` until
        xAI has loaded them, and takes no added requests)."""
        if not isinstance(name, str) or not name.strip():
            raise XAIValidationError("name", "a batch needs a non-empty name")
        if input_file_id is not None and (not isinstance(input_file_id, str) or not input_file_id.strip()):
            raise XAIValidationError("input_file_id", f"expected a file id, got {input_file_id!r}")
        return self.transport.send(api.create(name, input_file_id))

    def upload_batch_input_file(
        self, content: bytes, *, filename: str = "batch.jsonl", expires_after: int = INPUT_FILE_TTL
    ) -> FileObject:
        """``POST /v1/files``: a batch's JSONL input file, one request a line
        (``{"custom_id", "method": "POST", "url": "/v1/responses", "body"}``), kept
        ``expires_after`` seconds. Refused before sending when over :data:`MAX_INPUT_FILE_BYTES`."""
        if len(content) > MAX_INPUT_FILE_BYTES:
            raise XAIValidationError(
                "content", f"is {len(content)} bytes; an input file may hold at most {MAX_INPUT_FILE_BYTES}"
            )
        return self.transport.send(file_api.upload_content(content, filename, expires_after))

    def get_batch(self, batch_id: str) -> Batch:
        """``GET /v1/batches/{id}``: the batch and its request counters."""
        return self.transport.send(api.get(batch_id))

    async def aget_batch(self, batch_id: str) -> Batch:
        """Async :meth:`get_batch` (for triggers)."""
        return await self.transport.asend(api.get(batch_id))

    def cancel_batch(self, batch_id: str) -> Batch:
        """``POST /v1/batches/{id}:cancel``: pending requests are dropped; finished ones keep results."""
        return self.transport.send(api.cancel(batch_id))

    async def acancel_batch(self, batch_id: str) -> Batch:
        """Async :meth:`cancel_batch`."""
        return await self.transport.asend(api.cancel(batch_id))

    def _pages(self, page_call: Callable[[int, str | None], Call[M]]) -> Iterator[M]:
        """Every page of a token-paged list (``limit`` + ``pagination_token``), fetched lazily."""
        token: str | None = None
        while True:
            page = self.transport.send(page_call(self.batch_page_size, token))
            yield page
            token = getattr(page, "pagination_token", None)
            if not token:
                return

    def list_batches(self) -> Iterator[Batch]:
        """``GET /v1/batches``: every batch of the team, newest first."""
        for page in self._pages(api.batches_page):
            yield from page.batches

    def find_batch(self, name: str, *, include_ended: bool = False) -> Batch | None:
        """The newest batch called ``name`` (skipping cancelled/expired ones unless asked), or None."""
        for batch in self.list_batches():
            if batch.name == name and (include_ended or not batch.ended):
                return batch
        return None

    # --- requests ------------------------------------------------------------------------------
    def add_batch_requests(
        self,
        batch_id: str,
        requests: Sequence[Mapping[str, Any]],
        *,
        max_bytes: int = MAX_ADD_REQUESTS_BYTES,
        pacer: Pacer | None = None,
    ) -> int:
        """``POST /v1/batches/{id}/requests`` in as many calls as the size limit needs, paced to
        the call-rate limit. Items are :func:`batch_request` dicts. Returns the number of calls.

        Every chunk is sized before the first call, so an oversized item sends nothing.
        """
        chunks = chunk_batch_requests(requests, max_bytes)
        pacer = pacer if pacer is not None else self.batch_pacer
        for n, chunk in enumerate(chunks, 1):
            waited = pacer.acquire()
            if waited:
                log.info("Paced xAI add-requests: waited %.1fs for the call-rate limit", waited)
            self.transport.send(api.add_requests(batch_id, chunk))
            log.debug("Added %d requests to batch %s (call %d/%d)", len(chunk), batch_id, n, len(chunks))
        return len(chunks)

    def list_batch_requests(self, batch_id: str) -> Iterator[BatchRequestMetadata]:
        """``GET /v1/batches/{id}/requests``: the state of every request."""
        for page in self._pages(lambda limit, token: api.requests_page(batch_id, limit, token)):
            yield from page.batch_request_metadata

    def iter_batch_results(self, batch_id: str) -> Iterator[BatchResult]:
        """``GET /v1/batches/{id}/results``: every finished request, page by page."""
        for page in self._pages(lambda limit, token: api.results_page(batch_id, limit, token)):
            yield from page.results

    def wait_for_batch(
        self,
        batch_id: str,
        *,
        poll_interval: float = 30.0,
        timeout: float = 24 * 3600,
        cancel_on_timeout: bool = True,
        max_poll_failures: int = DEFAULT_MAX_POLL_FAILURES,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Batch:
        """Poll (blocking) until the batch is done; on timeout cancel it (by default) and raise
        :class:`XAIDeferredTimeoutError`. Transient poll failures are tolerated as in the
        triggers (see ``polling.py``)."""
        poller = Poller(poll_interval, clock() + timeout, max_poll_failures, clock=clock)
        progress = ProgressLog(lambda: log, f"xAI batch {batch_id}")
        outcome = poll(
            poller,
            lambda: self.get_batch(batch_id),
            lambda batch: batch.done,
            on_value=lambda batch: progress.update(batch.progress()),
            on_failure=progress.failure,
            sleep=sleep,
        )
        if (batch := outcome.finished()) is not None:
            return batch
        batch = self.cancel_batch(batch_id) if cancel_on_timeout else self.get_batch(batch_id)
        raise XAIDeferredTimeoutError(timeout_message(batch, timeout, cancel_on_timeout))


def timeout_message(batch: Batch, timeout: float | None, cancelled: bool) -> str:
    """The error text for a batch that did not finish in time."""
    action = "cancelled it" if cancelled else "left it running (it may still finish and be billed)"
    within = f"within {timeout:g}s" if timeout is not None else "before its deadline"
    return (
        f"xAI batch {batch.batch_id} ({batch.name}) did not finish {within}; "
        f"{action}. State: {batch.progress()}"
    )


__all__ = [
    "INPUT_FILE_TTL",
    "MAX_INPUT_FILE_BYTES",
    "CallPacer",
    "XAIBatchMixin",
    "batch_request",
    "chunk_batch_requests",
    "timeout_message",
]
