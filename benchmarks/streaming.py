"""5. Streaming: time to the first logged line vs time the first content reaches the client.

The bundled FastAPI server (own process) streams an answer of short lines, one SSE event
every 20 ms (``--stream-interval 0.02``). Two pairs of contenders are measured against that one
server, each pair in its own rounds:

* **5, Chat Completions** (``POST /v1/chat/completions``): the role chunk goes first, then one
  line per chunk, so the first line's bytes leave the server ~20 ms after the request.
* **5b, Responses API** (``POST /v1/responses``): ``response.created``,
  ``response.in_progress``, ``response.output_item.added`` and ``response.content_part.added``
  go first, then one ``response.output_text.delta`` per line, so the first line's bytes leave
  the server ~80 ms after the request (every event is paced, lifecycle events included).

In each pair both contenders send the same request over a warm keep-alive connection opened
before the first round (each is warmed with one untimed stream), and alternate in each round:

* ``hook``: what the operator does with the stream, over the hook's pooled connection; a
  logging handler stamps every line it receives. Chat: ``XAIHook.stream_chat_completion(
  on_text=LineLogger(log).feed)``, exactly what ``XAIChatOperator(stream=True)`` does.
  Responses: ``XAIHook.stream_response(on_event=...)`` feeding each event's ``text_delta``
  (the text of a ``response.output_text.delta``) to a ``LineLogger``;
* ``raw``: one plain socket (``TCP_NODELAY``, as httpcore sets it) kept open for all rounds; it
  sends the request and stamps when the bytes of each content chunk (chat) or text-delta event
  (Responses) arrive: the earliest moment any client could print that line. It reads each
  answer to its last chunk, so the connection is ready for the next request.

Every timed call counts the TCP connections it opens (``socket.create_connection``, which
httpcore's sync backend calls); the totals are reported (0 for both when each reused its own;
a contender that drops its connection at the end of a stream pays a connect in every round).

A figure is the median over rounds of (time to first logged line) / (time the first line's
bytes arrived), both from just before the call. Every line's lag (logged - arrived) is also
reported, in milliseconds: the ratio of 5b is diluted by its later first line (~80 ms against
~20 ms), the lag is not.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import API_KEY, CONN_ENV, Figure, apply_env, connection, local_server, median

LINES = [f"line-{i:02d}\n" for i in range(8)]
INTERVAL = 0.02
MODEL = "grok-4-1-fast-non-reasoning"  # no reasoning chunks or events before the first line
SERVER = "bundled FastAPI server, stream_interval=0.02 (own process)"


@dataclass(frozen=True)
class Api:
    """One streaming endpoint: its path, request body and how a line shows in its bytes."""

    path: str
    body: dict[str, Any]
    markers: tuple[re.Pattern[bytes], ...]


def _chat_api() -> Api:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "stream a few lines"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    markers = tuple(re.compile(re.escape(json.dumps(line).encode())) for line in LINES)
    return Api("/chat/completions", body, markers)


def _responses_api() -> Api:
    from airflow_provider_xai.schemas.response_request import build_response_request

    # the body exactly as the hook builds it for stream_response (store etc. left to defaults)
    body = build_response_request({"model": MODEL, "input": "stream a few lines", "stream": True}).to_body()
    # a line is in the ``delta`` of a response.output_text.delta event; the done events and the
    # final response repeat the whole text, where a line is not a JSON string of its own
    markers = tuple(re.compile(rb'"delta":\s*' + re.escape(json.dumps(line).encode())) for line in LINES)
    return Api("/responses", body, markers)


def _fault(root_url: str, api: Api) -> None:
    """Queue a forced answer (one line per chunk or text delta) for the next request to ``api``."""
    import httpx

    faults = {"faults": [{"content": "".join(LINES), "path": api.path}], "times": 1}
    httpx.post(f"{root_url}/_control/faults", json=faults, timeout=10).raise_for_status()


class _Stamps(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.times.append(time.perf_counter())


def via_hook(hook: Any, api: Api, logger: logging.Logger, stamps: _Stamps) -> list[float]:
    """Chat: what ``XAIChatOperator(stream=True)`` does."""
    from airflow_provider_xai.operators.base import LineLogger

    stamps.times.clear()
    lines = LineLogger(logger)
    t0 = time.perf_counter()
    try:
        hook.stream_chat_completion(api.body, on_text=lines.feed)
    finally:
        lines.flush()
    return [t - t0 for t in stamps.times]


def via_hook_responses(hook: Any, api: Api, logger: logging.Logger, stamps: _Stamps) -> list[float]:
    """Responses: each event's ``text_delta`` into a ``LineLogger``, as the operator will log it."""
    from airflow_provider_xai.operators.base import LineLogger

    stamps.times.clear()
    lines = LineLogger(logger)

    def on_event(event: Any, _assembler: Any) -> None:
        if (delta := event.text_delta) is not None:
            lines.feed(delta)

    t0 = time.perf_counter()
    try:
        response = hook.stream_response(api.body, on_event=on_event)
    finally:
        lines.flush()
    if response.text != "".join(LINES):
        raise RuntimeError(f"stream_response assembled {response.text!r}")
    return [t - t0 for t in stamps.times]


