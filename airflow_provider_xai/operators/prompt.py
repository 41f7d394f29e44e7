"""The base of the operators that put a prompt to Grok (chat, Responses, vision, ``@task.xai``):
the arguments they share, their checks at DAG parse and after rendering, and the conversation
they send. Which API carries it is an :class:`ApiPath` (``operators/chat_api.py``,
``operators/responses_api.py``): how to send, what to push to XCom, which endpoint bills it.

Light imports only: this module is imported at DAG parse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from airflow.sdk import conf

from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, check_number, coerce_messages
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.operators.base import XAIBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.pipeline.call import Endpoint
    from airflow_provider_xai.structured import OutputSpec
    from airflow_provider_xai.usage import UsageLedger

#: Request fields the operators control themselves; in ``request_kwargs`` they would be dropped
#: or would break the call (a ``stream`` answer where a plain one is parsed).
OPERATOR_OWNED_FIELDS = frozenset({"messages", "input", "stream", "deferred"})


class ApiPath(Protocol):
    """How a prompt task talks to one of xAI's APIs."""

    def run(self, op: XAIPromptOperator, context: Context, ledger: UsageLedger) -> Any:
        """Send the rendered task and finish it (its return value)."""

    def endpoint(self) -> Endpoint:
        """The endpoint whose answers are billed."""

    def xcom_values(self, op: XAIPromptOperator, answer: Any) -> dict[str, Any]:
        """What the task pushes besides usage."""


