"""Collections (xAI's Management API, ``/v1/collections``, with the management key) and document
search (``POST /v1/documents/search``, with the API key): the declarations, and the calls.

Neither is billed per call here: indexing and storage are billed by xAI outside any answer, and
a search's usage is not reported in its answer (``file_search`` inside a Responses request is
billed with that response). Collection paths start with ``v1/``: the management root has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from airflow_provider_xai.endpoints.common import fixed_body, ignore, read, segment
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.schemas import describe_validation_error
from airflow_provider_xai.schemas.collections import (
    Collection,
    CollectionList,
    Document,
    DocumentList,
    DocumentSearchRequest,
    SearchResults,
)

CREATE = Endpoint("collections", "POST", "v1/collections", response=Collection, host="management")
LIST = Endpoint("collections", "GET", "v1/collections", response=CollectionList, host="management")
GET = Endpoint("collections", "GET", "v1/collections/{collection_id}", response=Collection, host="management")
DELETE = Endpoint("collections", "DELETE", "v1/collections/{collection_id}", host="management")
ADD_DOCUMENT = Endpoint("collections", "POST", "v1/collections/{collection_id}/documents/{file_id}", host="management")
LIST_DOCUMENTS = Endpoint(
    "collections", "GET", "v1/collections/{collection_id}/documents", response=DocumentList, host="management"
)
GET_DOCUMENT = Endpoint(
    "collections", "GET", "v1/collections/{collection_id}/documents/{file_id}", response=Document, host="management"
)
REMOVE_DOCUMENT = Endpoint(
    "collections", "DELETE", "v1/collections/{collection_id}/documents/{file_id}", host="management"
)
SEARCH = Endpoint("documents.search", "POST", "documents/search", request=DocumentSearchRequest, response=SearchResults)
ENDPOINTS = (CREATE, LIST, GET, DELETE, ADD_DOCUMENT, LIST_DOCUMENTS, GET_DOCUMENT, REMOVE_DOCUMENT, SEARCH)


def _id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise XAIValidationError(field, f"must be a non-empty string, got {value!r}")
    return segment(value)


def _collection(collection_id: str, suffix: str = "") -> str:
    return f"v1/collections/{_id(collection_id, 'collection_id')}{suffix}"


def _document(collection_id: str, file_id: str) -> str:
    return _collection(collection_id, f"/documents/{_id(file_id, 'file_id')}")


def _fields(fields: Mapping[str, Any] | None) -> dict[str, str]:
    """Document fields: string keys and string values (xAI stores both as text)."""
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise XAIValidationError("fields", f"must be a mapping of names to text, got {type(fields).__name__}")
    for key, value in fields.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise XAIValidationError(f"fields[{key!r}]", f"names and values must be text, got {value!r}")
    return dict(fields)


def create(
    name: str, description: str | None = None, field_definitions: Sequence[Mapping[str, Any]] = ()
) -> Call[Collection]:
    if not isinstance(name, str) or not name.strip():
        raise XAIValidationError("collection_name", f"must be a non-empty string, got {name!r}")
    body: dict[str, Any] = {"collection_name": name}
    if description is not None:
        body["collection_description"] = description
    if field_definitions:
        body["field_definitions"] = [dict(d) for d in field_definitions]
    return Call(CREATE, read(Collection, "collection"), body=fixed_body(body))


def collections_page(limit: int, token: str | None) -> Call[CollectionList]:
    query = {"limit": limit, **({"pagination_token": token} if token else {})}
    return Call(LIST, read(CollectionList, "collection list"), path=f"v1/collections?{urlencode(query)}")


def get(collection_id: str) -> Call[Collection]:
    return Call(GET, read(Collection, "collection"), path=_collection(collection_id))


def delete(collection_id: str) -> Call[None]:
    return Call(DELETE, ignore, path=_collection(collection_id))


def add_document(collection_id: str, file_id: str, fields: Mapping[str, Any] | None = None) -> Call[None]:
    """Attach an uploaded file to a collection, with its fields."""
    body = fixed_body({"fields": _fields(fields)} if fields else {})
    return Call(ADD_DOCUMENT, ignore, path=_document(collection_id, file_id), body=body)


def documents_page(collection_id: str, limit: int, token: str | None) -> Call[DocumentList]:
    query = urlencode({"limit": limit, **({"pagination_token": token} if token else {})})
    path = _collection(collection_id, f"/documents?{query}")
    return Call(LIST_DOCUMENTS, read(DocumentList, "document list"), path=path)


def get_document(collection_id: str, file_id: str) -> Call[Document]:
    return Call(GET_DOCUMENT, read(Document, "document"), path=_document(collection_id, file_id))


def remove_document(collection_id: str, file_id: str) -> Call[None]:
    return Call(REMOVE_DOCUMENT, ignore, path=_document(collection_id, file_id))


def search_request(query: str, collection_ids: Sequence[str] | str, **options: Any) -> DocumentSearchRequest:
    """A checked search request (the field named when it is refused)."""
    ids = [collection_ids] if isinstance(collection_ids, str) else list(collection_ids)
    body = {"query": query, "source": {"collection_ids": ids}, **{k: v for k, v in options.items() if v is not None}}
    try:
        return DocumentSearchRequest.model_validate(body)
    except ValidationError as exc:
        raise XAIValidationError(*describe_validation_error(exc)) from None


def search(request: DocumentSearchRequest) -> Call[SearchResults]:
    body = fixed_body(request.model_dump(exclude_none=True))
    return Call(SEARCH, read(SearchResults, "search results"), body=body)


__all__ = [
    "ADD_DOCUMENT",
    "CREATE",
    "DELETE",
    "ENDPOINTS",
    "GET",
    "GET_DOCUMENT",
    "LIST",
    "LIST_DOCUMENTS",
    "REMOVE_DOCUMENT",
    "SEARCH",
    "add_document",
    "collections_page",
    "create",
    "delete",
    "documents_page",
    "get",
    "get_document",
    "remove_document",
    "search",
    "search_request",
]
