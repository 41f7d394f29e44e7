"""A minimal xAI-shaped HTTP/1.1 responder for benchmarks (``python -m benchmarks.responder``).

Why not the bundled FastAPI server: on a shared 2-core machine its own per-request cost
(~1-2 ms of Python per request) would dominate and hide client differences of tens of
microseconds, and at hundreds of requests per second it becomes the bottleneck. This one
is an ``asyncio.Protocol`` that answers from prepared bytes (a few microseconds a request),
runs in its own process (so it never competes with the client for the GIL) and speaks only
what the benchmarks send:

* ``POST /v1/chat/completions``: a fixed ``chat.completion`` after ``--latency`` seconds; a
  small body with ``"deferred": true`` gets ``{"request_id"}`` instead, ready after a seeded
  uniform draw in ``[--ready-min, --ready-max]`` seconds (time-based, like xAI).
* ``POST /v1/responses``: a fixed, finished ``response`` (the shape of xAI's non-streaming
  Responses body: a ``reasoning`` item with a summary, a ``message`` with one ``output_text``
  part, full ``usage`` and the echoed request configuration) after ``--latency`` seconds.
  ``"stream": true`` gets a 400 (the streaming benchmark uses the bundled server).
* ``GET /v1/chat/deferred-completion/{id}``: 202 while pending, the completion once, then 404.
* ``GET /_bench/deferred``: ``{id: {"ready_at", "served_at"}}`` in ``time.monotonic()``
  seconds (CLOCK_MONOTONIC is system-wide on Linux, so the client can compare).
* ``POST /v1/videos/generations``: ``{"request_id"}`` of a video job ready after a seeded uniform
  draw in ``[--ready-min, --ready-max]`` seconds; ``GET /v1/videos/{id}`` answers 202
  ``{"status": "pending", "progress"}`` until then, then ``done`` (every time) with the URL of
  ``GET /media/{id}.mp4``: a valid MP4 of ``--video-bytes`` at least, streamed in 1 MiB chunks
  under TCP flow control (never held whole; ``/media/small-{name}.mp4`` is a small one, for a
  warm-up). ``GET /_bench/videos``: ``{id: {"ready_at",
  "done_at"}}`` (the first poll that saw it done).
* ``GET /_bench/connections``: ``{"accepted": n}``, the TCP connections accepted so far
  (counting the one asking), so a benchmark can see how many connections a contender opened.

Request bodies of any size are read and discarded (the image benchmark sends ~27 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import time
import uuid
from typing import Any

COMPLETION: dict[str, Any] = {
    "id": "cmpl-bench-0001",
    "object": "chat.completion",
    "created": 1_735_689_600,
    "model": "grok-4.3",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello from the benchmark responder.",
                "refusal": None,
            },
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "total_tokens": 19,
        "prompt_tokens_details": {
            "text_tokens": 12,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
        },
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        "num_sources_used": 0,
        "cost_in_usd_ticks": 325000,
    },
    "system_fingerprint": "fp_bench",
}
# A finished Responses answer in the shape xAI sends (and the bundled server answers the same
# request with): the echoed request configuration, a reasoning item with its summary, the
# message, and usage with every detail xAI reports.
RESPONSE_ID = "0b6d2c1e-5a7f-4c1b-9e0a-2f3d4c5b6a70"
RESPONSE: dict[str, Any] = {
    "id": RESPONSE_ID,
    "object": "response",
    "created_at": 1_790_000_000,
    "completed_at": 1_790_000_002,
    "model": "grok-4.3",
    "status": "completed",
    "output": [
        {
            "type": "reasoning",
            "id": f"rs_{RESPONSE_ID}",
            "status": "completed",
            "summary": [
                {"type": "summary_text", "text": "The user wants a short greeting; answer in one line."}
            ],
        },
        {
            "type": "message",
            "id": f"msg_{RESPONSE_ID}",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": "Hello from the benchmark responder.",
                    "logprobs": [],
                    "annotations": [],
                }
            ],
        },
    ],
    "usage": {
        "input_tokens": 24,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 27,
        "output_tokens_details": {"reasoning_tokens": 20},
        "total_tokens": 51,
        "num_sources_used": 0,
        "num_server_side_tools_used": 0,
        "server_side_tool_usage_details": {
            "web_search_calls": 0,
            "x_search_calls": 0,
            "code_interpreter_calls": 0,
            "file_search_calls": 0,
            "mcp_calls": 0,
            "document_search_calls": 0,
        },
        "cost_in_usd_ticks": 975000,
    },
    "incomplete_details": None,
    "error": None,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": None, "summary": None},
    "safety_identifier": None,
    "service_tier": "default",
    "store": True,
    "temperature": None,
    "top_p": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": None,
    "truncation": "disabled",
    "background": False,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "metadata": {},
    "user": None,
}
_MAX_PARSED_BODY = 1 << 16


def _response(status: int, body: bytes, reason: str = "OK") -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nx-request-id: bench\r\n\r\n"
    )
    return head.encode() + body


OK_COMPLETION = _response(200, json.dumps(COMPLETION).encode())
OK_RESPONSE = _response(200, json.dumps(RESPONSE).encode())
ACCEPTED = _response(202, b"", "Accepted")
NOT_FOUND = _response(
    404, b'{"code":"Client specified an invalid argument","error":"not found"}', "Not Found"
)

NO_STREAMING = _response(
    400,
    b'{"code":"Client specified an invalid argument","error":"the benchmark responder does not stream"}',
    "Bad Request",
)


class Deferred:
    """Time-based deferred completions: id -> [ready_at, served_at]."""

    def __init__(self, ready_min: float, ready_max: float, seed: int = 7) -> None:
        self.ready_min, self.ready_max = ready_min, ready_max
        self.rng = random.Random(seed)
        self.items: dict[str, list[float | None]] = {}

    def submit(self) -> bytes:
        request_id = str(uuid.uuid4())
        self.items[request_id] = [time.monotonic() + self.rng.uniform(self.ready_min, self.ready_max), None]
        return _response(200, json.dumps({"request_id": request_id}).encode())

    def poll(self, request_id: str) -> bytes:
        item = self.items.get(request_id)
        if item is None or item[1] is not None:
            return NOT_FOUND
        assert item[0] is not None
        if time.monotonic() < item[0]:
            return ACCEPTED
        item[1] = time.monotonic()
        return OK_COMPLETION

    def report(self) -> bytes:
        data = {k: {"ready_at": v[0], "served_at": v[1]} for k, v in self.items.items()}
        return _response(200, json.dumps(data).encode())


class Videos:
    """Time-based video jobs: id -> [ready_at, first done poll]."""

    def __init__(self, ready_min: float, ready_max: float, video_bytes: int, seed: int = 11) -> None:
        self.ready_min, self.ready_max, self.video_bytes = ready_min, ready_max, video_bytes
        self.rng = random.Random(seed)
        self.items: dict[str, list[float | None]] = {}
        self.started: dict[str, float] = {}
        self.port = 0

    def submit(self) -> bytes:
        request_id = str(uuid.uuid4())
        now = time.monotonic()
        self.started[request_id] = now
        self.items[request_id] = [now + self.rng.uniform(self.ready_min, self.ready_max), None]
        return _response(200, json.dumps({"request_id": request_id}).encode())

    def poll(self, request_id: str) -> bytes:
        item = self.items.get(request_id)
        if item is None or item[0] is None:
            return NOT_FOUND
        now = time.monotonic()
        if now < item[0]:
            progress = int(100 * (now - self.started[request_id]) / (item[0] - self.started[request_id]))
            return _response(202, json.dumps({"status": "pending", "progress": progress}).encode(), "Accepted")
        item[1] = item[1] or now
        video = {"url": f"http://127.0.0.1:{self.port}/media/{request_id}.mp4", "duration": 8.0,
                 "respect_moderation": True}  # fmt: skip
        done = {"request_id": request_id, "status": "done", "video": video, "model": "grok-imagine-video",
                "usage": {"cost_in_usd_ticks": 4_000_000_000}, "progress": 100}  # fmt: skip
        return _response(200, json.dumps(done).encode())

    def report(self) -> bytes:
        data = {k: {"ready_at": v[0], "done_at": v[1]} for k, v in self.items.items()}
        return _response(200, json.dumps(data).encode())


class Responder(asyncio.Protocol):
    """One keep-alive connection: parse request heads, skip bodies, answer from bytes."""

    accepted = 0  # connections accepted by this process

    def __init__(self, latency: float, deferred: Deferred, videos: Videos) -> None:
        self.latency = latency
        self.deferred = deferred
        self.videos = videos
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.writable = asyncio.Event()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    async def stream_video(self, request_id: str) -> None:
        """A valid MP4 of at least ``--video-bytes``, a chunk at a time under flow control."""
        from airflow_provider_xai.testing.media_files import mp4_chunks, mp4_size

        least = 0 if request_id.startswith("small-") else self.videos.video_bytes  # a warm-up's
        size = mp4_size(request_id, 8.0, least)
        head = f"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncontent-length: {size}\r\n\r\n"
        self.send(head.encode())
        for chunk in mp4_chunks(request_id, 8.0, min_bytes=least):
            await self.writable.wait()
            if self.transport is None:
                return
            self.send(chunk)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        Responder.accepted += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length]) if length <= _MAX_PARSED_BODY else b""
            del self.buffer[: end + 4 + length]
            self.answer(head.split(" ", 2), body)

    def answer(self, request_line: list[str], body: bytes) -> None:
        method, path = request_line[0], request_line[1]
        if method == "POST" and path.endswith("/chat/completions"):
            if body and b'"deferred":true' in body.replace(b" ", b""):
                self.send(self.deferred.submit())
            elif self.latency:
                self.loop.call_later(self.latency, self.send, OK_COMPLETION)
            else:
                self.send(OK_COMPLETION)
        elif method == "POST" and path.endswith("/responses"):
            if body and b'"stream":true' in body.replace(b" ", b""):
                self.send(NO_STREAMING)
            elif self.latency:
                self.loop.call_later(self.latency, self.send, OK_RESPONSE)
            else:
                self.send(OK_RESPONSE)
        elif method == "GET" and "/chat/deferred-completion/" in path:
            self.send(self.deferred.poll(path.rsplit("/", 1)[1]))
        elif method == "POST" and path.endswith("/videos/generations"):
            self.send(self.videos.submit())
        elif method == "GET" and "/v1/videos/" in path:
            self.send(self.videos.poll(path.rsplit("/", 1)[1]))
        elif method == "GET" and path.startswith("/media/"):
            self.loop.create_task(self.stream_video(path.rsplit("/", 1)[1].removesuffix(".mp4")))
        elif path == "/_bench/videos":
            self.send(self.videos.report())
        elif path == "/_bench/deferred":
            self.send(self.deferred.report())
        elif path == "/_bench/connections":
            self.send(_response(200, json.dumps({"accepted": Responder.accepted}).encode()))
        else:
            self.send(NOT_FOUND)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, latency: float, ready_min: float, ready_max: float, video_bytes: int = 0) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    deferred = Deferred(ready_min, ready_max)
    videos = Videos(ready_min, ready_max, video_bytes)
    videos.port = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Responder(latency, deferred, videos), sock=sock)
    print(f"port {sock.getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.responder", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each completion or response")
    parser.add_argument("--ready-min", type=float, default=1.0)
    parser.add_argument("--ready-max", type=float, default=3.0)
    parser.add_argument("--video-bytes", type=int, default=0, help="least size of a served video")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.latency, args.ready_min, args.ready_max, args.video_bytes))


if __name__ == "__main__":
    main()
