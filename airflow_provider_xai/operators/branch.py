"""XAIBranchOperator: Grok chooses which downstream task runs next.

The model answers with structured output, ``{"branch": <one task id>, "reason": <why>}``, the
branch constrained to the choices (the task's downstream task ids unless given). An answer that
names no choice is asked again, at most ``max_attempts`` times in all, then the task fails,
saying what the model answered. Every attempt's usage is recorded; the reason goes to XCom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import XAIStructuredOutputError, XAIValidationError
from airflow_provider_xai.operators.responses import XAIResponsesOperator

try:  # Airflow 3.3's task SDK
    from airflow.sdk.bases.branch import BranchMixIn
except ImportError:  # Airflow 3.2: the standard provider's
    from airflow.providers.standard.operators.branch import BranchMixIn  # type: ignore[no-redef,assignment]

if TYPE_CHECKING:
    from airflow.sdk import Context

XCOM_BRANCH_REASON_KEY = "xai_branch_reason"


def choice_schema(choices: Sequence[str]) -> dict[str, Any]:
    """The structured answer of a branch: one of ``choices`` and a reason."""
    return {
        "title": "branch",
        "type": "object",
        "properties": {"branch": {"type": "string", "enum": list(choices)}, "reason": {"type": "string"}},
        "required": ["branch", "reason"],
        "additionalProperties": False,
    }


class XAIBranchOperator(XAIResponsesOperator, BranchMixIn):
    """Ask Grok which downstream task to run; the others are skipped.

    :param choices: the task ids (or task group ids) Grok may choose (templated); default: this
        task's downstream task ids.
    :param max_attempts: how many times to ask before failing when an answer names no choice.

    And every :class:`XAIResponsesOperator` argument but ``response_format`` (the operator asks
    for its own). The prompt should say what each choice means.
    """

    template_fields: Sequence[str] = (*XAIResponsesOperator.template_fields, "choices")
    ui_color = "#fcd34d"

    def __init__(self, *, choices: list[str] | None = None, max_attempts: int = 2, **kwargs: Any) -> None:
        if kwargs.get("response_format") is not None:
            raise XAIValidationError("response_format", "the branch operator asks for its own answer shape")
        if kwargs.get("deferrable"):
            raise XAIValidationError("deferrable", "a branch decides at once: it does not defer")
        super().__init__(**kwargs)
        self.choices = choices
        self.max_attempts = max_attempts
        check_number("max_attempts", max_attempts, 1, integer=True)

    def checked_choices(self) -> list[str]:
        choices = self.choices if self.choices is not None else sorted(self.downstream_task_ids)
        if not isinstance(choices, list | tuple) or not all(isinstance(c, str) and c for c in choices):
            raise XAIValidationError("choices", f"expected a list of task ids, got {choices!r}")
        if not choices:
            raise XAIValidationError("choices", "there is no downstream task to choose from")
        return list(choices)

    def execute(self, context: Context) -> Any:
        choices = self.checked_choices()
        self.response_format = choice_schema(choices)
        self.__dict__.pop("output_spec", None)  # the cached spec follows the new format
        answered: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            try:
                value = super().execute(context)
            except XAIStructuredOutputError as exc:
                answered.append(exc.message)
                self.log.warning("xAI branch answer %d of %d did not fit: %s", attempt, self.max_attempts, exc)
                continue
            self.log.info("xAI chose %s: %s", value["branch"], value["reason"])
            context["ti"].xcom_push(key=XCOM_BRANCH_REASON_KEY, value=value["reason"])
            return self.do_branch(context, value["branch"])
        raise XAIStructuredOutputError(
            f"xAI named none of {choices} in {self.max_attempts} attempts: " + " | ".join(answered)
        )


__all__ = ["XCOM_BRANCH_REASON_KEY", "XAIBranchOperator", "choice_schema"]
