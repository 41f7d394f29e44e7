"""Server-sent events of a streamed ``/v1/responses`` answer (built from the final response).

Each event is an ``event: <type>`` line plus a ``data: <json>`` line whose JSON carries ``type``
and a contiguous 0-based ``sequence_number``. Order: ``response.created``,
``response.in_progress`` (snapshots with ``status: in_progress``, ``output: []``,
``usage: null``), then per output item ``response.output_item.added``, the item's own events
(reasoning summary parts and text deltas; function-call argument deltas; search
``in_progress``/``searching``/``completed``; code ``in_progress``, ``code`` delta/done,
``interpreting``, ``completed``; MCP ``in_progress``, argument delta/done, ``completed``;
message content part, word-piece text deltas, ``annotation.added`` after the last delta, text
done, part done) and ``response.output_item.done``; last ``response.completed`` (or
``response.incomplete``) with the full response and its usage. ``[DONE]`` only when asked.

Faults: ``truncate`` ends the stream right after the second text delta (or before the terminal
event when there is no text); ``malformed`` inserts ``data: {not json`` after the first text
delta (or before the terminal event); a ``failed`` response (``failed_response``) streams up to
the second text delta, then ends with ``response.failed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from airflow_provider_xai.testing.streaming import split_pieces

Event = dict[str, Any]
_SEARCHES = ("web_search_call", "x_search_call", "file_search_call")
MALFORMED = "data: {not json\n\n"
DONE = "data: [DONE]\n\n"


def snapshot(response: dict[str, Any]) -> dict[str, Any]:
    """The response as ``response.created``/``.in_progress`` carry it."""
    return {**response, "status": "in_progress", "output": [], "usage": None,
            "completed_at": None, "incomplete_details": None}


def _pending(item: dict[str, Any]) -> dict[str, Any]:
    kind, out = item["type"], {**item, "status": "in_progress"}
    if kind == "reasoning":
        out["summary"] = []
        out.pop("encrypted_content", None)
    elif kind == "message":
        out["content"] = []
    elif kind == "function_call":
        out["arguments"] = ""
    elif kind == "code_interpreter_call":
        out.update(code="", outputs=[])
    elif kind == "mcp_call":
        out.update(arguments="", output=None)
    elif kind == "file_search_call":
        out.update(queries=[], results=None)
    elif kind in _SEARCHES:
        out["action"] = {"type": "search", "query": "", "sources": []}
    return out


def _item_events(index: int, item: dict[str, Any]) -> Iterator[Event]:
    kind = item["type"]
    ids = {"item_id": item["id"], "output_index": index}
    yield {"type": "response.output_item.added", "output_index": index, "item": _pending(item)}
    if kind == "reasoning":
        for k, part in enumerate(item["summary"]):
            at = {**ids, "summary_index": k}
            yield {"type": "response.reasoning_summary_part.added", **at,
                   "part": {"type": "summary_text", "text": ""}}
            for piece in split_pieces(part["text"]):
                yield {"type": "response.reasoning_summary_text.delta", **at, "delta": piece}
            yield {"type": "response.reasoning_summary_text.done", **at, "text": part["text"]}
            yield {"type": "response.reasoning_summary_part.done", **at, "part": part}
    elif kind == "function_call":
        yield {"type": "response.function_call_arguments.delta", **ids,
               "delta": item["arguments"]}
        yield {"type": "response.function_call_arguments.done", **ids,
               "arguments": item["arguments"], "name": item["name"]}
    elif kind in _SEARCHES:
        for phase in ("in_progress", "searching", "completed"):
            yield {"type": f"response.{kind}.{phase}", **ids}
    elif kind == "code_interpreter_call":
        yield {"type": "response.code_interpreter_call.in_progress", **ids}
        yield {"type": "response.code_interpreter_call_code.delta", **ids, "delta": item["code"]}
        yield {"type": "response.code_interpreter_call_code.done", **ids, "code": item["code"]}
        yield {"type": "response.code_interpreter_call.interpreting", **ids}
        yield {"type": "response.code_interpreter_call.completed", **ids}
    elif kind == "mcp_call":
        yield {"type": "response.mcp_call.in_progress", **ids}
        yield {"type": "response.mcp_call_arguments.delta", **ids, "delta": item["arguments"]}
        yield {"type": "response.mcp_call_arguments.done", **ids, "arguments": item["arguments"]}
        yield {"type": "response.mcp_call.completed", **ids}
    elif kind == "message":
        for c, part in enumerate(item["content"]):
            at = {**ids, "content_index": c}
            yield {"type": "response.content_part.added", **at,
                   "part": {**part, "text": "", "annotations": []}}
            for piece in split_pieces(part.get("text") or ""):
                yield {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
            for a, annotation in enumerate(part.get("annotations") or []):
                yield {"type": "response.output_text.annotation.added", **at,
                       "annotation_index": a, "annotation": annotation}
            yield {"type": "response.output_text.done", **at, "text": part.get("text") or "",
                   "logprobs": []}
            yield {"type": "response.content_part.done", **at, "part": part}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def failed_response(response: dict[str, Any], message: str | None = None) -> dict[str, Any]:
    """``response`` as a mid-stream failure leaves it: ``status: failed``, an ``error``, no
    output, and the usage of the work done (xAI may bill a failed response: the case a client
    must not lose)."""
    return {**snapshot(response), "usage": response.get("usage"), "status": "failed",
            "error": {"code": "server_error",
                      "message": message or "The model failed to finish the response."}}


def response_events(response: dict[str, Any], failed: dict[str, Any] | None = None
                    ) -> Iterator[Event]:
    """Every event of the stream, without ``sequence_number``; with ``failed`` (a
    ``failed_response``) the items stop after the second text delta, then ``response.failed``."""
    yield {"type": "response.created", "response": snapshot(response)}
    yield {"type": "response.in_progress", "response": snapshot(response)}
    events = [e for i, item in enumerate(response["output"]) for e in _item_events(i, item)]
    if failed is not None:
        deltas = [i for i, e in enumerate(events) if e["type"] == "response.output_text.delta"]
        yield from events[: deltas[1] + 1] if len(deltas) > 1 else events
        yield {"type": "response.failed", "response": failed}
        return
    yield from events
    terminal = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    yield {"type": terminal, "response": response}


def stream_frames(response: dict[str, Any], truncate: bool = False, malformed: bool = False,
                  done_marker: bool = False, failed: dict[str, Any] | None = None
                  ) -> Iterator[str]:
    """SSE frames: ``event:`` + ``data:`` per event, numbered; faults as documented above."""
    events = list(response_events(response, failed))
    deltas = [i for i, e in enumerate(events) if e["type"] == "response.output_text.delta"]
    last = len(events) - 1
    cut = deltas[1] if truncate and len(deltas) > 1 else last - 1 if truncate else None
    bad = deltas[0] if malformed and deltas else last - 1 if malformed else None
    for seq, event in enumerate(events):
        data = json.dumps({"type": event["type"], "sequence_number": seq,
                           **{k: v for k, v in event.items() if k != "type"}})
        yield f"event: {event['type']}\ndata: {data}\n\n"
        if seq == bad:
            yield MALFORMED
        if seq == cut:
            return
    if done_marker:
        yield DONE
