"""Trigger that waits, in the triggerer's event loop, until a collection has indexed documents."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.hooks.collections import indexing_progress, not_indexed
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.polling import DEFAULT_MAX_POLL_FAILURES, Action, Poller, ProgressLog, apoll


class XAICollectionIndexTrigger(BaseTrigger):
    """Poll ``GET /v1/collections/{id}/documents`` (the Management API) until every document of
    ``file_ids`` is processed or failed, or ``end_time`` (epoch seconds) passes. Transient poll
    failures are tolerated up to ``max_poll_failures`` in a row (the one poll decision).

    Event: ``{"status": "success"|"timeout"|"error", "collection_id", "documents":
    {file_id: [status, error_message]}, "report", "message"?, "error"?}``: the statuses of
    ``file_ids`` only, so a large collection never passes through the trigger table, and
    ``report`` as given (what the operator resumes with: ``airflow dags test`` hands a resumed
    task only the event, not the deferral's kwargs).
    """

    def __init__(
        self,
        collection_id: str,
        file_ids: list[str],
        xai_conn_id: str = "xai_default",
        poll_interval: float = 10.0,
        end_time: float | None = None,
        max_poll_failures: int = DEFAULT_MAX_POLL_FAILURES,
        report: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.collection_id = collection_id
        self.file_ids = list(file_ids)
        self.xai_conn_id = xai_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time if end_time is not None else time.time() + 3600
        self.max_poll_failures = max_poll_failures
        self.report = report or {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "collection_id": self.collection_id,
                "file_ids": self.file_ids,
                "xai_conn_id": self.xai_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_poll_failures": self.max_poll_failures,
                "report": self.report,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = XAIHook(xai_conn_id=self.xai_conn_id)
        base: dict[str, Any] = {"collection_id": self.collection_id, "report": self.report}
        progress = ProgressLog(lambda: self.log, f"xAI collection {self.collection_id}")
        try:
            outcome = await apoll(
                Poller(self.poll_interval, self.end_time, self.max_poll_failures),
                lambda: hook.alist_documents(self.collection_id),
                lambda documents: not not_indexed(documents, self.file_ids),
                on_value=lambda documents: progress.update(indexing_progress(documents, self.file_ids)),
                on_failure=progress.failure,
            )
            wanted = set(self.file_ids)
            statuses = {d.file_id: [d.status, d.error_message] for d in outcome.value or () if d.file_id in wanted}
            if outcome.action is Action.FINISH:
                yield TriggerEvent({**base, "status": "success", "documents": statuses})
            elif outcome.action is Action.TIMEOUT:
                yield TriggerEvent({**base, "status": "timeout", "documents": statuses, "message": progress.last})
            else:
                error = outcome.error
                yield TriggerEvent({**base, "status": "error", "message": str(error),
                                    "error": error.to_dict() if isinstance(error, XAIError) else None})
        finally:
            await hook.aclose()


__all__ = ["XAICollectionIndexTrigger"]
