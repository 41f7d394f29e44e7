"""The answers xAI bills carry their usage record, read once by the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, PrivateAttr


class Billed(BaseModel):
    """A billed answer. The pipeline attaches the :class:`UsageRecord` its endpoint declaration
    made of it, so the span, the rate limiter and the operator's ledger read the same record."""

    _usage_record: Any = PrivateAttr(default=None)

    @property
    def usage_record(self) -> Any:
        """The :class:`~airflow_provider_xai.usage.UsageRecord` of this answer (None when the
        pipeline did not read it, e.g. after a round trip through a trigger event). Typed loosely:
        the wire models sit below the usage records, which read them."""
        # Read from pydantic's private values directly: ``self._usage_record`` goes through
        # BaseModel.__getattr__, which raises and catches an AttributeError on the way (~2 us).
        private = self.__pydantic_private__
        record = private.get("_usage_record") if private is not None else None
        if callable(record):  # read when first asked for
            record = self._usage_record = record(self)
        return record

    def attach_usage(self, record: Any | Callable[[Billed], Any]) -> None:
        """Attach the usage record, or what reads it from this answer when first asked for
        (given the answer, so that the reader holds no reference to it: no cycle keeps an
        answer alive until the garbage collector runs)."""
        self._usage_record = record


__all__ = ["Billed"]
