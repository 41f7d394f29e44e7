"""The usage page's budgets: every budget the connection declares (its ``budgets`` extra and
``[xai] budgets``), its state in the current period and its burn-down.

The states are read as the hooks read them, through the hook's spend layer
(:meth:`~airflow_provider_xai.spend.layer.SpendLayer.budget_states`: one store operation, the
same keys, the same store). The store keeps one sum per budget and period, what is committed:
settled spend and the reservations of calls still in flight together, so the burn-down is the
current state (the share used beside the share of the period gone), not a series.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from airflow_provider_xai.exceptions import XAIConfigurationError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.spend.budgets import BudgetState, period_of

#: The connection the page reads budgets from: the hooks' default.
CONN_ID = XAIHook.default_conn_name
log = logging.getLogger(__name__)


def burn_down(state: BudgetState, now: float) -> dict[str, Any]:
    """One budget's row: :meth:`BudgetState.to_dict` with its period's start, the share of
    its limit committed and the share of its period gone at ``now`` (both 0..1; used may pass 1)."""
    start = period_of(state.budget, state.ends.timestamp() - 1)[1]
    length = (state.ends - start).total_seconds()
    return {
        **state.to_dict(),
        "starts_at": start.isoformat(),
        "used_share": round(state.committed / state.budget.limit, 4),
        "elapsed_share": round(min(max((now - start.timestamp()) / length, 0.0), 1.0), 4),
        "over": state.committed > state.budget.limit,
    }


def visible(state: BudgetState, dag_ids: Collection[str]) -> bool:
    """Whether a user who may read ``dag_ids`` sees the budget: a DAG's budget only with its DAG."""
    return state.budget.scope != "dag" or state.budget.target in dag_ids


def budget_report(dag_ids: Collection[str], conn_id: str = CONN_ID, now: float | None = None) -> dict[str, Any]:
    """The budgets of ``conn_id`` a reader of ``dag_ids`` may see, with their burn-down; a
    connection that cannot be read or a store that cannot be opened is answered in ``error``."""
    out: dict[str, Any] = {"conn_id": conn_id, "store": None, "budgets": [], "error": None}
    hook = XAIHook(conn_id)
    try:
        settings = hook.settings
    except XAIConfigurationError as exc:
        out["error"] = f"The budgets could not be read: {exc}"
        return out
    if not settings.spend.budgets:
        return out
    try:
        store = hook.spend.store(settings)
        out["store"] = store.describe()
        states = hook.spend.budget_states(settings, settings.spend.budgets)
    except Exception as exc:  # the page stays up: the message says what is wrong
        log.warning("xAI usage page: the spend store could not be read: %s", exc)
        out["error"] = f"The spend store could not be read: {exc}"
        return out
    moment = time.time() if now is None else now
    out["budgets"] = [burn_down(s, moment) for s in states if visible(s, dag_ids)]
    return out


__all__ = ["CONN_ID", "budget_report", "burn_down", "visible"]
