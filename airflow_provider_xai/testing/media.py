"""Images and video of the local xAI server (``/v1/images/...``, ``/v1/videos/...``) and the
files they make, served from short-lived URLs of its own (``/media/{name}``, no auth).

Behaviour (deterministic, for tests):

* ``POST /v1/images/generations`` and ``/edits`` check the body as xAI does (``n`` 1-10, the
  enums, ``image`` XOR ``images`` for edits, 400 ``Argument not supported: size``, 404 for a
  model that is not an image model) and answer ``data[]`` (a URL, or ``b64_json``; the picture
  is a real JPEG, or PNG with ``image_format="png"``, from the prompt and the image's number)
  with ``usage.cost_in_usd_ticks`` = n x the model's price (none with ``omit_cost``).
  ``deferred: true`` answers ``{"request_id"}``; ``GET /v1/images/{id}`` then answers 202
  (empty) ``media_pending_polls`` times, then the images (``status: done``).
* ``POST /v1/videos/generations | edits | extensions`` checks prompt, video, duration (1-15,
  extensions 2-10, none for edits), aspect ratio and resolution, and answers ``{"request_id"}``.
  ``GET /v1/videos/{id}`` answers 202 (the first poll with an empty body, then
  ``{"status": "pending", "progress": p}``) ``media_pending_polls`` times, then ``done``
  (``video.url``, ``duration``, ``usage.cost_in_usd_ticks`` = seconds x rate, ``progress: 100``).
  A real MP4 of that many seconds, at least ``video_bytes`` long, is served at the URL.
* Markers in the prompt: ``[moderated]`` withholds every image or the video
  (``respect_moderation: false``, no URL), ``[moderated:K]`` the first K images; ``[failed]``
  ends the job ``failed`` (``internal_error``); ``[expired]`` ends it ``expired``.
* Unknown request ids answer 404. A file URL answers 404 once ``media_url_ttl`` seconds have
  passed. Faults queued for ``/media/...`` apply to downloads (``status``, ``delay``, ``drop``:
  the body stops halfway); the gateway's apply to every ``/v1`` route.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from airflow_provider_xai.endpoints import images, videos
from airflow_provider_xai.endpoints import media as media_api
from airflow_provider_xai.endpoints.routes import MOUNTS, mounted, route
from airflow_provider_xai.testing.billing_ledger import bill
from airflow_provider_xai.testing.chat import unknown_model
from airflow_provider_xai.testing.errors import ServedError, error_body, invalid_type
from airflow_provider_xai.testing.media_files import jpeg_bytes, mp4_chunks, mp4_size, png_bytes, size_for
from airflow_provider_xai.testing.state import ServerState

TICKS_PER_USD = 10_000_000_000
#: USD per image, by model (the local server's own list prices).
IMAGE_PRICES = {"grok-imagine-image": 0.02, "grok-imagine-image-2.0": 0.02, "grok-imagine-image-quality": 0.05,
                "grok-imagine-image-pro": 0.07, "grok-2-image-1212": 0.07}  # fmt: skip
#: USD per second of video, by model and resolution.
VIDEO_PRICES = {"grok-imagine-video": {"480p": 0.05, "720p": 0.07, "1080p": 0.25},
                "grok-imagine-video-1.5": {"480p": 0.08, "720p": 0.14, "1080p": 0.25}}  # fmt: skip
IMAGE_ASPECTS = ("1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "9:19.5", "19.5:9", "9:20", "20:9", "1:2",
                 "2:1", "21:9", "5:2", "auto")  # fmt: skip
VIDEO_ASPECTS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
VIDEO_SECONDS = {"generate": (1, 15, 8), "extend": (2, 10, 6), "edit": (None, None, 6)}
MODERATED = re.compile(r"\[moderated(?::(\d+))?\]")
MEDIA_PATH = MOUNTS["media"]


@dataclass
class MediaFile:
    """A generated file, made again from its seed when fetched (never stored)."""

    kind: str  # "jpeg", "png" or "mp4"
    seed: str
    created: float
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    min_bytes: int = 0


@dataclass
class MediaJob:
    """A deferred image request or a video job: pending for ``polls_left`` polls, then ``result``."""

    kind: str  # "images" or "videos"
    polls_left: int
    result: dict[str, Any]
    polls: int = 0
    total_polls: int = 0
    created: float = field(default_factory=time.time)


def _price_ticks(usd: float) -> int:
    return round(usd * TICKS_PER_USD)


def _body_dict(raw: bytes, content_type: str) -> dict[str, Any]:
    if "json" not in content_type.split(";")[0].lower():
        raise ServedError(415, "Expected request with `Content-Type: application/json`")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ServedError(400, f"Failed to parse the request body as JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid_type("body", body, "a map")
    return body


def _enum(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(name)
    if value is not None and value not in allowed:
        raise ServedError(400, f"Invalid request: {name} must be one of {', '.join(allowed)}, got {value!r}.")
    return value


def _prompt(body: dict[str, Any], required: bool = True) -> str:
    prompt = body.get("prompt")
    if prompt is None and not required:
        return ""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ServedError(400, "Invalid request: prompt must be a non-empty string.")
    return prompt


def _ref(value: Any, name: str) -> str:
    """A ``{url|file_id}`` input, checked; its identity for the output's seed."""
    if not isinstance(value, dict) or len([k for k in ("url", "file_id") if value.get(k)]) != 1:
        raise ServedError(422, f"Failed to deserialize the JSON body into the target type: {name}: "
                               "expected exactly one of url or file_id")  # fmt: skip
    text = str(value.get("url") or value.get("file_id"))
    if text.startswith("data:"):
        data = text.partition(",")[2]
        try:
            base64.b64decode(data, validate=True)
        except ValueError:
            raise ServedError(400, f"Invalid request: {name}.url is not valid base64.") from None
        return hashlib.sha256(data.encode()).hexdigest()[:16]
    if not text.startswith(("https://", "http://", "file_")):
        raise ServedError(400, f"Invalid request: {name} must be an http(s) or data URL, or a file id.")
    return text


