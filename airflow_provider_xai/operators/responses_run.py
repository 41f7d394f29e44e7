"""Running a chat or vision task on the Responses API. The hook is imported when a task runs,
not when a DAG file is parsed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import XAIError, XAIValidationError
from airflow_provider_xai.operators.chat import OPERATOR_OWNED_FIELDS, LineLogger
from airflow_provider_xai.operators.responses_path import check_previous_response_id, to_input, xcom_values
from airflow_provider_xai.usage import build_record

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.operators.chat import XAIChatOperator
    from airflow_provider_xai.schemas.responses import Response
    from airflow_provider_xai.usage import UsageLedger


def response_fields(op: XAIChatOperator) -> dict[str, Any]:
    """The rendered task as Responses API fields (validated by the hook before sending)."""
    if not isinstance(op.request_kwargs, dict):
        raise XAIValidationError("request_kwargs", f"expected a dict, got {type(op.request_kwargs).__name__}")
    if owned := sorted(OPERATOR_OWNED_FIELDS.union({"input"}).intersection(op.request_kwargs)):
        raise XAIValidationError(f"request_kwargs.{owned[0]}", "is set by the operator, not request_kwargs")
    fields: dict[str, Any] = {
        **op.request_kwargs,
        "input": to_input(op.build_messages(system=False)),
        "instructions": op.system_prompt,
        "model": op.model or None,
        "temperature": op.temperature,
        "max_output_tokens": op.max_tokens,
        "reasoning": {"effort": op.reasoning_effort} if op.reasoning_effort else None,
        "tools": op.tools,
        "previous_response_id": check_previous_response_id(op.previous_response_id),
        "store": op.store,
        "include": op.include,
        "max_turns": op.max_turns,
        "prompt_cache_key": op.prompt_cache_key,
    }
    return {k: v for k, v in fields.items() if v is not None}


def run_responses(op: XAIChatOperator, context: Context, ledger: UsageLedger) -> Any:
    """Send the task to the Responses API (streamed into the log if asked) and finish it."""
    from airflow_provider_xai.endpoints.responses import with_output

    fields = response_fields(op)
    if op.output_spec is not None:
        fields = with_output(fields, op.output_spec)
    if not op.stream:
        return finish_response(op, context, ledger, op.hook.create_response(fields))
    response = _stream(op, fields, ledger)
    for n, citation in enumerate(response.citations(), 1):
        op.log.info("xAI | [%d] %s%s", n, citation.url, f" ({citation.title})" if citation.title else "")
    return finish_response(op, context, ledger, response)


def _stream(op: XAIChatOperator, fields: dict[str, Any], ledger: UsageLedger) -> Response:
    """Stream into the task log: answer lines, one line per tool step. A stream that fails after
    xAI billed it still has its usage recorded before the error is raised."""
    lines = LineLogger(op.log)

    def on_event(event: Any, assembler: Any) -> None:
        if delta := event.text_delta:
            lines.feed(delta)
        elif step := assembler.describe(event):
            lines.flush()
            op.log.info("xAI | %s", step)

    try:
        return op.hook.stream_response(fields, on_event=on_event)
    except XAIError as exc:
        if exc.billed is not None and exc.billed.usage is not None:
            _record(op, ledger, exc.billed)
        raise
    finally:
        lines.flush()


def finish_response(op: XAIChatOperator, context: Context, ledger: UsageLedger, response: Response) -> Any:
    """Record usage first (so a later failure never loses it), push the response id, citations
    and function calls, then return the answer (text or the validated structured object)."""
    _record(op, ledger, response)
    for key, value in xcom_values(response, op.store).items():
        context["ti"].xcom_push(key=key, value=value)
    if response.incomplete_reason:
        op.log.warning("xAI response %s is incomplete: %s", response.id, response.incomplete_reason)
    if op.output_spec is not None:
        return op.output_spec.parse(response.text, response)
    return response.text


def _record(op: XAIChatOperator, ledger: UsageLedger, response: Response) -> None:
    prices = op.hook.get_prices()
    ledger.record(build_record(response.usage, response.model, completion_id=response.id, prices=prices))
