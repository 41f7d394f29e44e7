"""XAIVisionOperator against the local server: request bodies, every source kind, refusals
before any request, structured output, usage with image tokens, deferrable mode, templates."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import TaskDeferred
from pydantic import BaseModel

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.images import MAX_IMAGE_BYTES
from airflow_provider_xai.operators.vision import DEFAULT_VISION_MODEL, XAIVisionOperator
from tests.helpers.context import FakeTI, make_context

SAMPLES = Path(__file__).resolve().parents[2] / "example_dags" / "sample_images"
PNG = (SAMPLES / "bar_chart.png").read_bytes()
JPEG = (SAMPLES / "sunset.jpg").read_bytes()
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,"


class Chart(BaseModel):
    caption: str
    objects: list[str]
    has_text: bool


def op(**kwargs: Any) -> XAIVisionOperator:
    kwargs.setdefault("task_id", "vision")
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("prompt", "What is in these images?")
    kwargs.setdefault("api", "chat")  # these tests read Chat Completions bodies
    return XAIVisionOperator(**kwargs)


def posts(server: Any) -> list[Any]:
    return server.requests("/chat/completions", method="POST")


def user_parts(entry: Any) -> list[dict[str, Any]]:
    return entry.body["messages"][-1]["content"]


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_every_source_kind_in_one_request(xai_server: Any, tmp_path: Path) -> None:
    (tmp_path / "chart.png").write_bytes(PNG)
    (tmp_path / "sunset.jpg").write_bytes(JPEG)
    url = "https://images.example.com/shelf.jpg?sig=abc"
    given_uri = data_uri("image/png", PNG)
    images = [
        url,
        str(tmp_path / "chart.png"),
        tmp_path / "sunset.jpg",
        (tmp_path / "chart.png").as_uri(),
        ObjectStoragePath(f"file://{tmp_path}/sunset.jpg"),
        JPEG,
        given_uri,
        {"source": PNG, "detail": "high"},
    ]
    ctx = make_context()
    answer = op(images=images, detail="low", system_prompt="Be brief").execute(ctx)
    assert answer == "Grok (local) heard: What is in these images?"
    (entry,) = posts(xai_server)
    assert entry.body["model"] == DEFAULT_VISION_MODEL == "grok-4.3"
    assert entry.body["messages"][0] == {"role": "system", "content": "Be brief"}
    *parts, text = user_parts(entry)
    assert text == {"type": "text", "text": "What is in these images?"}
    assert all(p["type"] == "image_url" for p in parts)
    assert [p["image_url"]["url"] for p in parts] == [
        url,
        data_uri("image/png", PNG),
        data_uri("image/jpeg", JPEG),
        data_uri("image/png", PNG),
        data_uri("image/jpeg", JPEG),
        data_uri("image/jpeg", JPEG),
        given_uri,
        data_uri("image/png", PNG),
    ]
    assert [p["image_url"]["detail"] for p in parts] == ["low"] * 7 + ["high"]
    usage = ctx["ti"].pushed["xai_usage"]
    assert usage["image_tokens"] == 7 * 256 + 1024  # low = 256, high = 1024 on the local server
    assert usage["prompt_tokens"] > usage["image_tokens"]
    assert usage["completion_id"] == ctx["ti"].pushed["xai_completion_id"]
    assert usage["cost_usd"] > 0


def test_single_image_and_content_not_name_decides_the_type(xai_server: Any, tmp_path: Path) -> None:
    disguised = tmp_path / "looks_like.jpg"
    disguised.write_bytes(PNG)
    op(images=str(disguised)).execute(make_context())
    (part, _) = user_parts(posts(xai_server)[0])
    assert part["image_url"] == {"url": data_uri("image/png", PNG), "detail": "auto"}


def test_structured_output_from_an_image(xai_server: Any) -> None:
    ctx = make_context()
    result = op(images=PNG, prompt="Describe the chart", response_format=Chart).execute(ctx)
    assert Chart.model_validate(result) and set(result) == {"caption", "objects", "has_text"}
    body = posts(xai_server)[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["caption", "objects", "has_text"]
    assert ctx["ti"].pushed["xai_usage"]["image_tokens"] == 1024
    json.dumps(ctx["ti"].pushed)


def _bad_inputs(tmp_path: Path) -> list[tuple[str, Any, str, str]]:
    (tmp_path / "anim.png").write_bytes(GIF)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.7\n1 0 obj")
    (tmp_path / "notes.png").write_bytes(b"just some notes\n")
    (tmp_path / "pic.bmp").write_bytes(b"BM" + bytes(60))
    (tmp_path / "pic.webp").write_bytes(b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(20))
    with (tmp_path / "huge.png").open("wb") as f:
        f.write(PNG)
        f.truncate(MAX_IMAGE_BYTES + 1)
    return [
        ("missing file", str(tmp_path / "missing.png"), "file not found", "missing.png"),
        ("GIF named .png", str(tmp_path / "anim.png"), "is a GIF image", "anim.png"),
        ("BMP", tmp_path / "pic.bmp", "is a BMP image", "pic.bmp"),
        ("WebP", ObjectStoragePath(f"file://{tmp_path}/pic.webp"), "is a WebP image", "pic.webp"),
        ("PDF", str(tmp_path / "scan.pdf"), "is a PDF document", "scan.pdf"),
        ("text", str(tmp_path / "notes.png"), "is text", "notes.png"),
        ("empty file", str(tmp_path / "empty.jpg"), "is empty (0 bytes)", "empty.jpg"),
        ("over the limit", str(tmp_path / "huge.png"), "at most 20.0 MiB", "huge.png"),
        ("corrupt base64", "data:image/png;base64,iVBORw0KGgo!", "corrupt base64", "data:image/png"),
        ("ftp URL", "ftp://example.com/a.png", "unsupported scheme 'ftp'", "ftp://example.com/a.png"),
        ("bad bytes", GIF, "is a GIF image", f"<{len(GIF)} bytes>"),
    ]


def test_each_bad_image_fails_naming_index_and_source_with_zero_requests(
    xai_server: Any, tmp_path: Path
) -> None:
    for label, bad, problem, source in _bad_inputs(tmp_path):
        ctx = make_context()
        with pytest.raises(XAIValidationError) as err:
            op(images=["https://example.com/fine.png", PNG, bad]).execute(ctx)
        assert err.value.field == "images[2]", label
        assert problem in err.value.problem and source in err.value.problem, (label, err.value.problem)
        assert "iVBOR" not in str(err.value)  # never the image data
        assert ctx["ti"].pushed == {}, label
    assert xai_server.journal == []


def test_empty_and_missing_images_and_bad_arguments(xai_server: Any) -> None:
    for images, problem in (([], "is empty"), ((), "is empty"), (None, "is required")):
        with pytest.raises(XAIValidationError) as err:
            op(images=images)  # caught at DAG parse
        assert err.value.field == "images" and problem in err.value.problem
    with pytest.raises(XAIValidationError) as err:
        op(images="[]").execute(make_context())  # a template that rendered to an empty list
    assert err.value.field == "images" and "is empty" in err.value.problem
    with pytest.raises(XAIValidationError) as err:
        op(images=PNG, detail="ultra")
    assert err.value.field == "detail"
    with pytest.raises(XAIValidationError) as err:
        op(images=PNG, prompt="   ").execute(make_context())
    assert err.value.field == "prompt"
    with pytest.raises(XAIValidationError) as err:
        op(images=PNG, messages=[{"role": "user", "content": "hi"}])
    assert err.value.field == "messages"
    assert xai_server.journal == []


def test_templated_images_and_prompt_render_from_context(xai_server: Any, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.jpg").write_bytes(JPEG)
    uri = data_uri("image/jpeg", JPEG)
    operator = op(
        prompt="Compare the {{ params.kind }}",
        images=[
            "{{ params.folder }}/a.png",
            {"source": "{{ params.folder }}/b.jpg", "detail": "high"},
            uri,
            PNG,
            ObjectStoragePath(f"file://{tmp_path}/b.jpg"),
        ],
        params={"kind": "pictures", "folder": str(tmp_path)},
    )
    ctx = make_context()
    ctx["params"] = {"kind": "pictures", "folder": str(tmp_path)}
    operator.render_template_fields(ctx)
    assert operator.images[2] is uri  # data URIs skip Jinja: no copies of a large image
    operator.execute(ctx)
    parts = user_parts(posts(xai_server)[0])
    assert parts[-1]["text"] == "Compare the pictures"
    assert [p["image_url"]["detail"] for p in parts[:-1]] == ["auto", "high", "auto", "auto", "auto"]
    png_uri = data_uri("image/png", PNG)
    assert [p["image_url"]["url"] for p in parts[:-1]] == [png_uri, uri, uri, png_uri, uri]

    # An upstream XCom rendered through Jinja arrives as one string: a list repr is parsed.
    rendered = op(
        images="{{ params.paths }}", params={"paths": [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]}
    )
    ctx["params"] = {"paths": [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]}
    rendered.render_template_fields(ctx)
    assert isinstance(rendered.images, str)
    rendered.execute(ctx)
    assert [p["image_url"]["url"][:15] for p in user_parts(posts(xai_server)[1])[:2]] == [
        "data:image/png;",
        "data:image/jpeg",
    ]


def test_deferrable_sends_the_images_once_and_completes_through_the_trigger(xai_server: Any) -> None:
    xai_server.configure(deferred_pending_polls=1)
    ti = FakeTI()
    operator = op(images=[PNG, JPEG], deferrable=True, poll_interval=0.01, response_format=Chart)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(make_context(ti))
    (entry,) = posts(xai_server)
    assert entry.body["deferred"] is True and len(user_parts(entry)) == 3

    async def first_event() -> dict[str, Any]:
        async for event in deferred.value.trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    event = asyncio.run(first_event())
    result = operator.execute_complete(make_context(ti), event)
    assert set(result) == {"caption", "objects", "has_text"}
    assert ti.pushed["xai_usage"]["image_tokens"] == 2 * 1024
    assert len(posts(xai_server)) == 1


def test_a_text_only_model_is_refused_by_the_api_not_silently(xai_server: Any) -> None:
    from airflow_provider_xai.exceptions import XAIBadRequestError

    with pytest.raises(XAIBadRequestError, match="does not support image input"):
        op(images=PNG, model="grok-3").execute(make_context())
    assert len(posts(xai_server)) == 1
