"""The answers xAI bills carry their usage record, read once by the pipeline."""

from __future__ import annotations

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
        """The usage record of this answer (None until the pipeline read it, e.g. after a
        round trip through a trigger event)."""
        record: UsageRecord | None = self._usage_record
        return record

    def attach_usage(self, record: UsageRecord | None) -> None:
        self._usage_record = record


__all__ = ["Billed"]
