"""Wire models of xAI collections (the Management API's ``/v1/collections``) and of document
search (``POST /v1/documents/search``, with the API key).

A collection holds documents: files uploaded through ``/v1/files`` and attached to it, each
with string ``fields`` that the collection's ``field_definitions`` declare. A document is
``DOCUMENT_STATUS_PROCESSING`` until it is indexed (``..._PROCESSED``) or could not be
(``..._FAILED``, with ``error_message``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROCESSING = "DOCUMENT_STATUS_PROCESSING"
PROCESSED = "DOCUMENT_STATUS_PROCESSED"
FAILED = "DOCUMENT_STATUS_FAILED"
#: Most collections or documents one list call returns.
MAX_PAGE_SIZE = 100
#: Most matches one search returns.
MAX_SEARCH_RESULTS = 100


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class FieldDefinition(_Model):
    """A document field a collection declares (``required``, ``unique``, ``inject_into_chunk``)."""

    key: str = ""
    required: bool | None = None
    unique: bool | None = None
    inject_into_chunk: bool | None = None
    description: str | None = None


class Collection(_Model):
    collection_id: str = Field(min_length=1)
    collection_name: str = ""
    collection_description: str | None = None
    created_at: Any = None
    documents_count: int | None = None
    field_definitions: list[FieldDefinition] | None = None


class CollectionList(_Model):
    collections: list[Collection] = Field(default_factory=list)
    pagination_token: str | None = None


class FileMetadata(_Model):
    file_id: str = Field(min_length=1)
    name: str = ""
    size_bytes: int | None = None
    content_type: str | None = None
    hash: str | None = None


class Document(_Model):
    """A file attached to a collection, its fields and how far its indexing got."""

    file_metadata: FileMetadata
    fields: dict[str, Any] = Field(default_factory=dict)
    status: str = "DOCUMENT_STATUS_UNKNOWN"
    error_message: str | None = None
    chunk_count: int | None = None

    @field_validator("fields", mode="before")
    @classmethod
    def _no_fields(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def file_id(self) -> str:
        return self.file_metadata.file_id

    @property
    def name(self) -> str:
        return self.file_metadata.name

    @property
    def indexed(self) -> bool:
        """Processed or failed: indexing will not move on by itself."""
        return self.status in (PROCESSED, FAILED)

    @property
    def failed(self) -> bool:
        return self.status == FAILED


class DocumentList(_Model):
    documents: list[Document] = Field(default_factory=list)
    pagination_token: str | None = None


class SearchMatch(_Model):
    """One chunk of a document that matched a search."""

    file_id: str = ""
    chunk_id: str | None = None
    chunk_content: str = ""
    score: float | None = None
    collection_ids: list[str] = Field(default_factory=list)
    fields: dict[str, Any] = Field(default_factory=dict)
    page_number: int | None = None


class SearchResults(_Model):
    matches: list[SearchMatch] = Field(default_factory=list)


# --- the search request (strict: refused before anything is sent) -------------------------------
class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchSource(_Request):
    collection_ids: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    rag_pipeline: str | None = None


class RetrievalMode(_Request):
    type: Literal["hybrid", "semantic", "keyword"]
    reranker: str | None = None
    search_multiplier: int | None = Field(default=None, ge=1, le=100)


class DocumentSearchRequest(_Request):
    """Body of ``POST /v1/documents/search``."""

    query: str = Field(min_length=1)
    source: SearchSource
    limit: int | None = Field(default=None, ge=1, le=MAX_SEARCH_RESULTS)
    filter: str | None = None
    instructions: str | None = None
    retrieval_mode: RetrievalMode | None = None
    group_by: Any = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


__all__ = [
    "FAILED",
    "MAX_PAGE_SIZE",
    "MAX_SEARCH_RESULTS",
    "PROCESSED",
    "PROCESSING",
    "Collection",
    "CollectionList",
    "Document",
    "DocumentList",
    "DocumentSearchRequest",
    "FieldDefinition",
    "FileMetadata",
    "RetrievalMode",
    "SearchMatch",
    "SearchResults",
    "SearchSource",
]
