"""XAICollectionSyncOperator against the local server: what each sync sends, read from the
server's journal (a second sync with nothing changed sends no upload, attach or delete; one
changed file is one upload and one replacement), a sync killed half-way resumed without
duplicate documents, indexing awaited in the trigger, and bad input refused before any request."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_xai.exceptions import (
    XAIConfigurationError,
    XAIDeferredTimeoutError,
    XAIError,
    XAIValidationError,
)
from airflow_provider_xai.operators.collection_plan import HASH_FIELD, PATH_FIELD
from airflow_provider_xai.operators.collections import STATE_KEY, XAICollectionSyncOperator
from airflow_provider_xai.testing import XAIServer
from airflow_provider_xai.triggers.collections import XAICollectionIndexTrigger
from tests.helpers.context import FakeStateStore, FakeTI, make_context

DOCS = {
    "vacation.md": "Every employee gets 25 vacation days a year.",
    "expenses.md": "Hotels are reimbursed up to 180 euros a night.",
    "guides/security.md": "Lock your laptop when you leave your desk.",
}


class Killed(BaseException):
    """The worker dies (SIGKILL): nothing of the task runs after it."""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def sync(folder: Path, **kwargs: Any) -> XAICollectionSyncOperator:
    options = {"task_id": "sync", "source": f"file://{folder}", "collection_name": "handbook",
               "deferrable": False, "poll_interval": 0.01, **kwargs}  # fmt: skip
    return XAICollectionSyncOperator(**options)


def run(operator: XAICollectionSyncOperator, store: FakeStateStore | None = None) -> tuple[dict[str, Any], FakeTI]:
    ti = FakeTI()
    return operator.execute(make_context(ti, store if store is not None else FakeStateStore())), ti


def requests(server: XAIServer, since: int = 0) -> Counter[str]:
    """What the server was asked, by kind: uploads, attaches, document and file deletions."""
    kinds: Counter[str] = Counter()
    for e in server.journal[since:]:
        if e.method == "POST" and e.path == "/v1/files":
            kinds["upload"] += 1
        elif e.method == "POST" and "/documents/" in e.path:
            kinds["attach"] += 1
        elif e.method == "DELETE" and "/documents/" in e.path:
            kinds["detach"] += 1
        elif e.method == "DELETE" and e.path.startswith("/v1/files/"):
            kinds["delete_file"] += 1
        else:
            kinds[f"{e.method} other"] += 1
    return kinds


def documents(server: XAIServer, collection_id: str) -> list[tuple[str, str]]:
    """(path, hash) of every document of the collection, from the server's own state."""
    held = server.state.collections.get(collection_id).documents.values()
    return sorted((d.fields.get(PATH_FIELD, ""), d.fields.get(HASH_FIELD, "")) for d in held)


def kill(operator: XAICollectionSyncOperator, method: str, nth: int, *, after: bool) -> None:
    """Kill the task at the ``nth`` call of hook ``method``, before or after it was sent."""
    real: Callable[..., Any] = getattr(operator.hook, method)
    calls = [0]

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth and not after:
            raise Killed
        result = real(*args, **kwargs)
        if calls[0] == nth and after:
            raise Killed
        return result

    setattr(operator.hook, method, dying)


def test_a_second_sync_with_nothing_changed_sends_no_upload_attach_or_delete(
    xai_server: XAIServer, folder: Path
) -> None:
    first, ti = run(sync(folder))
    assert {k: first[k] for k in ("files", "added", "replaced", "removed", "unchanged", "indexed")} == {
        "files": 3, "added": 3, "replaced": 0, "removed": 0, "unchanged": 0, "indexed": 3}  # fmt: skip
    assert first["failed"] == [] and ti.pushed["xai_collection_id"] == first["collection_id"]
    counts = requests(xai_server)
    assert (counts["upload"], counts["attach"], counts["detach"], counts["delete_file"]) == (3, 3, 0, 0)
    assert [p for p, _ in documents(xai_server, first["collection_id"])] == sorted(DOCS)

    mark = len(xai_server.journal)
    second, _ = run(sync(folder))
    assert (second["collection_id"], second["added"], second["unchanged"], second["indexed"]) == (
        first["collection_id"], 0, 3, 3)  # fmt: skip
    again = requests(xai_server, mark)
    assert again["upload"] == again["attach"] == again["detach"] == again["delete_file"] == 0, again
    print(f"first sync: {dict(counts)}; second sync: {dict(again)}")


