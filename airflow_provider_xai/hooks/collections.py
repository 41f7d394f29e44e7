"""xAI collections (the Management API, with the connection's management key) and document
search (with the API key), as methods of :class:`XAIHook`. The calls are described in
:mod:`airflow_provider_xai.endpoints.collections`; a collection call without a management key
is refused before anything is sent, naming the connection field."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_xai.endpoints import collections as api
from airflow_provider_xai.exceptions import XAIDeferredTimeoutError
from airflow_provider_xai.hooks.paging import apages, pages
from airflow_provider_xai.pipeline.transport import XAITransport
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Poller, ProgressLog, poll
from airflow_provider_xai.schemas.collections import MAX_PAGE_SIZE, Document, SearchResults
from airflow_provider_xai.schemas.collections import Collection as XAICollection

log = logging.getLogger(__name__)


def not_indexed(documents: Iterable[Document], file_ids: Collection[str]) -> list[str]:
    """The ids of ``file_ids`` whose documents are not indexed yet (processed or failed); one
    missing from ``documents`` counts as not yet (a listing may lag behind an attach)."""
    indexed = {d.file_id for d in documents if d.indexed}
    return [f for f in file_ids if f not in indexed]


def indexing_progress(documents: Iterable[Document], file_ids: Collection[str]) -> str:
    waiting = len(not_indexed(documents, file_ids))
    return f"{len(file_ids) - waiting} of {len(file_ids)} documents indexed"


class XAICollectionsMixin:
    """Collection and document-search methods of :class:`XAIHook`; they need only its ``transport``."""

    transport: XAITransport
    #: ``limit`` of the collection and document list calls.
    collections_page_size: int = MAX_PAGE_SIZE

    # --- collections ---------------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        *,
        description: str | None = None,
        field_definitions: Sequence[Mapping[str, Any]] = (),
    ) -> XAICollection:
        """``POST /v1/collections``. ``field_definitions``: the document fields it declares
        (``{"key": ..., "required"?, "unique"?, "inject_into_chunk"?}``)."""
        return self.transport.send(api.create(name, description, field_definitions))

    def get_collection(self, collection_id: str) -> XAICollection:
        """``GET /v1/collections/{id}``."""
        return self.transport.send(api.get(collection_id))

    async def aget_collection(self, collection_id: str) -> XAICollection:
        """Async :meth:`get_collection`."""
        return await self.transport.asend(api.get(collection_id))

    def list_collections(self) -> Iterator[XAICollection]:
        """``GET /v1/collections``: every collection of the team, fetched lazily."""
        yield from pages(self.transport.send, api.collections_page, lambda p: p.collections, self.collections_page_size)

    def find_collection(self, name: str) -> XAICollection | None:
        """The first collection called ``name``, or None."""
        return next((c for c in self.list_collections() if c.collection_name == name), None)

    def delete_collection(self, collection_id: str) -> None:
        """``DELETE /v1/collections/{id}`` (its documents go with it; their files stay)."""
        self.transport.send(api.delete(collection_id))

    # --- documents -----------------------------------------------------------------------------
    def add_document(self, collection_id: str, file_id: str, *, fields: Mapping[str, str] | None = None) -> None:
        """``POST /v1/collections/{id}/documents/{file_id}``: attach an uploaded file, with
        ``fields`` (text values of fields the collection declares). Indexing starts then."""
        self.transport.send(api.add_document(collection_id, file_id, fields))

    def list_documents(self, collection_id: str) -> Iterator[Document]:
        """``GET /v1/collections/{id}/documents``: every document, its fields and status."""
        yield from pages(
            self.transport.send,
            lambda n, token: api.documents_page(collection_id, n, token),
            lambda p: p.documents,
            self.collections_page_size,
        )

    async def alist_documents(self, collection_id: str) -> list[Document]:
        """Async :meth:`list_documents` (for triggers): the whole list."""
        found = apages(
            self.transport.asend,
            lambda n, token: api.documents_page(collection_id, n, token),
            lambda p: p.documents,
            self.collections_page_size,
        )
        return [document async for document in found]

    def wait_for_documents(
        self,
        collection_id: str,
        file_ids: Collection[str],
        *,
        poll_interval: float = 10.0,
        timeout: float = 3600.0,
        max_poll_failures: int = DEFAULT_MAX_POLL_FAILURES,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[Document]:
        """Poll (blocking) until every document of ``file_ids`` is indexed; return the
        collection's documents. Raises :class:`XAIDeferredTimeoutError` at ``timeout``.
        Transient poll failures are tolerated as in the triggers (``polling.py``)."""
        progress = ProgressLog(lambda: log, f"xAI collection {collection_id}")
        outcome = poll(
            Poller(poll_interval, clock() + timeout, max_poll_failures, clock=clock),
            lambda: list(self.list_documents(collection_id)),
            lambda documents: not not_indexed(documents, file_ids),
            on_value=lambda documents: progress.update(indexing_progress(documents, file_ids)),
            on_failure=progress.failure,
            sleep=sleep,
        )
        if (documents := outcome.finished()) is not None:
            return documents
        raise XAIDeferredTimeoutError(
            f"xAI collection {collection_id}: documents not indexed within {timeout:g}s ({progress.last})"
        )

    def get_document(self, collection_id: str, file_id: str) -> Document:
        """``GET /v1/collections/{id}/documents/{file_id}``."""
        return self.transport.send(api.get_document(collection_id, file_id))

    async def aget_document(self, collection_id: str, file_id: str) -> Document:
        """Async :meth:`get_document`."""
        return await self.transport.asend(api.get_document(collection_id, file_id))

    def remove_document(self, collection_id: str, file_id: str) -> None:
        """``DELETE /v1/collections/{id}/documents/{file_id}`` (the file itself stays in
        ``/v1/files`` until :meth:`delete_file`)."""
        self.transport.send(api.remove_document(collection_id, file_id))

    # --- search --------------------------------------------------------------------------------
    def search_documents(
        self,
        query: str,
        collection_ids: Sequence[str] | str,
        *,
        limit: int | None = None,
        filter: str | None = None,
        instructions: str | None = None,
        retrieval_mode: Mapping[str, Any] | None = None,
    ) -> SearchResults:
        """``POST /v1/documents/search`` (API key): the chunks of the collections' documents
        that best match ``query``. ``filter`` is an AIP-160 expression over document fields;
        ``retrieval_mode`` ``{"type": "hybrid"|"semantic"|"keyword", ...}``."""
        request = api.search_request(
            query, collection_ids, limit=limit, filter=filter, instructions=instructions, retrieval_mode=retrieval_mode
        )
        return self.transport.send(api.search(request))

    async def asearch_documents(self, query: str, collection_ids: Sequence[str] | str, **options: Any) -> SearchResults:
        """Async :meth:`search_documents` (the same options)."""
        return await self.transport.asend(api.search(api.search_request(query, collection_ids, **options)))


__all__ = ["XAICollectionsMixin", "indexing_progress", "not_indexed"]
