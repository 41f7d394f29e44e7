"""The Responses API path of a prompt task (``/v1/responses``): its options, their checks at DAG
parse, the request fields, sending (streamed into the log with a line per tool step, or not),
and what it pushes to XCom (the response id to continue from, citations, function calls).

Light imports only (imported at DAG parse); the hook and the endpoint declarations are imported
when a task runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import XAICostCapError, XAIError, XAIValidationError
from airflow_provider_xai.functions import PythonTool, as_tool_specs, python_tools
from airflow_provider_xai.operators.base import LineLogger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.operators.prompt import XAIPromptOperator
    from airflow_provider_xai.pipeline.call import Endpoint
    from airflow_provider_xai.schemas.responses import Response
    from airflow_provider_xai.usage import UsageLedger

#: The Responses-only arguments of a prompt task.
RESPONSES_ONLY = ("tools", "previous_response_id", "store", "include", "max_turns")
XCOM_RESPONSE_ID_KEY = "xai_response_id"
XCOM_CITATIONS_KEY = "xai_citations"
XCOM_FUNCTION_CALLS_KEY = "xai_function_calls"
#: The task state store key of a deferrable call's response id (a retry re-attaches to it).
RESPONSE_STATE_KEY = "xai_deferred_response_id"


class ResponsesPath:
    """The Responses API. The options are read from the operator (they are its templated
    arguments): ``tools``, ``previous_response_id``, ``store``, ``include``, ``max_turns``."""

    def check(self, op: XAIPromptOperator) -> None:
        """Checks of a Responses task that need no rendering, at DAG parse, naming the argument."""
        options = options_of(op)
        if op.system_prompt is not None and options["previous_response_id"] is not None:
            raise XAIValidationError(
                "system_prompt",
                "cannot be combined with previous_response_id: the stored response's instructions are reused",
            )
        if options["store"] is not None and not isinstance(options["store"], bool):
            raise XAIValidationError("store", f"expected True or False, got {options['store']!r}")
        if options["store"] is False and op.deferrable:
            raise XAIValidationError(
                "store", "a deferrable Responses call is collected from xAI's store: leave store at True"
            )
        check_number("max_turns", options["max_turns"], 1, integer=True)
        if (tools := options["tools"]) is not None:
            from airflow_provider_xai.tools import check_tools

            check_tools(as_tool_specs(tools))  # values that still hold a template are checked after rendering
            if op.deferrable and python_tools(tools):
                raise XAIValidationError(
                    "deferrable", "Python function tools run in the task: they cannot wait in the triggerer"
                )

    def fields(self, op: XAIPromptOperator) -> dict[str, Any]:
        """The rendered task as Responses API fields (validated once, by the hook, before sending)."""
        options = {
            "input": to_input(op.conversation(typed_items=True)),
            "instructions": op.checked_system_prompt(),
            "model": op.checked_model(),
            "temperature": op.temperature,
            "max_output_tokens": op.max_tokens,
            "reasoning": {"effort": op.reasoning_effort} if op.reasoning_effort else None,
            **options_of(op),
            "tools": as_tool_specs(options_of(op)["tools"]),
            "previous_response_id": check_previous_response_id(getattr(op, "previous_response_id", None)),
        }
        fields = {**op.common_fields(), **op.checked_request_kwargs(),
                  **{k: v for k, v in options.items() if v is not None}}  # fmt: skip
        if op.output_spec is not None:
            from airflow_provider_xai.endpoints.responses import with_output

            fields = with_output(fields, op.output_spec)
        return fields

    def run(self, op: XAIPromptOperator, context: Context, ledger: UsageLedger) -> Any:
        fields = self.fields(op)
        if op.deferrable:
            return defer(op, context, ledger, fields)
        response = _ask(op, fields, ledger)
        if functions := python_tools(options_of(op)["tools"]):
            response = run_functions(op, ledger, fields, response, functions)
        return op.finish(context, ledger, response)

    def endpoint(self) -> Endpoint:
        from airflow_provider_xai.endpoints.responses import CREATE

        return CREATE

    def xcom_values(self, op: XAIPromptOperator, answer: Response) -> dict[str, Any]:
        if answer.incomplete_reason:
            op.log.warning("xAI response %s is incomplete: %s", answer.id, answer.incomplete_reason)
        return xcom_values(answer, options_of(op)["store"])


def options_of(op: XAIPromptOperator) -> dict[str, Any]:
    """The operator's Responses-only arguments (:data:`RESPONSES_ONLY`), as rendered."""
    return {name: getattr(op, name, None) for name in RESPONSES_ONLY}


