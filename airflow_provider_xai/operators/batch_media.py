"""Image and video results of :class:`XAIBatchOperator`: their usage (per image or per second,
at the batch discount when xAI sends no cost) and their files, written to object storage beside
the output JSONL (``<output stem>_media/<custom_id>/image_NN.<ext>`` or ``video.mp4``), so each
output line holds paths, never bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import XAIError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.usage import UsageRecord


def media_answer(kind: str, body: Mapping[str, Any], model: str) -> Any:
    """An image or video result's body as its answer model (``ImageResult`` or ``VideoJob``)."""
    from airflow_provider_xai.schemas.media import ImageResult, VideoJob

    answer: Any = ImageResult.model_validate(body) if kind.startswith("image") else VideoJob.model_validate(
        {"status": "done", **body}
    )
    answer.model = answer.model or model
    return answer


def media_record(custom_id: str, kind: str, body: Mapping[str, Any], model: str, discount: float) -> UsageRecord:
    """The usage record (``kind`` ``batch``) of one image or video result."""
    from airflow_provider_xai.endpoints.media import media_record as record_of

    answer = media_answer(kind, body, model)
    if kind.startswith("image"):
        units, unit = float(len(answer.data)), "image"
    else:
        duration = answer.video.duration if answer.video is not None else None
        units, unit = float(duration or 0.0), "second"
    record = record_of("batch", answer.model, units, unit, answer.usage, custom_id, discount=discount)
    record.request_id = custom_id
    return record


def media_folder(output: ObjectStoragePath, custom_id: str) -> ObjectStoragePath:
    """Where one line's files go: beside the output JSONL."""
    from airflow_provider_xai.operators.media_output import safe

    folder: ObjectStoragePath = output.parent / f"{output.stem}_media" / safe(custom_id)
    return folder


def write_media(
    hook: XAIHook, kind: str, body: Mapping[str, Any], model: str, folder: ObjectStoragePath
) -> dict[str, Any]:
    """The files of one image or video result, downloaded into ``folder``: the line's answer
    (``paths``, ``refused``); raises a typed error when a download fails."""
    from airflow_provider_xai.operators.media_output import VIDEO_FORMATS, StorageSink, write_images

    answer = media_answer(kind, body, model)
    if kind.startswith("image"):
        written = write_images(answer.data, folder, lambda _i, url, sink: hook.download_media(url, sink))
        return {"paths": [w.path for _, w in written], "refused": answer.refused}
    if answer.refused:
        return {"paths": [], "refused": True}
    assert answer.video is not None and answer.video.url is not None
    out = hook.download_media(answer.video.url, lambda: StorageSink(folder, "video", VIDEO_FORMATS))
    return {"paths": [out.path], "refused": False, "duration": answer.video.duration}


def media_line(
    hook: XAIHook, kind: str, body: Mapping[str, Any], model: str, output: ObjectStoragePath, custom_id: str
) -> dict[str, Any]:
    """The output line's fields for an image or video result: ``answer`` with the paths written,
    or ``status: failed`` with the error (the result was billed either way)."""
    try:
        return {"answer": write_media(hook, kind, body, model, media_folder(output, custom_id))}
    except XAIError as exc:
        return {"status": "failed", "error": f"the {kind} result could not be stored: {exc.message}"}


__all__ = ["media_answer", "media_folder", "media_line", "media_record", "write_media"]