def _moderated(prompt: str, n: int) -> int:
    """How many of ``n`` outputs the prompt's ``[moderated]`` marker withholds."""
    found = MODERATED.search(prompt)
    if found is None:
        return 0
    return min(n, int(found.group(1))) if found.group(1) else n


def server_root(request: Request) -> str:
    """This server's address and path prefix, as the client reached it."""
    return str(request.url).split("/v1/", 1)[0]


class MediaRoutes:
    """The image and video routes over ``state``."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    # --- files -----------------------------------------------------------------------------------------
    def add_file(self, root: str, media: MediaFile) -> str:
        ext = {"jpeg": "jpeg", "png": "png", "mp4": "mp4"}[media.kind]
        prefix = "xai-video" if media.kind == "mp4" else "xai-tmp-imgen"
        name = f"{prefix}-{uuid.uuid4()}.{ext}"
        with self.state._lock:
            self.state.media_files[name] = media
        return f"{root}{MEDIA_PATH}/{name}"

    # --- images ----------------------------------------------------------------------------------------
    def image_items(self, root: str, body: dict[str, Any], prompt: str, n: int, inputs: list[str]) -> list[Any]:
        fmt = body.get("response_format") or "url"
        width, height = size_for(body.get("aspect_ratio"))
        refused = _moderated(prompt, n)
        kind = "png" if fmt == "b64_json" or self.state.image_format == "png" else "jpeg"
        items: list[dict[str, Any]] = []
        for i in range(n):
            revised = f"(local server) {prompt.strip()}"
            if i < refused:
                items.append({"revised_prompt": revised, "respect_moderation": False})
                continue
            seed = f"{body.get('model')}|{prompt}|{'|'.join(inputs)}|{i}"
            item = {"mime_type": f"image/{kind}", "revised_prompt": revised, "respect_moderation": True}
            if fmt == "b64_json":
                data = png_bytes(seed, width, height) if kind == "png" else jpeg_bytes(seed, width, height)
                item["b64_json"] = base64.b64encode(data).decode("ascii")
            else:
                item["url"] = self.add_file(root, MediaFile(kind, seed, time.time(), width, height))
            items.append(item)
        return items

    def images(self, request: Request, body: dict[str, Any], edit: bool) -> Response:
        answer = self.image_answer(server_root(request), body, edit)
        if "[failed]" not in body["prompt"]:
            bill(self.state, "images", answer)
        if not body.get("deferred"):
            return JSONResponse(answer)
        request_id = str(uuid.uuid4())
        answer.update(request_id=request_id, status="done")
        if "[failed]" in body["prompt"]:
            error = {"code": "internal_error", "message": "Image generation failed (simulated)."}
            answer = {"request_id": request_id, "status": "failed", "error": error}
        self.add_job(request_id, MediaJob("images", self.state.media_pending_polls, answer))
        return JSONResponse({"request_id": request_id})

    def image_answer(self, root: str, body: dict[str, Any], edit: bool) -> dict[str, Any]:
        """The answer to an image request (checked as xAI checks it), its files at ``root``."""
        if "size" in body:
            raise ServedError(400, "Argument not supported: size")
        prompt = _prompt(body)
        model = body.setdefault("model", "grok-imagine-image")
        if model not in IMAGE_PRICES:
            raise unknown_model(str(model))
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            raise ServedError(400, f"Invalid request: n must be an integer from 1 to 10, got {n!r}.")
        if _enum(body, "response_format", ("url", "b64_json")) == "b64_json" and body.get("deferred"):
            raise ServedError(400, "Invalid request: deferred image requests support only response_format url.")
        _enum(body, "aspect_ratio", IMAGE_ASPECTS)
        _enum(body, "resolution", ("1k", "1.5k", "2k"))
        inputs = self.image_inputs(body, edit)
        usage = {} if self.state.omit_cost else {"cost_in_usd_ticks": n * _price_ticks(IMAGE_PRICES[model])}
        return {"data": self.image_items(root, body, prompt, n, inputs), "usage": usage, "model": model}

    def image_inputs(self, body: dict[str, Any], edit: bool) -> list[str]:
        single, many = body.get("image"), body.get("images")
        if not edit:
            if single is not None or many is not None:
                raise ServedError(400, "Invalid request: input images go to /v1/images/edits.")
            return []
        if (single is None) == (many is None):
            raise ServedError(400, "Invalid request: give exactly one of image or images.")
        if single is not None and body.get("aspect_ratio") is not None:
            raise ServedError(400, "Invalid request: aspect_ratio is only supported with images.")
        if many is not None and (not isinstance(many, list) or not many):
            raise invalid_type("images", many, "a non-empty sequence")
        return [_ref(v, f"images[{i}]") for i, v in enumerate(many)] if many is not None else [_ref(single, "image")]

    # --- video -----------------------------------------------------------------------------------------
    def video(self, request: Request, body: dict[str, Any], action: str) -> Response:
        request_id = str(uuid.uuid4())
        finished = self.video_answer(server_root(request), body, action)
        if finished.get("status") == "done":
            bill(self.state, "videos", finished)
        self.add_job(request_id, MediaJob("videos", self.state.media_pending_polls, finished))
        return JSONResponse({"request_id": request_id})

    def video_answer(self, root: str, body: dict[str, Any], action: str) -> dict[str, Any]:
        """The finished job of a video request (checked as xAI checks it), its file at ``root``."""
        prompt = _prompt(body, required=not (action == "generate" and body.get("image") is not None))
        model = body.setdefault("model", "grok-imagine-video")
        if model not in VIDEO_PRICES:
            raise unknown_model(str(model))
        low, high, default = VIDEO_SECONDS[action]
        duration = body.get("duration", body.get("seconds"))
        if isinstance(duration, str) and duration.isdigit():
            duration = int(duration)
        if duration is not None and (low is None or high is None or not isinstance(duration, int)
                                     or isinstance(duration, bool)
                                     or not low <= duration <= high):  # fmt: skip
            allowed = "not supported for edits" if low is None else f"must be from {low} to {high} seconds"
            raise ServedError(400, f"Invalid request: duration {allowed}, got {duration!r}.")
        resolution = _enum(body, "resolution", ("480p", "720p", "1080p")) or "480p"
        _enum(body, "aspect_ratio", VIDEO_ASPECTS)
        for name in ("image", "video"):
            if body.get(name) is not None:
                _ref(body[name], name)
        if action == "generate" and body.get("video") is not None:
            raise ServedError(400, "Invalid request: video is not supported for generations.")
        if action != "generate" and body.get("video") is None:
            raise ServedError(422, "Failed to deserialize the JSON body into the target type: missing field `video`")
        return self.finished_video(root, prompt, model, resolution, float(duration or default))

    def finished_video(self, root: str, prompt: str, model: str, resolution: str, seconds: float) -> dict[str, Any]:
        if "[failed]" in prompt:
            error = {"code": "internal_error", "message": "Video generation failed (simulated)."}
            return {"status": "failed", "error": error}
        if "[expired]" in prompt:
            return {"status": "expired"}
        ticks = _price_ticks(seconds * VIDEO_PRICES[model][resolution])
        usage = {} if self.state.omit_cost else {"cost_in_usd_ticks": ticks}
        video: dict[str, Any] = {"duration": seconds, "respect_moderation": True}
        if _moderated(prompt, 1):
            video["respect_moderation"] = False
        else:
            seed = f"{model}|{prompt}"
            media = MediaFile("mp4", seed, time.time(), seconds=seconds, min_bytes=self.state.video_bytes)
            video["url"] = self.add_file(root, media)
        return {"status": "done", "video": video, "model": model, "usage": usage, "progress": 100}

    # --- jobs ------------------------------------------------------------------------------------------
    def add_job(self, request_id: str, job: MediaJob) -> None:
        job.total_polls = job.polls_left
        with self.state._lock:
            self.state.media_jobs[request_id] = job

    def poll(self, request_id: str, kind: str) -> Response:
        with self.state._lock:
            job = self.state.media_jobs.get(request_id)
            if job is None or job.kind != kind:
                what = "Video" if kind == "videos" else "Image"
                raise ServedError(404, f"{what} request {request_id} was not found.")
            job.polls += 1
            if job.polls_left > 0:
                job.polls_left -= 1
                if kind == "images" or job.polls == 1:
                    return Response(status_code=202)
                progress = min(99, round(100 * (job.polls - 1) / (job.total_polls + 1)))
                return JSONResponse({"status": "pending", "progress": progress}, status_code=202)
            return JSONResponse({"request_id": request_id, **job.result})

    # --- downloads -------------------------------------------------------------------------------------
    async def serve(self, name: str) -> Response:
        taken = self.state.take_fault(f"{MEDIA_PATH}/{name}", False)
        fault = taken[1] if taken else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.is_error:
            return JSONResponse(fault.error_body(), status_code=fault.status, headers=fault.response_headers())
        with self.state._lock:
            media = self.state.media_files.get(name)
        if media is None or time.time() > media.created + self.state.media_url_ttl:
            return JSONResponse(error_body(404, f"{name} was not found or has expired."), status_code=404)
        if media.kind == "mp4":
            size = mp4_size(media.seed, media.seconds, media.min_bytes)
            chunks = mp4_chunks(media.seed, media.seconds, min_bytes=media.min_bytes)
        else:
            make = png_bytes if media.kind == "png" else jpeg_bytes
            data = make(media.seed, media.width, media.height)
            size, chunks = len(data), iter([data])
        content_type = "video/mp4" if media.kind == "mp4" else f"image/{media.kind}"
        body = _dropping(chunks, size) if fault is not None and fault.drop else _paced(chunks)
        return StreamingResponse(body, headers={"content-length": str(size)}, media_type=content_type)


async def _paced(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)


async def _dropping(chunks: Iterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Half the body, then the connection is cut (a ``drop`` fault)."""
    sent = 0
    for chunk in chunks:
        piece = chunk[: max(0, size // 2 - sent)]
        if piece:
            yield piece
            sent += len(piece)
        if sent >= size // 2:
            break
    raise ConnectionResetError("drop fault: media download cut halfway")


def create_media_router(state: ServerState) -> APIRouter:
    """The image and video routes (relative to ``/v1``)."""
    r, media = APIRouter(), MediaRoutes(state)

    async def body_of(request: Request) -> dict[str, Any]:
        return _body_dict(await request.body(), request.headers.get("content-type", ""))

    @r.post(route(images.GENERATE))
    async def generate_images(request: Request) -> Response:
        return media.images(request, await body_of(request), edit=False)

    @r.post(route(images.EDIT))
    async def edit_images(request: Request) -> Response:
        return media.images(request, await body_of(request), edit=True)

    @r.get(route(images.RESULT))
    async def image_result(request_id: str) -> Response:
        return media.poll(request_id, "images")

    def submitter(action: str) -> Any:
        async def submit(request: Request) -> Response:
            return media.video(request, await body_of(request), action)

        return submit

    for action, endpoint in videos.SUBMISSIONS.items():
        r.add_api_route(route(endpoint), submitter(action), methods=["POST"])

    @r.get(route(videos.JOB))
    async def video_job(request_id: str) -> Response:
        return media.poll(request_id, "videos")

    return r


def create_media_files_router(state: ServerState) -> APIRouter:
    """The generated files (relative to the server's root, outside ``/v1``: no auth)."""
    r, media = APIRouter(), MediaRoutes(state)

    @r.get(mounted(media_api.DOWNLOAD))
    async def media_file(url: str) -> Response:
        return await media.serve(url)

    return r


__all__ = ["IMAGE_PRICES", "MEDIA_PATH", "VIDEO_PRICES", "MediaFile", "MediaJob", "MediaRoutes",
           "create_media_files_router", "create_media_router", "server_root"]
