"""``@task.xai``: the decorated function returns the prompt (or a message list) and the
decorator's keyword arguments are :class:`XAIChatOperator`'s."""

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
from airflow_provider_xai.operators.chat import XAIChatOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class _XAIDecoratedOperator(DecoratedOperator, XAIChatOperator):
    """Runs the callable, then sends what it returned to Grok."""

    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *XAIChatOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **XAIChatOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.xai"
    overwrite_rtif_after_execution: bool = True

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            prompt=SET_DURING_EXECUTION,
            **kwargs,
        )

    def execute(self, context: Context) -> Any:
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        value = self.python_callable(*self.op_args, **kwargs)
        if isinstance(value, str):
            self.prompt, self.messages = value, None
        elif isinstance(value, list):
            self.prompt, self.messages = None, value
        else:
            raise XAIValidationError(
                "return value",
                f"@task.xai functions return a prompt string or a message list, got {type(value).__name__}",
            )
        return XAIChatOperator.execute(self, context)


def xai_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Wrap a function into an :class:`XAIChatOperator` (``@task.xai(model=..., response_format=...)``)."""
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_XAIDecoratedOperator,
        **kwargs,
    )
