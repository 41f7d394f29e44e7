"""XAICollectionSyncOperator: mirror a folder of object storage into an xAI collection.

Idempotent by content hash (see :mod:`~airflow_provider_xai.operators.collection_plan`): new and
changed files are uploaded and attached (a changed file's old document removed), files gone
from the folder have their documents removed, unchanged files cost no request. Then it waits,
in the triggerer by default, until the new documents are indexed, and reports the counts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import (
    XAIDeferredError,
    XAIDeferredTimeoutError,
    XAIError,
    XAINotFoundError,
    XAIValidationError,
    error_from_dict,
)
from airflow_provider_xai.operators.base import XAIBaseOperator
from airflow_provider_xai.operators.collection_plan import (
    FAILED,
    FIELD_DEFINITIONS,
    PROCESSED,
    Plan,
    SourceFile,
    SyncState,
    failure,
    plan_sync,
    report_of,
    synced_documents,
)
from airflow_provider_xai.task_state import StoredValue

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.schemas.collections import Collection

XCOM_COLLECTION_ID_KEY = "xai_collection_id"
STATE_KEY = "xai_collection_sync"
#: The report's entry of the documents indexing is awaited for (file id -> path), until it ends.
WAITING = "_waiting"


class XAICollectionSyncOperator(XAIBaseOperator):
    """Keep the xAI collection ``collection_name`` (created when missing) a mirror of the files
    under ``source``, and return what it did.

    :param source: the folder (``ObjectStoragePath``, or a URI such as ``s3://bucket/docs/``,
        or a local path). (templated)
    :param collection_name: the collection's name. (templated)
    :param pattern: which files under ``source`` (a glob; default every file, recursively). (templated)
    :param collection_description: the description of a collection it creates. (templated)
    :param delete_files: also delete from xAI's file storage the files whose documents it
        removes (they were uploaded by the sync).
    :param allow_empty: a source with no files empties the collection (refused by default: a
        wrong path would otherwise remove every document).
    :param deferrable: wait for indexing in the triggerer (default) instead of on a worker.
    :param poll_interval: seconds between indexing polls.
    :param index_timeout: seconds to wait for indexing before failing (the sync itself is done;
        a retry finds nothing to change and waits again).
    :param fail_on_failed: fail the task when a file could not be uploaded or indexed (after
        pushing the report to XCom ``xai_sync_report``).

    The collection's id goes to XCom ``xai_collection_id`` as soon as it is known; the report
    (``collection_id``, ``collection_name``, ``files``, ``added``, ``replaced``, ``removed``,
    ``unchanged``, ``indexed``, ``failed``: ``[{path, file_id, reason}]``) is the return value.
    Needs the connection's management key. And :class:`XAIBaseOperator`'s ``xai_conn_id``,
    ``retry_policy``.
    """

    template_fields: Sequence[str] = ("source", "collection_name", "pattern", "collection_description")
    ui_color = "#a5b4fc"

    def __init__(
        self,
        *,
        source: Any,
        collection_name: str,
        pattern: str = "**/*",
        collection_description: str | None = None,
        delete_files: bool = True,
        allow_empty: bool = False,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        index_timeout: float = 3600.0,
        fail_on_failed: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.collection_name = collection_name
        self.pattern = pattern
        self.collection_description = collection_description
        self.delete_files = delete_files
        self.allow_empty = allow_empty
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.index_timeout = index_timeout
        self.fail_on_failed = fail_on_failed
        check_number("poll_interval", poll_interval, 0, positive=True)
        check_number("index_timeout", index_timeout, 0, positive=True)
        for name in ("collection_name", "pattern"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise XAIValidationError(name, f"must be a non-empty string, got {getattr(self, name)!r}")

    # --- what is there -------------------------------------------------------------------------
    def scan(self) -> list[SourceFile]:
        """The files under ``source`` matching ``pattern``, hashed (nothing is sent)."""
        from airflow_provider_xai.endpoints.storage import sha256_of, storage_path

        root = storage_path(self.source, "source")
        try:
            if not root.is_dir():
                raise XAIValidationError("source", f"{root} is not a folder (or does not exist)")
            paths = sorted((p for p in root.glob(self.pattern) if p.is_file()), key=str)
            files = [SourceFile(str(p.relative_to(root)), p, int(p.stat().st_size), sha256_of(p)) for p in paths]
        except OSError as exc:
            raise XAIValidationError("source", f"{root} cannot be read: {exc}") from None
        if not files and not self.allow_empty:
            raise XAIValidationError(
                "source", f"no file under {root} matches {self.pattern!r}; syncing it would remove every "
                "document (set allow_empty=True to empty the collection)",
            )  # fmt: skip
        return files

    def collection(self, context: Context, state: SyncState) -> Collection:
        """This sync's collection: the one an earlier try used, else the one of that name, else a
        new one; its id pushed to XCom at once."""
        found = None
        if state.collection_id:
            with contextlib.suppress(XAINotFoundError):
                found = self.hook.get_collection(state.collection_id)
        if found is None or found.collection_name != self.collection_name:
            found = self.hook.find_collection(self.collection_name)
        if found is None:
            found = self.hook.create_collection(
                self.collection_name, description=self.collection_description, field_definitions=FIELD_DEFINITIONS
            )
            self.log.info("Created xAI collection %s (%s)", found.collection_id, self.collection_name)
        elif found.field_definitions and not {d["key"] for d in FIELD_DEFINITIONS} <= {
            d.key for d in found.field_definitions
        }:
            raise XAIValidationError(
                "collection_name",
                f"collection {self.collection_name!r} ({found.collection_id}) does not declare the fields "
                f"{', '.join(d['key'] for d in FIELD_DEFINITIONS)} a sync keeps its state in: "
                "sync into a new collection",
            )
        context["ti"].xcom_push(key=XCOM_COLLECTION_ID_KEY, value=found.collection_id)
        return found

    # --- the sync ------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        from airflow_provider_xai.schemas.files import MAX_FILE_BYTES

        files = self.scan()
        stored = StoredValue(context, STATE_KEY, self.log, "xAI collection sync state")
        state, problem = SyncState.decode(stored.read())
        if problem:
            stored.skipped(1, f"{problem}: starting afresh")
        collection = self.collection(context, state)
        cid = state.collection_id = collection.collection_id
        stored.write(state.encode())
        documents, others = synced_documents(self.hook.list_documents(cid))
        if others:
            self.log.info("%d documents of %s were not put there by a sync: left alone", others, cid)
        plan = plan_sync(files, documents, MAX_FILE_BYTES)
        new = self.apply(cid, plan, state, stored, attached={d.file_id for d in documents})
        report = report_of(plan, {"collection_id": cid, "collection_name": collection.collection_name}, len(files))
        waiting = {**new, **{d.file_id: d.key for d in plan.unchanged if d.status not in (PROCESSED, FAILED)}}
        report[WAITING] = waiting
        if not waiting:
            return self.finish_sync(context, report, {})
        if self.deferrable:
            self.defer_indexing(cid, report, list(waiting))
        indexed = self.hook.wait_for_documents(
            cid, list(waiting), poll_interval=self.poll_interval, timeout=self.index_timeout
        )
        return self.finish_sync(context, report, {d.file_id: [d.status, d.error_message] for d in indexed})

    def apply(self, cid: str, plan: Plan, state: SyncState, stored: StoredValue, attached: set[str]) -> dict[str, str]:
        """Upload and attach, then remove; the state saved before each step that may be cut
        short. Returns the attached file ids (file id -> path)."""
        kept, removed = {d.file_id for d in plan.unchanged}, set()

        def remove(file_id: str) -> None:
            if file_id not in removed and file_id not in kept:
                self.remove(cid, file_id, state, stored)
                removed.add(file_id)

        state.deleting = [f for f in state.deleting if f not in kept]  # a file changed back meanwhile
        for file_id in list(state.deleting):  # an earlier try was removing these
            remove(file_id)
        new: dict[str, str] = {}
        for upload in plan.uploads:
            file_id = self.attach(cid, upload.file, state, stored)
            new[file_id] = upload.file.key
            for old in upload.replaces:
                remove(old.file_id)
        for document in [*plan.stale, *plan.removals]:
            remove(document.file_id)
        for key, (_sha, file_id) in list(state.uploads.items()):  # uploaded by an earlier try, now unused
            if file_id not in new and file_id not in attached:
                self.forget(file_id)
            del state.uploads[key]
        stored.write(state.encode())
        return new

    def attach(self, cid: str, file: SourceFile, state: SyncState, stored: StoredValue) -> str:
        """Upload ``file`` (or reuse what an earlier try uploaded of it) and attach it."""
        file_id = state.pending_upload(file)
        if file_id is not None:
            try:
                self.hook.add_document(cid, file_id, fields=file.fields)
                return file_id
            except XAINotFoundError:  # the earlier upload is gone (deleted, expired): upload again
                self.log.info("Upload %s of %s is gone; uploading again", file_id, file.key)
        file_id = self.hook.upload_file(file.path, filename=file.path.name).id
        state.uploads[file.key] = [file.sha256, file_id]
        stored.write(state.encode())  # before attaching: a retry attaches it instead of uploading again
        self.hook.add_document(cid, file_id, fields=file.fields)
        return file_id

    def remove(self, cid: str, file_id: str, state: SyncState, stored: StoredValue) -> None:
        """Remove a document (and its file): already gone counts as removed."""
        if file_id not in state.deleting:
            state.deleting.append(file_id)
            stored.write(state.encode())
        with contextlib.suppress(XAINotFoundError):
            self.hook.remove_document(cid, file_id)
        self.forget(file_id)
        state.deleting.remove(file_id)

    def forget(self, file_id: str) -> None:
        if self.delete_files:
            with contextlib.suppress(XAINotFoundError):
                self.hook.delete_file(file_id)

    # --- waiting and the report ----------------------------------------------------------------
    def defer_indexing(self, cid: str, report: dict[str, Any], file_ids: list[str]) -> None:
        from airflow_provider_xai.triggers.collections import XAICollectionIndexTrigger

        self.log.info("Deferring until %d documents of xAI collection %s are indexed", len(file_ids), cid)
        trigger = XAICollectionIndexTrigger(
            collection_id=cid, file_ids=file_ids, xai_conn_id=self.xai_conn_id,
            poll_interval=self.poll_interval, end_time=time.time() + self.index_timeout, report=report,
        )  # fmt: skip
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: the report (carried by the event) with the indexing outcome."""
        event = event or {}
        report = event.get("report")
        if not isinstance(report, dict) or "collection_id" not in report:
            raise XAIDeferredError("xAI collection sync resumed without a trigger event")
        if event.get("status") == "error":
            raise error_from_dict(event.get("error")) or XAIDeferredError(str(event.get("message")))
        if event.get("status") == "timeout":
            self.log.warning("xAI collection sync: %s", self.summary(report))
            raise XAIDeferredTimeoutError(
                f"xAI collection {report['collection_id']}: documents not indexed within "
                f"{self.index_timeout:g}s ({event.get('message')})"
            )
        return self.finish_sync(context, report, dict(event.get("documents") or {}))

    def finish_sync(self, context: Context, report: dict[str, Any], statuses: dict[str, Any]) -> dict[str, Any]:
        """Fold the indexing outcome of the documents waited for into the report; log it; fail on
        failures if asked."""
        for file_id, key in report.pop(WAITING, {}).items():
            status, error = statuses.get(file_id) or ("", None)
            if status == FAILED:
                report["failed"].append(failure(key, file_id, error))
            report["indexed"] += status == PROCESSED
        self.log.info("xAI collection sync: %s", self.summary(report))
        for item in report["failed"]:
            self.log.warning("xAI collection sync: %s failed: %s", item["path"], item["reason"])
        if self.fail_on_failed and report["failed"]:
            context["ti"].xcom_push(key="xai_sync_report", value=report)
            raise XAIError(f"xAI collection sync: {len(report['failed'])} files failed ({self.summary(report)})")
        return report

    @staticmethod
    def summary(report: dict[str, Any]) -> str:
        counts = ", ".join(f"{report[k]} {k}" for k in ("added", "replaced", "removed", "unchanged"))
        return f"{report['collection_name']} ({report['collection_id']}): {counts}, {len(report['failed'])} failed"


__all__ = ["STATE_KEY", "XCOM_COLLECTION_ID_KEY", "XAICollectionSyncOperator"]
