"""Values a task keeps in Airflow's task state store (3.3+), which survives task retries (XComs
do not), read back leniently.

No store (Airflow 3.2), or one that fails, means the value is absent: every try then works as
before 3.3. A stored value that is not what the provider wrote (another writer, an older
layout) is skipped, counted and logged as a warning, never raised. A leaf module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def fingerprint(inputs: Any) -> str:
    """A short digest of a request's inputs (key order and whitespace do not matter)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class StoredValue:
    """One key of this task instance's task state store."""

    def __init__(self, context: Mapping[str, Any], key: str, log: Any, what: str) -> None:
        self.store = context.get("task_state_store")
        self.key, self.log, self.what = key, log, what

    def read(self) -> Any:
        """The stored value, or None when there is none or no readable store."""
        if self.store is None:
            return None
        try:
            return self.store.get(self.key)
        except Exception as exc:  # no usable store: as before 3.3
            self.log.debug("%s not readable from the task state store: %s", self.what, exc)
            return None

    def write(self, value: Any) -> None:
        if self.store is None:
            return
        try:
            self.store.set(self.key, value)
        except Exception as exc:
            self.log.debug("%s not writable to the task state store: %s", self.what, exc)

    def skipped(self, count: int, problem: str) -> None:
        """Say that ``count`` stored item(s) were unusable and left out."""
        self.log.warning(
            "%s in the task state store: skipped %d unusable item(s) (%s)", self.what, count, problem
        )


    def clear(self) -> None:
        """Forget the value (the store takes no None: its key is deleted)."""
        if self.store is None:
            return
        try:
            self.store.delete(self.key)
        except Exception as exc:
            self.log.debug("%s not deletable from the task state store: %s", self.what, exc)
