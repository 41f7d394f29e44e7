"""Images and video against the local server: the hook's calls, the operators' outputs in object
storage, moderation as a choice, deferred waits through the trigger, re-attaching retries that
never pay twice, downloads that survive faults and expired URLs, bad input refused unsent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from airflow_provider_xai.exceptions import (
    XAIBadRequestError,
    XAIDeferredExpiredError,
    XAIModerationError,
    XAIServerError,
    XAIValidationError,
)
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.images import sniff_format
from airflow_provider_xai.operators.images import XAIImageOperator
from airflow_provider_xai.operators.video import XAIVideoOperator
from airflow_provider_xai.testing.media_files import jpeg_bytes
from airflow_provider_xai.testing.state import Fault
from airflow_provider_xai.triggers.media import XAIMediaTrigger
from airflow_provider_xai.usage import XCOM_USAGE_KEY
from tests.helpers.context import FakeStateStore, FakeTI, make_context

JPEG = jpeg_bytes("input", 16, 16)


def posts(server: Any, path: str) -> list[Any]:
    return server.requests(path, method="POST")


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def run_trigger(trigger: XAIMediaTrigger) -> dict[str, Any]:
    """The trigger's one event, as the triggerer would hand it to the task (JSON-safe)."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    payload = asyncio.run(first())
    return dict(json.loads(json.dumps(payload)))


def deferred(op: Any, context: dict[str, Any]) -> XAIMediaTrigger:
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    trigger = info.value.trigger
    assert isinstance(trigger, XAIMediaTrigger) and info.value.method_name == "execute_complete"
    return trigger


# --- the hook ----------------------------------------------------------------------------------------
class TestHook:
    def test_url_images_are_downloaded_without_credentials(self, xai_server: Any) -> None:
        hook = XAIHook()
        answer = hook.generate_images(prompt="a red chair", n=2, aspect_ratio="16:9")
        assert [item.url is not None for item in answer.data] == [True, True]
        assert answer.usage_record is not None and answer.usage_record.units == 2
        chunks: list[bytes] = []

        class Keep:
            def write(self, chunk: bytes) -> None:
                chunks.append(chunk)

            def result(self) -> int:
                return sum(map(len, chunks))

            def discard(self) -> None:
                chunks.clear()

        assert answer.data[0].url is not None
        assert hook.download_media(answer.data[0].url, Keep) > 0 and sniff_format(b"".join(chunks)[:24]) == "JPEG"
        (download,) = [e for e in xai_server.journal if e.path.startswith("/media/")]
        assert "authorization" not in download.headers
        (sent,) = posts(xai_server, "/images/generations")
        assert sent.body == {"prompt": "a red chair", "n": 2, "aspect_ratio": "16:9", "model": "grok-imagine-image"}

    def test_an_edit_sends_its_file_inline(self, xai_server: Any, tmp_path: Path) -> None:
        (tmp_path / "in.jpg").write_bytes(JPEG)
        XAIHook().edit_images(prompt="make it blue", images=[str(tmp_path / "in.jpg")], aspect_ratio="1:1")
        (sent,) = posts(xai_server, "/images/edits")
        assert sent.body["images"][0]["url"].startswith("data:image/jpeg;base64,")
        assert sent.body["aspect_ratio"] == "1:1"

    def test_deferred_images_are_polled_until_done(self, xai_server: Any) -> None:
        hook = XAIHook()
        request_id = hook.submit_images(prompt="a lamp", n=6)
        assert hook.get_images(request_id).status == "pending"
        done = hook.wait_for_images(request_id, poll_interval=0.01)
        assert done.status == "done" and len(done.data) == 6 and all(d.url for d in done.data)
        assert posts(xai_server, "/images/generations")[0].body["deferred"] is True
        with pytest.raises(XAIDeferredExpiredError, match="unknown to xAI"):
            hook.get_images("no-such-request")

    def test_a_video_job_reports_progress_then_its_video(self, xai_server: Any) -> None:
        xai_server.configure(media_pending_polls=3)
        hook = XAIHook()
        request_id = hook.generate_video(prompt="a boat", duration=3, resolution="720p")
        seen = [hook.get_video(request_id) for _ in range(4)]
        assert [job.status for job in seen] == ["pending", "pending", "pending", "done"]
        assert seen[0].progress is None and 0 < (seen[1].progress or 0) < (seen[2].progress or 0) < 100
        done = seen[-1]
        assert done.video is not None and done.video.duration == 3.0 and done.video.url
        record = done.usage_record
        assert record is not None
        assert (record.units, record.unit, record.cost_usd) == (3.0, "second", pytest.approx(0.21))

    @pytest.mark.parametrize(("marker", "status"), [("[failed]", "failed"), ("[expired]", "expired")])
    def test_a_job_can_fail_or_expire(self, xai_server: Any, marker: str, status: str) -> None:
        xai_server.configure(media_pending_polls=0)
        hook = XAIHook()
        job = hook.get_video(hook.generate_video(prompt=f"a boat {marker}"))
        assert job.status == status and job.usage_record is None

    def test_bad_input_never_reaches_the_server(self, xai_server: Any, tmp_path: Path) -> None:
        hook = XAIHook()
        (tmp_path / "still.jpg").write_bytes(JPEG)
        for call, field in (
            (lambda: hook.generate_images(prompt="x", n=11), "n"),
            (lambda: hook.edit_images(prompt="x"), "images"),
            (lambda: hook.edit_video(prompt="x", video=str(tmp_path / "still.jpg")), "video"),
            (lambda: hook.extend_video(prompt="x", video="https://x/v.mp4", duration=30), "duration"),
        ):
            with pytest.raises(XAIValidationError) as info:
                call()
            assert info.value.field == field
        assert xai_server.journal == []

    def test_the_server_refuses_what_xai_refuses(self, xai_server: Any) -> None:
        hook = XAIHook(max_retries=0)
        with pytest.raises(XAIBadRequestError, match="Argument not supported: size"):
            hook.request("POST", "images/generations", {"prompt": "x", "size": "1024x1024"})
        with pytest.raises(XAIBadRequestError, match="duration"):
            hook.request("POST", "videos/edits", {"prompt": "x", "video": {"url": "https://x/v.mp4"}, "duration": 3})

    def test_a_busy_server_is_asked_again(self, xai_server: Any) -> None:
        xai_server.enqueue(Fault(503, path="/images/generations"))
        assert XAIHook(backoff_base=0.01).generate_images(prompt="x").data
        assert [e.status for e in posts(xai_server, "/images/generations")] == [503, 200]


