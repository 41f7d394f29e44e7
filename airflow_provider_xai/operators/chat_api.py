"""The Chat Completions path of a prompt task: its request fields, sending (plain, streamed into
the log, or deferred by the chat operator), and what it pushes to XCom.

Light imports only (imported at DAG parse); the hook and the endpoint declarations are imported
when a task runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_xai.operators.base import LineLogger
from airflow_provider_xai.usage import XCOM_COMPLETION_ID_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.operators.prompt import XAIPromptOperator
    from airflow_provider_xai.pipeline.call import Endpoint
    from airflow_provider_xai.usage import UsageLedger


class ChatPath:
    """Chat Completions (``/v1/chat/completions``)."""

    def __init__(self, *, seed: int | None = None, stop: str | list[str] | None = None) -> None:
        self.seed, self.stop = seed, stop

    def fields(self, op: XAIPromptOperator) -> dict[str, Any]:
        """The rendered task as API fields (validated once, by the hook, before sending)."""
        messages = op.conversation()
        if (system := op.checked_system_prompt()) is not None:
            messages = [{"role": "system", "content": system}, *messages]
        options: dict[str, Any] = {
            "model": op.checked_model(),
            "temperature": op.temperature,
            "max_completion_tokens": op.max_tokens,
            "reasoning_effort": op.reasoning_effort,
            "seed": self.seed,
            "stop": self.stop,
            "response_format": op.output_spec.response_format if op.output_spec is not None else None,
        }
        return {**op.common_fields(), **op.checked_request_kwargs(),
                **{k: v for k, v in options.items() if v is not None}, "messages": messages}  # fmt: skip

    def run(self, op: XAIPromptOperator, context: Context, ledger: UsageLedger) -> Any:
        fields = self.fields(op)
        if not op.stream:
            return op.finish(context, ledger, op.hook.chat(fields))
        lines = LineLogger(op.log)
        try:
            completion = op.hook.stream_chat_completion(fields, on_text=lines.feed)
        finally:
            lines.flush()
        return op.finish(context, ledger, completion)

    def endpoint(self) -> Endpoint:
        from airflow_provider_xai.endpoints.chat import CHAT

        return CHAT

    def xcom_values(self, op: XAIPromptOperator, answer: Any) -> dict[str, Any]:
        return {XCOM_COMPLETION_ID_KEY: answer.id}


__all__ = ["ChatPath"]
