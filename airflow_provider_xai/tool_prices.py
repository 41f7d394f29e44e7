"""Server-side tool fees: the one table of what xAI charges per tool call, for cost estimates.

xAI's ``cost_in_usd_ticks`` already includes these fees; the table serves only when a response
carries no cost (an estimate from the token price table plus these). A leaf module.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

#: Server-side tool fees in USD per 1,000 successful calls, by xAI's usage key (the keys of
#: ``server_side_tool_usage_details``), as published by xAI in 2026 (docs.x.ai/developers/pricing):
#: web and X search and code execution $5, collections search $2.50, attachment search $10;
#: remote MCP tools and viewing images or videos found by search cost tokens only. Added to
#: token estimates only (xAI's ``cost_in_usd_ticks`` already includes them). Tools missing
#: here (image generation: billed per image) are left out of an estimate, with a warning.
TOOL_PRICES_AS_OF = "2026-11-01"
DEFAULT_TOOL_PRICES: dict[str, float] = {
    "web_search_calls": 5.0,
    "x_search_calls": 5.0,
    "code_interpreter_calls": 5.0,
    "code_execution_calls": 5.0,
    "file_search_calls": 2.5,  # Collections Search on REST
    "collections_search_calls": 2.5,
    "attachment_search_calls": 10.0,
    "document_search_calls": 10.0,  # taken to be attachment search (input_file); not itemised by xAI
    "mcp_calls": 0.0,
    "view_image_calls": 0.0,
    "view_x_video_calls": 0.0,
}


def tool_price_table(overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The default tool fees (USD per 1,000 calls, by usage key) with overrides applied on top."""
    table = dict(DEFAULT_TOOL_PRICES)
    for tool, price in (overrides or {}).items():
        if isinstance(price, bool) or not isinstance(price, int | float) or not 0 <= price < math.inf:
            raise ValueError(
                f"tool price for {tool!r} must be USD per 1,000 calls (a finite number >= 0), got {price!r}"
            )
        table[tool] = float(price)
    return table


def tool_fees(calls: Mapping[str, int], prices: Mapping[str, float] | None = None) -> float:
    """USD for server-side tool calls by kind (``{"web_search_calls": 2}``); unpriced kinds left out."""
    table = DEFAULT_TOOL_PRICES if prices is None else prices
    total = 0.0
    for tool, count in calls.items():
        if tool in table:
            total += count * table[tool] / 1000
        else:
            _warn_no_tool_price(tool)
    return total


@functools.cache
def _warn_no_tool_price(tool: str) -> None:
    """Say once per process that a tool's calls were left out of a cost estimate."""
    log.warning(
        "No price is known for xAI server-side tool usage %r: the cost estimate leaves those calls out. "
        "Pass tool_prices (USD per 1,000 calls) to include them.",
        tool,
    )
