"""4. Image memory: encode and send one 20 MiB PNG; peak RSS increase / file size.

Each measurement is a fresh interpreter (``python -m benchmarks.image --child MODE PNG``) that
imports everything and sends one small warm-up request first, then records its RSS, resets the
high-water mark (``/proc/self/clear_refs``) and does the work; the figure is the high-water
mark minus that RSS, over the file size. Modes, alternated over rounds:

* ``vision``: the provider's path: ``XAIVisionOperator(images=path).build_request()`` (reads,
  sniffs and base64-encodes the file via ``images.py``) then ``hook.chat(request)``;
* ``encode``: only ``images.resolve_image(path)`` (no request), to split the figure;
* ``bare``: what a user would write without the provider: ``base64.b64encode(f.read())``,
  a data URI, ``httpx.Client.post(json=...)``.

The server is the minimal responder in its own process (it reads and discards the ~27 MB body),
so only the client's memory is counted.
"""

from __future__ import annotations

import base64
import json
import os
import random
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

from benchmarks.common import (
    API_KEY,
    CONN_ENV,
    Figure,
    apply_env,
    connection,
    median,
    peak_rss_bytes,
    reset_peak_rss,
    responder,
    rss_bytes,
    run_child,
)

SIZE = 20 * 1024 * 1024
PROMPT = "Describe this image."


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, size: int = SIZE, seed: int = 1) -> None:
    """A valid RGB PNG of exactly ``size`` bytes: random (incompressible) pixels, stored
    uncompressed, padded to the exact size with a ``tEXt`` chunk."""
    rng = random.Random(seed)
    width = 2048
    row = 1 + 3 * width
    height = (size - 4096) // row
    raw = b"".join(b"\x00" + rng.randbytes(3 * width) for _ in range(height))
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    body = b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", zlib.compress(raw, 0))
    pad = size - len(body) - 12 - 12  # the tEXt chunk and IEND each carry 12 bytes of framing
    body += _chunk(b"tEXt", b"pad\x00" + b"x" * (pad - 4)) + _chunk(b"IEND", b"")
    assert len(body) == size, len(body)
    path.write_bytes(body)


def _child(mode: str, png: str) -> dict[str, Any]:
    import httpx

    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.images import resolve_image
    from airflow_provider_xai.operators.vision import XAIVisionOperator

    base_url = json.loads(os.environ[CONN_ENV])["host"]
    hook = XAIHook()
    hook.chat({"model": "grok-4.3", "messages": [{"role": "user", "content": "warm up"}]})
    bare = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=600)
    bare.post("chat/completions", json={"model": "grok-4.3", "messages": []})
    before = rss_bytes()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the RSS high-water mark (/proc/self/clear_refs)")
    if mode == "vision":
        op = XAIVisionOperator(task_id="vision", prompt=PROMPT, images=png)
        op.hook = hook  # the warm hook (cached_property slot), as after the first task call
        completion = hook.chat(op.chat_request())
        assert completion.text
    elif mode == "encode":
        part = resolve_image(png).part
        assert part["image_url"]["url"].startswith("data:image/png;base64,")
    elif mode == "bare":
        with open(png, "rb") as f:
            uri = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
        content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": PROMPT}]
        body = {"model": "grok-4.3", "messages": [{"role": "user", "content": content}]}
        response = bare.post("chat/completions", json=body)
        response.raise_for_status()
        json.loads(response.content)
    else:
        raise ValueError(mode)
    return {"increase": peak_rss_bytes() - before, "before": before}


def run(quick: bool = False) -> list[Figure]:
    rounds = 2 if quick else 3
    modes = ["vision", "encode", "bare"]
    results: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="xai-bench-img-") as tmp, responder() as base_url:
        png = Path(tmp) / "big.png"
        write_png(png)
        size = png.stat().st_size
        for r in range(rounds):
            for mode in modes[r % 3 :] + modes[: r % 3]:
                out = run_child("benchmarks.image", "--child", mode, str(png), conn=connection(base_url))
                results[mode].append(out["increase"] / size)
    detail = {
        "file_bytes": size,
        "rounds": rounds,
        "vision_ratio_runs": [round(x, 2) for x in results["vision"]],
        "vision_peak_increase_mib": round(median(results["vision"]) * size / 2**20, 1),
        "encode_only_ratio_runs": [round(x, 2) for x in results["encode"]],
        "bare_httpx_ratio_runs": [round(x, 2) for x in results["bare"]],
    }
    server = "minimal asyncio responder (own process)"
    return [
        Figure(
            "4a_image_peak_rss",
            "20 MiB PNG via XAIVisionOperator + hook.chat: peak RSS increase / file size",
            median(results["vision"]),
            3.0,
            server=server,
            detail=detail,
        ),
        Figure(
            "4b_image_peak_rss_encode_only",
            "images.resolve_image alone (read + base64 into a data URI): same ratio",
            median(results["encode"]),
            None,
            server="-",
        ),
        Figure(
            "4c_image_peak_rss_bare",
            "same with bare b64encode + httpx.post(json=...) (reference)",
            median(results["bare"]),
            None,
            server=server,
        ),
    ]


if __name__ == "__main__":
    apply_env()
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3])))
    else:
        figures = run("--quick" in sys.argv)
        print(json.dumps([f.to_json() for f in figures]))
