"""Hook point for the Batch API of the local xAI server (``/v1/batches...``).

Not implemented yet: ``create_batch_router`` returns an empty router that ``create_app``
mounts under ``{path_prefix}/v1``; add the batch routes here.
"""

from __future__ import annotations

from fastapi import APIRouter

from airflow_provider_xai.testing.state import ServerState


def create_batch_router(state: ServerState) -> APIRouter:
    """Return the Batch API routes (relative to ``/v1``) backed by ``state``."""
    del state  # used by the future implementation
    return APIRouter()
