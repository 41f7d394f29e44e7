"""What every xAI operator shares, written once: the hook, the usage ledger, finishing a billed
answer (usage recorded first, then XComs, then the return value), streaming into the task log
a line at a time, re-attaching a retried task to what an earlier try paid for, and ``on_kill``.

Light imports only: this module is imported when a DAG file is parsed; the hook (httpx,
pydantic models) is imported when a task runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator

from airflow_provider_xai.operators.spend import check_spend_arguments, resume, run_within_budget
from airflow_provider_xai.retry_policy import XAI_RETRY_POLICY, retry_policy_argument
from airflow_provider_xai.task_state import StoredValue, fingerprint

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.retry_policy import RetryPolicy

    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.pipeline.call import Endpoint
    from airflow_provider_xai.usage import UsageLedger, UsageRecord

Answer = TypeVar("Answer")


class LineLogger:
    """Writes streamed text to the task log a line at a time (not token by token)."""

    def __init__(self, log: Any, prefix: str = "xAI | ") -> None:
        self.log = log
        self.prefix = prefix
        self._pending = ""

    def feed(self, text: str) -> None:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.log.info("%s%s", self.prefix, line)

    def flush(self) -> None:
        if self._pending:
            self.log.info("%s%s", self.prefix, self._pending)
            self._pending = ""


class TaskState(StoredValue):
    """An id this task instance re-attaches to on a retry (a deferred request, a stored response,
    a batch), kept in Airflow's task state store (3.3+), which survives retries (XComs do not).
    Without a store (Airflow 3.2) every try starts afresh, as before.

    An id is kept with the fingerprint of the inputs it was made for: a retry whose inputs
    changed (a fixed prompt, a re-run upstream task) gets nothing back and starts afresh,
    never the answer to the old inputs. A stored value of another kind is skipped and counted."""

    def __init__(self, context: Context, key: str, log: Any, what: str | None = None) -> None:
        super().__init__(context, key, log, what or f"xAI {key}")

    def get(self, inputs: str | None = None) -> str | None:
        """The id kept for these ``inputs`` (a :func:`fingerprint`), or None."""
        value, kept_for = self.entry()
        if value is None:
            return None
        if inputs is not None and kept_for != inputs:
            self.log.info("%s %s was made for other inputs; starting afresh", self.what, value)
            return None
        return value

    def entry(self) -> tuple[str | None, str | None]:
        """The id kept and the inputs it was made for, whatever they are ((None, None): none)."""
        stored = self.read()
        if stored is None:
            return None, None
        if isinstance(stored, dict):  # {"value": ..., "inputs": fingerprint}
            value, kept_for = stored.get("value"), stored.get("inputs")
        else:  # written before fingerprints: a bare value
            value, kept_for = stored, None
        if not (isinstance(value, str) and value):
            self.skipped(1, f"expected an id, got {type(value).__name__} {str(value)[:40]!r}")
            return None, None
        return value, kept_for if isinstance(kept_for, str) else None

    def set(self, value: str, inputs: str | None = None) -> None:
        self.write({"value": value, "inputs": inputs})

    def attach(
        self,
        inputs: str,
        look_up: Callable[[str], Answer],
        finished: Callable[[Any], bool],
        gone: type[Exception],
        submit: Callable[[], str],
    ) -> tuple[str, Answer | None]:
        """The id of the call this try waits for, and its answer when that is already finished:
        the call an earlier try made for these ``inputs`` (``look_up``; one xAI no longer has,
        ``gone``, is made anew), else a new one (``submit``), kept the moment its id exists so
        a retry never pays for it twice."""
        noun = self.what.removesuffix(" id")
        if (known := self.get(inputs)) is not None:
            try:
                found = look_up(known)
            except gone:
                self.log.info("%s %s of an earlier try is gone; sending it anew", noun, known)
            else:
                if finished(found):
                    return known, found
                self.log.info("Re-attaching to %s %s of an earlier try", noun, known)
                return known, None
        made = submit()
        self.set(made, inputs)
        self.log.info("Sent %s %s", noun, made)
        return made, None


class XAIBaseOperator(BaseOperator):
    """The base of the xAI operators.

    :param xai_conn_id: the xAI connection.
    :param retry_policy: Airflow 3.3+ task retry policy; default
        :class:`~airflow_provider_xai.retry_policy.XAIRetryPolicy` (rate limits retry after
        xAI's delay, permanent errors fail at once); ``None`` turns it off.
    :param max_cost_usd: the most the task may spend (all its calls and tries): a call whose
        worst case would pass it is refused before it is sent; a tool loop stops there.
    :param over_budget: what a call over a budget does: ``fail``, ``skip``, ``defer`` (until the
        budget's next period) or ``ask`` (a person approves that one call, or not).
    :param approval_timeout: how long ``ask`` waits for an answer (then the call is rejected).

    A subclass says what its billed answers are (:attr:`endpoint`, whose declaration reads their
    usage), what it pushes to XCom besides usage (:meth:`xcom_values`) and what it returns
    (:meth:`result`); :meth:`finish` does the rest in that order.
    """

    def __init__(
        self,
        *,
        xai_conn_id: str = "xai_default",
        retry_policy: RetryPolicy | None = XAI_RETRY_POLICY,
        max_cost_usd: float | None = None,
        over_budget: str = "fail",
        approval_timeout: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**retry_policy_argument(retry_policy), **kwargs)
        self.xai_conn_id = xai_conn_id
        check_spend_arguments(max_cost_usd, over_budget, approval_timeout)
        self.max_cost_usd = max_cost_usd
        self.over_budget = over_budget
        self.approval_timeout = approval_timeout
        #: Calls a person approved past their budget (fingerprints), for the next run.
        self.approved_calls: list[str] = []

    @cached_property
    def hook(self) -> XAIHook:
        from airflow_provider_xai.hooks.xai import XAIHook

        return XAIHook(xai_conn_id=self.xai_conn_id)

    def ledger(self, context: Context) -> UsageLedger:
        """This task instance's usage ledger (re-publishes the usage of earlier tries)."""
        from airflow_provider_xai.usage import UsageLedger

        return UsageLedger(context, self.log, on_record=self.hook.spend.tally)

    def within_budget(self, context: Context, ledger: UsageLedger, run: Callable[[], Any]) -> Any:
        """Run ``run`` under spend control: the cost cap, the budgets and what happens over one
        (:mod:`airflow_provider_xai.operators.spend`)."""
        return run_within_budget(self, context, ledger, run)

    def execute_budget_resume(
        self, context: Context, event: Any = None, approve: str | None = None, reason: str | None = None
    ) -> Any:
        """Resume after waiting for a budget (its next period, or a person's approval)."""
        return resume(self, context, event, approve, reason)

    def endpoint(self) -> Endpoint:
        """The declaration of the endpoint whose answers :meth:`finish` records."""
        raise NotImplementedError

    def usage_of(self, answer: Any) -> UsageRecord:
        """The answer's usage record: the one the pipeline read, else (an answer that came back
        through a trigger event) read now through the endpoint's declaration. An answer that
        reports no usage still counts as one request, of unknown cost."""
        from airflow_provider_xai.usage import build_record

        record: UsageRecord | None = getattr(answer, "usage_record", None)
        if record is None and (record_of := self.endpoint().record) is not None:
            record = record_of(answer, self.hook.get_prices())
        if record is None:
            record = build_record(None, getattr(answer, "model", ""), completion_id=getattr(answer, "id", None))
        return record

    def finish(self, context: Context, ledger: UsageLedger, answer: Any, held: str | None = None) -> Any:
        """Record usage first (so a later failure never loses it), push this operator's XComs,
        then return the answer's XCom-safe value. ``held``: see :meth:`record`."""
        self.record(ledger, self.usage_of(answer), held)
        for key, value in self.xcom_values(answer).items():
            context["ti"].xcom_push(key=key, value=value)
        return self.result(answer)

    def record(self, ledger: UsageLedger, record: UsageRecord, held: str | None = None) -> None:
        """Record usage; ``held``: the id of a submission answered later (a deferred call, a
        job), whose budget reservation (:meth:`submitted`) is now settled to this bill."""
        ledger.record(record)
        if held is not None:
            self.hook.spend.settle_held(held, record)

    def submitted(self, submit: Callable[[], str]) -> str:
        """Submit a call whose answer is collected later and return its id; its budget
        reservation is kept under that id until :meth:`record` settles it."""
        return self.hook.spend.hold(submit())

    def record_billed(self, ledger: UsageLedger, exc: BaseException) -> None:
        """Record the usage of a billed answer that came with a failure (a stream that failed
        after xAI billed it), before the failure is raised."""
        billed = getattr(exc, "billed", None)
        if billed is not None and getattr(billed, "usage", None) is not None:
            ledger.record(self.usage_of(billed))

    def xcom_values(self, answer: Any) -> dict[str, Any]:
        """XComs pushed besides usage and the return value."""
        return {}

    def result(self, answer: Any) -> Any:
        """The task's return value (XCom-safe)."""
        raise NotImplementedError

    def on_kill(self) -> None:
        self.hook.rate_limit.release_waiting()  # slots a call was sleeping until
        self.hook.close()


__all__ = ["LineLogger", "TaskState", "XAIBaseOperator", "fingerprint"]
