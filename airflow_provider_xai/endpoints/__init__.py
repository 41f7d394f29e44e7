"""One home per endpoint family: its declarations (:class:`~airflow_provider_xai.pipeline.call.Endpoint`)
and the calls the hook sends. Adding an endpoint: a declaration here, its models in ``schemas/``,
hook methods, optionally an operator, and its route in the local server (docs/architecture.md)."""

from __future__ import annotations

from airflow_provider_xai.endpoints import (
    batches,
    billing,
    chat,
    files,
    images,
    media,
    models,
    responses,
    videos,
    voice,
)
from airflow_provider_xai.endpoints import collections as collection_endpoints
from airflow_provider_xai.pipeline.call import Endpoint

#: Every endpoint the provider calls.
ENDPOINTS: tuple[Endpoint, ...] = (*chat.ENDPOINTS, *responses.ENDPOINTS, *batches.ENDPOINTS, *models.ENDPOINTS)
ENDPOINTS += (*files.ENDPOINTS, *collection_endpoints.ENDPOINTS, *voice.ENDPOINTS, *billing.ENDPOINTS)
ENDPOINTS += (*images.ENDPOINTS, *videos.ENDPOINTS, *media.ENDPOINTS)


def declaration_of(method: str, path: str) -> Endpoint | None:
    """The declaration of ``method path`` (a path under the base URL), or None."""
    return next((e for e in ENDPOINTS if e.matches(method, path)), None)


__all__ = ["ENDPOINTS", "declaration_of"]
