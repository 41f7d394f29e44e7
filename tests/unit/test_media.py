"""Images and video without a server: requests refused before sending (naming the field), answers
bounded, usage records per image and per second, files written to object storage a chunk at a
time under fixed names, input videos checked, the per-bucket rate limit, the spans."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_xai.connection.settings import settings_from_connection
from airflow_provider_xai.endpoints.images import image_record
from airflow_provider_xai.endpoints.media import media_record
from airflow_provider_xai.endpoints.videos import video_record
from airflow_provider_xai.exceptions import XAIConfigurationError, XAIResponseError, XAIValidationError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.media_inputs import MAX_VIDEO_BYTES, image_refs, video_ref
from airflow_provider_xai.operators.media_output import StorageSink, safe, task_folder, write_base64
from airflow_provider_xai.schemas.media import ImageResult, MediaUsage, VideoJob, image_request, video_request
from airflow_provider_xai.testing.media_files import jpeg_bytes, mp4_chunks, png_bytes
from tests.helpers.clock import FakeClock
from tests.helpers.context import FakeTI
from tests.helpers.spans import memory_spans

KEY = "xai-unit-media-key-123456"
JPEG = jpeg_bytes("unit", 16, 16)
PNG = png_bytes("unit", 8, 8)
MP4 = b"".join(mp4_chunks("unit", 1.0))


def set_connection(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    conn = {"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY, "extra": {"max_retries": 0, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))


# --- requests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": True}, "n"),
        ({"prompt": "x", "n": 2.0}, "n"),
        ({"prompt": "x", "n": float("nan")}, "n"),
        ({"prompt": "  "}, "prompt"),
        ({"prompt": "x", "aspect_ratio": "7:5"}, "aspect_ratio"),
        ({"prompt": "x", "resolution": "4k"}, "resolution"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x", "size": "1024x1024"}, "size"),
        ({"prompt": "x", "image": {"url": "https://a/b.png"}, "images": [{"url": "https://a/c.png"}]}, "request"),
        ({"prompt": "x", "image": {"url": "https://a/b.png", "file_id": "file_1"}}, "image"),
        ({"prompt": "x", "deferred": True, "response_format": "b64_json"}, "request"),
        ({"prompt": "x", "image": {"url": "https://a/b.png"}, "aspect_ratio": "1:1"}, "request"),
    ],
)
def test_a_bad_image_request_names_its_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        image_request(fields)
    assert info.value.field == field


def test_an_image_request_fills_in_the_model() -> None:
    assert image_request({"prompt": "a cat", "n": 2}).model_dump(exclude_none=True) == {
        "prompt": "a cat", "model": "grok-imagine-image", "n": 2,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "action", "field"),
    [
        ({"prompt": "x", "duration": 16}, "generate", "duration"),
        ({"prompt": "x", "duration": 0}, "generate", "duration"),
        ({"prompt": "x", "duration": float("inf")}, "generate", "duration"),
        ({}, "generate", "prompt"),
        ({"prompt": "x", "video": {"url": "https://a/v.mp4"}}, "generate", "video"),
        ({"prompt": "x"}, "edit", "video"),
        ({"video": {"url": "https://a/v.mp4"}}, "extend", "prompt"),
        ({"prompt": "x", "video": {"url": "https://a/v.mp4"}, "duration": 3}, "edit", "duration"),
        ({"prompt": "x", "video": {"url": "https://a/v.mp4"}, "duration": 11}, "extend", "duration"),
        ({"prompt": "x", "video": {"url": "https://a/v.mp4"}, "resolution": "720p"}, "extend", "resolution"),
        ({"prompt": "x", "aspect_ratio": "21:9"}, "generate", "aspect_ratio"),
        ({"prompt": "x"}, "remix", "action"),
    ],
)
def test_a_bad_video_request_names_its_field(fields: dict[str, Any], action: Any, field: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        video_request(fields, action)
    assert info.value.field == field


def test_an_image_alone_makes_a_generation() -> None:
    request = video_request({"image": {"url": "https://a/b.png"}, "duration": 4}, "generate")
    assert request.model_dump(exclude_none=True)["model"] == "grok-imagine-video"


# --- answers and their usage -------------------------------------------------------------------------
def test_numbers_from_the_server_are_bounded() -> None:
    job = VideoJob.model_validate(
        {"status": "pending", "progress": 250, "video": {"duration": float("nan")}, "usage": {"cost_in_usd_ticks": -5}}
    )
    assert job.progress == 100 and job.video is not None and job.video.duration is None
    assert job.usage is not None and job.usage.cost_in_usd_ticks is None
    assert VideoJob.model_validate({"progress": True}).progress is None
    assert VideoJob.model_validate({"video": {"duration": 10**9}}).video.duration is None  # type: ignore[union-attr]


def test_withheld_images_and_videos_are_told_apart() -> None:
    answer = ImageResult.model_validate(
        {"data": [{"url": "https://x/1.jpeg"}, {"respect_moderation": False}, {"b64_json": "aGk="}, {}]}
    )
    assert answer.refused == [1, 3]
    assert VideoJob.model_validate({"status": "done", "video": {"respect_moderation": False}}).refused
    assert not VideoJob.model_validate({"status": "done", "video": {"url": "https://x/v.mp4"}}).refused
    assert not VideoJob.model_validate({"status": "pending"}).refused


def test_usage_is_xais_cost_else_an_estimate_per_image_or_second_else_unpriced() -> None:
    answer = ImageResult(data=[{}, {}, {}], model="grok-imagine-image-pro", usage=MediaUsage(cost_in_usd_ticks=123))
    record = image_record(answer, {})
    assert record is not None
    assert (record.kind, record.units, record.unit, record.cost_source) == ("images", 3, "image", "xai")
    assert record.cost_usd == 123 / 1e10
    answer.usage = None
    record = image_record(answer, {})
    assert record is not None and (record.cost_usd, record.cost_source) == (pytest.approx(0.21), "estimate")
    job = VideoJob(request_id="r", status="done", model="grok-imagine-video", video={"url": "u", "duration": 6})
    record = video_record(job, {})
    assert record is not None
    assert (record.units, record.unit, record.cost_usd, record.cost_source, record.completion_id) == (
        6.0, "second", pytest.approx(0.30), "estimate", "r",
    )  # fmt: skip
    job.video = None  # no length: not priced as zero
    record = video_record(job, {})
    assert record is not None and (record.cost_usd, record.cost_source) == (None, "unknown")
    assert media_record("videos", "a-new-model", 5, "second", None, "r").cost_usd is None
    assert video_record(VideoJob(status="pending"), {}) is None


# --- files written to object storage -----------------------------------------------------------------
def folder(tmp_path: Path) -> ObjectStoragePath:
    return ObjectStoragePath(f"file://{tmp_path}/out")


def test_names_are_fixed_per_dag_run_task_and_map_index(tmp_path: Path) -> None:
    ti = FakeTI(dag_id="shop", task_id="shot", run_id="manual__2026-01-01T00:00:00+00:00", map_index=2)
    path = task_folder(folder(tmp_path), {"ti": ti})
    assert str(path).endswith("/out/shop/manual__2026-01-01T00_00_00_00_00/shot_2")
    assert task_folder(folder(tmp_path), {"ti": ti}) == path
    ti.map_index = -1
    assert str(task_folder(folder(tmp_path), {"ti": ti})).endswith("/shot")
    assert safe("../..") == "_" and safe("a b/c") == "a_b_c"


def test_a_download_is_written_as_it_comes_under_its_real_format(tmp_path: Path) -> None:
    sink = StorageSink(folder(tmp_path), "image_00")
    for i in range(0, len(PNG), 7):  # the format is known after the first 24 bytes
        sink.write(PNG[i : i + 7])
    written = sink.result()
    assert written.path.endswith("/out/image_00.png") and written.mime_type == "image/png"
    assert written.bytes == len(PNG) and (tmp_path / "out" / "image_00.png").read_bytes() == PNG


def test_a_file_of_the_wrong_kind_is_refused_before_it_is_stored(tmp_path: Path) -> None:
    sink = StorageSink(folder(tmp_path), "image_00")
    with pytest.raises(XAIResponseError, match="MP4/QuickTime"):
        sink.write(MP4[:64])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_failed_attempt_leaves_no_partial_file(tmp_path: Path) -> None:
    sink = StorageSink(folder(tmp_path), "video", ("MP4/QuickTime",))
    sink.write(MP4[:1000])
    assert (tmp_path / "out" / "video.mp4").exists()
    sink.discard()
    assert not (tmp_path / "out" / "video.mp4").exists()


def test_base64_is_decoded_a_slice_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_xai.operators import media_output

    monkeypatch.setattr(media_output, "B64_SLICE", 8)
    writes: list[int] = []
    sink = StorageSink(folder(tmp_path), "image_01")
    original = sink.write
    monkeypatch.setattr(sink, "write", lambda chunk: (writes.append(len(chunk)), original(chunk))[1])
    written = write_base64(base64.b64encode(JPEG).decode(), sink)
    assert written.path.endswith("image_01.jpeg") and (tmp_path / "out" / "image_01.jpeg").read_bytes() == JPEG
    assert max(writes) == 6 and len(writes) == -(-len(JPEG) // 6)
    bad = StorageSink(folder(tmp_path), "image_02")
    with pytest.raises(XAIResponseError, match="not valid base64"):
        write_base64(base64.b64encode(JPEG).decode()[:-3], bad)
    assert not (tmp_path / "out" / "image_02.jpeg").exists()


# --- input images and videos -------------------------------------------------------------------------
def test_input_videos_are_passed_through_or_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(MP4)
    (tmp_path / "still.jpg").write_bytes(JPEG)
    inline = f"data:video/mp4;base64,{base64.b64encode(MP4).decode()}"
    assert video_ref("https://cdn.example.com/clip.mp4") == {"url": "https://cdn.example.com/clip.mp4"}
    assert video_ref({"file_id": "file_1"}) == {"file_id": "file_1"}
    assert video_ref(MP4) == {"url": inline}
    assert video_ref(str(tmp_path / "clip.mp4")) == {"url": inline}
    assert video_ref(ObjectStoragePath(f"file://{tmp_path}/clip.mp4")) == {"url": inline}
    with pytest.raises(XAIValidationError, match="JPEG data") as info:
        video_ref(tmp_path / "still.jpg")
    assert info.value.field == "video"
    with pytest.raises(XAIValidationError, match="not found"):
        video_ref(str(tmp_path / "missing.mp4"))
    with pytest.raises(XAIValidationError, match="ObjectStoragePath"):
        video_ref("s3://bucket/clip.mp4")


def test_a_video_too_large_to_send_inline_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(MAX_VIDEO_BYTES + 1)
    with pytest.raises(XAIValidationError, match="give xAI a URL"):
        video_ref(big)


def test_input_images_take_every_vision_source(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    refs = image_refs([str(tmp_path / "a.png"), JPEG, "https://x.example/b.jpg", {"file_id": "file_2"}])
    assert refs[0]["url"].startswith("data:image/png;base64,") and refs[1]["url"].startswith("data:image/jpeg")
    assert refs[2:] == [{"url": "https://x.example/b.jpg"}, {"file_id": "file_2"}]
    with pytest.raises(XAIValidationError) as info:
        image_refs([PNG, MP4])
    assert info.value.field == "images[1]"


# --- the per-bucket rate limit ------------------------------------------------------------------------
def test_bucket_rates_default_to_xais_and_the_connection_overrides_them() -> None:
    class Conn:
        password, host = KEY, None

        def __init__(self, extra: dict[str, Any]) -> None:
            self.extra_dejson = extra

    assert dict(settings_from_connection(Conn({}), "x").bucket_rates) == {"images": 5.0, "videos": 1.0}
    given = settings_from_connection(Conn({"rate_limit_buckets": '{"images": 2, "videos": 0}'}), "x")
    assert dict(given.bucket_rates) == {"images": 2.0, "videos": 0.0}
    for bad in ('{"images": -1}', "[1]", "{nope", '{"images": "fast"}'):
        with pytest.raises(XAIConfigurationError, match="rate_limit_buckets"):
            settings_from_connection(Conn({"rate_limit_buckets": bad}), "x")


def image_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"data": [{"b64_json": "aGk="}], "usage": {"cost_in_usd_ticks": 1}})


def paced_hook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock, seen: list[float],
               **extra: Any) -> XAIHook:  # fmt: skip
    set_connection(monkeypatch, rate_limit_path=str(tmp_path / "limits.sqlite"), **extra)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(clock.now)
        return image_answer(request)

    hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(handler)})
    if hook.settings.bucket_rates.get("images"):
        limiter = hook.rate_limit.bucket_limiter(hook.settings, "images")
        limiter.clock, limiter.sleep, limiter.asleep = clock.time, clock.sleep, clock.asleep
    return hook


def test_images_are_paced_at_five_a_second(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clock, seen = FakeClock(1_800_000_000.0), []
    hook = paced_hook(monkeypatch, tmp_path, clock, seen)
    for _ in range(6):
        hook.generate_images(prompt="a cat")
    asyncio.run(hook.agenerate_images(prompt="a cat"))
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(seen)]
    assert len(seen) == 7 and all(gap >= 0.2 for gap in gaps), gaps
    assert clock.async_sleeps >= 1  # the async path waited without blocking


def test_the_connection_sets_or_turns_off_a_buckets_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clock, seen = FakeClock(1_800_000_000.0), []
    hook = paced_hook(monkeypatch, tmp_path, clock, seen, rate_limit_buckets={"images": 1})
    for _ in range(3):
        hook.generate_images(prompt="a cat")
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert len(gaps) == 2 and all(1.0 <= gap < 1.1 for gap in gaps), gaps  # one a second (and a small margin)
    clock, seen = FakeClock(1_800_000_000.0), []
    hook = paced_hook(monkeypatch, tmp_path / "off", clock, seen, rate_limit_buckets={"images": 0})
    for _ in range(3):
        hook.generate_images(prompt="a cat")
    assert clock.slept == [] and len(seen) == 3 and not (tmp_path / "off" / "limits.sqlite").exists()


# --- spans -------------------------------------------------------------------------------------------
def test_a_generation_is_a_generate_content_span_with_its_units(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, rate_limit_buckets={"images": 0})
    hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(image_answer)})
    with memory_spans(monkeypatch) as exporter:
        hook.generate_images(prompt="a cat", n=1)
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "generate_content grok-imagine-image"
    assert attributes["gen_ai.operation.name"] == "generate_content" and attributes["xai.api"] == "images"
    assert (attributes["xai.usage.units"], attributes["xai.usage.unit"], attributes["xai.cost_source"]) == (
        1, "image", "xai",
    )  # fmt: skip
    assert KEY not in span.to_json()


def test_media_costs_count_in_run_totals_and_budgets() -> None:
    from airflow_provider_xai.usage_summary import Budget, evaluate_budget, summarize

    images = media_record("images", "grok-imagine-image", 3, "image", MediaUsage(cost_in_usd_ticks=600_000_000), "i")
    video = media_record("videos", "grok-imagine-video", 8, "second", None, "v")  # estimated: $0.40
    for record, task in ((images, "shots"), (video, "teaser")):
        record.task_id = task
    summary = summarize([images, video])
    assert summary.totals.cost_usd == pytest.approx(0.46) and summary.totals.requests == 2
    status = evaluate_budget(summary, Budget(max_cost_usd=0.25))
    assert status["status"] == "exceeded" and status["top_tasks"][0]["task_id"] == "teaser"
    unpriced = media_record("videos", "grok-imagine-video", 0, "second", None, "x")
    assert not evaluate_budget(summarize([unpriced]), Budget(max_cost_usd=1))["cost_complete"]


def test_a_failed_download_never_shows_the_urls_signature(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow_provider_xai.exceptions import XAIConnectionError

    set_connection(monkeypatch)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(refuse)})
    url = "https://imgen.x.test/xai-tmp-imgen-1.jpeg?X-Signature=s3cr3t-signature"
    with pytest.raises(XAIConnectionError) as info:
        hook.download_media(url, lambda: StorageSink(folder(tmp_path), "image_00"))
    assert "https://imgen.x.test/xai-tmp-imgen-1.jpeg" in str(info.value) and "s3cr3t" not in str(info.value)