class RawStream:
    """One keep-alive HTTP/1.1 connection to the server, opened once and reused by every call."""

    def __init__(self, base_url: str, api: Api) -> None:
        parts = urlsplit(base_url)
        payload = json.dumps(api.body).encode()
        head = (
            f"POST {parts.path}{api.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.request = head + payload
        self.markers = api.markers
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def stream(self) -> list[float]:
        """Arrival time of each content line's bytes; reads the answer to its end."""
        markers = self.markers
        seen: list[float] = []
        buffer = b""
        t0 = time.perf_counter()
        self.sock.sendall(self.request)
        while not buffer.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of a chunked body
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed the raw contender's keep-alive connection")
            now = time.perf_counter()
            buffer += data
            while len(seen) < len(markers) and markers[len(seen)].search(buffer):
                seen.append(now - t0)
        head = buffer.split(b"\r\n\r\n", 1)[0].lower()
        if not head.startswith(b"http/1.1 200") or b"\r\ntransfer-encoding: chunked" not in head:
            raise RuntimeError(f"unexpected answer to the raw contender: {head[:200]!r}")
        return seen

    def close(self) -> None:
        self.sock.close()


class _Connects:
    """Counts the TCP connections this process opens (``socket.create_connection``, which
    httpcore's sync backend and the raw contender call) while installed.

    Counting connects, not comparing the established connections before and after a call,
    also catches a connection opened and closed again within the call."""

    def __init__(self) -> None:
        self.count = 0
        self._original = socket.create_connection

    def _connect(self, *args: Any, **kwargs: Any) -> socket.socket:
        self.count += 1
        return self._original(*args, **kwargs)

    def __enter__(self) -> _Connects:
        socket.create_connection = self._connect  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        socket.create_connection = self._original


def _rounds(
    contenders: dict[str, Callable[[], list[float]]], api: Api, root: str, rounds: int
) -> tuple[dict[str, list[list[float]]], dict[str, int]]:
    """Warm each contender once, then alternate them for ``rounds`` rounds; count the TCP
    connections each opens inside its timed calls."""
    runs: dict[str, list[list[float]]] = {"hook": [], "raw": []}
    opened = {"hook": 0, "raw": 0}
    for call in contenders.values():  # warm: connection, imports, caches
        _fault(root, api)
        call()
    for r in range(rounds):
        for which in ("hook", "raw") if r % 2 == 0 else ("raw", "hook"):
            _fault(root, api)
            with _Connects() as connects:
                runs[which].append(contenders[which]())
            opened[which] += connects.count
    for got in runs.values():
        if any(len(x) != len(LINES) for x in got):
            raise RuntimeError(f"expected {len(LINES)} lines per stream, got {[len(x) for x in got]}")
    return runs, opened


def _summary(
    runs: dict[str, list[list[float]]], opened: dict[str, int], path: str
) -> tuple[float, dict[str, Any]]:
    """The figure (median first-line ratio) and its details."""
    hook_runs, raw_runs = runs["hook"], runs["raw"]
    first_ratio = [h[0] / w[0] for h, w in zip(hook_runs, raw_runs, strict=True)]
    first_lag = [h[0] - w[0] for h, w in zip(hook_runs, raw_runs, strict=True)]
    lags = [h[i] - w[i] for h, w in zip(hook_runs, raw_runs, strict=True) for i in range(len(LINES))]
    return median(first_ratio), {
        "path": f"/v1{path}",
        "rounds": len(hook_runs),
        "chunk_interval_s": INTERVAL,
        "connections_opened_in_rounds": opened,
        "lines": len(LINES),
        "hook_first_line_ms": round(median([h[0] for h in hook_runs]) * 1e3, 2),
        "raw_first_line_bytes_ms": round(median([w[0] for w in raw_runs]) * 1e3, 2),
        "ratio_runs": [round(x, 3) for x in first_ratio],
        "first_line_lag_ms_median": round(median(first_lag) * 1e3, 2),
        "per_line_lag_ms_median": round(median(lags) * 1e3, 2),
        "per_line_lag_ms_max": round(max(lags) * 1e3, 2),
        "hook_last_line_ms": round(median([h[-1] for h in hook_runs]) * 1e3, 1),
        "raw_last_line_ms": round(median([w[-1] for w in raw_runs]) * 1e3, 1),
    }


def run(quick: bool = False) -> list[Figure]:
    from airflow_provider_xai.hooks.xai import XAIHook

    rounds = 4 if quick else 10
    logger = logging.getLogger("benchmarks.streaming")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    stamps = _Stamps()
    stamps.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(stamps)
    chat, responses = _chat_api(), _responses_api()
    with local_server(stream_interval=INTERVAL) as base_url:
        os.environ[CONN_ENV] = json.dumps(connection(base_url))
        root = base_url.rsplit("/v1", 1)[0]
        hook = XAIHook()
        with _Connects() as connects:  # the counter sees the raw sockets' connects
            raw_chat, raw_responses = RawStream(base_url, chat), RawStream(base_url, responses)
        if connects.count != 2:
            raise RuntimeError(f"the connection counter saw {connects.count} connects, not 2")
        try:
            chat_runs, chat_opened = _rounds(
                {"hook": lambda: via_hook(hook, chat, logger, stamps), "raw": raw_chat.stream},
                chat,
                root,
                rounds,
            )
            resp_runs, resp_opened = _rounds(
                {
                    "hook": lambda: via_hook_responses(hook, responses, logger, stamps),
                    "raw": raw_responses.stream,
                },
                responses,
                root,
                rounds,
            )
        finally:
            raw_chat.close()
            raw_responses.close()
    chat_ratio, chat_detail = _summary(chat_runs, chat_opened, chat.path)
    resp_ratio, resp_detail = _summary(resp_runs, resp_opened, responses.path)
    return [
        Figure(
            "5_stream_first_line",
            "time to first logged line / time first line's bytes arrive (20 ms chunks)",
            chat_ratio,
            1.1,
            server=SERVER,
            detail=chat_detail,
        ),
        Figure(
            "5b_responses_stream_first_line",
            "Responses: time to first logged line (stream_response) / time its bytes arrive",
            resp_ratio,
            1.1,
            server=SERVER,
            detail=resp_detail,
        ),
    ]


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