#: Round trips of a function-tool loop when the task sets no ``max_turns``.
DEFAULT_FUNCTION_ROUNDS = 8


def run_functions(
    op: XAIPromptOperator,
    ledger: UsageLedger,
    fields: dict[str, Any],
    response: Response,
    functions: Mapping[str, PythonTool],
) -> Response:
    """The function-tool loop: while the model asks for the task's Python functions, run them in
    the worker and send their outputs back, at most ``max_turns`` round trips, and no further
    than the task's ``max_cost_usd`` allows. Every turn's usage is recorded as it is billed; the
    last answer is the task's."""
    rounds = options_of(op)["max_turns"] or DEFAULT_FUNCTION_ROUNDS
    store = options_of(op)["store"] is not False
    history = list(fields["input"]) if isinstance(fields.get("input"), list) else []
    for turn in range(1, rounds + 1):
        calls = [call for call in response.function_calls if call.name in functions]
        if not calls:
            return response
        ledger.record(op.usage_of(response))
        outputs = []
        for call in calls:
            op.log.info("xAI | function %s(%s)", call.name, ", ".join(sorted(call.arguments)))
            outputs.append(call.output(functions[call.name].call(call.arguments)))
        follow = {k: v for k, v in fields.items() if k not in ("input", "instructions", "previous_response_id")}
        if store:  # xAI keeps the conversation: send only the outputs
            follow.update(input=outputs, previous_response_id=response.id)
        else:  # nothing kept: replay the answer's items, then the outputs
            history += [*(item.model_dump(mode="json", exclude_none=True) for item in response.output), *outputs]
            follow.update(input=history, instructions=fields.get("instructions"))
        try:
            response = _ask(op, {k: v for k, v in follow.items() if v is not None}, ledger)
        except XAICostCapError as exc:  # the answer so far is the task's, its usage recorded
            op.log.warning("xAI function-tool loop stopped after %d round trips: %s", turn - 1, exc.message)
            return response
        op.log.info("xAI | function round %d of at most %d done", turn, rounds)
    if any(call.name in functions for call in response.function_calls):
        op.log.warning("xAI function-tool loop stopped after %d round trips (max_turns)", rounds)
    return response


def _ask(op: XAIPromptOperator, fields: dict[str, Any], ledger: UsageLedger) -> Response:
    """One Responses call, streamed into the log when the task streams."""
    if not op.stream:
        return op.hook.create_response(fields)
    response = _stream(op, fields, ledger)
    for n, citation in enumerate(response.citations(), 1):
        op.log.info("xAI | [%d] %s%s", n, citation.url, f" ({citation.title})" if citation.title else "")
    return response


def _stream(op: XAIPromptOperator, fields: dict[str, Any], ledger: UsageLedger) -> Response:
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
        op.record_billed(ledger, exc)
        raise
    finally:
        lines.flush()


