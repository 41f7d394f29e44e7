"""XAIChatOperator: one templated chat call to Grok, with usage recorded for every billed answer.

Argument checks run before any request; the answer (text, or the validated structured object)
is returned as JSON-safe XCom. ``deferrable=True`` submits an xAI deferred completion and
waits in the triggerer. Heavy imports (httpx, the hook) happen at execution, not DAG parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, conf

from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, check_number, coerce_messages
from airflow_provider_xai.exceptions import (
    XAIDeferredError,
    XAIDeferredExpiredError,
    XAIDeferredTimeoutError,
    XAIValidationError,
    error_from_dict,
)
from airflow_provider_xai.operators.responses_path import (
    RESPONSES_ONLY,
    check_responses_arguments,
    choose_api,
)
from airflow_provider_xai.retry_policy import XAI_RETRY_POLICY, retry_policy_argument
from airflow_provider_xai.task_state import StoredId

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.retry_policy import RetryPolicy

    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.schemas import ChatCompletion, ChatRequest
    from airflow_provider_xai.structured import OutputSpec
    from airflow_provider_xai.usage import UsageLedger

XCOM_REQUEST_ID_KEY = "xai_request_id"
#: Request fields the operator controls itself; in ``request_kwargs`` they would be dropped or
#: would break the call (a ``stream`` answer where a plain one is parsed).
OPERATOR_OWNED_FIELDS = frozenset({"messages", "stream", "deferred"})


class LineLogger:
    """Writes streamed text to the task log a line at a time (not token by token)."""

    def __init__(self, log: Any, prefix: str = "xAI | ") -> None:
        self.log = log
        self.prefix = prefix
        self._pending = ""

    def feed(self, text: str) -> None:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.log.info("%s%s", self.prefix, line)

    def flush(self) -> None:
        if self._pending:
            self.log.info("%s%s", self.prefix, self._pending)
            self._pending = ""


class StoredRequestId(StoredId):
    """The deferred request id of this task instance, kept in Airflow's task state store (3.3+),
    which survives task retries (XComs do not): a retry re-attaches instead of paying again."""

    KEY = "xai_deferred_request_id"

    def __init__(self, context: Context, log: Any) -> None:
        super().__init__(context, self.KEY, log, "xAI deferred request id")


class XAIChatOperator(BaseOperator):
    """Send a prompt (or a message list) to Grok and return the answer.

    :param prompt: user text (templated). Give ``prompt`` or ``messages``, not both.
    :param messages: a full message list in the OpenAI/xAI shape (templated).
    :param system_prompt: system instructions placed first (templated).
    :param model: model id (templated); default: the connection's default model, then grok-4.3.
    :param temperature: sampling temperature, 0 to 2.
    :param max_tokens: most output tokens (sent as ``max_completion_tokens``), at least 1.
    :param response_format: a pydantic model class, a JSON-schema dict, or ``"json_object"``;
        the answer is validated and returned as JSON-safe data.
    :param reasoning_effort: for reasoning models (``low``/``high``...).
    :param seed: sampling seed.
    :param stop: up to 4 stop sequences.
    :param request_kwargs: any other API field, passed through (templated).
    :param stream: stream the answer into the task log line by line.
    :param deferrable: submit an xAI deferred completion and wait in the triggerer.
    :param poll_interval: seconds between deferred-completion polls.
    :param deferred_timeout: seconds to wait for a deferred completion before failing.
    :param xai_conn_id: the xAI connection.
    :param api: ``"chat"`` (Chat Completions), ``"responses"`` (xAI's Responses API) or
        ``"auto"`` (default): Responses exactly when one of the arguments below is given.
    :param tools: Responses tools (templated), from :mod:`airflow_provider_xai.tools`.
    :param previous_response_id: continue a stored response (templated), e.g. from XCom
        ``xai_response_id`` of an upstream task.
    :param store: keep the response at xAI (default True there); False stores nothing.
    :param include: extra output to include (templated), e.g. ``["no_inline_citations"]``.
    :param max_turns: most server-side agent turns.
    :param prompt_cache_key: routes requests to the same cache (templated).
    :param retry_policy: Airflow 3.3+ task retry policy; default
        :class:`~airflow_provider_xai.retry_policy.XAIRetryPolicy` (rate limits retry after
        xAI's delay, permanent errors fail at once); ``None`` turns it off.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "messages",
        "system_prompt",
        "model",
        "request_kwargs",
        "tools",
        "previous_response_id",
        "include",
        "prompt_cache_key",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "messages": "json",
        "request_kwargs": "json",
        "tools": "json",
    }
    ui_color = "#c7d2fe"

    def __init__(
        self,
        *,
        prompt: str | None = None,
        messages: list[dict[str, Any]] | str | None = None,
        system_prompt: str | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        response_format: Any = None,
        reasoning_effort: str | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        request_kwargs: dict[str, Any] | None = None,
        stream: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        deferred_timeout: float = 24 * 3600,
        xai_conn_id: str = "xai_default",
        api: str = "auto",
        tools: list[Any] | None = None,
        previous_response_id: str | None = None,
        store: bool | None = None,
        include: list[str] | None = None,
        max_turns: int | None = None,
        prompt_cache_key: str | None = None,
        retry_policy: RetryPolicy | None = XAI_RETRY_POLICY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**retry_policy_argument(retry_policy), **kwargs)
        self.tools = tools
        self.previous_response_id = previous_response_id
        self.store = store
        self.include = include
        self.max_turns = max_turns
        self.prompt_cache_key = prompt_cache_key
        self.prompt = prompt
        self.messages = messages
        self.system_prompt = system_prompt
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.response_format = response_format
        self.reasoning_effort = reasoning_effort
        self.seed = seed
        self.stop = stop
        self.request_kwargs = request_kwargs or {}
        self.stream = stream
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.deferred_timeout = deferred_timeout
        self.xai_conn_id = xai_conn_id
        self.api = choose_api(api, {name: getattr(self, name) for name in RESPONSES_ONLY})
        if stream and deferrable:
            raise XAIValidationError("stream", "streaming and deferrable mode cannot be combined")
        self._check_static_arguments()

    # --- validation ----------------------------------------------------------------------------
    def _check_static_arguments(self) -> None:
        """Checks that need no template rendering: they fail at DAG parse, naming the argument."""
        if self.api == "responses":
            check_responses_arguments(self)
        check_number("temperature", self.temperature, 0, 2)
        check_number("max_tokens", self.max_tokens, 1, integer=True)
        check_number("poll_interval", self.poll_interval, 0, MAX_WAIT_SECONDS, positive=True)
        check_number("deferred_timeout", self.deferred_timeout, 0, MAX_WAIT_SECONDS, positive=True)
        self._check_input_choice()
        _ = self.output_spec

    def _check_input_choice(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise XAIValidationError("prompt", "give exactly one of 'prompt' or 'messages'")

    @cached_property
    def output_spec(self) -> OutputSpec | None:
        from airflow_provider_xai.structured import OutputSpec

        return OutputSpec.from_user(self.response_format)

    def user_content(self) -> str | list[dict[str, Any]]:
        """The user turn built from ``prompt`` (the vision operator adds images here)."""
        if not isinstance(self.prompt, str):
            raise XAIValidationError("prompt", f"expected text, got {type(self.prompt).__name__}")
        if not self.prompt.strip():
            raise XAIValidationError("prompt", "is empty")
        return self.prompt

    def build_messages(self, *, system: bool = True) -> list[dict[str, Any]]:
        """The rendered message list, checked before anything is sent (with the system prompt
        first unless ``system=False``: the Responses API takes it as ``instructions``)."""
        self._check_input_choice()
        messages = (
            [{"role": "user", "content": self.user_content()}]
            if self.messages is None
            else coerce_messages(self.messages, typed_items=self.api == "responses")
        )
        if self.system_prompt is not None and system:
            if not isinstance(self.system_prompt, str):
                raise XAIValidationError(
                    "system_prompt", f"expected text, got {type(self.system_prompt).__name__}"
                )
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        return messages

    def chat_request(self) -> ChatRequest:
        """Validate everything and build the request body (raises XAIValidationError)."""
        if not isinstance(self.request_kwargs, dict):
            raise XAIValidationError(
                "request_kwargs", f"expected a dict, got {type(self.request_kwargs).__name__}"
            )
        if owned := sorted(OPERATOR_OWNED_FIELDS.intersection(self.request_kwargs)):
            raise XAIValidationError(
                f"request_kwargs.{owned[0]}",
                "is set by the operator (use prompt/messages, stream=, deferrable=), not request_kwargs",
            )
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise XAIValidationError("model", f"expected a model id, got {self.model!r}")
        fields: dict[str, Any] = {
            "temperature": self.temperature,
            "max_completion_tokens": self.max_tokens,
            "reasoning_effort": self.reasoning_effort,
            "seed": self.seed,
            "stop": self.stop,
        }
        if self.output_spec is not None:
            fields["response_format"] = self.output_spec.response_format
        fields = {k: v for k, v in fields.items() if v is not None}
        body = {**self.request_kwargs, **fields, "messages": self.build_messages()}
        if self.model:
            body["model"] = self.model
        return self.hook.chat_request(body)

    # --- execution -------------------------------------------------------------------------------
    @cached_property
    def hook(self) -> XAIHook:
        from airflow_provider_xai.hooks.xai import XAIHook

        return XAIHook(xai_conn_id=self.xai_conn_id)

    def _ledger(self, context: Context) -> UsageLedger:
        from airflow_provider_xai.usage import UsageLedger

        return UsageLedger(context, self.log)

    def execute(self, context: Context) -> Any:
        ledger = self._ledger(context)
        if self.api == "responses":
            from airflow_provider_xai.operators.responses_run import run_responses

            return run_responses(self, context, ledger)
        request = self.chat_request()
        if self.deferrable:
            return self._defer(context, ledger, request)
        if self.stream:
            lines = LineLogger(self.log)
            try:
                completion = self.hook.stream_chat_completion(request, on_text=lines.feed)
            finally:
                lines.flush()
        else:
            completion = self.hook.chat(request)
        return self.finish(context, ledger, completion)

    def finish(self, context: Context, ledger: UsageLedger, completion: ChatCompletion) -> Any:
        """Record usage first (so a later failure never loses it), then return the answer."""
        from airflow_provider_xai.usage import XCOM_COMPLETION_ID_KEY, build_record

        ledger.record(
            build_record(
                completion.usage,
                completion.model,
                completion_id=completion.id,
                prices=self.hook.get_prices(),
            )
        )
        context["ti"].xcom_push(key=XCOM_COMPLETION_ID_KEY, value=completion.id)
        text = completion.text
        if self.output_spec is not None:
            return self.output_spec.parse(text, completion)
        return text

    def _defer(self, context: Context, ledger: UsageLedger, request: ChatRequest) -> Any:
        """Submit (or, on a task retry, re-attach to the request an earlier try submitted) and
        defer; an answer that is already there is collected at once."""
        import time

        from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger

        stored = StoredRequestId(context, self.log)
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
            request_id = self.hook.start_deferred(request)
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
            StoredRequestId(context, self.log).clear()
            return self.finish(
                context, self._ledger(context), ChatCompletion.model_validate(event["completion"])
            )
        message = str(event.get("message") or f"deferred completion {request_id} failed")
        if status == "timeout":
            raise XAIDeferredTimeoutError(message, request_id=request_id)
        if status == "expired":
            raise XAIDeferredExpiredError(message, request_id=request_id, status=404)
        raise error_from_dict(event.get("error")) or XAIDeferredError(
            message, request_id=request_id, status=event.get("http_status"))

    def on_kill(self) -> None:
        self.hook.close()
