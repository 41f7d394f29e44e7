"""11. Video: a 200 MB MP4 streamed into object storage, and 500 pending video jobs on one loop.

* **11a** (memory): a fresh interpreter (``python -m benchmarks.media --child DIR``) imports
  everything and does one small video download first (a warm-up), records its RSS, resets the
  high-water mark (``/proc/self/clear_refs``) and then runs ``XAIVideoOperator`` on the worker
  (``deferrable=False``): start the job, poll it, stream the 200 MB MP4 into a ``file://``
  ``ObjectStoragePath`` folder. The figure is the high-water mark minus that RSS, in MiB; the
  file is checked to be whole.
* **11b/11c** (the triggerer's loop): 500 video jobs are started (outside the timing), then 500
  ``XAIMediaTrigger.run()`` poll them on one event loop, as in benchmark 6: the longest gap
  between a 10 ms ticker's wake-ups, and the slowest pick-up after a job became ready (or the
  triggers started) over the poll interval (1 s). Pending polls answer 202 with progress.

The server is the minimal responder (own process): video jobs ready a seeded 0.5-2.5 s after
they started, the MP4 served in 1 MiB chunks under TCP flow control. The connection turns the
provider's 1 request/s video limit off (``rate_limit_buckets``) so that starting 500 jobs, which
is not measured, does not take 500 s; polls are never limited.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CONN_ENV,
    Figure,
    apply_env,
    connection,
    peak_rss_bytes,
    reset_peak_rss,
    responder,
    rss_bytes,
    run_child,
)
from benchmarks.triggers import loop_figures, pickup_delays, run_on_one_loop

VIDEO_BYTES = 200 * 1000 * 1000
TRIGGERS = 500
POLL_INTERVAL = 1.0
MIB = 1024 * 1024
SERVER = "minimal asyncio responder, time-based readiness (own process)"


class _TI:
    """What the operator and its usage ledger use of a task instance."""

    dag_id, task_id, run_id, map_index, try_number = "bench", "teaser", "bench_run", -1, 1

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def _child(folder: str) -> dict[str, Any]:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.operators.media_output import VIDEO_FORMATS, StorageSink
    from airflow_provider_xai.operators.video import XAIVideoOperator

    root = json.loads(os.environ[CONN_ENV])["host"].rsplit("/v1", 1)[0]
    hook = XAIHook()
    warm = ObjectStoragePath(f"file://{folder}/warm")
    hook.download_media(f"{root}/media/small-warm.mp4", lambda: StorageSink(warm, "video", VIDEO_FORMATS))
    op = XAIVideoOperator(task_id="teaser", prompt="a paper boat", output_folder=f"file://{folder}/out",
                          deferrable=False, poll_interval=0.05)  # fmt: skip
    before = rss_bytes()
    reset = reset_peak_rss()
    result = op.execute({"ti": _TI()})
    peak = peak_rss_bytes()
    written = Path(result["path"].removeprefix("file://"))
    return {"increase_bytes": peak - before, "rss_before_bytes": before, "peak_reset": reset,
            "bytes": written.stat().st_size, "reported_bytes": result["bytes"],
            "head": written.read_bytes()[4:8].decode("latin-1")}  # fmt: skip


def memory(base_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xai-bench-video-") as folder:
        conn = connection(base_url, rate_limit_buckets={"videos": 0})
        return dict(run_child("benchmarks.media", "--child", folder, conn=conn, timeout=600))


async def _start(n: int) -> list[str]:
    from airflow_provider_xai.hooks.xai import XAIHook

    hook = XAIHook()
    semaphore = asyncio.Semaphore(32)

    async def one() -> str:
        async with semaphore:
            return await hook.agenerate_video(prompt="a paper boat", duration=8)

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await hook.aclose()


def polls(base_url: str) -> dict[str, Any]:
    import httpx

    from airflow_provider_xai.triggers.media import XAIMediaTrigger

    os.environ[CONN_ENV] = json.dumps(connection(base_url, rate_limit_buckets={"videos": 0}))
    ids = asyncio.run(_start(TRIGGERS))
    make = lambda i: XAIMediaTrigger(request_id=i, kind="videos", poll_interval=POLL_INTERVAL)  # noqa: E731
    result = asyncio.run(run_on_one_loop(ids, make))
    served = httpx.get(f"{base_url.rsplit('/v1', 1)[0]}/_bench/videos", timeout=30).json()
    return {**result, "delays": pickup_delays(result, {i: served[i]["ready_at"] for i in ids})}


def run(quick: bool = False) -> list[Figure]:
    with responder(ready_min=0.5, ready_max=2.5, video_bytes=VIDEO_BYTES) as base_url:
        measured = memory(base_url)
        data = polls(base_url)
    whole = measured["bytes"] == measured["reported_bytes"] >= VIDEO_BYTES and measured["head"] == "ftyp"
    figures = [
        Figure(
            "11a_video_download_peak_rss",
            "200 MB video: XAIVideoOperator streams it into object storage, peak RSS increase",
            measured["increase_bytes"] / MIB if whole else None,
            64.0,
            unit="MiB",
            server=SERVER,
            detail={**measured, "video_bytes": VIDEO_BYTES, "whole_file_written": whole},
            error=None if whole else f"the file written is not the whole video: {measured}",
        ),
    ]
    figures += loop_figures(("11b_video_polls_loop_gap", "11c_video_polls_pickup"), "500 pending video jobs",
                            data, data["delays"], POLL_INTERVAL, SERVER)  # fmt: skip
    return figures


if __name__ == "__main__":
    apply_env()
    if "--child" in sys.argv:
        print(json.dumps(_child(sys.argv[sys.argv.index("--child") + 1])))
    else:
        print(json.dumps([f.to_json() for f in run("--quick" in sys.argv)]))
