"""The answers xAI bills carry their usage record, read once by the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, PrivateAttr

if TYPE_CHECKING:
    from airflow_provider_xai.usage import UsageRecord


class Billed(BaseModel):
    """A billed answer. The pipeline attaches the :class:`UsageRecord` its endpoint declaration
    made of it, so the span, the rate limiter and the operator's ledger read the same record."""

    _usage_record: Any = PrivateAttr(default=None)

    @property
    def usage_record(self) -> UsageRecord | None:
        """The usage record of this answer (None when it was not read by the pipeline, e.g.
        after a round trip through a trigger event)."""
        if callable(self._usage_record):  # read when first asked for
            self._usage_record = self._usage_record()
        record: UsageRecord | None = self._usage_record
        return record

    def attach_usage(self, record: UsageRecord | Callable[[], UsageRecord | None] | None) -> None:
        """Attach the usage record, or what reads it when first asked for."""
        self._usage_record = record


__all__ = ["Billed"]
