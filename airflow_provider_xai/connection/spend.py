"""Spend control's connection settings, checked on reading: budgets (``budgets`` extra, and the
provider config's ``[xai] budgets``), how often live prices are refreshed (``prices_ttl``) and
how a forecast counts a prompt's tokens (``forecast_tokens``).

A budget is ``{"scope": "team" | "dag:<dag_id>" | "tag:<tag>", "period": "daily" | "monthly",
"usd": <number> | "tokens": <integer>, "name": <optional>}``. Bad values raise
:class:`XAIConfigurationError` naming the field, before any request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_xai.exceptions import XAIConfigurationError

PERIODS = ("daily", "monthly")
FORECAST_TOKENS = ("auto", "tokenize", "bound")
#: Seconds live prices are kept in the shared store before they are asked for again.
DEFAULT_PRICES_TTL = 3600.0
#: The most a budget may hold: a million USD, or a trillion tokens (store values stay exact).
MAX_BUDGET_USD = 1e6
MAX_BUDGET_TOKENS = 10**12
#: USD budgets are kept in nano-USD: a cheap call (a few micro-USD) rounds by a billionth.
NANO = 1_000_000_000


@dataclass(frozen=True)
class Budget:
    """One budget: what it covers (``scope``, ``target``), its period and its limit, in USD or
    tokens. ``limit`` is in the store's units: nano-USD, or tokens."""

    name: str
    scope: Literal["team", "dag", "tag"]
    target: str | None
    period: Literal["daily", "monthly"]
    unit: Literal["usd", "tokens"]
    limit: int

    def applies(self, dag_id: str | None, tags: Sequence[str]) -> bool:
        """Whether a call of ``dag_id`` (tagged ``tags``) counts against this budget."""
        if self.scope == "team":
            return True
        if self.scope == "dag":
            return dag_id == self.target
        return self.target in tags

    @property
    def shown_limit(self) -> str:
        if self.unit == "tokens":
            return f"{self.limit:,} tokens"
        usd = self.limit / NANO
        return f"${usd:,.2f}" if usd >= 0.01 else f"${usd:.6f}"  # a limit under a cent, as it is


@dataclass(frozen=True)
class SpendConfig:
    """Spend control's settings (already checked)."""

    budgets: tuple[Budget, ...] = ()
    prices_ttl: float = DEFAULT_PRICES_TTL
    forecast_tokens: str = "auto"


def _bad(conn_id: str, name: str, problem: str) -> XAIConfigurationError:
    return XAIConfigurationError(f"Connection {conn_id!r}: {name} {problem}")


def parse_budgets(raw: Any, where: str) -> tuple[Budget, ...]:
    """Budgets from a JSON list (or its text); ``where`` names the field in errors."""
    if raw is None or raw == "":
        return ()
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise XAIConfigurationError(f"{where}: not JSON: {exc}") from None
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise XAIConfigurationError(f"{where}: expected a list of budgets, got {type(data).__name__}")
    budgets = [_budget(item, f"{where}[{i}]") for i, item in enumerate(data)]
    names = [b.name for b in budgets]
    if duplicate := next((n for n in names if names.count(n) > 1), None):
        raise XAIConfigurationError(f"{where}: two budgets are named {duplicate!r}")
    return tuple(budgets)


def _budget(item: Any, where: str) -> Budget:
    if not isinstance(item, Mapping):
        raise XAIConfigurationError(f"{where}: expected an object, got {type(item).__name__}")
    unknown = set(item) - {"name", "scope", "period", "usd", "tokens"}
    if unknown:
        raise XAIConfigurationError(f"{where}.{sorted(unknown)[0]}: unknown field")
    scope_text = item.get("scope", "team")
    kind, _, target = str(scope_text).partition(":") if isinstance(scope_text, str) else ("", "", "")
    if kind not in ("team", "dag", "tag") or (kind == "team") != (not target):
        raise XAIConfigurationError(
            f"{where}.scope: expected 'team', 'dag:<dag_id>' or 'tag:<tag>', got {scope_text!r}"
        )
    period = item.get("period", "daily")
    if period not in PERIODS:
        raise XAIConfigurationError(f"{where}.period: expected one of {', '.join(PERIODS)}, got {period!r}")
    usd, tokens = item.get("usd"), item.get("tokens")
    if (usd is None) == (tokens is None):
        raise XAIConfigurationError(f"{where}: give exactly one of 'usd' or 'tokens'")
    if usd is not None:
        if (
            isinstance(usd, bool)
            or not isinstance(usd, int | float)
            or not (math.isfinite(usd) and 0 < usd <= MAX_BUDGET_USD)
        ):
            raise XAIConfigurationError(
                f"{where}.usd: expected a finite number above 0, at most 1e6, got {usd!r}"
            )
        unit, limit = "usd", round(usd * NANO)
    else:
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 < tokens <= MAX_BUDGET_TOKENS:
            raise XAIConfigurationError(f"{where}.tokens: expected a whole number above 0, got {tokens!r}")
        unit, limit = "tokens", tokens
    name = item.get("name") or f"{scope_text}:{period}:{unit}"
    if not isinstance(name, str) or len(name) > 200 or any(c in name for c in "\n\r"):
        raise XAIConfigurationError(f"{where}.name: expected a one-line text of at most 200 characters")
    return Budget(name, kind, target or None, period, unit, limit)  # type: ignore[arg-type]


def provider_budgets() -> tuple[Budget, ...]:
    """The budgets of the provider config (``[xai] budgets``, or ``AIRFLOW__XAI__BUDGETS``)."""
    try:
        from airflow.sdk import conf

        raw = conf.get("xai", "budgets", fallback=None)
    except Exception:  # no Airflow config at hand (a bare hook): no provider budgets
        return ()
    return parse_budgets(raw, "[xai] budgets")


def spend_config(values: Mapping[str, Any], conn_id: str) -> SpendConfig:
    """Spend control's settings from the connection's extras (``budgets``, ``prices_ttl``,
    ``forecast_tokens``; None when unset) and the provider config's budgets."""
    budgets = (*provider_budgets(), *parse_budgets(values.get("budgets"), f"Connection {conn_id!r}: budgets"))
    ttl = values.get("prices_ttl")
    if ttl is None:
        ttl = DEFAULT_PRICES_TTL
    try:
        ttl = float(ttl)
        if isinstance(values.get("prices_ttl"), bool) or not (math.isfinite(ttl) and 0 <= ttl <= 366 * 86400):
            raise ValueError
    except (TypeError, ValueError):
        raise _bad(
            conn_id, "prices_ttl", f"must be seconds from 0 to a year, got {values.get('prices_ttl')!r}"
        ) from None
    mode = values.get("forecast_tokens") or "auto"
    if mode not in FORECAST_TOKENS:
        raise _bad(conn_id, "forecast_tokens", f"must be one of {', '.join(FORECAST_TOKENS)}, got {mode!r}")
    names = [b.name for b in budgets]
    if duplicate := next((n for n in names if names.count(n) > 1), None):
        raise _bad(conn_id, "budgets", f"and [xai] budgets both name a budget {duplicate!r}")
    return SpendConfig(budgets=budgets, prices_ttl=ttl, forecast_tokens=mode)


#: The connection extras of spend control.
SPEND_FIELDS = ("budgets", "prices_ttl", "forecast_tokens")

__all__ = [
    "DEFAULT_PRICES_TTL",
    "FORECAST_TOKENS",
    "NANO",
    "PERIODS",
    "SPEND_FIELDS",
    "Budget",
    "SpendConfig",
    "parse_budgets",
    "provider_budgets",
    "spend_config",
]