def test_one_changed_file_is_one_upload_and_one_replacement(xai_server: XAIServer, folder: Path) -> None:
    first, _ = run(sync(folder))
    old = dict(documents(xai_server, first["collection_id"]))
    (folder / "vacation.md").write_text("Every employee gets 30 vacation days a year.")
    mark = len(xai_server.journal)
    report, _ = run(sync(folder))
    assert (report["added"], report["replaced"], report["removed"], report["unchanged"]) == (0, 1, 0, 2)
    counts = requests(xai_server, mark)
    assert (counts["upload"], counts["attach"], counts["detach"], counts["delete_file"]) == (1, 1, 1, 1), counts
    now = dict(documents(xai_server, report["collection_id"]))
    assert now.keys() == old.keys() and now["vacation.md"] != old["vacation.md"]
    assert {k: v for k, v in now.items() if k != "vacation.md"} == {k: v for k, v in old.items() if k != "vacation.md"}


def test_removed_files_are_detached_and_new_ones_added(xai_server: XAIServer, folder: Path) -> None:
    run(sync(folder))
    (folder / "expenses.md").unlink()
    (folder / "parking.md").write_text("Parking is free on Sundays.")
    mark = len(xai_server.journal)
    report, _ = run(sync(folder))
    assert (report["added"], report["removed"], report["unchanged"]) == (1, 1, 2)
    counts = requests(xai_server, mark)
    assert (counts["upload"], counts["attach"], counts["detach"], counts["delete_file"]) == (1, 1, 1, 1)
    assert [p for p, _ in documents(xai_server, report["collection_id"])] == sorted(
        ["vacation.md", "guides/security.md", "parking.md"])  # fmt: skip


def test_a_sync_killed_between_upload_and_attach_resumes_without_duplicates(
    xai_server: XAIServer, folder: Path
) -> None:
    store = FakeStateStore()
    killed = sync(folder)
    kill(killed, "add_document", 2, after=False)  # the second file is uploaded, not attached
    with pytest.raises(Killed):
        run(killed, store)
    assert requests(xai_server)["upload"] == 2 and store.data[STATE_KEY]["uploads"]

    report, _ = run(sync(folder), store)  # the retry: a new worker, the same task state store
    paths = [p for p, _ in documents(xai_server, report["collection_id"])]
    assert paths == sorted(DOCS), "one document per file, none twice"
    counts = requests(xai_server)
    assert counts["upload"] == 3, "the upload the killed try made was attached, not made again"
    assert counts["attach"] == 3 and counts["delete_file"] == 0
    assert store.data[STATE_KEY]["uploads"] == {}
    assert len(xai_server.state.files.page(100, None, "desc", None)[0]) == 3  # no orphan file


def test_a_sync_killed_mid_replacement_resumes_without_duplicates(xai_server: XAIServer, folder: Path) -> None:
    store = FakeStateStore()
    run(sync(folder), store)
    (folder / "expenses.md").write_text("Hotels are reimbursed up to 200 euros a night.")
    killed = sync(folder)
    kill(killed, "add_document", 1, after=True)  # the new version attached, the old one still there
    with pytest.raises(Killed):
        run(killed, store)
    cid = store.data[STATE_KEY]["collection_id"]
    assert [p for p, _ in documents(xai_server, cid)].count("expenses.md") == 2

    mark = len(xai_server.journal)
    report, _ = run(sync(folder), store)
    held = documents(xai_server, cid)
    assert [p for p, _ in held] == sorted(DOCS)
    counts = requests(xai_server, mark)
    assert (counts["upload"], counts["attach"], counts["detach"]) == (0, 0, 1), counts
    assert (report["unchanged"], report["replaced"]) == (3, 0)


def test_a_sync_killed_with_no_task_state_store_still_leaves_no_duplicate(
    xai_server: XAIServer, folder: Path
) -> None:
    """Airflow 3.2 has no task state store: the collection alone still prevents duplicates."""
    killed = sync(folder)
    kill(killed, "add_document", 2, after=True)
    with pytest.raises(Killed):
        killed.execute(make_context(FakeTI()))
    report = sync(folder).execute(make_context(FakeTI()))
    assert [p for p, _ in documents(xai_server, report["collection_id"])] == sorted(DOCS)
    assert requests(xai_server)["attach"] == 3


