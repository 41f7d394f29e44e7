"""``@task.xai`` and ``@task.xai_branch``: the decorated function returns the prompt (or a
message list); the decorator's keyword arguments are :class:`XAIChatOperator`'s (or
:class:`XAIBranchOperator`'s)."""

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
from airflow_provider_xai.operators.branch import XAIBranchOperator
from airflow_provider_xai.operators.chat import XAIChatOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class _PromptFromCallable(DecoratedOperator):
    """Runs the callable; what it returned becomes the prompt (a string) or the messages (a list)."""

    custom_operator_name: str = "@task.xai"
    overwrite_rtif_after_execution: bool = True
    prompt: str | None
    messages: list[dict[str, Any]] | str | None

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

    def take_prompt(self, context: Context) -> None:
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
                f"{self.custom_operator_name} functions return a prompt string or a message list, "
                f"got {type(value).__name__}",
            )


class _XAIDecoratedOperator(_PromptFromCallable, XAIChatOperator):
    """Runs the callable, then sends what it returned to Grok."""

    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *XAIChatOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **XAIChatOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.xai"

    def execute(self, context: Context) -> Any:
        self.take_prompt(context)
        return XAIChatOperator.execute(self, context)


class _XAIBranchDecoratedOperator(_PromptFromCallable, XAIBranchOperator):
    """Runs the callable, then lets Grok choose among the downstream tasks."""

    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *XAIBranchOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **XAIBranchOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.xai_branch"

    def execute(self, context: Context) -> Any:
        self.take_prompt(context)
        return XAIBranchOperator.execute(self, context)


def xai_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Wrap a function into an :class:`XAIChatOperator` (``@task.xai(model=..., response_format=...)``)."""
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_XAIDecoratedOperator,
        **kwargs,
    )


def xai_branch_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Wrap a function returning a prompt into an :class:`XAIBranchOperator`
    (``@task.xai_branch(choices=[...])``): Grok chooses which downstream task runs."""
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_XAIBranchDecoratedOperator,
        **kwargs,
    )
