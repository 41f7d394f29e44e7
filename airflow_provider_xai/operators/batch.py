"""XAIBatchOperator: many chat requests through xAI's Batch API, at the batch discount.

Submits every input as one batch request (``custom_id`` = ``batch_request_id``), waits in the
triggerer, then writes one JSONL line per input to ``output_path`` and returns a small summary.
A retried or cleared task finds the batch it already created (deterministic name from
dag/run/task/map index, and the task state store) and re-attaches instead of paying twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

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
from airflow_provider_xai.operators.batch_inputs import (
    PreparedRequest,
    RequestDefaults,
    load_inputs,
    prepare_requests,
)

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_xai.schemas import Batch, BatchResult
    from airflow_provider_xai.structured import OutputSpec
    from airflow_provider_xai.usage import UsageRecord

XCOM_BATCH_ID_KEY = "xai_batch_id"
STATE_BATCH_ID_KEY = "xai_batch_id"
REFUSALS_LOGGED = 5


def batch_name_for(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """Deterministic batch name of one task instance (the same on every try and re-run)."""
    index = -1 if map_index is None else map_index
    digest = hashlib.sha256(f"{dag_id}\0{run_id}\0{task_id}\0{index}".encode()).hexdigest()[:24]
    return f"airflow:{dag_id[:80]}:{task_id[:80]}:{index}:{digest}"


class XAIBatchOperator(XAIBaseOperator):
    """Run many prompts through xAI's Batch API and write the answers as JSONL.

    :param inputs: a list of prompts (str) or request dicts, or a JSONL file
        (``ObjectStoragePath`` or path/URI string) with one such item per line. A dict has
        ``prompt``, ``messages`` or a full chat ``body`` (xAI's JSONL upload format: ``custom_id``,
        ``method``, ``url``, ``body``), and optionally ``custom_id`` and ``model``. Missing
        ``custom_id`` s are ``req-000000``, ``req-000001``... by position. A ``url`` of
        ``/v1/images/generations``, ``/v1/images/edits``, ``/v1/videos/generations`` or
        ``/v1/videos/extensions`` makes the line that image or video request (its ``body``: the
        API's fields); its files are written beside ``output_path`` (``<stem>_media/<custom_id>/``)
        and its line's ``answer`` is ``{"paths", "refused"}``. (templated)
    :param output_path: where to write the results (``ObjectStoragePath`` or URI), one JSON
        line per input: ``custom_id``, ``index``, ``status`` (succeeded/failed/cancelled/
        missing), ``answer`` (text, or the validated object with ``response_format``),
        ``error``, ``model``, ``usage``. An input refused before sending (unreadable line, bad
        field) is a ``failed`` line naming the field; the others still go through. (templated)
    :param system_prompt: system message for requests that have none. (templated)
    :param model: model for requests that name none (default: the connection's). (templated)
    :param response_format: pydantic model class, JSON-schema dict or ``"json_object"``;
        every answer is validated (an invalid one is a failed line, still billed).
    :param temperature: default sampling temperature, 0 to 2.
    :param max_tokens: default most output tokens per request.
    :param request_kwargs: other chat fields for every request. (templated)
    :param deferrable: wait in the triggerer (default) instead of on a worker.
    :param poll_interval: seconds between batch polls.
    :param batch_timeout: seconds to wait before cancelling the batch and failing.
    :param fail_on_errors: fail the task (after writing the output) if any request failed.

    And :class:`~airflow_provider_xai.operators.base.XAIBaseOperator`'s ``xai_conn_id`` and
    ``retry_policy``.
    """

    template_fields: Sequence[str] = ("inputs", "output_path", "system_prompt", "model", "request_kwargs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json", "request_kwargs": "json"}
    ui_color = "#a5b4fc"
    #: Bytes per add-requests call (default: xAI's 25 MB limit); lowered in tests of chunking.
    add_requests_max_bytes: int | None = None

    def __init__(
        self,
        *,
        inputs: Any,
        output_path: Any,
        system_prompt: str | None = None,
        model: str | None = None,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        request_kwargs: dict[str, Any] | None = None,
        deferrable: bool = True,
        poll_interval: float = 60.0,
        batch_timeout: float = 24 * 3600,
        fail_on_errors: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inputs = inputs
        self.output_path = output_path
        self.system_prompt = system_prompt
        self.model = model
        self.response_format = response_format
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.request_kwargs = request_kwargs or {}
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.batch_timeout = batch_timeout
        self.fail_on_errors = fail_on_errors
        self._batch_id: str | None = None
        check_number("temperature", temperature, 0, 2)
        check_number("max_tokens", max_tokens, 1, integer=True)
        check_number("poll_interval", poll_interval, 0, positive=True)
        check_number("batch_timeout", batch_timeout, 0, positive=True)
        _ = self.output_spec

    @cached_property
    def output_spec(self) -> OutputSpec | None:
        from airflow_provider_xai.structured import OutputSpec

        return OutputSpec.from_user(self.response_format)

    # --- inputs --------------------------------------------------------------------------------
    def prepare_requests(self) -> list[PreparedRequest]:
        """Validate every input and build its chat body (raises before anything is sent)."""
        spec = self.output_spec
        defaults = RequestDefaults(
            system_prompt=self.system_prompt,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            response_format=None if spec is None else spec.response_format,
            request_kwargs=self.request_kwargs,
        )
        from airflow_provider_xai.hooks import batch as api

        max_bytes = self.add_requests_max_bytes or api.MAX_ADD_REQUESTS_BYTES
        prepared = prepare_requests(load_inputs(self.inputs), defaults, self.hook.chat_request, max_bytes)
        refused = [p.refused for p in prepared if p.refused is not None]
        for reason in refused[:REFUSALS_LOGGED]:
            self.log.warning("Not sent: %s", reason)
        if refused:
            self.log.warning(
                "%d of %d inputs refused (not sent; their output lines say why)", len(refused), len(prepared)
            )
        return prepared

    def _output(self) -> ObjectStoragePath:
        from airflow.sdk import ObjectStoragePath

        path = self.output_path
        if isinstance(path, str) and path.strip():
            return ObjectStoragePath(path.strip())
        if isinstance(path, ObjectStoragePath):
            return path
        raise XAIValidationError("output_path", f"expected an ObjectStoragePath or a path/URI, got {path!r}")

    # --- submission ----------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        from airflow_provider_xai.hooks import batch as api

        self.ledger(context)  # re-publishes the usage of earlier tries
        prepared = self.prepare_requests()  # an oversized request is refused there, like any bad one
        self._output()
        items = [api.batch_request(p.custom_id, p.body, p.kind) for p in prepared if p.refused is None]
        max_bytes = self.add_requests_max_bytes or api.MAX_ADD_REQUESTS_BYTES
        batch, reattached = self._find_or_create(context)
        known = set()
        if reattached:  # add only what an earlier try did not (a crash may have cut it short)
            known = {m.batch_request_id for m in self.hook.list_batch_requests(batch.batch_id)}
            self.log.info("%d of %d requests are already in the batch", len(known), len(items))
        if missing := [item for item in items if item["batch_request_id"] not in known]:
            calls = self.hook.add_batch_requests(batch.batch_id, missing, max_bytes=max_bytes)
            self.log.info("Added %d requests to xAI batch %s (%d calls)", len(missing), batch.batch_id, calls)
        if self.deferrable:
            self._defer(batch.batch_id)
        try:
            batch = self.hook.wait_for_batch(
                batch.batch_id, poll_interval=self.poll_interval, timeout=self.batch_timeout
            )
        except XAIDeferredTimeoutError as exc:
            return self._complete(context, self.hook.get_batch(batch.batch_id), prepared, timeout=str(exc))
        return self._complete(context, batch, prepared)

    def _find_or_create(self, context: Context) -> tuple[Batch, bool]:
        """Re-attach to this task instance's live batch (state store, then name), else create it."""
        ti = context["ti"]
        name = batch_name_for(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        store, stored, batch = context.get("task_state_store"), None, None
        with contextlib.suppress(Exception):  # the store is optional: the name lookup suffices
            stored = store.get(STATE_BATCH_ID_KEY) if store is not None else None
        if isinstance(stored, str) and stored:
            with contextlib.suppress(XAINotFoundError):
                found = self.hook.get_batch(stored)
                batch = found if found.name == name and not found.ended else None
        batch = batch or self.hook.find_batch(name)
        reattached = batch is not None
        if batch is None:
            batch = self.hook.create_batch(name)
            self.log.info("Created xAI batch %s (%s)", batch.batch_id, name)
        else:
            self.log.info("Re-attaching to xAI batch %s (%s): %s", batch.batch_id, name, batch.progress())
        self._batch_id = batch.batch_id
        ti.xcom_push(key=XCOM_BATCH_ID_KEY, value=batch.batch_id)  # at once: a crash must not lose it
        with contextlib.suppress(Exception):
            if store is not None:
                store.set(STATE_BATCH_ID_KEY, batch.batch_id)
        return batch, reattached

    def _defer(self, batch_id: str) -> None:
        from airflow_provider_xai.triggers.batch import XAIBatchTrigger

        self.log.info("Deferring until xAI batch %s is done", batch_id)
        trigger = XAIBatchTrigger(
            batch_id=batch_id,
            xai_conn_id=self.xai_conn_id,
            poll_interval=self.poll_interval,
            end_time=time.time() + self.batch_timeout,
            timeout=self.batch_timeout,
        )
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: page through the results, record usage, write the JSONL."""
        if not event or not event.get("batch_id"):
            raise XAIDeferredError("xAI batch resumed without a trigger event")
        self._batch_id = batch_id = str(event["batch_id"])
        if event.get("status") not in ("success", "timeout"):
            message = event.get("message") or f"waiting for xAI batch {batch_id} failed"
            raise error_from_dict(event.get("error")) or XAIDeferredError(
                str(message), status=event.get("http_status"))
        timeout = str(event.get("message")) if event.get("status") == "timeout" else None
        return self._complete(context, self.hook.get_batch(batch_id), self.prepare_requests(), timeout)

    # --- results ------------------------------------------------------------------------------
    def _complete(
        self, context: Context, batch: Batch, prepared: list[PreparedRequest], timeout: str | None = None
    ) -> dict[str, Any]:
        """Record usage, join results to inputs, write the output; raise on timeout/errors."""
        from airflow_provider_xai.usage import combine
        from airflow_provider_xai.usage_summary import summarize

        ledger = self.ledger(context)
        results = {r.batch_request_id: r for r in self.hook.iter_batch_results(batch.batch_id)}
        records = self._records(results, {p.custom_id: p for p in prepared})
        # One folded record per model keeps thousands of results out of XCom; its id names the
        # batch, so a re-attached retry does not count the same batch twice.
        done = {r.get("completion_id") for r in ledger.records if r.get("kind") == "batch"}
        new = [r for r in combine(records.values(), f"batch:{batch.batch_id}") if r.completion_id not in done]
        ledger.record_many(new)  # billed: recorded before anything below can fail
        usage = summarize(list(records.values()))
        self.log.info(
            "xAI batch usage: %d billed requests, total_tokens=%d cost_usd=%.6f (%d newly recorded)",
            usage.totals.requests, usage.totals.total_tokens, usage.totals.cost_usd,
            sum(r.requests for r in new),
        )  # fmt: skip
        for model, totals in usage.by_model.items():
            self.log.info("xAI batch usage for %s: %s", model, json.dumps(totals.to_dict(), sort_keys=True))
        path = self._output()
        lines = [
            self._line(i, p, results.get(p.custom_id), records.get(p.custom_id), batch)
            for i, p in enumerate(prepared)
        ]
        _write_jsonl(path, lines)
        counts = Counter(line["status"] for line in lines)
        self.log.info(
            "xAI batch %s: %s; %d lines written to %s", batch.batch_id, batch.progress(), len(lines), path
        )
        summary = {
            "batch_id": batch.batch_id,
            "batch_name": batch.name,
            "outcome": batch.outcome,
            "output_path": str(path),
            "requests": len(prepared),
            **{k: counts.get(k, 0) for k in ("succeeded", "failed", "cancelled", "missing")},
            "usage": usage.totals.to_dict(),
            "usage_by_model": {model: t.to_dict() for model, t in usage.by_model.items()},
        }
        if timeout is not None:
            raise XAIDeferredTimeoutError(f"{timeout}. Partial results were written to {path}")
        if self.fail_on_errors and counts["succeeded"] < len(prepared):
            raise XAIError(
                f"{len(prepared) - counts['succeeded']} of {len(prepared)} batch requests failed; see {path}"
            )
        return summary

    def _records(self, results: dict[str, BatchResult], prepared: dict[str, PreparedRequest]) -> dict[str, UsageRecord]:
        """One usage record (``kind="batch"``) per billed result, by custom_id (an image or
        video result's per image or per second)."""
        from airflow_provider_xai.hooks.batch import BATCH_DISCOUNT
        from airflow_provider_xai.operators.batch_media import media_record
        from airflow_provider_xai.usage import build_record

        prices, records = self.hook.get_prices(), {}
        for custom_id, result in results.items():
            with contextlib.suppress(XAIError, ValueError):  # a malformed result becomes a failed line
                if (media := result.media) is not None:
                    model = str(prepared[custom_id].body.get("model", "")) if custom_id in prepared else ""
                    records[custom_id] = media_record(custom_id, *media, model, BATCH_DISCOUNT)
                elif (c := result.completion) is not None:
                    records[custom_id] = build_record(
                        c.usage, c.model, completion_id=c.id, request_id=custom_id, prices=prices,
                        kind="batch", discount=BATCH_DISCOUNT,
                    )  # fmt: skip
        return records

    def _line(
        self,
        index: int,
        req: PreparedRequest,
        result: BatchResult | None,
        record: UsageRecord | None,
        batch: Batch,
    ) -> dict[str, Any]:
        """The output line of one input."""
        line: dict[str, Any] = {"custom_id": req.custom_id, "index": index, "status": "succeeded"}
        line.update(answer=None, error=None, model=None, usage=None)
        if req.refused is not None:
            line.update(status="failed", error=req.refused)
            return line
        if result is None:
            line["status"] = "cancelled" if batch.ended else "missing"
            line["error"] = f"no result: the batch is {batch.outcome} and this request did not run"
            return line
        if record is not None:
            from airflow_provider_xai.usage import TOKEN_FIELDS

            line["model"] = record.model
            line["usage"] = {**{f: getattr(record, f) for f in TOKEN_FIELDS}, "cost_usd": record.cost_usd}
        if (media := result.media) is not None:
            from airflow_provider_xai.operators.batch_media import media_line

            model = str(req.body.get("model", ""))
            line.update(media_line(self.hook, *media, model, self._output(), req.custom_id))
            return line
        try:
            completion = result.completion
            if completion is None:
                line.update(status="failed", error=result.error)
            else:
                text = completion.text
                line["answer"] = (
                    text if self.output_spec is None else self.output_spec.parse(text, completion)
                )
        except XAIError as exc:
            line.update(status="failed", error=exc.message)
        return line

    def on_kill(self) -> None:
        """Cancel the batch this task submitted (the trigger does the same while deferred)."""
        if self._batch_id:
            try:
                self.hook.cancel_batch(self._batch_id)
                self.log.info("Cancelled xAI batch %s", self._batch_id)
            except XAIError as exc:
                self.log.warning("Could not cancel xAI batch %s: %s", self._batch_id, exc)
        super().on_kill()


def _write_jsonl(path: ObjectStoragePath, lines: list[dict[str, Any]]) -> None:
    with contextlib.suppress(OSError, NotImplementedError):  # object stores have no directories
        path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(_jsonl_line(line) for line in lines)


def _jsonl_line(line: dict[str, Any]) -> str:
    """One output line as UTF-8-safe JSON text: an answer with a lone surrogate (which UTF-8
    cannot encode) is written with ``\\u`` escapes instead of failing the whole file."""
    text = json.dumps(line, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(line)
    return text + "\n"
