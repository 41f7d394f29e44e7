"""XAIBatchOperator: many chat or Responses requests through xAI's Batch API, at the batch
discount.

Submits every input as one batch request (added in calls, or as one uploaded JSONL input file),
waits in the triggerer, then writes one JSONL line per input to ``output_path`` and returns a
small summary. A retried or cleared task re-attaches to the batch it already submitted for the
same inputs instead of paying twice, and submits anew when the inputs changed
(``batch_attach``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_xai.arguments import MAX_WAIT_SECONDS, check_number
from airflow_provider_xai.exceptions import (
    XAIDeferredError,
    XAIDeferredTimeoutError,
    XAIError,
    XAIValidationError,
    error_from_dict,
)
from airflow_provider_xai.operators.base import XAIBaseOperator
from airflow_provider_xai.operators.batch_attach import (
    STATE_BATCH_ID_KEY,
    XCOM_BATCH_ID_KEY,
    batch_name_for,
    batch_prefix_for,
)
from airflow_provider_xai.operators.batch_inputs import (
    KINDS,
    PreparedRequest,
    RequestDefaults,
    load_inputs,
    prepare_requests,
    split_request_id,
)
from airflow_provider_xai.operators.spend import batch_forecast

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_xai.schemas import Batch
    from airflow_provider_xai.structured import OutputSpec
    from airflow_provider_xai.usage import UsageLedger

REFUSALS_LOGGED = 5
#: How the requests reach xAI: added in calls (the default), or as one uploaded JSONL file.
SUBMIT_AS = ("requests", "file")
APIS = ("auto", *KINDS)


class XAIBatchOperator(XAIBaseOperator):
    """Run many prompts through xAI's Batch API (chat completions or Responses, server-side
    tools included) and write the answers as JSONL.

    :param inputs: a list of prompts (str) or request dicts, or a JSONL file
        (``ObjectStoragePath`` or path/URI string) with one such item per line. A dict has
        ``prompt``, ``messages`` (chat), ``input`` (Responses) or a full request ``body``
        (xAI's JSONL upload format: ``custom_id``, ``method``, ``url``, ``body``; the ``url``
        says which API), and optionally ``custom_id``, ``model`` and ``tools`` (Responses).
        An image or video request is ``image_generation``, ``image_edit``,
        ``video_generation`` or ``video_extension`` holding the API's fields (or a ``body``
        with its ``url``, ``/v1/images/generations``...); its files are written beside
        ``output_path`` (``<stem>_media/<custom_id>/``) and its line's ``answer`` is
        ``{"paths", "refused"}``. Missing ``custom_id`` s are ``req-000000``,
        ``req-000001``... by position. (templated)
    :param output_path: where to write the results (``ObjectStoragePath`` or URI), one JSON
        line per input: ``custom_id``, ``index``, ``api``, ``status`` (succeeded/failed/
        cancelled/missing), ``answer`` (text, or the validated object with
        ``response_format``), ``error``, ``model``, ``usage``, ``citations``. An input refused
        before sending (unreadable line, bad field) is a ``failed`` line naming the field; the
        others still go through. (templated)
    :param api: the API of a plain prompt: ``"chat"``, ``"responses"``, or ``"auto"`` (the
        default: Responses when ``tools`` are given, else chat); ``"image_generation"`` or
        ``"video_generation"`` make each prompt an image or a video.
    :param tools: server-side (or function) tools of every Responses request that names none,
        e.g. ``[web_search()]`` from :mod:`airflow_provider_xai.tools`. (templated)
    :param system_prompt: system message (Responses: ``instructions``) for requests that have
        none. (templated)
    :param model: model for requests that name none (default: the connection's). (templated)
    :param response_format: pydantic model class, JSON-schema dict or ``"json_object"``;
        every answer is validated (an invalid one is a failed line, still billed).
    :param temperature: default sampling temperature, 0 to 2.
    :param max_tokens: default most output tokens per request.
    :param request_kwargs: other API fields for every request. (templated)
    :param submit_as: ``"requests"`` (the default: added in calls of at most 25 MB) or
        ``"file"`` (one JSONL input file uploaded to ``/v1/files``, at most 48 MB, which the
        batch is created from).
    :param deferrable: wait in the triggerer (default) instead of on a worker.
    :param poll_interval: seconds between batch polls.
    :param batch_timeout: seconds to wait before cancelling the batch and failing.
    :param fail_on_errors: fail the task (after writing the output) if any request failed.

    And :class:`~airflow_provider_xai.operators.base.XAIBaseOperator`'s ``xai_conn_id`` and
    ``retry_policy``.
    """

    template_fields: Sequence[str] = ("inputs", "output_path", "system_prompt", "model", "request_kwargs", "tools")
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "inputs": "json", "request_kwargs": "json", "tools": "json",
    }  # fmt: skip
    ui_color = "#a5b4fc"
    #: Bytes per add-requests call (default: xAI's 25 MB limit); lowered in tests of chunking.
    add_requests_max_bytes: int | None = None

    def __init__(
        self,
        *,
        inputs: Any,
        output_path: Any,
        api: str = "auto",
        tools: list[Any] | None = None,
        system_prompt: str | None = None,
        model: str | None = None,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        request_kwargs: dict[str, Any] | None = None,
        submit_as: str = "requests",
        deferrable: bool = True,
        poll_interval: float = 60.0,
        batch_timeout: float = 24 * 3600,
        fail_on_errors: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inputs = inputs
        self.output_path = output_path
        self.api = api
        self.tools = tools
        self.system_prompt = system_prompt
        self.model = model
        self.response_format = response_format
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.request_kwargs = request_kwargs or {}
        self.submit_as = submit_as
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.batch_timeout = batch_timeout
        self.fail_on_errors = fail_on_errors
        self._batch_id: str | None = None
        if api not in APIS:
            raise XAIValidationError("api", f"expected one of {APIS}, got {api!r}")
        if submit_as not in SUBMIT_AS:
            raise XAIValidationError("submit_as", f"expected one of {SUBMIT_AS}, got {submit_as!r}")
        if tools is not None and api == "chat":
            raise XAIValidationError("tools", "tools go with Responses requests: use api='responses' or 'auto'")
        if tools is not None:
            from airflow_provider_xai.tools import check_tools

            for i, tool in enumerate(tools if isinstance(tools, list) else []):
                if callable(tool):
                    raise XAIValidationError(
                        f"tools[{i}]", "a Python function runs in its task (XAIResponsesOperator); xAI runs a "
                        "batch without it: give server-side tools, or a function tool's declaration",
                    )  # fmt: skip
            check_tools(tools)  # values that still hold a template are checked after rendering
        check_number("temperature", temperature, 0, 2)
        check_number("max_tokens", max_tokens, 1, integer=True)
        check_number("poll_interval", poll_interval, 0, MAX_WAIT_SECONDS, positive=True)
        check_number("batch_timeout", batch_timeout, 0, MAX_WAIT_SECONDS, positive=True)
        _ = self.output_spec

    @cached_property
    def output_spec(self) -> OutputSpec | None:
        from airflow_provider_xai.structured import OutputSpec

        return OutputSpec.from_user(self.response_format)

    # --- inputs --------------------------------------------------------------------------------
    def prepare_requests(self) -> list[PreparedRequest]:
        """Validate every input and build its body (raises before anything is sent)."""
        defaults = RequestDefaults(
            system_prompt=self.system_prompt,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            output=self.output_spec,
            tools=self.tools,
            request_kwargs=self.request_kwargs,
            api=self.api,
        )
        from airflow_provider_xai.hooks import batch as api

        max_bytes = None if self.submit_as == "file" else self.add_requests_max_bytes or api.MAX_ADD_REQUESTS_BYTES
        prepared = prepare_requests(load_inputs(self.inputs), defaults, self.hook.default_model, max_bytes)
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
        ledger = self.ledger(context)  # re-publishes the usage of earlier tries
        return self.within_budget(context, ledger, lambda: self._submit(context, ledger))

    def _submit(self, context: Context, ledger: UsageLedger) -> Any:
        from airflow_provider_xai.operators.batch_attach import BatchAttacher
        from airflow_provider_xai.spend.layer import fingerprint as call_fingerprint

        prepared = self.prepare_requests()  # an oversized request is refused there, like any bad one
        self._output()
        sendable = [p for p in prepared if p.refused is None]
        forecast = batch_forecast(self, ledger, [(KINDS[p.kind].url.removeprefix("/v1/"), p.body) for p in sendable])
        make = self._creator(sendable)  # a too large input file is refused before any request

        def create(name: str) -> Batch:  # a new batch's worst case is reserved against the budgets
            if forecast is None:
                return make(name)
            return self.hook.spend.start_within_budgets(
                forecast, call_fingerprint([p.body for p in sendable]), lambda: make(name), lambda b: b.batch_id
            )

        attachment = BatchAttacher(self.hook, self.log, context).attach(sendable, self.submit_as, create)
        batch = attachment.batch
        self._batch_id = batch.batch_id
        if self.submit_as == "requests":  # add what an earlier try did not (a crash may have cut it short)
            self._add(batch, [p for p in sendable if p.request_id not in attachment.known])
        if self.deferrable:
            self._defer(batch.batch_id)
        try:
            batch = self.hook.wait_for_batch(
                batch.batch_id, poll_interval=self.poll_interval, timeout=self.batch_timeout
            )
        except XAIDeferredTimeoutError as exc:
            return self._complete(context, self.hook.get_batch(batch.batch_id), prepared, timeout=str(exc))
        return self._complete(context, batch, prepared)

    def _creator(self, sendable: list[PreparedRequest]) -> Any:
        """What creates the batch, given its name: an empty batch, or one made from the JSONL
        input file (built and size-checked now, uploaded only if no batch can be re-attached)."""
        if self.submit_as == "requests":
            return self.hook.create_batch
        from airflow_provider_xai.hooks.batch import MAX_INPUT_FILE_BYTES
        from airflow_provider_xai.operators.batch_results import jsonl_line

        content = "".join(jsonl_line(p.line()) for p in sendable).encode("utf-8")
        if len(content) > MAX_INPUT_FILE_BYTES:
            raise XAIValidationError(
                "inputs", f"would make an input file of {len(content)} bytes; xAI takes at most "
                f"{MAX_INPUT_FILE_BYTES}: use submit_as='requests', or split the inputs over several tasks",
            )  # fmt: skip

        def create(name: str) -> Batch:
            uploaded = self.hook.upload_batch_input_file(content)
            self.log.info(
                "Uploaded the JSONL input file %s (%d requests, %d bytes)", uploaded.id, len(sendable), len(content)
            )
            return self.hook.create_batch(name, input_file_id=uploaded.id)

        return create

    def _add(self, batch: Batch, missing: list[PreparedRequest]) -> None:
        from airflow_provider_xai.hooks import batch as api

        if missing:
            max_bytes = self.add_requests_max_bytes or api.MAX_ADD_REQUESTS_BYTES
            calls = self.hook.add_batch_requests(batch.batch_id, [p.item() for p in missing], max_bytes=max_bytes)
            self.log.info("Added %d requests to xAI batch %s (%d calls)", len(missing), batch.batch_id, calls)

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
        from airflow_provider_xai.hooks.batch import BATCH_DISCOUNT
        from airflow_provider_xai.operators.batch_results import (
            output_line,
            read_result,
            usage_records,
            write_jsonl,
        )
        from airflow_provider_xai.usage import combine
        from airflow_provider_xai.usage_summary import summarize

        ledger = self.ledger(context)
        answers = {r.batch_request_id: read_result(r) for r in self.hook.iter_batch_results(batch.batch_id)}
        records = usage_records(answers, self.hook.get_prices(), BATCH_DISCOUNT)
        # One folded record per model keeps thousands of results out of XCom; its id names the
        # batch, so a re-attached retry does not count the same batch twice.
        done = {r.get("completion_id") for r in ledger.records if r.get("kind") == "batch"}
        new = [r for r in combine(records.values(), f"batch:{batch.batch_id}") if r.completion_id not in done]
        ledger.record_many(new)  # billed: recorded before anything below can fail
        usage = summarize(list(records.values()))
        if timeout is None:  # the whole batch billed: its budget reservation settled to the bill
            self.hook.spend.settle_held(batch.batch_id, usage.totals)
        self.log.info(
            "xAI batch usage: %d billed requests, total_tokens=%d cost_usd=%.6f (%d newly recorded)",
            usage.totals.requests, usage.totals.total_tokens, usage.totals.cost_usd,
            sum(r.requests for r in new),
        )  # fmt: skip
        for model, totals in usage.by_model.items():
            self.log.info("xAI batch usage for %s: %s", model, json.dumps(totals.to_dict(), sort_keys=True))
        path = self._output()
        answered = {split_request_id(request_id)[0] for request_id in answers}
        lines = []
        for i, p in enumerate(prepared):
            request_id = p.request_id if p.refused is None else ""
            read, other = answers.get(request_id), p.custom_id if p.custom_id in answered else None
            line = output_line(i, p, read, records.get(request_id), batch, self.output_spec, other)
            if KINDS[p.kind].files and read is not None and read.answer is not None:
                from airflow_provider_xai.operators.batch_media import media_line

                line.update(media_line(self.hook, read.answer, path, p.custom_id))
            lines.append(line)
        write_jsonl(path, lines)
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

    def on_kill(self) -> None:
        """Cancel the batch this task submitted (the trigger does the same while deferred)."""
        if self._batch_id:
            try:
                self.hook.cancel_batch(self._batch_id)
                self.log.info("Cancelled xAI batch %s", self._batch_id)
            except XAIError as exc:
                self.log.warning("Could not cancel xAI batch %s: %s", self._batch_id, exc)
        super().on_kill()


__all__ = ["STATE_BATCH_ID_KEY", "XCOM_BATCH_ID_KEY", "XAIBatchOperator", "batch_name_for", "batch_prefix_for"]
