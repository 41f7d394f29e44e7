"""What a collection sync decides before sending anything: from the files found and the
documents the collection holds (their path and hash fields), which to upload, keep and remove."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_xai.operators.collection_plan import (
    FAILED,
    HASH_FIELD,
    PATH_FIELD,
    PROCESSED,
    SourceFile,
    Synced,
    SyncState,
    plan_sync,
    report_of,
    synced_documents,
)
from airflow_provider_xai.schemas.collections import Document

LIMIT = 1000


def file(key: str, sha: str, size: int = 10) -> SourceFile:
    return SourceFile(key, f"file:///docs/{key}", size, sha)


def doc(file_id: str, key: str, sha: str, status: str = PROCESSED, error: str | None = None) -> Synced:
    return Synced(file_id, key, sha, status, error)


def test_a_new_file_is_added_and_a_known_one_costs_nothing() -> None:
    plan = plan_sync([file("a.md", "1"), file("b.md", "2")], [doc("f-a", "a.md", "1")], LIMIT)
    assert [u.file.key for u in plan.uploads] == ["b.md"] and plan.uploads[0].replaces == ()
    assert plan.unchanged == [doc("f-a", "a.md", "1")]
    assert (plan.added, plan.replaced, plan.removals, plan.stale) == (1, 0, [], [])


def test_a_changed_file_replaces_its_document() -> None:
    plan = plan_sync([file("a.md", "2")], [doc("f-old", "a.md", "1")], LIMIT)
    (upload,) = plan.uploads
    assert upload.file.sha256 == "2" and upload.replaces == (doc("f-old", "a.md", "1"),)
    assert (plan.added, plan.replaced, plan.unchanged) == (0, 1, [])


def test_a_file_gone_from_the_folder_has_its_documents_removed() -> None:
    plan = plan_sync([file("a.md", "1")], [doc("f-a", "a.md", "1"), doc("f-b", "b.md", "9")], LIMIT)
    assert plan.removals == [doc("f-b", "b.md", "9")] and not plan.uploads


def test_an_interrupted_replacement_leaves_one_document_and_removes_the_other() -> None:
    """The new version was attached, the old one not yet removed: keep the new one."""
    old, new = doc("f-old", "a.md", "1"), doc("f-new", "a.md", "2", status="DOCUMENT_STATUS_PROCESSING")
    plan = plan_sync([file("a.md", "2")], [old, new], LIMIT)
    assert plan.unchanged == [new] and plan.stale == [old] and not plan.uploads


def test_of_two_documents_with_the_same_content_the_indexed_one_is_kept() -> None:
    twins = [doc("f-1", "a.md", "1", status="DOCUMENT_STATUS_PROCESSING"), doc("f-2", "a.md", "1")]
    plan = plan_sync([file("a.md", "1")], twins, LIMIT)
    assert [d.file_id for d in plan.unchanged] == ["f-2"] and [d.file_id for d in plan.stale] == ["f-1"]


def test_a_file_over_the_limit_is_refused_and_its_documents_left_alone() -> None:
    plan = plan_sync([file("big.pdf", "2", size=LIMIT + 1)], [doc("f-big", "big.pdf", "1")], LIMIT)
    ((refused, reason),) = plan.refused
    assert refused.key == "big.pdf" and "1,001 bytes" in reason and "1,000" in reason
    assert not plan.uploads and not plan.removals and not plan.unchanged


def test_documents_without_the_sync_fields_are_not_the_syncs() -> None:
    documents = [
        Document.model_validate({"file_metadata": {"file_id": "f-1", "name": "a.md"},
                                 "fields": {PATH_FIELD: "a.md", HASH_FIELD: "1"}, "status": FAILED,
                                 "error_message": "no text"}),
        Document.model_validate({"file_metadata": {"file_id": "f-2", "name": "mine.pdf"}, "fields": None}),
        Document.model_validate({"file_metadata": {"file_id": "f-3"}, "fields": {PATH_FIELD: "x.md"}}),
    ]  # fmt: skip
    synced, others = synced_documents(documents)
    assert synced == [doc("f-1", "a.md", "1", FAILED, "no text")] and others == 2


def test_the_report_counts_what_the_plan_does() -> None:
    documents = [doc("f-a", "a.md", "1"), doc("f-b", "b.md", "2", FAILED, "bad pdf"), doc("f-c", "c.md", "3")]
    files = [file("a.md", "1"), file("b.md", "2"), file("d.md", "4"), file("e.md", "5", size=LIMIT + 1)]
    report = report_of(plan_sync(files, documents, LIMIT), {"collection_id": "c"}, len(files))
    assert {k: report[k] for k in ("files", "added", "replaced", "removed", "unchanged", "indexed")} == {
        "files": 4, "added": 1, "replaced": 0, "removed": 1, "unchanged": 2, "indexed": 1,
    }  # fmt: skip
    assert [(f["path"], f["file_id"]) for f in report["failed"]] == [("e.md", None), ("b.md", "f-b")]
    assert report["failed"][1]["reason"] == "bad pdf"


class TestSyncState:
    def test_it_round_trips_and_finds_an_upload_of_the_same_content(self) -> None:
        state = SyncState("c", {"a.md": ["1", "file-1"]}, ["file-9"])
        again, problem = SyncState.decode(state.encode())
        assert problem is None and again == state
        assert again.pending_upload(file("a.md", "1")) == "file-1"
        assert again.pending_upload(file("a.md", "2")) is None  # the file changed since

    @pytest.mark.parametrize("stored", ["{not json", "[1, 2]", {"uploads": 5}, 42])
    def test_an_unreadable_state_starts_afresh_and_says_so(self, stored: Any) -> None:
        state, problem = SyncState.decode(stored)
        assert state == SyncState() and problem and "unreadable" in problem

    def test_bad_entries_are_skipped_the_rest_kept(self) -> None:
        stored = {"collection_id": 3, "uploads": {"a.md": ["1", "f"], "b.md": "x"}, "deleting": ["f2", 7]}
        state, problem = SyncState.decode(stored)
        assert problem is None and state == SyncState(None, {"a.md": ["1", "f"]}, ["f2"])
