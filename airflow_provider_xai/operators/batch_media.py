"""The files of a batch's image and video answers: downloaded from xAI's URLs (or decoded from
``b64_json``) into object storage beside the output JSONL (``<output stem>_media/<custom_id>/``:
``image_NN.<ext>`` or ``video.mp4``), so each output line holds paths, never bytes. The answers'
usage (per image or per second, at the batch discount) is their endpoints' record functions'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import XAIError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_xai.hooks.xai import XAIHook


def media_folder(output: ObjectStoragePath, custom_id: str) -> ObjectStoragePath:
    """Where one line's files go: beside the output JSONL."""
    from airflow_provider_xai.operators.media_output import safe

    folder: ObjectStoragePath = output.parent / f"{output.stem}_media" / safe(custom_id)
    return folder


def write_media(hook: XAIHook, answer: Any, folder: ObjectStoragePath) -> dict[str, Any]:
    """The files of one image or video answer, written into ``folder``: the line's answer
    (``paths``, ``refused``); raises a typed error when a download fails."""
    from airflow_provider_xai.operators.media_output import VIDEO_FORMATS, StorageSink, write_images

    if hasattr(answer, "data"):  # images
        written = write_images(answer.data, folder, lambda _i, url, sink: hook.download_media(url, sink))
        return {"paths": [w.path for _, w in written], "refused": answer.refused}
    if answer.refused:
        return {"paths": [], "refused": True}
    out = hook.download_media(answer.video.url, lambda: StorageSink(folder, "video", VIDEO_FORMATS))
    return {"paths": [out.path], "refused": False, "duration": answer.video.duration}


def media_line(hook: XAIHook, answer: Any, output: ObjectStoragePath, custom_id: str) -> dict[str, Any]:
    """An output line's fields for an image or video answer: ``answer`` with the paths written,
    or ``status: failed`` with why they could not be (the answer was billed either way)."""
    try:
        return {"answer": write_media(hook, answer, media_folder(output, custom_id))}
    except XAIError as exc:
        return {"status": "failed", "error": f"the answer's files could not be stored: {exc.message}"}


__all__ = ["media_folder", "media_line", "write_media"]
