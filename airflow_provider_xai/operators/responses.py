"""XAIResponsesOperator: one templated prompt to Grok on xAI's Responses API, with server-side
tools (web and X search, code execution, collections, remote MCP), conversations continued
across tasks, citations and function calls in XCom, and usage recorded for every billed answer.

Heavy imports (httpx, the hook) happen at execution, not DAG parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_xai.operators.prompt import ApiPath, XAIPromptOperator
from airflow_provider_xai.operators.responses_api import ResponsesPath, ResponsesResume


class XAIResponsesOperator(ResponsesResume, XAIPromptOperator):
    """Send a prompt (or a conversation) to Grok on the Responses API and return the answer.

    Every argument of :class:`~airflow_provider_xai.operators.prompt.XAIPromptOperator`
    (``prompt``, ``messages``, ``system_prompt`` (sent as ``instructions``), ``model``,
    ``response_format``, ``max_tokens``, ``temperature``, ``reasoning_effort``, ``stream``,
    ``request_kwargs``, ``xai_conn_id``, ``retry_policy``), and:

    :param tools: server-side or function tools (templated), from :mod:`airflow_provider_xai.tools`.
    :param previous_response_id: continue a stored response (templated), e.g. from XCom
        ``xai_response_id`` of an upstream task.
    :param store: keep the response at xAI (default True there); False stores nothing.
    :param include: extra output to include (templated), e.g. ``["no_inline_citations"]``.
    :param max_turns: most agent turns: xAI's server-side turns of one request, and the round
        trips of a loop with Python function tools (default 8 there).

    XCom: the answer (``return_value``), ``xai_response_id``, ``xai_citations``,
    ``xai_function_calls`` and the usage (``xai_usage``).
    """

    template_fields: Sequence[str] = (
        *XAIPromptOperator.template_fields,
        "tools",
        "previous_response_id",
        "include",
    )
    template_fields_renderers = {**XAIPromptOperator.template_fields_renderers, "tools": "json"}
    ui_color = "#a5b4fc"

    def __init__(
        self,
        *,
        tools: list[Any] | None = None,
        previous_response_id: str | None = None,
        store: bool | None = None,
        include: list[str] | None = None,
        max_turns: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tools = tools
        self.previous_response_id = previous_response_id
        self.store = store
        self.include = include
        self.max_turns = max_turns
        self.check_arguments()

    def check_arguments(self) -> None:
        super().check_arguments()
        ResponsesPath().check(self)

    @property
    def path(self) -> ApiPath:
        return ResponsesPath()


__all__ = ["XAIResponsesOperator"]
