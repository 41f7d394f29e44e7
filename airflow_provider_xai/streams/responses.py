"""ResponseStreamAssembler: a streamed Responses answer folded into the :class:`Response` that
the same request returns unstreamed.

I/O-free, like :class:`~airflow_provider_xai.streams.chat.StreamAssembler`: the sync
and async readers feed it raw SSE ``data`` strings. It checks ``sequence_number`` (a gap or a
repeat is an error), stops at the first terminal event (``response.completed``, ``.incomplete``,
``.failed``) whether or not ``[DONE]`` follows, raises the typed error of an ``error`` event or
a failed response, and treats an end of stream before a terminal event as truncation. The final
response is the terminal event's snapshot; output items it leaves out (or abridges) are rebuilt
from the ``output_item`` events and the deltas.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.exceptions import XAIResponseError, XAITruncatedStreamError
from airflow_provider_xai.pipeline.errors import error_from_response
from airflow_provider_xai.schemas.chat import parse_response
from airflow_provider_xai.schemas.response_items import FunctionCallItem, ToolCallItem, parse_item
from airflow_provider_xai.schemas.responses import Response, ResponseStreamEvent

DONE = "[DONE]"
_PHASE = re.compile(r"^response\.([a-z_]+)_call\.([a-z_]+)$")
#: Tool phases worth a log line (the item's own ``done`` event says what ran, on what).
_PHASE_WORDS = {"searching": "searching", "interpreting": "running", "executing": "running",
                "generating": "generating", "failed": "failed"}  # fmt: skip


def _whole(items: Any) -> bool:
    """A list of JSON objects (not an abridged or missing one)."""
    return isinstance(items, list) and bool(items) and all(isinstance(i, dict) for i in items)


@dataclass
class _Part:
    """One content part (or reasoning summary part) of an item, as its events build it."""

    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    deltas: list[str] = field(default_factory=list)
    final: str | None = None
    annotations: list[Any] = field(default_factory=list)

    def text(self) -> str:
        if self.final is not None:
            return self.final
        return "".join(self.deltas) if self.deltas else str((self.end or self.start or {}).get("text", ""))

    def build(self, kind: str, key: str = "text") -> dict[str, Any]:
        part = dict(self.end if isinstance(self.end, dict) else self.start or {"type": kind})
        part.setdefault("type", kind)
        if part["type"] == "refusal":
            key = "refusal"
        part[key] = self.final if self.final is not None else "".join(self.deltas) or str(part.get(key) or "")
        if self.annotations:
            part["annotations"] = list(self.annotations)
        elif part["type"] == "output_text" and not isinstance(part.get("annotations"), list):
            part["annotations"] = []
        return part


@dataclass
class _Item:
    """One output item: its ``added`` and ``done`` snapshots plus what the deltas carried."""

    added: dict[str, Any] | None = None
    done: dict[str, Any] | None = None
    content: dict[int, _Part] = field(default_factory=dict)
    summary: dict[int, _Part] = field(default_factory=dict)
    reasoning: dict[int, _Part] = field(default_factory=dict)
    arguments: _Part = field(default_factory=_Part)
    code: _Part = field(default_factory=_Part)

    def build(self) -> dict[str, Any]:
        item = dict(self.done or self.added or {})
        kind = item.get("type")
        if kind == "message" and self.content and not _whole(item.get("content")):
            item["content"] = [self.content[i].build("output_text") for i in sorted(self.content)]
        if kind == "reasoning":
            if self.summary and not _whole(item.get("summary")):
                item["summary"] = [self.summary[i].build("summary_text") for i in sorted(self.summary)]
            if self.reasoning and not _whole(item.get("content")):
                item["content"] = [self.reasoning[i].build("reasoning_text") for i in sorted(self.reasoning)]
        if kind == "function_call" and not isinstance(item.get("arguments"), str):
            item["arguments"] = self.arguments.text()
        if kind == "code_interpreter_call" and not item.get("code") and (self.code.deltas or self.code.final):
            item["code"] = self.code.text()
        return item


class ResponseStreamAssembler:
    """Accumulates the events of one streamed response; raises on errors, gaps and truncation."""

    def __init__(self) -> None:
        self.events = 0
        self.done = False  # a [DONE] line was seen (xAI usually sends none)
        self.terminal: ResponseStreamEvent | None = None
        self.last_sequence: int | None = None
        self._snapshot: dict[str, Any] = {}
        self._items: dict[int, _Item] = {}
        self._index_by_id: dict[str, int] = {}
        self._text: list[str] = []

    # --- feeding ----------------------------------------------------------------------------
    def feed(self, data: str) -> ResponseStreamEvent | None:
        """Take one SSE ``data`` payload; return its event (None for ``[DONE]`` and for anything
        after the terminal event, which ends the stream)."""
        if self.terminal is not None:
            return None
        if data.strip() == DONE:
            self.done = True  # a stray [DONE] ends nothing: only a terminal event does
            return None
        if '"error"' in data[:200]:
            self._raise_if_error_body(data)
        event: ResponseStreamEvent = parse_response(ResponseStreamEvent, data, "stream event")
        if event.type == "error":
            status = event.model_extra.get("status") if event.model_extra else None
            raise error_from_response(status if type(status) is int else 500, {}, data.encode())
        self._check_sequence(event)
        self.events += 1
        self._apply(event)
        if event.terminal:
            self.terminal = event
            if event.type == "response.failed":
                raise self._failure()
        return event

    def _raise_if_error_body(self, data: str) -> None:
        """An error body without ``type`` (``{"code", "error"}``) sent as a stream payload."""
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            return  # parse_response reports it as malformed
        if isinstance(payload, dict) and "error" in payload and "type" not in payload:
            status = payload["status"] if type(payload.get("status")) is int else 500
            raise error_from_response(status, {}, data.encode())

    def _check_sequence(self, event: ResponseStreamEvent) -> None:
        number = event.sequence_number
        if number is None:
            return
        last = self.last_sequence
        if last is not None and number != last + 1:
            what = "repeated" if number <= last else f"skipped {number - last - 1} event(s)"
            raise XAIResponseError(
                f"xAI stream {what}: event {event.type!r} has sequence_number {number} after {last}; "
                "the answer cannot be trusted"
            )
        self.last_sequence = number

    def _failure(self) -> Exception:
        error = self._snapshot.get("error")
        error = error if isinstance(error, dict) else {"message": error} if isinstance(error, str) else {}
        status: int = error["status"] if type(error.get("status")) is int else 500
        message = error.get("message") or "the response failed"
        body = {"code": error.get("code") if isinstance(error.get("code"), str) else None, "error": message}
        return error_from_response(status, {}, json.dumps(body).encode())

    # --- state ------------------------------------------------------------------------------
    def _item(self, event: ResponseStreamEvent) -> _Item:
        index = event.output_index
        if index is None:
            index = self._index_by_id.get(event.item_id or "", len(self._items))
        return self._items.setdefault(index, _Item())

    def _apply(self, event: ResponseStreamEvent) -> None:
        kind, extra = event.type, event.model_extra or {}
        if isinstance(event.response, dict):
            self._snapshot.update(event.response)
            return
        if kind in ("response.output_item.added", "response.output_item.done") and isinstance(event.item, dict):
            state = self._item(event)
            if kind.endswith("added"):
                state.added = event.item
            else:
                state.done = event.item
            if isinstance(event.item.get("id"), str) and event.output_index is not None:
                self._index_by_id[event.item["id"]] = event.output_index
            return
        parts = None
        if kind.startswith(("response.content_part.", "response.output_text.", "response.refusal.")):
            parts, at = self._item(event).content, event.content_index or 0
        elif kind.startswith(("response.reasoning_summary_text.", "response.reasoning_summary_part.")):
            parts, at = self._item(event).summary, extra.get("summary_index") or 0
        elif kind.startswith("response.reasoning_text."):
            parts, at = self._item(event).reasoning, event.content_index or 0
        if parts is not None:
            self._apply_part(parts.setdefault(at, _Part()), kind, event, extra)
        elif kind.startswith("response.function_call_arguments."):
            self._apply_part(self._item(event).arguments, kind, event, extra, final_key="arguments")
        elif kind.startswith("response.code_interpreter_call_code."):
            self._apply_part(self._item(event).code, kind, event, extra, final_key="code")

    def _apply_part(
        self, part: _Part, kind: str, event: ResponseStreamEvent, extra: dict[str, Any], final_key: str = ""
    ) -> None:
        if kind.endswith(".delta") and isinstance(event.delta, str):
            part.deltas.append(event.delta)
            if kind == "response.output_text.delta":
                self._text.append(event.delta)
        elif kind.endswith(".annotation.added") and "annotation" in extra:
            part.annotations.append(extra["annotation"])
        elif kind.endswith((".part.added", "_part.added")) and isinstance(extra.get("part"), dict):
            part.start = extra["part"]
        elif kind.endswith((".part.done", "_part.done")) and isinstance(extra.get("part"), dict):
            part.end = extra["part"]
        elif kind.endswith(".done"):
            final = extra.get(final_key or ("refusal" if kind.startswith("response.refusal.") else "text"))
            if isinstance(final, str):
                part.final = final

    # --- results ----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """True once a terminal event arrived (``[DONE]`` alone does not finish a stream)."""
        return self.terminal is not None

    @property
    def text(self) -> str:
        """The answer text streamed so far (the ``output_text`` deltas)."""
        return "".join(self._text)

    def check_complete(self) -> None:
        if self.terminal is None:
            after = " ([DONE] came without one)" if self.done else ""
            raise XAITruncatedStreamError(
                f"xAI stream ended before response.completed, .incomplete or .failed{after}, after "
                f"{self.events} events and {len(self.text)} characters of text; the answer is incomplete"
            )

    def snapshot(self) -> Response | None:
        """What is known of the response so far (its usage after a failure), without checking
        that the stream is complete; None before the first snapshot event."""
        if "id" not in self._snapshot:
            return None
        data = dict(self._snapshot)
        assembled = [self._items[i].build() for i in sorted(self._items)]
        output = data.get("output")
        if assembled and not (isinstance(output, list) and _whole(output) and len(output) >= len(assembled)):
            data["output"] = assembled
        try:
            return Response.model_validate(data)
        except (ValueError, RecursionError) as exc:
            raise XAIResponseError(f"Malformed response in xAI stream: {exc}") from None

    def result(self) -> Response:
        """The assembled response (see :meth:`response`)."""
        return self.response()

    def response(self) -> Response:
        """The assembled response, as if it had been requested without streaming."""
        self.check_complete()
        response = self.snapshot()
        if response is None:
            raise XAIResponseError("xAI stream carried no response snapshot with an id")
        return response

    def describe(self, event: ResponseStreamEvent | None) -> str | None:
        """A log line for a tool step (``"x_search: 'solar sails'"``, ``"code_interpreter:
        running"``, ``"function_call: save_note"``), else None."""
        if event is None:
            return None
        if event.type == "response.output_item.done" and isinstance(event.item, dict):
            item = parse_item(event.item)
            if isinstance(item, ToolCallItem):
                return item.step().describe()
            if isinstance(item, FunctionCallItem):
                return f"function_call: {item.name}"
            return None
        match = _PHASE.match(event.type)
        if match is None or match.group(2) not in _PHASE_WORDS:
            return None
        tool = match.group(1)
        known = self._items.get(event.output_index if event.output_index is not None else -1)
        if known is not None and known.added is not None:
            item = parse_item(known.added)
            tool = item.step().tool if isinstance(item, ToolCallItem) else tool
        return f"{tool}: {_PHASE_WORDS[match.group(2)]}"