class XAIPromptOperator(XAIBaseOperator):
    """A prompt (or a conversation) to Grok; its answer is the task's return value.

    :param prompt: user text (templated). Give ``prompt`` or ``messages``, not both.
    :param messages: a whole conversation (templated), a list of ``{"role", "content"}`` dicts.
    :param system_prompt: system instructions (templated).
    :param model: model id (templated); default: the connection's default model, then grok-4.3.
    :param response_format: a pydantic model class, a JSON-schema dict, or ``"json_object"``;
        the answer is validated and returned as JSON-safe data.
    :param max_tokens: most output tokens, at least 1.
    :param temperature: sampling temperature, 0 to 2.
    :param reasoning_effort: for reasoning models (``low``/``high``...).
    :param stream: stream the answer into the task log line by line.
    :param request_kwargs: any other API field, passed through (templated).
    :param prompt_cache_key: routes this task's requests to the same xAI prompt cache (templated):
        by default a key of the DAG and task, so mapped instances and daily runs share a cache;
        a text of your own; ``False`` sends none. (Responses: the body field; Chat Completions:
        the ``x-grok-conv-id`` header.)
    :param service_tier: xAI's service tier, e.g. ``"priority"`` (billed 2x when xAI serves it so).
    :param deferrable: wait for the answer in the triggerer, not on a worker (not with ``stream``).
    :param poll_interval: seconds between polls while deferred.
    :param deferred_timeout: seconds to wait while deferred before failing.
    """

    template_fields: Sequence[str] = (
        "prompt", "messages", "system_prompt", "model", "request_kwargs", "prompt_cache_key",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"messages": "json", "request_kwargs": "json"}
    ui_color = "#c7d2fe"

    def __init__(
        self,
        *,
        prompt: str | None = None,
        messages: list[dict[str, Any]] | str | None = None,
        system_prompt: str | None = None,
        model: str | None = None,
        response_format: Any = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        reasoning_effort: str | None = None,
        stream: bool = False,
        request_kwargs: dict[str, Any] | None = None,
        prompt_cache_key: str | bool | None = None,
        service_tier: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        deferred_timeout: float = 24 * 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt_cache_key = prompt_cache_key
        self.service_tier = service_tier
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.deferred_timeout = deferred_timeout
        self.prompt = prompt
        self.messages = messages
        self.system_prompt = system_prompt
        self.model = model
        self.response_format = response_format
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.reasoning_effort = reasoning_effort
        self.stream = stream
        self.request_kwargs = request_kwargs or {}

    # --- which API ---------------------------------------------------------------------------------
    @property
    def path(self) -> ApiPath:
        """The API this task talks to."""
        raise NotImplementedError

    def endpoint(self) -> Endpoint:
        return self.path.endpoint()

    def xcom_values(self, answer: Any) -> dict[str, Any]:
        return self.path.xcom_values(self, answer)

    def execute(self, context: Context) -> Any:
        from airflow_provider_xai.operators.capacity import within_capacity

        return within_capacity(self, context, self.send)

    def send(self, context: Context) -> Any:
        """Send the rendered task within its budgets and finish it (its first limited call may
        wait for its rate-limit slot in the triggerer: ``operators/capacity.py``)."""
        ledger = self.ledger(context)
        return self.within_budget(context, ledger, lambda: self.path.run(self, context, ledger))

    def execute_after_capacity(self, context: Context, event: Any = None) -> Any:
        """Back on a worker shortly before the rate-limit slot this task waited for."""
        from airflow_provider_xai.operators.capacity import resume

        return resume(self, context, event)

    def result(self, answer: Any) -> Any:
        """The answer's text, or the validated structured value."""
        if self.output_spec is not None:
            return self.output_spec.parse(answer.text, answer)
        return answer.text

    # --- checks --------------------------------------------------------------------------------
    def check_arguments(self) -> None:
        """Checks that need no template rendering: they fail at DAG parse, naming the argument."""
        check_number("temperature", self.temperature, 0, 2)
        check_number("max_tokens", self.max_tokens, 1, integer=True)
        tier = self.service_tier
        if tier is not None and (not isinstance(tier, str) or not tier):
            raise XAIValidationError("service_tier", f"expected a tier name such as 'priority', got {tier!r}")
        check_number("poll_interval", self.poll_interval, 0, MAX_WAIT_SECONDS, positive=True)
        check_number("deferred_timeout", self.deferred_timeout, 0, MAX_WAIT_SECONDS, positive=True)
        if self.stream and self.deferrable:
            raise XAIValidationError("stream", "streaming and deferrable mode cannot be combined")
        self._check_input_choice()
        _ = self.output_spec

    def _check_input_choice(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise XAIValidationError("prompt", "give exactly one of 'prompt' or 'messages'")

    @cached_property
    def output_spec(self) -> OutputSpec | None:
        from airflow_provider_xai.structured import OutputSpec

        return OutputSpec.from_user(self.response_format)

    def checked_request_kwargs(self) -> dict[str, Any]:
        """The rendered ``request_kwargs``, without the fields the operator sets itself."""
        if not isinstance(self.request_kwargs, dict):
            raise XAIValidationError("request_kwargs", f"expected a dict, got {type(self.request_kwargs).__name__}")
        if owned := sorted(OPERATOR_OWNED_FIELDS.intersection(self.request_kwargs)):
            raise XAIValidationError(
                f"request_kwargs.{owned[0]}",
                "is set by the operator (use prompt/messages, stream=, deferrable=), not request_kwargs",
            )
        return dict(self.request_kwargs)

    def checked_model(self) -> str | None:
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise XAIValidationError("model", f"expected a model id, got {self.model!r}")
        return self.model or None

    def cache_key(self) -> str | None:
        """The prompt-cache routing key: the task's own, or one derived from the DAG and task
        (stable across runs and map indexes), or None when turned off."""
        key = self.prompt_cache_key
        if key is False:
            return None
        if key is None or key is True:
            return "airflow-" + hashlib.sha256(f"{self.dag_id}\0{self.task_id}".encode()).hexdigest()[:24]
        if not isinstance(key, str) or not key.strip():
            raise XAIValidationError(
                "prompt_cache_key", f"expected a text, True/None (derived) or False, got {key!r}"
            )
        return key

    def common_fields(self) -> dict[str, Any]:
        """API fields both APIs take the same way (None values left out)."""
        fields = {"prompt_cache_key": self.cache_key(), "service_tier": self.service_tier}
        return {k: v for k, v in fields.items() if v is not None}

    def checked_system_prompt(self) -> str | None:
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise XAIValidationError("system_prompt", f"expected text, got {type(self.system_prompt).__name__}")
        return self.system_prompt

    # --- the conversation ----------------------------------------------------------------------
    def user_content(self) -> str | list[dict[str, Any]]:
        """The user turn built from ``prompt`` (the vision operator adds images here)."""
        if not isinstance(self.prompt, str):
            raise XAIValidationError("prompt", f"expected text, got {type(self.prompt).__name__}")
        if not self.prompt.strip():
            raise XAIValidationError("prompt", "is empty")
        return self.prompt

    def conversation(self, *, typed_items: bool = False) -> list[dict[str, Any]]:
        """The rendered turns after the system prompt, checked before anything is sent
        (``typed_items``: Responses input items without a role pass as they are)."""
        self._check_input_choice()
        if self.messages is None:
            return [{"role": "user", "content": self.user_content()}]
        return coerce_messages(self.messages, typed_items=typed_items)


__all__ = ["OPERATOR_OWNED_FIELDS", "ApiPath", "XAIPromptOperator"]
