"""XAIVisionOperator: ask Grok about images (URLs, files, object storage, bytes) in a pipeline.

A thin subclass of :class:`XAIChatOperator`: only the user turn differs (image parts, then the
prompt), so usage records, structured output, deferrable mode, streaming and mapping behave
exactly as for chat. Images are read and checked at execution, before any request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_xai.defaults import DEFAULT_MODEL
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.images import check_detail, coerce_images, resolve_images
from airflow_provider_xai.operators.chat import XAIChatOperator

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

DEFAULT_VISION_MODEL = DEFAULT_MODEL
"""A current xAI model that takes text and image input."""


class XAIVisionOperator(XAIChatOperator):
    """Send a prompt with one or more images to Grok and return the answer.

    :param prompt: the question about the images (templated).
    :param images: one image or a list (templated). Each is an ``https://`` URL (xAI fetches
        it), a ``data:image/...;base64,`` URI, a local path or ``file://`` URL, an
        ``ObjectStoragePath`` (``s3://``, ``gs://``, ``file://``...), raw bytes, or
        ``{"source": <any of those>, "detail": "high"}`` to override ``detail`` for one image.
        A template that renders to a string is one image, unless the string is a JSON (or
        Python) list, which is parsed. Files, objects and bytes must be JPEG or PNG (detected
        from the content) of at most 20 MiB; they are sent inline as base64.
    :param detail: ``auto``, ``low`` or ``high`` for every image without its own.
    :param model: a vision-capable model id (templated); default ``grok-4.3``, whatever the
        connection's default model is.

    Every other :class:`XAIChatOperator` argument (``system_prompt``, ``response_format``,
    ``temperature``, ``max_tokens``, ``deferrable``, ``stream``, ``xai_conn_id``...) works the
    same way, except ``messages``.
    """

    template_fields: Sequence[str] = ("prompt", "images", "system_prompt", "model", "request_kwargs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"request_kwargs": "json"}
    ui_color = "#fde68a"

    def __init__(
        self,
        *,
        prompt: str,
        images: Any,
        detail: str = "auto",
        model: str | None = DEFAULT_VISION_MODEL,
        **kwargs: Any,
    ) -> None:
        super().__init__(prompt=prompt, model=model, **kwargs)
        self.images = images
        self.detail = detail
        check_detail(detail)
        if images is None or isinstance(images, list | tuple):
            coerce_images(images)  # shape only: files are read when the task runs

    def _check_input_choice(self) -> None:
        if self.messages is not None:
            raise XAIValidationError(
                "messages", "XAIVisionOperator takes 'prompt' and 'images', not 'messages'"
            )
        if self.prompt is None:
            raise XAIValidationError("prompt", "is required: say what to do with the images")

    def user_content(self) -> list[dict[str, Any]]:
        """Image parts (checked, read and encoded here), then the prompt as a text part."""
        text = super().user_content()
        resolved = resolve_images(self.images, detail=self.detail)
        for i, image in enumerate(resolved):
            self.log.info("Image %d: %s", i, image.summary)
        return [*(image.part for image in resolved), {"type": "text", "text": text}]

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        # A base64 data URI has no Jinja syntax (no '{'); skip Jinja, which would take seconds
        # and several copies of a large image to give back the same string.
        if isinstance(content, str) and content[:5].lower() == "data:" and "{" not in content:
            return content
        return super().render_template(content, context, jinja_env, seen_oids)
