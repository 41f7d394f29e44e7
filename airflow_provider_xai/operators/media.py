"""What the image and video operators share: the output folder, waiting for a job (in the
triggerer, or on the worker), re-attaching a retried task to the job an earlier try paid for,
recording usage once per job, and what to do when xAI's moderation withholds the result.

A finished answer is handled in one order: its usage first (the ledger, once per request id),
then the files (written to object storage), then the XComs, then the outcome: the small result
(paths, never bytes), or, when moderation withheld something, what ``on_moderated`` says:
``fail`` (``XAIModerationError``, never retried), ``skip`` (the task is skipped) or
``continue`` (the result says what was withheld). Never an empty success.

Light imports only: this module is imported when a DAG file is parsed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import (
    XAIDeferredError,
    XAIDeferredExpiredError,
    XAIDeferredTimeoutError,
    XAIModerationError,
    XAIValidationError,
    error_from_dict,
)
from airflow_provider_xai.media_options import ON_MODERATED
from airflow_provider_xai.operators.base import TaskState, XAIBaseOperator, fingerprint

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_xai.pipeline.call import Sink
    from airflow_provider_xai.schemas.media import ImageResult, VideoJob
    from airflow_provider_xai.usage import UsageLedger

T = TypeVar("T")
Job = TypeVar("Job")
XCOM_REQUEST_ID_KEY = "xai_request_id"
#: What a task that failed or was skipped for moderation pushes (what it made, and paid for).
XCOM_MEDIA_KEY = "xai_media"


class XAIMediaOperator(XAIBaseOperator):
    """The base of :class:`XAIImageOperator` and :class:`XAIVideoOperator`.

    :param output_folder: where the files are written: an ``ObjectStoragePath`` or a path/URI
        string (``file:///...``, ``s3://bucket/prefix``...). (templated)
    :param on_moderated: ``fail`` (default), ``skip`` or ``continue`` when xAI's moderation
        withholds an image or the video.
    :param poll_interval: seconds between polls of a deferred job.
    :param timeout: seconds to wait for a deferred job before failing (a retry re-attaches).
    """

    #: The kind of job (``images`` or ``videos``): the trigger's and the task state's.
    kind = ""

    def __init__(
        self,
        *,
        output_folder: Any,
        on_moderated: str = "fail",
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output_folder = output_folder
        self.on_moderated = on_moderated
        self.poll_interval = poll_interval
        self.timeout = timeout
        if on_moderated not in ON_MODERATED:
            raise XAIValidationError("on_moderated", f"must be one of {', '.join(ON_MODERATED)}, got {on_moderated!r}")
        check_number("poll_interval", poll_interval, 0, positive=True)
        check_number("timeout", timeout, 0, positive=True)

    # --- the request's identity and the job it started -------------------------------------------
    def execute(self, context: Context) -> Any:
        """Start (or re-attach to) the job within the task's cost cap and budgets: a request
        whose worst case does not fit is refused before it is sent."""
        return self.within_budget(context, self.ledger(context), lambda: self.start(context))

    def start(self, context: Context) -> Any:
        """Start the job, or re-attach to an earlier try's (each kind its own)."""
        raise NotImplementedError

    def state(self, context: Context) -> TaskState:
        return TaskState(context, f"xai_{self.kind}_request", self.log, f"xAI {self.kind} request id")

    def attach(
        self,
        context: Context,
        fields: Mapping[str, Any],
        look_up: Callable[[str], Job],
        finished: Callable[[Any], bool],
        submit: Callable[[], str],
    ) -> tuple[str, Job | None]:
        """The job this try waits for: an earlier try's for the same inputs, re-attached (with
        the job when it is no longer pending), else a new one; its id kept and in XCom at once."""
        request_id, job = self.state(context).attach(
            fingerprint(fields), look_up, finished, XAIDeferredExpiredError, lambda: self.submitted(submit)
        )
        context["ti"].xcom_push(key=XCOM_REQUEST_ID_KEY, value=request_id)
        return request_id, job

    def folder(self) -> ObjectStoragePath:
        from airflow_provider_xai.operators.media_output import output_folder

        return output_folder(self.output_folder)

    # --- waiting ------------------------------------------------------------------------------------
    def defer_on(self, request_id: str, model: str | None = None) -> None:
        from airflow_provider_xai.triggers.media import XAIMediaTrigger

        self.log.info("Waiting for xAI %s request %s in the triggerer", self.kind, request_id)
        trigger = XAIMediaTrigger(
            request_id=request_id,
            kind=self.kind,
            xai_conn_id=self.xai_conn_id,
            poll_interval=self.poll_interval,
            end_time=time.time() + self.timeout,
            model=model,
        )
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: the event carries the finished job (URLs, never files)."""
        if not event or not event.get("request_id"):
            raise XAIDeferredError(f"xAI {self.kind} request resumed without a trigger event")
        request_id, status = str(event["request_id"]), event.get("status")
        message = str(event.get("message") or f"waiting for xAI {self.kind} request {request_id} failed")
        if status == "success":
            return self.complete(context, self.job_from(event.get("job") or {}))
        if status == "timeout":
            raise XAIDeferredTimeoutError(message, request_id=request_id)
        error = error_from_dict(event.get("error")) or XAIDeferredError(message, request_id=request_id)
        if isinstance(error, XAIDeferredExpiredError):
            self.state(context).clear()
        raise error

    def job_from(self, data: Mapping[str, Any]) -> Any:
        """The job a trigger event carried, as its answer model."""
        raise NotImplementedError

    def complete(self, context: Context, job: Any) -> Any:
        """Finish a job that is no longer pending."""
        raise NotImplementedError

    # --- finishing -----------------------------------------------------------------------------------
    def failed(self, context: Context, job: ImageResult | VideoJob) -> NoReturn:
        """A job that failed or expired: forget it (a retry starts anew) and raise typed."""
        self.state(context).clear()
        if job.status == "expired":
            message = f"xAI {self.kind} request {job.request_id} expired"
            raise XAIDeferredExpiredError(message, request_id=job.request_id)
        raise _job_error(self.kind, job)

    def record_once(self, ledger: UsageLedger, answer: Any) -> None:
        """Record the answer's usage, unless an earlier try recorded this request's already."""
        request_id = getattr(answer, "request_id", None)
        if request_id and any(r.get("completion_id") == request_id for r in ledger.records):
            self.log.info("Usage of xAI %s request %s was recorded by an earlier try", self.kind, request_id)
            return
        self.record(ledger, self.usage_of(answer), held=request_id)

    def outcome(self, context: Context, result: dict[str, Any], refused: int) -> dict[str, Any]:
        """The task's value, or what ``on_moderated`` says when moderation withheld something."""
        self.state(context).clear()
        if not refused:
            return result
        what = f"xAI's moderation withheld {refused} of the {self.kind} asked for ({len(result['paths'])} written)"
        if self.on_moderated == "continue":
            self.log.warning("%s; continuing as on_moderated='continue' says", what)
            return result
        context["ti"].xcom_push(key=XCOM_MEDIA_KEY, value=result)
        if self.on_moderated == "skip":
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{what}; skipping as on_moderated='skip' says")
        error = XAIModerationError(f"{what}; failing as on_moderated='fail' says", request_id=result.get("request_id"))
        error.refused = result.get("refused")
        raise error

    def fetch(self, url: str, sink: Callable[[], Sink[T]], refresh: Callable[[], str | None] | None) -> T:
        """A generated file into ``sink``; a URL that no longer answers (expired) is asked for
        again once, through ``refresh``."""
        from airflow_provider_xai.exceptions import XAINotFoundError, XAIPermissionError

        try:
            return self.hook.download_media(url, sink)
        except (XAINotFoundError, XAIPermissionError) as exc:
            if refresh is None:
                raise XAIDeferredExpiredError(f"xAI's {self.kind} URL no longer answers: {exc.message}") from None
            self.log.warning("xAI's %s URL no longer answers (%s); asking xAI for it again", self.kind, exc)
        fresh = refresh()
        if not fresh:
            raise XAIDeferredExpiredError(f"xAI no longer has the {self.kind} to download")
        return self.hook.download_media(fresh, sink)

    def cost_fields(self, answer: Any) -> dict[str, Any]:
        """Model, cost and its source for the result (from the answer's usage record)."""
        record = self.usage_of(answer)
        return {"model": record.model, "cost_usd": record.cost_usd, "cost_source": record.cost_source}


def _job_error(kind: str, job: ImageResult | VideoJob) -> Exception:
    """The typed error of a failed job: its code decides (a bad request is not retried)."""
    from airflow_provider_xai.exceptions import XAIBadRequestError, XAIPermissionError, XAIServerError

    code = (job.error.code if job.error is not None else None) or "unknown"
    message = f"xAI {kind} request {job.request_id} failed: {job.error or 'no reason given'}"
    if code in ("invalid_argument", "failed_precondition"):
        return XAIBadRequestError(message, status=400, code=code, request_id=job.request_id)
    if code == "permission_denied":
        return XAIPermissionError(message, status=403, code=code, request_id=job.request_id)
    return XAIServerError(message, status=500, code=code, request_id=job.request_id)


__all__ = ["XCOM_MEDIA_KEY", "XCOM_REQUEST_ID_KEY", "XAIMediaOperator"]
