"""Which xAI batch a batch task uses: the one it already submitted for the same inputs, else a
new one. Retries never pay twice, and a re-run never answers changed inputs with old answers.

* Every request is sent named ``<custom_id>~<fingerprint>`` (``batch_inputs``): a digest of its
  kind and body as sent. Answers are joined to inputs by that whole name.
* A batch is named after its task instance (dag, run, task, map index: :func:`batch_prefix_for`)
  and a digest of every request name it carries and of how they were submitted: one name per
  set of inputs (:func:`batch_name_for`).
* A try re-attaches to the live batch of that name (the id in the task state store first, else
  the newest by name) when every request in it is one this try would send, checked request by
  request; it then adds the missing ones (a batch left half-added is completed).
* Otherwise it submits a new batch, and when this task instance submitted a batch for other
  inputs before, logs which custom ids changed, are new, or were dropped.

A batch made from other inputs (completed or not) is never re-attached; and even if one were,
no answer could be paired with an input whose request differs, its name would not match.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.operators.base import TaskState, fingerprint
from airflow_provider_xai.operators.batch_inputs import split_request_id

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.operators.batch_inputs import PreparedRequest
    from airflow_provider_xai.schemas import Batch

XCOM_BATCH_ID_KEY = "xai_batch_id"
STATE_BATCH_ID_KEY = "xai_batch_id"
#: Custom ids named in the log line of what changed, per group.
IDS_LOGGED = 10


def batch_prefix_for(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """The start of every batch name of one task instance (the same on every try and re-run)."""
    index = -1 if map_index is None else map_index
    digest = hashlib.sha256(f"{dag_id}\0{run_id}\0{task_id}\0{index}".encode()).hexdigest()[:24]
    return f"airflow:{dag_id[:80]}:{task_id[:80]}:{index}:{digest}:"


def inputs_digest(request_ids: Iterable[str], submit_as: str) -> str:
    """A digest of a set of request names and how they are submitted (order does not matter)."""
    return fingerprint([submit_as, *sorted(request_ids)])[:16]


def batch_name_for(
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int | None,
    request_ids: Iterable[str] = (),
    submit_as: str = "requests",
) -> str:
    """The batch name of one task instance for one set of requests."""
    return batch_prefix_for(dag_id, run_id, task_id, map_index) + inputs_digest(request_ids, submit_as)


def _of_task(name: str, prefix: str) -> bool:
    """A batch of this task instance (``prefix`` minus its colon: one named before digests)."""
    return name.startswith(prefix) or name == prefix[:-1]


@dataclass
class Changes:
    """How a task instance's requests differ from those of a batch it submitted before."""

    changed: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unverifiable: int = 0  # requests named without a fingerprint (sent before fingerprints)

    @classmethod
    def between(cls, before: Iterable[str], now: Mapping[str, str]) -> Changes:
        """From the request names of the earlier batch to ``now`` (custom id -> fingerprint)."""
        old: dict[str, str | None] = {}
        for request_id in before:
            custom_id, print_ = split_request_id(request_id)
            old[custom_id] = print_
        return cls(
            changed=sorted(c for c, f in now.items() if c in old and old[c] != f),
            new=sorted(c for c in now if c not in old),
            dropped=sorted(c for c in old if c not in now),
            unverifiable=sum(f is None for f in old.values()),
        )

    def describe(self) -> str:
        def group(ids: Sequence[str], what: str) -> str:
            shown = ", ".join(ids[:IDS_LOGGED]) + (", ..." if len(ids) > IDS_LOGGED else "")
            return f"{len(ids)} {what}" + (f" ({shown})" if ids else "")

        text = "; ".join(group(ids, what) for ids, what in
                         ((self.changed, "changed"), (self.new, "new"), (self.dropped, "dropped")))  # fmt: skip
        if self.unverifiable:
            text += f"; {self.unverifiable} of its requests were sent without a fingerprint"
        return text


@dataclass
class Attachment:
    """The batch a try uses, whether an earlier try submitted it, and the request names it
    already holds."""

    batch: Batch
    reattached: bool
    known: set[str] = field(default_factory=set)


class BatchAttacher:
    """Finds the batch of this task instance for these requests, or creates it (``create``
    takes the name), and remembers its id at once (XCom, task state store)."""

    def __init__(self, hook: XAIHook, log: Any, context: Context) -> None:
        self.hook, self.log, self.context = hook, log, context
        ti = context["ti"]
        self.prefix = batch_prefix_for(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        self.state = TaskState(context, STATE_BATCH_ID_KEY, log, "xAI batch id")

    def attach(
        self, requests: Sequence[PreparedRequest], submit_as: str, create: Callable[[str], Batch]
    ) -> Attachment:
        ours = {r.request_id for r in requests}
        name = self.prefix + inputs_digest(ours, submit_as)
        batch, previous = self._lookup(name)
        attachment = None
        if batch is not None:
            known = {m.batch_request_id for m in self.hook.list_batch_requests(batch.batch_id)}
            if known <= ours:
                attachment = Attachment(batch, True, known)
                self.log.info(
                    "Re-attaching to xAI batch %s (%s), made from the same inputs: %s; %d of %d requests in it",
                    batch.batch_id, name, batch.progress(), len(known), len(ours),
                )  # fmt: skip
            else:
                self.log.warning("xAI batch %s is called %s but holds other requests: not used", batch.batch_id, name)
        if attachment is None:
            if previous is not None:
                self._log_changes(previous, requests)
            attachment = Attachment(create(name), False)
            self.log.info("Created xAI batch %s (%s)", attachment.batch.batch_id, name)
        self.context["ti"].xcom_push(key=XCOM_BATCH_ID_KEY, value=attachment.batch.batch_id)  # a crash must not lose it
        self.state.set(attachment.batch.batch_id, inputs=name)
        return attachment

    def _lookup(self, name: str) -> tuple[Batch | None, Batch | None]:
        """(the live batch called ``name``, the newest other batch of this task instance)."""
        from airflow_provider_xai.exceptions import XAINotFoundError

        previous = None
        if stored := self.state.get():
            with contextlib.suppress(XAINotFoundError):
                found = self.hook.get_batch(stored)
                if found.name == name and not found.ended:
                    return found, None
                if found.name != name and _of_task(found.name, self.prefix):
                    previous = found
        for batch in self.hook.list_batches():  # newest first
            if batch.name == name and not batch.ended:
                return batch, previous
            if previous is None and batch.name != name and _of_task(batch.name, self.prefix):
                previous = batch
        return None, previous

    def _log_changes(self, previous: Batch, requests: Sequence[PreparedRequest]) -> None:
        before = [m.batch_request_id for m in self.hook.list_batch_requests(previous.batch_id)]
        if not before:
            what = "its requests are not listed (yet)"
        else:
            what = Changes.between(before, {r.custom_id: r.fingerprint for r in requests}).describe()
        self.log.warning(
            "The inputs differ from those of xAI batch %s (%s), which this task instance submitted "
            "before: %s. Submitting a new batch; no answer of the earlier one is used.",
            previous.batch_id, previous.name, what,
        )  # fmt: skip


__all__ = [
    "STATE_BATCH_ID_KEY",
    "XCOM_BATCH_ID_KEY",
    "Attachment",
    "BatchAttacher",
    "Changes",
    "batch_name_for",
    "batch_prefix_for",
    "inputs_digest",
]