class ResponsesResume:
    """The method a deferrable Responses task resumes in (mixed into the operators that may
    make one)."""

    def execute_response_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume a deferrable Responses call: the event carries the whole stored response."""
        return finish_deferred(cast("XAIPromptOperator", self), context, event)


def defer(op: XAIPromptOperator, context: Context, ledger: UsageLedger, fields: dict[str, Any]) -> Any:
    """Send the request, keep its response id (task state store and XCom) the moment xAI names
    it, and wait for the answer in the triggerer. A retry with the same inputs re-attaches to
    that response (collected at once when it is done) instead of sending it again."""
    from airflow_provider_xai.exceptions import XAINotFoundError
    from airflow_provider_xai.operators.base import TaskState, fingerprint
    from airflow_provider_xai.triggers.responses import IN_PROGRESS, XAIResponseTrigger

    stored = TaskState(context, RESPONSE_STATE_KEY, op.log, "xAI response id")
    response_id, response = stored.attach(
        fingerprint(fields),
        op.hook.get_response,
        lambda answer: answer.status not in IN_PROGRESS,
        XAINotFoundError,
        lambda: op.submitted(lambda: op.hook.start_response(fields)),
    )
    if response is not None:
        stored.clear()
        return finish_answer(op, context, ledger, response)
    context["ti"].xcom_push(key=XCOM_RESPONSE_ID_KEY, value=response_id)
    op.defer(
        trigger=XAIResponseTrigger(
            response_id=response_id,
            xai_conn_id=op.xai_conn_id,
            poll_interval=op.poll_interval,
            end_time=time.time() + op.deferred_timeout,
        ),
        method_name="execute_response_complete",
    )


def finish_deferred(op: XAIPromptOperator, context: Context, event: dict[str, Any] | None) -> Any:
    """The task's end after the trigger: the answer finished (its usage recorded first, also for
    a failed response), or the wait's failure raised typed."""
    from airflow_provider_xai.exceptions import XAIDeferredError, XAIDeferredTimeoutError, error_from_dict
    from airflow_provider_xai.operators.base import TaskState
    from airflow_provider_xai.schemas.responses import Response

    if not event:
        raise XAIDeferredError("xAI deferrable response resumed without a trigger event")
    response_id = event.get("response_id")
    if event.get("status") == "success":
        TaskState(context, RESPONSE_STATE_KEY, op.log).clear()
        return finish_answer(op, context, op.ledger(context), Response.model_validate(event["response"]))
    message = str(event.get("message") or f"xAI response {response_id} failed")
    if event.get("status") == "timeout":
        raise XAIDeferredTimeoutError(message, request_id=response_id)
    raise error_from_dict(event.get("error")) or XAIDeferredError(message, request_id=response_id)


def finish_answer(op: XAIPromptOperator, context: Context, ledger: UsageLedger, response: Response) -> Any:
    """Finish a collected response (its reservation settled to its bill): usage first; a failed
    one is then raised typed."""
    if response.status == "failed":
        from airflow_provider_xai.exceptions import XAIServerError

        op.record(ledger, op.usage_of(response), held=response.id)
        error = response.error
        raise XAIServerError(
            f"xAI response {response.id} failed: {error.message if error else 'no reason given'}",
            code=error.code if error else None,
            request_id=response.id,
        )
    return op.finish(context, ledger, response, held=response.id)


def check_previous_response_id(value: Any) -> str | None:
    """The rendered ``previous_response_id``; an upstream task that stored nothing (``store=False``)
    pushed no id, which renders as ``None`` or an empty string."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip() in ("", "None"):
        raise XAIValidationError(
            "previous_response_id",
            f"rendered to {value!r}: the upstream task pushed no xai_response_id (it ran with store=False, "
            "or on Chat Completions), so there is no stored response to continue",
        )
    return value.strip()


def _input_part(part: Mapping[str, Any], path: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        converted: dict[str, Any] = {"type": "input_image", "image_url": url}
        if isinstance(image, Mapping) and image.get("detail"):
            converted["detail"] = image["detail"]
        return converted
    if kind in ("input_text", "input_image", "input_file"):
        return dict(part)
    raise XAIValidationError(path, f"content part type {kind!r} has no Responses equivalent")


def to_input(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-shaped messages (a ``messages`` argument, or the vision operator's image parts) as
    Responses input items; typed items (``function_call_output``, replayed output items) pass
    through."""
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if "role" not in message and isinstance(message.get("type"), str):
            items.append(dict(message))  # already a Responses input item (function_call_output...)
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = [_input_part(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content)]
        items.append({"role": message.get("role", "user"), "content": content if content is not None else ""})
    return items


def xcom_values(response: Any, store: bool | None) -> dict[str, Any]:
    """What a Responses task pushes besides usage: the id to continue from (None when nothing
    was stored), the citations and the function calls for a downstream task to act on."""
    return {
        XCOM_RESPONSE_ID_KEY: None if store is False else response.id,
        XCOM_CITATIONS_KEY: [{"url": c.url, "title": c.title} for c in response.citations()],
        XCOM_FUNCTION_CALLS_KEY: [
            {"name": call.name, "call_id": call.call_id, "arguments": call.arguments}
            for call in response.function_calls
        ],
    }


__all__ = [
    "RESPONSES_ONLY",
    "RESPONSE_STATE_KEY",
    "XCOM_CITATIONS_KEY",
    "XCOM_FUNCTION_CALLS_KEY",
    "XCOM_RESPONSE_ID_KEY",
    "ResponsesPath",
    "ResponsesResume",
    "check_previous_response_id",
    "to_input",
    "xcom_values",
]
