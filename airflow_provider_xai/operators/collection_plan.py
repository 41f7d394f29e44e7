"""What a collection sync must do, decided before it does anything: pure functions of the files
found in object storage and the documents the collection holds (the source of truth).

Each document the sync attached carries two fields: the file's path under the source
(:data:`PATH_FIELD`) and the SHA-256 of its content (:data:`HASH_FIELD`). For every file:

- a document with its path and hash: **unchanged**, no request (other documents with its path,
  left by a sync interrupted mid-replacement, are removed);
- documents with its path but another hash: **replaced** (upload, attach, then remove them);
- no document with its path: **added**;
- over xAI's size limit: **refused** (failed, nothing sent; its documents are left alone).

Documents whose path is no longer in the source are **removed**. Documents without the fields
were not put there by a sync and are left alone. What a try has uploaded but not attached yet is
kept in the task state store (:class:`SyncState`), so a retry attaches it instead of uploading
again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Document statuses (as ``schemas.collections`` has them; not imported: this runs at DAG parse).
PROCESSED, FAILED = "DOCUMENT_STATUS_PROCESSED", "DOCUMENT_STATUS_FAILED"
#: The document fields the sync keeps its state in.
PATH_FIELD = "airflow_source_path"
HASH_FIELD = "airflow_content_sha256"
FIELD_DEFINITIONS = (
    {"key": PATH_FIELD, "description": "Path of the file under the synced folder (Airflow)"},
    {"key": HASH_FIELD, "description": "SHA-256 of the file's content when it was synced (Airflow)"},
)


@dataclass(frozen=True)
class SourceFile:
    """A file found under the source: its path below the source, where it is, its size and hash."""

    key: str
    path: Any
    size: int
    sha256: str

    @property
    def fields(self) -> dict[str, str]:
        return {PATH_FIELD: self.key, HASH_FIELD: self.sha256}


@dataclass(frozen=True)
class Synced:
    """A document the sync attached: its file, path, hash and indexing status."""

    file_id: str
    key: str
    sha256: str
    status: str
    error: str | None = None


@dataclass(frozen=True)
class Upload:
    file: SourceFile
    replaces: tuple[Synced, ...] = ()


@dataclass
class Plan:
    uploads: list[Upload] = field(default_factory=list)
    unchanged: list[Synced] = field(default_factory=list)
    #: Documents of files gone from the source.
    removals: list[Synced] = field(default_factory=list)
    #: Documents left by an interrupted replacement (their file has a current document).
    stale: list[Synced] = field(default_factory=list)
    refused: list[tuple[SourceFile, str]] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(1 for u in self.uploads if not u.replaces)

    @property
    def replaced(self) -> int:
        return sum(1 for u in self.uploads if u.replaces)


def synced_documents(documents: Iterable[Any]) -> tuple[list[Synced], int]:
    """The documents a sync attached (both fields set), and how many others there are."""
    synced, others = [], 0
    for document in documents:
        fields = document.fields
        key, digest = fields.get(PATH_FIELD), fields.get(HASH_FIELD)
        if isinstance(key, str) and isinstance(digest, str) and key:
            synced.append(Synced(document.file_id, key, digest, document.status, document.error_message))
        else:
            others += 1
    return synced, others


def plan_sync(files: Iterable[SourceFile], documents: Iterable[Synced], max_bytes: int) -> Plan:
    """What to upload, keep and remove to make the documents mirror ``files``."""
    by_key: dict[str, list[Synced]] = {}
    for document in documents:
        by_key.setdefault(document.key, []).append(document)
    plan = Plan()
    for file in files:
        present = by_key.pop(file.key, [])
        if file.size > max_bytes:
            plan.refused.append((file, f"{file.size:,} bytes: xAI accepts at most {max_bytes:,} bytes"))
            continue
        same = [d for d in present if d.sha256 == file.sha256]
        if not same:
            plan.uploads.append(Upload(file, tuple(present)))
            continue
        keep = next((d for d in same if d.status == PROCESSED), same[0])
        plan.unchanged.append(keep)
        plan.stale += [d for d in present if d is not keep]
    plan.removals = [d for gone in by_key.values() for d in gone]
    return plan


@dataclass
class SyncState:
    """What a try keeps in the task state store for the next: the collection, the files it
    uploaded and has not attached yet (path -> [hash, file id]), and the files whose
    documents it was removing."""

    collection_id: str | None = None
    uploads: dict[str, list[str]] = field(default_factory=dict)
    deleting: list[str] = field(default_factory=list)

    @classmethod
    def decode(cls, stored: Any) -> tuple[SyncState, str | None]:
        """The state a try stored (absent: an empty one), and the problem of one unreadable
        (the state starts afresh: the collection still says what is there)."""
        if stored is None:
            return cls(), None
        try:
            data = json.loads(stored) if isinstance(stored, str) else dict(stored)
            state = cls(
                collection_id=data.get("collection_id") if isinstance(data.get("collection_id"), str) else None,
                uploads={k: [str(v[0]), str(v[1])] for k, v in dict(data.get("uploads") or {}).items()
                         if isinstance(k, str) and isinstance(v, list) and len(v) == 2},
                deleting=[str(f) for f in data.get("deleting") or [] if isinstance(f, str)],
            )  # fmt: skip
        except (ValueError, TypeError, AttributeError) as exc:
            return cls(), f"unreadable sync state ({type(exc).__name__})"
        return state, None

    def encode(self) -> dict[str, Any]:
        """The state as the task state store keeps it (JSON-safe)."""
        return {"collection_id": self.collection_id, "uploads": dict(self.uploads), "deleting": list(self.deleting)}

    def pending_upload(self, file: SourceFile) -> str | None:
        """The file id an earlier try uploaded for this very content, if any."""
        found = self.uploads.get(file.key)
        return found[1] if found and found[0] == file.sha256 else None


def failure(path: str, file_id: str | None, reason: str | None) -> dict[str, Any]:
    """One entry of a report's ``failed``."""
    return {"path": path, "file_id": file_id, "reason": reason or "indexing failed"}


def report_of(plan: Plan, collection: Mapping[str, Any], files: int) -> dict[str, Any]:
    """The counts a sync reports: ``indexed`` and ``failed`` so far (the documents it waits for
    are added once their indexing ended)."""
    return {
        **collection,
        "files": files,
        "added": plan.added,
        "replaced": plan.replaced,
        "removed": len(plan.removals),
        "unchanged": len(plan.unchanged),
        "indexed": sum(1 for d in plan.unchanged if d.status == PROCESSED),
        "failed": [failure(f.key, None, reason) for f, reason in plan.refused]
        + [failure(d.key, d.file_id, d.error) for d in plan.unchanged if d.status == FAILED],
    }


__all__ = [
    "FAILED",
    "FIELD_DEFINITIONS",
    "HASH_FIELD",
    "PATH_FIELD",
    "PROCESSED",
    "Plan",
    "SourceFile",
    "SyncState",
    "Synced",
    "Upload",
    "failure",
    "plan_sync",
    "report_of",
    "synced_documents",
]