def test_it_defers_until_indexed_and_resumes_with_the_report(xai_server: XAIServer, folder: Path) -> None:
    operator = sync(folder, deferrable=True)
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(make_context(ti, FakeStateStore()))
    trigger = deferred.value.trigger
    assert isinstance(trigger, XAICollectionIndexTrigger) and len(trigger.file_ids) == 3
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("XAICollectionIndexTrigger")
    revived = XAICollectionIndexTrigger(**kwargs)  # as the triggerer rebuilds it
    revived.poll_interval = 0.01

    async def first_event() -> Any:
        async for event in revived.run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["status"] == "success" and set(event["documents"]) == set(trigger.file_ids)
    assert json.loads(json.dumps(event)) == event  # the event is plain JSON
    report = operator.execute_complete(make_context(ti), event)
    assert (report["added"], report["indexed"], report["failed"]) == (3, 3, [])
    assert "_waiting" not in report


def test_a_document_that_cannot_be_indexed_is_reported_with_its_reason(xai_server: XAIServer, folder: Path) -> None:
    (folder / "logo.bin").write_bytes(b"\x89PNG\xff\xfe")
    report, _ = run(sync(folder))
    (failed,) = report["failed"]
    assert failed["path"] == "logo.bin" and failed["file_id"] and "UTF-8" in failed["reason"]
    assert report["indexed"] == 3
    # the next sync reports it again, without sending it again
    mark = len(xai_server.journal)
    again, _ = run(sync(folder))
    assert [f["path"] for f in again["failed"]] == ["logo.bin"] and requests(xai_server, mark)["upload"] == 0
    ti = FakeTI()
    with pytest.raises(XAIError, match="1 files failed"):
        sync(folder, fail_on_failed=True).execute(make_context(ti, FakeStateStore()))
    assert ti.pushed["xai_sync_report"]["failed"][0]["path"] == "logo.bin"


def test_waiting_past_the_index_timeout_fails(xai_server: XAIServer, folder: Path) -> None:
    xai_server.configure(documents_pending_polls=1000)
    with pytest.raises(XAIDeferredTimeoutError, match="not indexed within"):
        run(sync(folder, index_timeout=0.2, poll_interval=0.05))


def test_documents_the_sync_did_not_attach_are_left_alone(xai_server: XAIServer, folder: Path) -> None:
    report, _ = run(sync(folder))
    hook = sync(folder).hook
    (folder.parent / "theirs.md").write_text("Somebody else's notes.")
    theirs = hook.upload_file(folder.parent / "theirs.md")
    hook.add_document(report["collection_id"], theirs.id)
    again, _ = run(sync(folder))
    assert again["unchanged"] == 3 and again["removed"] == 0
    assert theirs.id in xai_server.state.collections.get(report["collection_id"]).documents


class TestRefusedBeforeAnyRequest:
    @pytest.mark.parametrize(
        ("make", "field"),
        [
            (lambda f: sync(f.parent / "nowhere"), "source"),
            (lambda f: sync(f, pattern="*.pdf"), "source"),  # nothing matches: it would empty the collection
            (lambda f: sync(f, source=42), "source"),
        ],
    )
    def test_bad_sources(
        self, xai_server: XAIServer, folder: Path, make: Callable[[Path], Any], field: str
    ) -> None:
        with pytest.raises(XAIValidationError) as info:
            run(make(folder))
        assert info.value.field == field and xai_server.journal == []

    @pytest.mark.parametrize(("kwargs", "field"), [({"collection_name": " "}, "collection_name"),
                                                   ({"poll_interval": 0}, "poll_interval"),
                                                   ({"index_timeout": -1}, "index_timeout")])  # fmt: skip
    def test_bad_arguments_fail_at_parse(self, folder: Path, kwargs: dict[str, Any], field: str) -> None:
        with pytest.raises(XAIValidationError) as info:
            sync(folder, **kwargs)
        assert info.value.field == field

    def test_no_management_key(self, xai_server: XAIServer, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json())
        with pytest.raises(XAIConfigurationError, match="management_key"):
            run(sync(folder))
        assert xai_server.journal == []

    def test_a_collection_that_keeps_other_fields(self, xai_server: XAIServer, folder: Path) -> None:
        sync(folder).hook.create_collection("handbook", field_definitions=[{"key": "author"}])
        mark = len(xai_server.journal)
        with pytest.raises(XAIValidationError) as info:
            run(sync(folder))
        assert info.value.field == "collection_name" and requests(xai_server, mark)["upload"] == 0
