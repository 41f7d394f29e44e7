"""Shared helpers of the resilience suite: fast-retrying hooks on the local server, journal
grouping, a minimal task context for operator calls, and DAG runs of DAGs built in a test."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.testing import XAIServer
from airflow_provider_xai.testing.state import JournalEntry
from tests.dags.conftest import run_inline_dag  # noqa: F401  (re-exported for the suite)
from tests.helpers.context import FakeTI  # noqa: F401  (re-exported for the suite)
from tests.helpers.context import make_context as fake_context  # noqa: F401

#: Retry timing small enough for hundreds of retries per test, still exponential and jittered.
FAST_BACKOFF: dict[str, float] = {"backoff_base": 0.01, "backoff_cap": 0.05}
CHAT_PATH = "/v1/chat/completions"


@pytest.fixture
def make_hook(xai_server: XAIServer) -> Iterator[Callable[..., XAIHook]]:
    """Build hooks on the (reset) local server with fast backoff; closed after the test."""
    hooks: list[XAIHook] = []

    def make(**kwargs: Any) -> XAIHook:
        hook = XAIHook(**{**FAST_BACKOFF, **kwargs})
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


def chat_posts(server: XAIServer) -> list[JournalEntry]:
    """Every ``POST /v1/chat/completions`` the server saw, in arrival order."""
    return [e for e in server.journal if e.method == "POST" and e.path.endswith(CHAT_PATH)]


def last_user_text(entry: JournalEntry) -> str:
    """The text of the last message of a journaled chat request (the request's unique prompt)."""
    content = entry.body["messages"][-1]["content"]
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    return str(content)


def attempts_by_prompt(entries: Iterable[JournalEntry]) -> dict[str, list[JournalEntry]]:
    """Journaled chat requests grouped by prompt, each group in arrival order."""
    groups: dict[str, list[JournalEntry]] = defaultdict(list)
    for entry in entries:
        groups[last_user_text(entry)].append(entry)
    return dict(groups)
