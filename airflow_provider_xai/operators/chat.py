"""XAIChatOperator: one templated prompt to Grok on Chat Completions, with usage recorded for
every billed answer.

Argument checks run before any request; the answer (text, or the validated structured object)
is returned as JSON-safe XCom. ``deferrable=True`` submits an xAI deferred completion and waits
in the triggerer. The Responses API has its own operator, :class:`XAIResponsesOperator`; DAGs
that give this operator a Responses argument (``tools=``...) keep running on the Responses API.
Heavy imports (httpx, the hook) happen at execution, not DAG parse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import conf

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import (
    XAIDeferredError,
    XAIDeferredExpiredError,
    XAIDeferredTimeoutError,
    XAIValidationError,
    error_from_dict,
)
from airflow_provider_xai.operators.base import TaskState
from airflow_provider_xai.operators.chat_api import ChatPath
from airflow_provider_xai.operators.prompt import ApiPath, XAIPromptOperator
from airflow_provider_xai.operators.responses_api import RESPONSES_ONLY, ResponsesPath

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.schemas import ChatRequest
    from airflow_provider_xai.usage import UsageLedger

XCOM_REQUEST_ID_KEY = "xai_request_id"
#: The task state store key of a submitted deferred completion (a retry re-attaches to it).
DEFERRED_REQUEST_KEY = "xai_deferred_request_id"
APIS = ("auto", "chat", "responses")


def choose_api(api: Any, given: Mapping[str, Any]) -> str:
    """``"chat"`` or ``"responses"``: what ``api`` says, and for ``"auto"`` Responses exactly
    when a Responses-only argument is given (so existing DAGs keep their API)."""
    if api not in APIS:
        raise XAIValidationError("api", f"must be one of {', '.join(map(repr, APIS))}, got {api!r}")
    asked = [name for name in RESPONSES_ONLY if given.get(name) is not None]
    if api == "chat" and asked:
        raise XAIValidationError(asked[0], "exists only on the Responses API: use XAIResponsesOperator")
    if api == "auto":
        return "responses" if asked else "chat"
    return str(api)


class XAIChatOperator(XAIPromptOperator):
    """Send a prompt (or a message list) to Grok on Chat Completions and return the answer.

    Every argument of :class:`~airflow_provider_xai.operators.prompt.XAIPromptOperator`
    (``prompt``, ``messages``, ``system_prompt``, ``model``, ``response_format``,
    ``max_tokens``, ``temperature``, ``reasoning_effort``, ``stream``, ``request_kwargs``,
    ``xai_conn_id``, ``retry_policy``), and:

    :param seed: sampling seed.
    :param stop: up to 4 stop sequences.
    :param deferrable: submit an xAI deferred completion and wait in the triggerer.
    :param poll_interval: seconds between deferred-completion polls.
    :param deferred_timeout: seconds to wait for a deferred completion before failing.

    For DAGs written before :class:`XAIResponsesOperator`: ``api=`` (``"auto"``, ``"chat"``,
    ``"responses"``) and the Responses arguments (``tools``, ``previous_response_id``,
    ``store``, ``include``, ``max_turns``, ``prompt_cache_key``) are still taken, and any of
    them sends the task to the Responses API as that operator would.
    """

    template_fields: Sequence[str] = (
        *XAIPromptOperator.template_fields,
        "tools",
        "previous_response_id",
        "include",
        "prompt_cache_key",
    )
    template_fields_renderers = {**XAIPromptOperator.template_fields_renderers, "tools": "json"}

    def __init__(
        self,
        *,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        deferred_timeout: float = 24 * 3600,
        **kwargs: Any,
    ) -> None:
        api = kwargs.pop("api", "auto")
        responses_arguments = {name: kwargs.pop(name, None) for name in RESPONSES_ONLY}
        super().__init__(**kwargs)
        self.seed = seed
        self.stop = stop
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.deferred_timeout = deferred_timeout
        for name, value in responses_arguments.items():
            setattr(self, name, value)
        self.api = choose_api(api, responses_arguments)
        if self.stream and deferrable:
            raise XAIValidationError("stream", "streaming and deferrable mode cannot be combined")
        self.check_arguments()

    def check_arguments(self) -> None:
        super().check_arguments()
        check_number("poll_interval", self.poll_interval, 0, positive=True)
        check_number("deferred_timeout", self.deferred_timeout, 0, positive=True)
        if self.api != "responses":
            return
        if self.deferrable:
            raise XAIValidationError(
                "deferrable",
                "xAI offers no deferred mode for the Responses API; a long request would run inside the "
                "triggerer, where a restart loses a billed answer. Use deferrable=False (or api='chat')",
            )
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
    def execute(self, context: Context) -> Any:
        if self.deferrable and self.api == "chat":
            return self._defer(context, self.ledger(context))
        return super().execute(context)

    def _defer(self, context: Context, ledger: UsageLedger) -> Any:
        """Submit (or, on a task retry, re-attach to the request an earlier try submitted) and
        defer; an answer that is already there is collected at once."""
        import time

        from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger

        fields = ChatPath(seed=self.seed, stop=self.stop).fields(self)
        stored = TaskState(context, DEFERRED_REQUEST_KEY, self.log)
        request_id = stored.get()
        if request_id is not None:
            try:
                completion = self.hook.get_deferred(request_id)
            except XAIDeferredExpiredError:
                self.log.info("xAI deferred completion %s of an earlier try is gone; submitting anew", request_id)
                request_id = None
            else:
                if completion is not None:
                    stored.clear()
                    return self.finish(context, ledger, completion)
                self.log.info("Re-attaching to xAI deferred completion %s of an earlier try", request_id)
        if request_id is None:
            request_id = self.hook.start_deferred(fields)
            stored.set(request_id)
            self.log.info("Submitted xAI deferred completion %s; deferring", request_id)
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
            return self.finish(context, self.ledger(context), ChatCompletion.model_validate(event["completion"]))
        message = str(event.get("message") or f"deferred completion {request_id} failed")
        if status == "timeout":
            raise XAIDeferredTimeoutError(message, request_id=request_id)
        if status == "expired":
            raise XAIDeferredExpiredError(message, request_id=request_id, status=404)
        raise error_from_dict(event.get("error")) or XAIDeferredError(
            message, request_id=request_id, status=event.get("http_status")
        )


__all__ = ["DEFERRED_REQUEST_KEY", "XCOM_REQUEST_ID_KEY", "XAIChatOperator", "choose_api"]
