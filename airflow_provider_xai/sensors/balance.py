"""XAIBalanceSensor: hold a DAG while the team is nearly out of xAI credit.

It asks xAI's Management API (the connection's management key) for the prepaid credit left and
this month's spend against the spending limit, and waits until there is room: at least
``min_credit_usd`` of prepaid credit, and (when a spending limit is in force) at most
``max_spending_share`` of it spent. Poke and reschedule modes work as for any sensor; with
``soft_fail`` a sensor that times out skips instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.retry_policy import XAI_RETRY_POLICY, retry_policy_argument

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.retry_policy import RetryPolicy

    from airflow_provider_xai.hooks.xai import XAIHook


def _threshold(value: Any, field: str, upper: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and 0 <= value <= upper):  # noqa: E501
        raise XAIValidationError(field, f"must be a finite number from 0 to {upper:g}, got {value!r}")
    return float(value)


class XAIBalanceSensor(BaseSensorOperator):
    """Wait until the xAI team has credit and spending room left.

    :param min_credit_usd: wait while the prepaid credit is below this (USD); None: not checked.
    :param max_spending_share: wait while this month's spend is above this share (0 to 1) of the
        spending limit in force; None (or no limit set): not checked.
    :param xai_conn_id: the xAI connection; it needs the management key.
    :param retry_policy: Airflow 3.3+ task retry policy (default ``XAIRetryPolicy``).

    Returns (and pushes as ``return_value``) ``{"credit_usd", "spent_usd", "spending_limit_usd",
    "room": bool}``.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#bbf7d0"

    def __init__(
        self,
        *,
        min_credit_usd: float | None = 1.0,
        max_spending_share: float | None = 0.9,
        xai_conn_id: str = "xai_default",
        retry_policy: RetryPolicy | None = XAI_RETRY_POLICY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**retry_policy_argument(retry_policy), **kwargs)
        self.min_credit_usd = _threshold(min_credit_usd, "min_credit_usd", 1e9)
        self.max_spending_share = _threshold(max_spending_share, "max_spending_share", 1.0)
        if self.min_credit_usd is None and self.max_spending_share is None:
            raise XAIValidationError("min_credit_usd", "give min_credit_usd, max_spending_share or both")
        self.xai_conn_id = xai_conn_id

    @cached_property
    def hook(self) -> XAIHook:
        from airflow_provider_xai.hooks.xai import XAIHook

        return XAIHook(xai_conn_id=self.xai_conn_id)

    def state(self) -> dict[str, Any]:
        """The team's credit and spend, and whether there is room (two free Management API calls)."""
        hook = self.hook
        credit = hook.get_prepaid_balance().credit_usd if self.min_credit_usd is not None else None
        preview = hook.get_invoice_preview() if self.max_spending_share is not None else None
        limit = preview.spending_limit_usd if preview is not None else None
        spent = preview.spent_usd if preview is not None else None
        reasons = []
        if self.min_credit_usd is not None and (credit is None or credit < self.min_credit_usd):
            reasons.append(f"prepaid credit {'unknown' if credit is None else f'${credit:,.2f}'} "
                           f"is below ${self.min_credit_usd:,.2f}")  # fmt: skip
        share = self.max_spending_share
        if share is not None and limit and spent is not None and spent > share * limit:
            reasons.append(f"${spent:,.2f} of the ${limit:,.2f} spending limit is spent "
                           f"(more than {self.max_spending_share:.0%})")  # fmt: skip
        return {"credit_usd": credit, "spent_usd": spent, "spending_limit_usd": limit, "room": not reasons,
                "reasons": reasons}  # fmt: skip

    def poke(self, context: Context) -> PokeReturnValue:
        state = self.state()
        if not state["room"]:
            self.log.info("Holding: the xAI team is nearly out of credit: %s", "; ".join(state["reasons"]))
        return PokeReturnValue(is_done=state["room"], xcom_value=state)


__all__ = ["XAIBalanceSensor"]
