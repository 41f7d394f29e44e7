"""5. Streaming: time to the first logged line vs time the first content reaches the client.

The bundled FastAPI server (own process) streams an answer of short lines, one SSE chunk
every 20 ms (``--stream-interval 0.02``; the role chunk goes first, then one line per chunk).
Both contenders send the same request over a warm keep-alive connection opened before the
first round (each is warmed with one untimed stream), and alternate in each round:

* ``hook``: ``XAIHook.stream_chat_completion(on_text=LineLogger(log).feed)``, exactly what
  ``XAIChatOperator(stream=True)`` does, over the hook's pooled connection; a logging handler
  stamps every line it receives;
* ``raw``: one plain socket (``TCP_NODELAY``, as httpcore sets it) kept open for all rounds; it
  sends the request and stamps when the bytes of each content chunk arrive: the earliest
  moment any client could print that line. It reads each answer to its last chunk, so the
  connection is ready for the next request.

Every round checks which TCP connections to the server this process holds before and after
each contender; connections that appear are reported (0 for both when each reused its own).

The figure is the median over rounds of (time to first logged line) / (time the first line's
bytes arrived), both from just before the call. Every line's lag is also reported.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import API_KEY, CONN_ENV, Figure, apply_env, connection, local_server, median

LINES = [f"line-{i:02d}\n" for i in range(8)]
INTERVAL = 0.02
MODEL = "grok-4-1-fast-non-reasoning"  # no reasoning chunks before the first line


def _fault(root_url: str) -> None:
    """Queue a forced answer (one line per chunk) for the next chat request."""
    import httpx

    faults = {"faults": [{"content": "".join(LINES), "path": "/chat/completions"}], "times": 1}
    httpx.post(f"{root_url}/_control/faults", json=faults, timeout=10).raise_for_status()


def _body() -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "stream a few lines"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


class _Stamps(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.times.append(time.perf_counter())


def via_hook(hook: Any, logger: logging.Logger, stamps: _Stamps) -> list[float]:
    from airflow_provider_xai.operators.chat import LineLogger

    stamps.times.clear()
    lines = LineLogger(logger)
    t0 = time.perf_counter()
    try:
        hook.stream_chat_completion(_body(), on_text=lines.feed)
    finally:
        lines.flush()
    return [t - t0 for t in stamps.times]


class RawStream:
    """One keep-alive HTTP/1.1 connection to the server, opened once and reused by every call."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        payload = json.dumps(_body()).encode()
        head = (
            f"POST {parts.path}/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.request = head + payload
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def stream(self) -> list[float]:
        """Arrival time of each content line's bytes; reads the answer to its end."""
        markers = [json.dumps(line).encode() for line in LINES]
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
            while len(seen) < len(markers) and markers[len(seen)] in buffer:
                seen.append(now - t0)
        head = buffer.split(b"\r\n\r\n", 1)[0].lower()
        if not head.startswith(b"http/1.1 200") or b"\r\ntransfer-encoding: chunked" not in head:
            raise RuntimeError(f"unexpected answer to the raw contender: {head[:200]!r}")
        return seen

    def close(self) -> None:
        self.sock.close()


def _connections(port: int) -> set[int]:
    """Local ports of this process's established TCP connections to the server."""
    import psutil

    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
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
    runs: dict[str, list[list[float]]] = {"hook": [], "raw": []}
    opened = {"hook": 0, "raw": 0}
    with local_server(stream_interval=INTERVAL) as base_url:
        os.environ[CONN_ENV] = json.dumps(connection(base_url))
        root = base_url.rsplit("/v1", 1)[0]
        port = urlsplit(base_url).port or 80
        hook = XAIHook()
        raw = RawStream(base_url)
        contenders: dict[str, Callable[[], list[float]]] = {
            "hook": lambda: via_hook(hook, logger, stamps),
            "raw": raw.stream,
        }
        try:
            for call in contenders.values():  # warm: connection, imports, caches
                _fault(root)
                call()
            for r in range(rounds):
                for which in ("hook", "raw") if r % 2 == 0 else ("raw", "hook"):
                    _fault(root)
                    before = _connections(port)
                    runs[which].append(contenders[which]())
                    opened[which] += len(_connections(port) - before)
        finally:
            raw.close()
    for got in runs.values():
        if any(len(x) != len(LINES) for x in got):
            raise RuntimeError(f"expected {len(LINES)} lines per stream, got {[len(x) for x in got]}")
    hook_runs, raw_runs = runs["hook"], runs["raw"]
    first_ratio = [h[0] / w[0] for h, w in zip(hook_runs, raw_runs, strict=True)]
    lags = [h[i] - w[i] for h, w in zip(hook_runs, raw_runs, strict=True) for i in range(len(LINES))]
    detail = {
        "rounds": rounds,
        "chunk_interval_s": INTERVAL,
        "connections_opened_in_rounds": opened,
        "lines": len(LINES),
        "hook_first_line_ms": round(median([h[0] for h in hook_runs]) * 1e3, 2),
        "raw_first_line_bytes_ms": round(median([w[0] for w in raw_runs]) * 1e3, 2),
        "ratio_runs": [round(x, 3) for x in first_ratio],
        "per_line_lag_ms_median": round(median(lags) * 1e3, 2),
        "per_line_lag_ms_max": round(max(lags) * 1e3, 2),
        "hook_last_line_ms": round(median([h[-1] for h in hook_runs]) * 1e3, 1),
        "raw_last_line_ms": round(median([w[-1] for w in raw_runs]) * 1e3, 1),
    }
    return [
        Figure(
            "5_stream_first_line",
            "time to first logged line / time first line's bytes arrive (20 ms chunks)",
            median(first_ratio),
            1.1,
            server="bundled FastAPI server, stream_interval=0.02 (own process)",
            detail=detail,
        )
    ]


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