# --- the image operator ------------------------------------------------------------------------------
def image_op(tmp_path: Path, **kwargs: Any) -> XAIImageOperator:
    kwargs.setdefault("task_id", "shot")
    kwargs.setdefault("prompt", "a green mug")
    return XAIImageOperator(output_folder=f"file://{tmp_path}/media", **kwargs)


class TestImageOperator:
    def test_images_land_in_object_storage_and_only_their_paths_in_xcom(self, xai_server: Any, tmp_path: Path) -> None:
        ti = FakeTI(dag_id="shop", task_id="shot", run_id="manual__1", map_index=3)
        result = image_op(tmp_path, n=2, response_format="b64_json").execute(make_context(ti))
        folder = tmp_path / "media" / "shop" / "manual__1" / "shot_3"
        assert files(tmp_path / "media") == [folder / "image_00.png", folder / "image_01.png"]
        assert result["paths"] == [f"file://{p}" for p in files(folder)]
        assert result["refused"] == [] and result["cost_source"] == "xai" and result["cost_usd"] == pytest.approx(0.04)
        assert [i["revised_prompt"] for i in result["images"]] == ["(local server) a green mug"] * 2
        assert len(json.dumps(result)) < 2000  # paths, never bytes
        (usage,) = ti.values(XCOM_USAGE_KEY)
        assert (usage["kind"], usage["units"], usage["unit"], usage["map_index"]) == ("images", 2, "image", 3)

    def test_a_url_image_download_survives_a_dropped_connection(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.enqueue(Fault(drop=True, path="/media/"))
        result = image_op(tmp_path).execute(make_context())
        (path,) = files(tmp_path / "media")
        assert sniff_format(path.read_bytes()[:24]) == "JPEG" and result["paths"] == [f"file://{path}"]
        downloads = [e for e in xai_server.journal if e.path.startswith("/media/")]
        assert len(downloads) == 2  # the cut one, then a whole one: no partial file left

    def test_an_expired_url_fails_typed(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(media_url_ttl=0)
        ti = FakeTI()
        with pytest.raises(XAIDeferredExpiredError, match="URL no longer answers"):
            image_op(tmp_path).execute(make_context(ti))
        assert len(ti.values(XCOM_USAGE_KEY)) == 1  # billed, and recorded before the download failed

    @pytest.mark.parametrize("choice", ["fail", "skip", "continue"])
    def test_moderation_is_the_authors_choice(self, xai_server: Any, tmp_path: Path, choice: str) -> None:
        ti = FakeTI()
        op = image_op(tmp_path, prompt="a mug [moderated:1]", n=2, on_moderated=choice)
        if choice == "continue":
            result = op.execute(make_context(ti))
        else:
            raised = XAIModerationError if choice == "fail" else AirflowSkipException
            with pytest.raises(raised, match="withheld 1 of the images"):
                op.execute(make_context(ti))
            result = ti.pushed["xai_media"]
        assert result["refused"] == [0] and len(result["paths"]) == 1 and result["paths"][0].endswith("image_01.jpeg")
        assert len(ti.values(XCOM_USAGE_KEY)) == 1

    def test_many_images_wait_in_the_triggerer(self, xai_server: Any, tmp_path: Path) -> None:
        ti, store = FakeTI(), FakeStateStore()
        op = image_op(tmp_path, n=6, poll_interval=0.01)
        trigger = deferred(op, make_context(ti, store))
        request_id = ti.pushed["xai_request_id"]
        assert trigger.request_id == request_id and trigger.kind == "images"
        assert store.data["xai_images_request"]["value"] == request_id
        event = run_trigger(trigger)
        assert event["status"] == "success" and event["job"]["status"] == "done"
        result = op.execute_complete(make_context(ti, store), event)
        assert len(result["paths"]) == 6 and result["request_id"] == request_id
        assert "xai_images_request" not in store.data  # finished: nothing to re-attach to


# --- the video operator ------------------------------------------------------------------------------
def video_op(tmp_path: Path, **kwargs: Any) -> XAIVideoOperator:
    kwargs.setdefault("task_id", "teaser")
    kwargs.setdefault("prompt", "a paper boat drifting")
    kwargs.setdefault("poll_interval", 0.01)
    return XAIVideoOperator(output_folder=f"file://{tmp_path}/media", **kwargs)


class TestVideoOperator:
    def test_a_video_is_waited_for_in_the_triggerer_and_streamed_to_storage(
        self, xai_server: Any, tmp_path: Path
    ) -> None:
        xai_server.configure(video_bytes=3 << 20)
        ti, store = FakeTI(), FakeStateStore()
        (tmp_path / "first.jpg").write_bytes(JPEG)
        op = video_op(tmp_path, image=str(tmp_path / "first.jpg"), duration=4)
        event = run_trigger(deferred(op, make_context(ti, store)))
        result = op.execute_complete(make_context(ti, store), event)
        (path,) = files(tmp_path / "media")
        assert path.name == "video.mp4" and path.stat().st_size == result["bytes"] >= 3 << 20
        assert sniff_format(path.read_bytes()[:24]) == "MP4/QuickTime"
        assert (result["duration"], result["cost_usd"], result["refused"]) == (4.0, pytest.approx(0.2), False)
        (sent,) = posts(xai_server, "/videos/generations")
        assert sent.body["image"]["url"].startswith("data:image/jpeg;base64,")
        (usage,) = ti.values(XCOM_USAGE_KEY)
        assert (usage["kind"], usage["units"], usage["unit"]) == ("videos", 4.0, "second")

    def test_a_retry_re_attaches_and_never_pays_or_counts_twice(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(media_pending_polls=0)
        store = FakeStateStore()
        op = video_op(tmp_path, deferrable=False)
        # First try: the job finishes, its usage is recorded, then every download attempt fails.
        xai_server.enqueue(Fault(500, path="/media/"), times=3)
        first = FakeTI(try_number=1)
        with pytest.raises(XAIServerError):
            op.execute(make_context(first, store))
        assert len(first.values(XCOM_USAGE_KEY)) == 1
        # The retry finds the same request for the same inputs: no new job, no second record.
        second = FakeTI(try_number=2)
        result = op.execute(make_context(second, store))
        assert len(posts(xai_server, "/videos/generations")) == 1 and result["path"]
        assert second.values(XCOM_USAGE_KEY) == [] and len(second.pushed["xai_usage_ledger"]) == 1
        # Other inputs are another request.
        video_op(tmp_path, deferrable=False, prompt="another boat").execute(make_context(FakeTI(try_number=3), store))
        assert len(posts(xai_server, "/videos/generations")) == 2

    def test_an_expired_video_url_is_asked_for_again(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(media_pending_polls=0)
        xai_server.enqueue(Fault(404, path="/media/"))
        result = video_op(tmp_path, deferrable=False).execute(make_context())
        polls = [e for e in xai_server.journal if e.method == "GET" and e.path.startswith("/v1/videos/")]
        assert result["path"] and len(polls) == 2  # the finished job, then again for a fresh URL

    def test_a_failed_job_fails_typed_and_is_forgotten(self, xai_server: Any, tmp_path: Path) -> None:
        ti, store = FakeTI(), FakeStateStore()
        op = video_op(tmp_path, prompt="a boat [failed]")
        event = run_trigger(deferred(op, make_context(ti, store)))
        with pytest.raises(XAIServerError, match="internal_error"):
            op.execute_complete(make_context(ti, store), event)
        assert "xai_videos_request" not in store.data  # a retry asks anew

    def test_a_withheld_video_is_never_an_empty_success(self, xai_server: Any, tmp_path: Path) -> None:
        ti, store = FakeTI(), FakeStateStore()
        op = video_op(tmp_path, prompt="a boat [moderated]")
        event = run_trigger(deferred(op, make_context(ti, store)))
        with pytest.raises(XAIModerationError):
            op.execute_complete(make_context(ti, store), event)
        assert ti.pushed["xai_media"]["refused"] is True and files(tmp_path) == []

    def test_an_edit_and_an_extension_send_their_video(self, xai_server: Any, tmp_path: Path) -> None:
        xai_server.configure(media_pending_polls=0)
        clip = tmp_path / "clip.mp4"
        video_op(tmp_path, deferrable=False).execute(make_context(FakeTI(task_id="make")))
        (made,) = files(tmp_path / "media")
        clip.write_bytes(made.read_bytes())
        video_op(tmp_path, action="edit", video=str(clip), deferrable=False).execute(make_context())
        video_op(tmp_path, action="extend", video="https://cdn.example.com/clip.mp4", duration=4,
                 deferrable=False).execute(make_context(FakeTI(task_id="ext")))  # fmt: skip
        (edit,) = posts(xai_server, "/videos/edits")
        (extension,) = posts(xai_server, "/videos/extensions")
        assert edit.body["video"]["url"].startswith("data:video/mp4;base64,") and "duration" not in edit.body
        assert extension.body["video"] == {"url": "https://cdn.example.com/clip.mp4"}
        assert extension.body["duration"] == 4


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: XAIImageOperator(task_id="t", prompt="x", n=11, output_folder="/tmp"), "n"),
        (lambda: XAIImageOperator(task_id="t", prompt="x", aspect_ratio="7:5", output_folder="/tmp"), "aspect_ratio"),
        (lambda: XAIImageOperator(task_id="t", prompt="x", n=8, response_format="b64_json", output_folder="/tmp"),
         "response_format"),
        (lambda: XAIImageOperator(task_id="t", prompt="x", on_moderated="ignore", output_folder="/tmp"),
         "on_moderated"),
        (lambda: XAIVideoOperator(task_id="t", prompt="x", action="extend", video="v", duration=12,
                                  output_folder="/tmp"), "duration"),
        (lambda: XAIVideoOperator(task_id="t", prompt="x", video="v", output_folder="/tmp"), "video"),
        (lambda: XAIVideoOperator(task_id="t", prompt="x", poll_interval=0, output_folder="/tmp"),
         "poll_interval"),
    ],
)
def test_bad_arguments_fail_at_dag_parse(make: Any, field: str) -> None:
    with pytest.raises(XAIValidationError) as info:
        make()
    assert info.value.field == field
