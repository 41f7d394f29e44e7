"""An endpoint declaration as a server route (the bundled local xAI server serves exactly the
declared paths, so a path written once serves both sides)."""

from __future__ import annotations

from airflow_provider_xai.pipeline.call import Endpoint


def route(endpoint: Endpoint) -> str:
    """The route path of ``endpoint`` under ``/v1`` (its ``{id}`` markers are route parameters)."""
    return f"/{endpoint.path}"


__all__ = ["route"]
