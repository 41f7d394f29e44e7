"""XAIImageOperator: make (or edit) images with Grok and write them to object storage.

The prompt is templated; ``images=`` turns a generation into an edit of those images (a URL, a
file, an ``ObjectStoragePath`` or bytes each, read and checked as the vision operator does,
before any request). The images land in ``output_folder`` under names fixed per DAG, run, task,
map index and image number; the task returns their paths, never their bytes. Large requests
(``n`` above :data:`DEFER_ABOVE`) or ``deferrable=True`` wait in the triggerer on
``GET /v1/images/{request_id}``; a retried task re-attaches to the request an earlier try made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.media_options import (
    IMAGE_ASPECT_RATIOS,
    IMAGE_FORMATS,
    IMAGE_RESOLUTIONS,
    MAX_IMAGES,
)
from airflow_provider_xai.operators.media import XAIMediaOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.pipeline.call import Endpoint
    from airflow_provider_xai.schemas.media import ImageResult

#: Requests for more images than this wait in the triggerer unless ``deferrable=False``.
DEFER_ABOVE = 4


def check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise XAIValidationError(field, f"must be one of {', '.join(allowed)}, got {value!r}")


class XAIImageOperator(XAIMediaOperator):
    """Generate images from a prompt, or edit given images, and write them to ``output_folder``.

    :param prompt: what to make (templated).
    :param images: images to edit (templated): one or a list, each an ``https://`` URL, a
        ``data:`` URI, a path or ``file://`` URL, an ``ObjectStoragePath`` or bytes (JPEG or
        PNG, from the content), or ``{"file_id": ...}``. None: a generation.
    :param n: how many images (1-10).
    :param aspect_ratio: ``1:1``, ``16:9``, ``9:16``... or ``auto``.
    :param resolution: ``1k``, ``1.5k`` or ``2k``.
    :param model: the image model (templated); default ``grok-imagine-image``.
    :param response_format: ``url`` (default; each image downloaded with bounded memory) or
        ``b64_json`` (decoded a slice at a time).
    :param deferrable: wait in the triggerer (URLs only); None (default): when ``n`` > 4.
    :param request_kwargs: other API fields (``quality``, ``user``...). (templated)

    And :class:`~airflow_provider_xai.operators.media.XAIMediaOperator`'s ``output_folder``,
    ``on_moderated``, ``poll_interval``, ``timeout``, and ``xai_conn_id``, ``retry_policy``.

    Returns ``{"paths", "images": [{"index", "path", "mime_type", "bytes", "revised_prompt"}],
    "refused": [image numbers], "model", "cost_usd", "cost_source", "request_id"}``.
    """

    template_fields: Sequence[str] = ("prompt", "images", "output_folder", "model", "request_kwargs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"request_kwargs": "json"}
    ui_color = "#fbcfe8"
    kind = "images"

    def __init__(
        self,
        *,
        prompt: str,
        images: Any = None,
        n: int = 1,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        model: str | None = None,
        response_format: str = "url",
        deferrable: bool | None = None,
        poll_interval: float = 1.0,
        timeout: float = 600.0,
        request_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poll_interval=poll_interval, timeout=timeout, **kwargs)
        self.prompt = prompt
        self.images = images
        self.n = n
        self.aspect_ratio = aspect_ratio
        self.resolution = resolution
        self.model = model
        self.response_format = response_format
        self.deferrable = deferrable
        self.request_kwargs = request_kwargs or {}
        check_number("n", n, 1, MAX_IMAGES, integer=True)
        check_choice("aspect_ratio", aspect_ratio, IMAGE_ASPECT_RATIOS)
        check_choice("resolution", resolution, IMAGE_RESOLUTIONS)
        check_choice("response_format", response_format, IMAGE_FORMATS)
        if self.waits_deferred and response_format != "url":
            raise XAIValidationError("response_format", "deferred images come as URLs: use 'url'")

    @property
    def waits_deferred(self) -> bool:
        return self.deferrable if self.deferrable is not None else self.n > DEFER_ABOVE

    def endpoint(self) -> Endpoint:
        from airflow_provider_xai.endpoints.images import RESULT

        return RESULT

    # --- the request -----------------------------------------------------------------------------------
    def fields(self) -> dict[str, Any]:
        """The rendered task as checked API fields (input images read and checked)."""
        from airflow_provider_xai.hooks.media import image_fields
        from airflow_provider_xai.schemas.media import image_request

        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise XAIValidationError("prompt", f"expected the text of what to make, got {self.prompt!r:.80}")
        if not isinstance(self.request_kwargs, dict):
            raise XAIValidationError("request_kwargs", f"expected a dict, got {type(self.request_kwargs).__name__}")
        fields: dict[str, Any] = {**self.request_kwargs, "prompt": self.prompt, "n": self.n}
        for name in ("aspect_ratio", "resolution", "model"):
            if (value := getattr(self, name)) is not None:
                fields[name] = value
        fields["response_format"] = "url" if self.waits_deferred else self.response_format
        if self.images is not None:
            single = self.aspect_ratio is None and not isinstance(self.images, list | tuple)
            fields["image" if single else "images"] = self.images
        fields = image_fields(None, fields)
        image_request(fields)  # every field checked before anything is sent
        return fields

    # --- running ----------------------------------------------------------------------------------------
    def start(self, context: Context) -> Any:
        fields = self.fields()
        if not self.waits_deferred:
            return self.complete(context, self.hook.generate_images(fields))
        model = fields.get("model")
        request_id, found = self.attach(
            context,
            fields,
            lambda known: self.hook.get_images(known, model),
            lambda job: job.status != "pending",
            lambda: self.hook.submit_images(fields),
        )
        if found is not None:
            return self.complete(context, found)
        self.defer_on(request_id, model)

    def refreshed_url(self, request_id: str, index: int, model: str) -> Callable[[], str | None]:
        """Asks xAI again for image ``index`` of a deferred request (its URL may have expired)."""

        def url() -> str | None:
            data = self.hook.get_images(request_id, model or None).data
            return data[index].url if index < len(data) else None

        return url

    def job_from(self, data: Any) -> ImageResult:
        from airflow_provider_xai.schemas.media import ImageResult

        return ImageResult.model_validate(data)

    def complete(self, context: Context, job: ImageResult) -> Any:
        """Usage first, then each image to object storage, then the XComs and the outcome."""
        from airflow_provider_xai.operators.media_output import task_folder, write_images

        if job.status != "done":
            self.failed(context, job)
        ledger = self.ledger(context)
        self.record_once(ledger, job)

        def download(index: int, url: str, sink: Callable[[], Any]) -> Any:
            refresh = None if job.request_id is None else self.refreshed_url(job.request_id, index, job.model)
            return self.fetch(url, sink, refresh)

        written: list[dict[str, Any]] = []
        for index, out in write_images(job.data, task_folder(self.folder(), context), download):
            self.log.info("Image %d: %s (%s, %d bytes)", index, out.path, out.mime_type, out.bytes)
            written.append({"index": index, "path": out.path, "mime_type": out.mime_type, "bytes": out.bytes,
                            "revised_prompt": job.data[index].revised_prompt})  # fmt: skip
        result = {
            "paths": [w["path"] for w in written],
            "images": written,
            "refused": job.refused,
            **self.cost_fields(job),
            "request_id": job.request_id,
        }
        return self.outcome(context, result, len(job.refused))


__all__ = ["DEFER_ABOVE", "XAIImageOperator"]
