"""The local server's collections (the Management API) and document search, without
web-framework imports.

A document is an uploaded file attached to a collection with its fields (which the
collection's ``field_definitions`` must declare; ``required`` and ``unique`` are enforced). It
is ``DOCUMENT_STATUS_PROCESSING`` for ``documents_pending_polls`` reads (listing or getting
it), then ``..._PROCESSED``, or ``..._FAILED`` when its content is not UTF-8 text or is empty.
Search ranks the paragraphs of processed documents by the words they share with the query, so
a search really finds what the uploaded files say.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.files import ServedFile, paged
from airflow_provider_xai.testing.responses_corpus import overlap, words

PROCESSING = "DOCUMENT_STATUS_PROCESSING"
PROCESSED = "DOCUMENT_STATUS_PROCESSED"
FAILED = "DOCUMENT_STATUS_FAILED"
UNREADABLE = "Could not extract any text from the document (not UTF-8 text, or empty)."


@dataclass
class ServedDocument:
    file_id: str
    name: str
    size: int
    text: str | None  # None: no text could be extracted (it fails indexing)
    fields: dict[str, str]
    polls_left: int
    status: str = PROCESSING

    def read(self) -> ServedDocument:
        """One read of the document: indexing moves on."""
        if self.status == PROCESSING:
            if self.polls_left > 0:
                self.polls_left -= 1
            else:
                self.status = PROCESSED if self.text else FAILED
        return self

    def to_json(self) -> dict[str, Any]:
        return {"file_metadata": {"file_id": self.file_id, "name": self.name, "size_bytes": self.size,
                                  "content_type": "text/plain"},
                "fields": dict(self.fields), "status": self.status,
                "error_message": UNREADABLE if self.status == FAILED else None,
                "chunk_count": len(chunks(self.text)) if self.status == PROCESSED else 0}


@dataclass
class ServedCollection:
    id: str
    name: str
    description: str | None
    field_definitions: list[dict[str, Any]]
    created_at: int
    documents: dict[str, ServedDocument] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"collection_id": self.id, "collection_name": self.name,
                "collection_description": self.description, "created_at": self.created_at,
                "documents_count": len(self.documents), "field_definitions": self.field_definitions}

    def check_fields(self, fields: Mapping[str, str], file_id: str) -> None:
        """xAI's rules: only declared fields, required ones present, unique ones unique."""
        declared = {d["key"]: d for d in self.field_definitions}
        for key, value in fields.items():
            if key not in declared:
                raise ServedError(400, f"Field {key!r} is not defined in collection {self.id}.")
            if declared[key].get("unique") and any(
                    d.fields.get(key) == value for d in self.documents.values() if d.file_id != file_id):
                raise ServedError(400, f"Another document already has {key}={value!r} (unique).")
        missing = [k for k, d in declared.items() if d.get("required") and k not in fields]
        if missing:
            raise ServedError(400, f"Missing required field(s): {', '.join(missing)}.")


def check_definitions(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(d, dict) and isinstance(d.get("key"), str)
                                              and d["key"] for d in value):
        raise ServedError(400, "field_definitions must be a list of objects with a non-empty 'key'.")
    return [dict(d) for d in value]


def chunks(text: str | None) -> list[str]:
    """The paragraphs of a document's text (its search chunks)."""
    return [p.strip() for p in (text or "").split("\n\n") if p.strip()]


class CollectionStore:
    """Every collection the server holds; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._collections: dict[str, ServedCollection] = {}

    def clear(self) -> None:
        with self._lock:
            self._collections.clear()

    def create(self, name: Any, description: Any, definitions: Any) -> ServedCollection:
        if not isinstance(name, str) or not name.strip():
            raise ServedError(400, "collection_name must be a non-empty string.")
        collection = ServedCollection(f"collection_{uuid.uuid4()}", name,
                                      description if isinstance(description, str) else None,
                                      check_definitions(definitions), int(time.time()))
        with self._lock:
            self._collections[collection.id] = collection
        return collection

    def get(self, collection_id: str) -> ServedCollection:
        with self._lock:
            collection = self._collections.get(collection_id)
        if collection is None:
            raise ServedError(404, f"Collection {collection_id} was not found.")
        return collection

    def delete(self, collection_id: str) -> None:
        self.get(collection_id)
        with self._lock:
            self._collections.pop(collection_id, None)

    def page(self, limit: int, token: str | None) -> tuple[list[ServedCollection], str]:
        with self._lock:
            collections = sorted(self._collections.values(), key=lambda c: c.name)
        return paged(collections, limit, token)

    def attach(self, collection_id: str, file: ServedFile, fields: Mapping[str, str],
               pending_polls: int) -> ServedDocument:
        """Attach a file (again: its fields are updated, it is not added twice)."""
        with self._lock:
            collection = self.get(collection_id)
            collection.check_fields(fields, file.id)
            try:
                text: str | None = file.content.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            document = ServedDocument(file.id, file.filename, len(file.content), text or None,
                                      dict(fields), pending_polls)
            collection.documents.setdefault(file.id, document).fields = dict(fields)
            return collection.documents[file.id]

    def documents(self, collection_id: str) -> list[ServedDocument]:
        with self._lock:
            return [d.read() for d in self.get(collection_id).documents.values()]

    def document(self, collection_id: str, file_id: str) -> ServedDocument:
        with self._lock:
            document = self.get(collection_id).documents.get(file_id)
            if document is None:
                raise ServedError(404, f"Document {file_id} is not in collection {collection_id}.")
            return document.read()

    def remove(self, collection_id: str, file_id: str) -> None:
        with self._lock:
            self.document(collection_id, file_id)
            del self.get(collection_id).documents[file_id]

    # -- search ------------------------------------------------------------------------------------
    def processed(self) -> dict[str, list[tuple[ServedDocument, str]]]:
        """Every collection's indexed paragraphs: collection id -> [(document, paragraph)]."""
        with self._lock:
            return {c.id: [(d, p) for d in c.documents.values() if d.status == PROCESSED for p in chunks(d.text)]
                    for c in self._collections.values()}

    def search(self, query: str, collection_ids: list[str], limit: int) -> list[dict[str, Any]]:
        """The paragraphs sharing the most words with ``query`` (none when none shares a word)."""
        for cid in collection_ids:
            self.get(cid)
        indexed = self.processed()
        hits = [(cid, d, n, p) for cid in dict.fromkeys(collection_ids)
                for n, (d, p) in enumerate(indexed[cid]) if overlap(query, p)]
        asked = max(1, len(words(query)))
        hits.sort(key=lambda h: -overlap(query, h[3]))
        return [{"file_id": d.file_id, "chunk_id": f"{d.file_id}:{n}", "chunk_content": p,
                 "score": round(overlap(query, p) / asked, 4), "collection_ids": [cid],
                 "fields": dict(d.fields), "page_number": 1} for cid, d, n, p in hits[:limit]]

    def file_search_documents(self) -> dict[str, list[dict[str, str]]]:
        """The processed documents as the Responses ``file_search`` tool reads them."""
        with self._lock:
            return {c.id: [{"file_id": d.file_id, "filename": d.name, "text": d.text or ""}
                           for d in c.documents.values() if d.status == PROCESSED]
                    for c in self._collections.values()}


__all__ = ["FAILED", "PROCESSED", "PROCESSING", "CollectionStore", "ServedCollection", "ServedDocument",
           "chunks"]
