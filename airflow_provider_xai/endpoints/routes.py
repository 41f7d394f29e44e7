"""An endpoint declaration as a server route (the bundled local xAI server serves exactly the
declared paths, so a path written once serves both sides)."""

from __future__ import annotations

from airflow_provider_xai.pipeline.call import Endpoint

#: Where the local server mounts the routes of each host: the API under ``/v1``; the Management
#: API (whose paths carry their own ``v1/``) under a prefix of its own, as its own base URL.
MOUNTS = {"api": "/v1", "management": "/management"}


def route(endpoint: Endpoint) -> str:
    """The route path of ``endpoint`` under its host's mount (its ``{id}`` markers are route
    parameters)."""
    return f"/{endpoint.path}"


def mounted(endpoint: Endpoint) -> str:
    """The server path of ``endpoint``: its host's mount and its route."""
    return MOUNTS[endpoint.host] + route(endpoint)


__all__ = ["MOUNTS", "mounted", "route"]
