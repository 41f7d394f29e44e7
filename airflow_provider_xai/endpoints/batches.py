"""The Batch API (``/v1/batches``): the declarations, and the calls the hook sends.

A batch's requests are billed when xAI runs them; their usage is read from the results (at the
batch discount when xAI sends no cost), not from these calls, which cost nothing themselves.

A batch made from a JSONL input file needs the file uploaded first: that is the Files API's
upload (:func:`airflow_provider_xai.endpoints.files.upload_content`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel

from airflow_provider_xai.endpoints.common import fixed_body, ignore, read, segment
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.schemas.batch import (
    Batch,
    BatchList,
    BatchRequestList,
    BatchResultList,
)

M = TypeVar("M", bound=BaseModel)

CREATE = Endpoint("batches", "POST", "batches", response=Batch)
LIST = Endpoint("batches", "GET", "batches", response=BatchList)
GET = Endpoint("batches", "GET", "batches/{batch_id}", response=Batch)
CANCEL = Endpoint("batches", "POST", "batches/{batch_id}:cancel", response=Batch)
#: xAI allows 100 add-requests calls per 30 s per team: paced by the hook's pacer (shared
#: through the rate limiter's store when the connection sets one).
ADD_REQUESTS = Endpoint("batches", "POST", "batches/{batch_id}/requests", bucket="batch-add-requests")
LIST_REQUESTS = Endpoint("batches", "GET", "batches/{batch_id}/requests", response=BatchRequestList)
RESULTS = Endpoint("batches", "GET", "batches/{batch_id}/results", response=BatchResultList)
ENDPOINTS = (CREATE, LIST, GET, CANCEL, ADD_REQUESTS, LIST_REQUESTS, RESULTS)


def _path(batch_id: str, suffix: str = "") -> str:
    return f"batches/{segment(batch_id)}{suffix}"


def create(name: str, input_file_id: str | None = None) -> Call[Batch]:
    body = {"name": name, **({"input_file_id": input_file_id} if input_file_id else {})}
    return Call(CREATE, read(Batch, "batch"), body=fixed_body(body))


def get(batch_id: str) -> Call[Batch]:
    return Call(GET, read(Batch, "batch"), path=_path(batch_id))


def cancel(batch_id: str) -> Call[Batch]:
    return Call(CANCEL, read(Batch, "batch"), path=_path(batch_id, ":cancel"))


def add_requests(batch_id: str, items: Sequence[Mapping[str, Any]]) -> Call[None]:
    body = fixed_body({"batch_requests": list(items)})
    return Call(ADD_REQUESTS, ignore, path=_path(batch_id, "/requests"), body=body)


def page(endpoint: Endpoint, path: str, model: type[M], what: str, limit: int, token: str | None) -> Call[M]:
    """One page of a token-paged list (``limit`` + ``pagination_token``)."""
    query = urlencode({"limit": limit, **({"pagination_token": token} if token else {})})
    return Call(endpoint, read(model, what), path=f"{path}?{query}")


def batches_page(limit: int, token: str | None) -> Call[BatchList]:
    return page(LIST, "batches", BatchList, "batch list", limit, token)


def requests_page(batch_id: str, limit: int, token: str | None) -> Call[BatchRequestList]:
    return page(LIST_REQUESTS, _path(batch_id, "/requests"), BatchRequestList, "batch request list", limit, token)


def results_page(batch_id: str, limit: int, token: str | None) -> Call[BatchResultList]:
    return page(RESULTS, _path(batch_id, "/results"), BatchResultList, "batch results", limit, token)


__all__ = [
    "ADD_REQUESTS",
    "CANCEL",
    "CREATE",
    "ENDPOINTS",
    "GET",
    "LIST",
    "LIST_REQUESTS",
    "RESULTS",
    "add_requests",
    "batches_page",
    "cancel",
    "create",
    "get",
    "requests_page",
    "results_page",
]
