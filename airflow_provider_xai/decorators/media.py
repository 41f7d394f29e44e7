"""``@task.xai_image`` and ``@task.xai_video``: the decorated function returns the prompt (or a
dict of the operator's templated arguments, such as ``{"prompt": ..., "images": [...]}`` for
an edit), and the decorator's keyword arguments are :class:`XAIImageOperator`'s or
:class:`XAIVideoOperator`'s."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.bases.decorator import (
    DecoratedOperator,
    TaskDecorator,
    determine_kwargs,
    task_decorator_factory,
)
from airflow.sdk.definitions._internal.types import SET_DURING_EXECUTION
from airflow.sdk.definitions.context import context_merge

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.operators.images import XAIImageOperator
from airflow_provider_xai.operators.video import XAIVideoOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class _MediaDecorated(DecoratedOperator):
    """Runs the callable, then makes what it asked for."""

    overwrite_rtif_after_execution: bool = True
    custom_operator_name: str = "@task.xai_image"
    #: What the function may return in a dict besides the prompt.
    returned: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, prompt=SET_DURING_EXECUTION,
            **kwargs,
        )  # fmt: skip

    def take_return_value(self, context: Context) -> None:
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        value = self.python_callable(*self.op_args, **kwargs)
        if isinstance(value, str):
            value = {"prompt": value}
        if not isinstance(value, Mapping) or not set(value) <= {"prompt", *self.returned}:
            allowed = ", ".join(("prompt", *self.returned))
            raise XAIValidationError(
                "return value", f"{self.custom_operator_name} functions return a prompt or a dict of {allowed}; "
                f"got {type(value).__name__}{'' if not isinstance(value, Mapping) else ' ' + str(sorted(value))}",
            )  # fmt: skip
        for name, item in value.items():
            setattr(self, name, item)


class _ImageDecorated(_MediaDecorated, XAIImageOperator):
    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *XAIImageOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **XAIImageOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.xai_image"
    returned = ("images",)

    def execute(self, context: Context) -> Any:
        self.take_return_value(context)
        return XAIImageOperator.execute(self, context)


class _VideoDecorated(_MediaDecorated, XAIVideoOperator):
    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *XAIVideoOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **XAIVideoOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.xai_video"
    returned = ("image", "reference_images", "video")

    def execute(self, context: Context) -> Any:
        self.take_return_value(context)
        return XAIVideoOperator.execute(self, context)


def xai_image_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Wrap a function into an :class:`XAIImageOperator` (``@task.xai_image(output_folder=..., n=2)``)."""
    return task_decorator_factory(python_callable=python_callable, decorated_operator_class=_ImageDecorated, **kwargs)


def xai_video_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Wrap a function into an :class:`XAIVideoOperator` (``@task.xai_video(output_folder=..., duration=4)``)."""
    return task_decorator_factory(python_callable=python_callable, decorated_operator_class=_VideoDecorated, **kwargs)


__all__ = ["xai_image_task", "xai_video_task"]
