"""The local server's tick ledger: every answer it billed, as xAI's books hold it (no FastAPI
here: the server state holds one). Read by the billing routes (``billing.py``)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

#: How a billed kind reads in the ledger's descriptions (``"Chat grok-4.3"``).
KIND_LABELS = {
    "chat": "Chat", "responses": "Chat", "batch": "Batch", "images": "Image", "videos": "Video",
    "tts": "Voice", "stt": "Voice",
}  # fmt: skip


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


def bill_units(state: Any, kind: str, units: float) -> None:
    """Write a voice call billed by the unit (characters spoken, seconds heard) to the ledger,
    at the published voice price (its ``kind`` is also its model: xAI names none)."""
    from airflow_provider_xai.pricing import VOICE_PRICES

    ticks = round(units * VOICE_PRICES[kind].usd * 1e10)
    bill(state, kind, {"model": kind, "usage": {"cost_in_usd_ticks": ticks}})


__all__ = ["KIND_LABELS", "Bill", "TickLedger", "api_key_ids", "bill", "bill_units"]
