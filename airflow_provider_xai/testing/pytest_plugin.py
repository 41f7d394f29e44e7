"""Pytest plugin: ``pytest_plugins = ["airflow_provider_xai.testing.pytest_plugin"]``.

Fixtures:

* ``xai_server_session`` (session): one running ``XAIServer``.
* ``xai_server`` (function): the same server, reset before the test, with
  ``AIRFLOW_CONN_XAI_DEFAULT`` (JSON form) pointing at it: its API and, with its management
  key, its Management API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_xai.testing.runner import XAIServer


@pytest.fixture(scope="session")
def xai_server_session() -> Iterator[XAIServer]:
    """A local xAI server shared by the whole session."""
    from airflow_provider_xai.testing.runner import XAIServer

    server = XAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def xai_server(
    xai_server_session: XAIServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[XAIServer]:
    """The session server, reset, with ``AIRFLOW_CONN_XAI_DEFAULT`` (API and management key)
    set for this test."""
    xai_server_session.reset()
    connection = xai_server_session.connection_json(**xai_server_session.management_extra())
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", connection)
    yield xai_server_session
    xai_server_session.reset()
