"""A minimal task context for calling an operator's execute() directly in tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeTI:
    """Records XCom pushes like a RuntimeTaskInstance (``pushed``: the latest value per key)."""

    dag_id: str = "test_dag"
    task_id: str = "test_task"
    run_id: str = "manual__test"
    map_index: int = -1
    try_number: int = 1
    pushes: list[tuple[str, Any]] = field(default_factory=list)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushes.append((key, value))

    @property
    def pushed(self) -> dict[str, Any]:
        return dict(self.pushes)

    def values(self, key: str) -> list[Any]:
        """Every value pushed under ``key``, in order."""
        return [v for k, v in self.pushes if k == key]


@dataclass
class FakeStateStore:
    """In-memory task state store (``context["task_state_store"]``)."""

    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        if value is None:  # as Airflow's store: a value is never None (delete() removes a key)
            raise ValueError("Cannot set value as None")
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def make_context(ti: FakeTI | None = None, store: FakeStateStore | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": ti or FakeTI()}
    if store is not None:
        context["task_state_store"] = store
    return context
