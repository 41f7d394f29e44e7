"""The local server's tick ledger: every answer it billed, as xAI's books hold it (no FastAPI
here: the server state holds one). Read by the billing routes (``billing.py``)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

#: How a billed kind reads in the ledger's descriptions (``"Chat grok-4.3"``).
KIND_LABELS = {"chat": "Chat", "responses": "Chat", "batch": "Batch"}


@dataclass(frozen=True)
class Bill:
    """One billed answer: when (epoch seconds), which key, its description and cost."""

    time: float
    api_key_id: str
    description: str
    ticks: int


class TickLedger:
    """What the server billed, in order (thread-safe)."""

    def __init__(self) -> None:
        self._bills: list[Bill] = []
        self._lock = threading.Lock()

    def add(self, bill: Bill) -> None:
        with self._lock:
            self._bills.append(bill)

    def bills(self) -> list[Bill]:
        with self._lock:
            return list(self._bills)

    def clear(self) -> None:
        with self._lock:
            self._bills.clear()


def api_key_ids(key: str) -> tuple[str, str]:
    """The team id and API key id the server gives ``key`` (stable per key)."""
    ns = uuid.uuid5(uuid.NAMESPACE_URL, "xai-local:" + key)
    return str(uuid.uuid5(ns, "team")), str(uuid.uuid5(ns, "key"))


def bill(state: Any, kind: str, answer: dict[str, Any] | None) -> None:
    """Write a billed answer (its ``model`` and ``usage.cost_in_usd_ticks``) to the ledger."""
    usage = (answer or {}).get("usage") or {}
    ticks = usage.get("cost_in_usd_ticks")
    if answer is not None and isinstance(ticks, int) and ticks >= 0:
        description = f"{KIND_LABELS.get(kind, 'Chat')} {answer.get('model')}"
        state.ledger.add(Bill(time.time(), api_key_ids(state.api_key)[1], description, ticks))


__all__ = ["KIND_LABELS", "Bill", "TickLedger", "api_key_ids", "bill"]
