"""XAIChatOperator: one templated prompt to Grok, with usage recorded for every billed answer.

It asks on xAI's Responses API unless the task asks for something only Chat Completions has
(``seed``, ``stop``, an xAI deferred completion, a Chat-only field in ``request_kwargs``), or
``api="chat"`` says so. Argument checks run before any request; the answer (text, or the
validated structured object) is returned as JSON-safe XCom. Heavy imports (httpx, the hook)
happen at execution, not DAG parse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.exceptions import (
    XAIDeferredError,
    XAIDeferredExpiredError,
    XAIDeferredTimeoutError,
    XAIValidationError,
    error_from_dict,
)
from airflow_provider_xai.operators.base import TaskState, fingerprint
from airflow_provider_xai.operators.chat_api import ChatPath
from airflow_provider_xai.operators.prompt import ApiPath, XAIPromptOperator
from airflow_provider_xai.operators.responses_api import RESPONSES_ONLY, ResponsesPath, ResponsesResume

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.schemas import ChatRequest
    from airflow_provider_xai.usage import UsageLedger

XCOM_REQUEST_ID_KEY = "xai_request_id"
#: The task state store key of a submitted deferred completion (a retry re-attaches to it).
DEFERRED_REQUEST_KEY = "xai_deferred_request_id"
APIS = ("auto", "chat", "responses")


def choose_api(api: Any, responses_only: Mapping[str, Any], chat_only: Sequence[str] = ()) -> str:
    """``"chat"`` or ``"responses"``: what ``api`` says, and for ``"auto"`` the Responses API
    (xAI's current one) unless the task asks for something only Chat Completions has
    (``chat_only``: the names of such arguments or fields that were given)."""
    if api not in APIS:
        raise XAIValidationError("api", f"must be one of {', '.join(map(repr, APIS))}, got {api!r}")
    asked = [name for name in RESPONSES_ONLY if responses_only.get(name) is not None]
    if api == "chat" and asked:
        raise XAIValidationError(asked[0], "exists only on the Responses API: use XAIResponsesOperator")
    if asked:  # deferrable goes with the Responses arguments: a deferrable Responses call
        chat_only = [name for name in chat_only if name != "deferrable"]
    if api == "auto" and asked and chat_only:
        raise XAIValidationError(
            chat_only[0], f"exists only on Chat Completions, and {asked[0]!r} only on the Responses API"
        )
    if api == "auto":
        return "chat" if chat_only else "responses"
    return str(api)


def chat_only_arguments(op: XAIChatOperator) -> list[str]:
    """The arguments (and ``request_kwargs`` fields) of a task that only Chat Completions has; a
    value that still holds a template is looked at again once rendered."""
    from airflow_provider_xai.schemas.response_request import CHAT_ONLY_FIELDS

    names = [name for name in ("seed", "stop") if getattr(op, name) is not None]
    if op.deferrable:
        names.append("deferrable")
    if isinstance(op.request_kwargs, dict):
        names += [f"request_kwargs.{key}" for key in op.request_kwargs if key in CHAT_ONLY_FIELDS]
    return names


class XAIChatOperator(ResponsesResume, XAIPromptOperator):
    """Send a prompt (or a message list) to Grok and return the answer.

    Every argument of :class:`~airflow_provider_xai.operators.prompt.XAIPromptOperator`
    (``prompt``, ``messages``, ``system_prompt``, ``model``, ``response_format``,
    ``max_tokens``, ``temperature``, ``reasoning_effort``, ``stream``, ``request_kwargs``,
    ``deferrable`` (alone: an xAI deferred completion, which only Chat Completions has; with a
    Responses argument: a deferrable Responses call), ``poll_interval``, ``deferred_timeout``,
    ``xai_conn_id``, ``retry_policy``), and:

    :param seed: sampling seed (Chat Completions only).
    :param stop: up to 4 stop sequences (Chat Completions only).
    :param api: ``"auto"`` (default): the Responses API unless the task asks for something
        only Chat Completions has (``seed``, ``stop``, ``deferrable``, a Chat-only field in
        ``request_kwargs``); ``"chat"``; ``"responses"``.

    The Responses arguments of :class:`XAIResponsesOperator` (``tools``,
    ``previous_response_id``, ``store``, ``include``, ``max_turns``) are taken too.
    """

    template_fields: Sequence[str] = (
        *XAIPromptOperator.template_fields,
        "tools",
        "previous_response_id",
        "include",
    )
    template_fields_renderers = {**XAIPromptOperator.template_fields_renderers, "tools": "json"}

    def __init__(
        self,
        *,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        api: str = "auto",
        **kwargs: Any,
    ) -> None:
        responses_arguments = {name: kwargs.pop(name, None) for name in RESPONSES_ONLY}
        super().__init__(**kwargs)
        self.seed = seed
        self.stop = stop
        for name, value in responses_arguments.items():
            setattr(self, name, value)
        self.api_argument = api
        self.api = choose_api(api, responses_arguments, chat_only_arguments(self))
        self.check_arguments()

    def check_arguments(self) -> None:
        super().check_arguments()
        if self.api != "responses":
            return
        for name in ("stop", "seed"):
            if getattr(self, name) is not None:
                raise XAIValidationError(name, "has no equivalent on the Responses API (use api='chat')")
        ResponsesPath().check(self)

    @property
    def path(self) -> ApiPath:
        if self.api == "responses":
            return ResponsesPath()
        return ChatPath(seed=self.seed, stop=self.stop)

    def chat_request(self) -> ChatRequest:
        """The rendered task as a validated Chat Completions request (raises XAIValidationError)."""
        return self.hook.chat_request(ChatPath(seed=self.seed, stop=self.stop).fields(self))

    # --- deferred completions --------------------------------------------------------------------
    def send(self, context: Context) -> Any:
        if self.api_argument == "auto":  # request_kwargs may have been a template at parse
            self.api = choose_api("auto", {n: getattr(self, n) for n in RESPONSES_ONLY}, chat_only_arguments(self))
        if self.deferrable and self.api == "chat":
            return self._defer(context, self.ledger(context))
        return super().send(context)

    def _defer(self, context: Context, ledger: UsageLedger) -> Any:
        """Submit (or, on a task retry, re-attach to the request an earlier try submitted) and
        defer; an answer that is already there is collected at once."""
        import time

        from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger

        fields = ChatPath(seed=self.seed, stop=self.stop).fields(self)
        stored = TaskState(context, DEFERRED_REQUEST_KEY, self.log, "xAI deferred completion id")
        request_id, completion = stored.attach(
            fingerprint(fields),
            self.hook.get_deferred,
            lambda answer: answer is not None,
            XAIDeferredExpiredError,
            lambda: self.submitted(lambda: self.hook.start_deferred(fields)),
        )
        if completion is not None:
            stored.clear()
            return self.finish(context, ledger, completion, held=request_id)
        # Push at once: a crash between submit and completion must not lose the id.
        context["ti"].xcom_push(key=XCOM_REQUEST_ID_KEY, value=request_id)
        self.defer(
            trigger=XAIDeferredCompletionTrigger(
                request_id=request_id,
                xai_conn_id=self.xai_conn_id,
                poll_interval=self.poll_interval,
                end_time=time.time() + self.deferred_timeout,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: the event carries the whole (fetch-once) completion."""
        from airflow_provider_xai.schemas import ChatCompletion

        if not event:
            raise XAIDeferredError("xAI deferred completion resumed without a trigger event")
        status = event.get("status")
        request_id = event.get("request_id")
        if status == "success":
            TaskState(context, DEFERRED_REQUEST_KEY, self.log).clear()
            completion = ChatCompletion.model_validate(event["completion"])
            return self.finish(context, self.ledger(context), completion, held=request_id)
        message = str(event.get("message") or f"deferred completion {request_id} failed")
        if status == "timeout":
            raise XAIDeferredTimeoutError(message, request_id=request_id)
        if status == "expired":
            raise XAIDeferredExpiredError(message, request_id=request_id, status=404)
        raise error_from_dict(event.get("error")) or XAIDeferredError(
            message, request_id=request_id, status=event.get("http_status")
        )


__all__ = ["DEFERRED_REQUEST_KEY", "XCOM_REQUEST_ID_KEY", "XAIChatOperator", "choose_api"]
