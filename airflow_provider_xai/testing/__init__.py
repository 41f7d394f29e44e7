"""Local xAI-compatible HTTP server for testing ``airflow-provider-xai``.

Importing this package is cheap: FastAPI/uvicorn load only when ``XAIServer`` or
``create_app`` is first used. See ``runner.XAIServer``, ``state.Fault``/``state.Chaos``
and the pytest plugin ``airflow_provider_xai.testing.pytest_plugin``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_xai.testing.models import MODELS, PRICES
    from airflow_provider_xai.testing.runner import XAIServer
    from airflow_provider_xai.testing.server import create_app
    from airflow_provider_xai.testing.state import (
        DEFAULT_API_KEY,
        Chaos,
        Fault,
        JournalEntry,
        ServerState,
    )

_EXPORTS = {
    "XAIServer": "runner",
    "create_app": "server",
    "Fault": "state",
    "Chaos": "state",
    "ServerState": "state",
    "JournalEntry": "state",
    "PRICES": "models",
    "MODELS": "models",
    "DEFAULT_API_KEY": "state",
}

__all__ = [
    "DEFAULT_API_KEY",
    "MODELS",
    "PRICES",
    "Chaos",
    "Fault",
    "JournalEntry",
    "ServerState",
    "XAIServer",
    "create_app",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
