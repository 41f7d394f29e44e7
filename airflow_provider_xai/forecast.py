"""A call's forecast: the most it may bill, known before it is sent.

An endpoint declaration says what a request body may spend (its ``forecast``): the prompt's
tokens, counted by xAI's tokenizer (``POST /v1/tokenize-text``) or bounded by their bytes; the
answer's tokens, bounded by the call's maximum output tokens; server-side tool calls, bounded
by ``max_turns``; images and seconds of video, by count and duration. :func:`priced` turns those
quantities into the worst-case USD with a price table. The spend layer
(:mod:`airflow_provider_xai.spend`) counts, prices and enforces; this module only knows the
arithmetic, so the declarations (``endpoints/``) can use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic_core

from airflow_provider_xai.pricing import TIER_PRICE_FACTORS, Price, UnitPrice
from airflow_provider_xai.tool_prices import DEFAULT_TOOL_PRICES

#: Counts the tokens of each text for a model (xAI's tokenizer, a cache, or a bound).
TokenCount = Callable[[Sequence[str], str], Sequence[int]]
#: Where the prompt's count came from: xAI's tokenizer, its cached answer, a bound (UTF-8
#: bytes: a byte-level tokenizer never makes more tokens than bytes), or the 4-characters
#: estimate (no request: only for calls without a cap or a budget).
InputSource = Literal["tokenize", "cache", "bound", "estimate"]
#: Tokens a chat message or Responses item costs besides its text (role markers, separators):
#: what the tokenizer does not see. An allowance, added to the worst case.
FORMAT_TOKENS_PER_MESSAGE = 8
#: Most tokens one image may cost (xAI: 256 to 1,792 by size and detail).
IMAGE_TOKENS_BOUND = 1792
#: Output tokens assumed for a call that sets no maximum (``bounded`` is then False: no cap can
#: be guaranteed; set ``max_tokens``).
UNBOUNDED_OUTPUT_TOKENS = 8192
#: Agent turns assumed for server-side tools without ``max_turns`` (``bounded`` False).
UNBOUNDED_TOOL_TURNS = 10
#: Input tokens assumed for what one server-side tool call hands the model (search results,
#: code logs): an allowance, not a bound.
TOOL_RESULT_TOKENS = 2000
#: Server-side tool types and the usage key xAI bills their calls under.
TOOL_USAGE_KEYS = {
    "web_search": "web_search_calls",
    "x_search": "x_search_calls",
    "code_interpreter": "code_interpreter_calls",
    "code_execution": "code_interpreter_calls",
    "file_search": "file_search_calls",
    "collections_search": "file_search_calls",
    "mcp": "mcp_calls",
}


@dataclass
class Forecast:
    """What one call may bill at most (see the module docstring). Token counts are the worst
    case; ``input_tokens`` is the prompt's text as xAI's tokenizer counts it (exact, unless
    ``input_source`` says otherwise), ``overhead_tokens`` what the tokenizer does not see.

    ``bounded`` is False when a limit the worst case needs was not set (no maximum output
    tokens, server-side tools without ``max_turns``): the figures then rest on assumptions.
    ``cost_usd`` is None until priced, and stays None for a model no price table knows
    (``cost_source`` ``"unpriced"``).
    """

    model: str
    kind: str
    input_tokens: int = 0
    input_source: InputSource = "estimate"
    #: A stored conversation the call continues (``previous_response_id``): its tokens are
    #: re-read as input (``history_tokens``, filled in by the spend layer).
    history_of: str | None = None
    history_tokens: int = 0
    overhead_tokens: int = 0
    image_tokens: int = 0
    output_tokens: int = 0
    tool_calls: dict[str, int] = field(default_factory=dict)
    tool_input_tokens: int = 0
    turns: int = 1
    units: float = 0.0
    unit: str | None = None
    resolution: str | None = None
    service_tier: str | None = None
    bounded: bool = True
    unbounded: str | None = None
    cost_usd: float | None = None
    cost_source: Literal["prices", "unpriced", "none"] = "none"

    @property
    def prompt_tokens(self) -> int:
        """Every input token of the worst case, each turn re-reading the conversation."""
        per_turn = self.input_tokens + self.history_tokens + self.overhead_tokens + self.image_tokens
        return per_turn * self.turns + self.tool_input_tokens

    @property
    def total_tokens(self) -> int:
        """The worst case in tokens (what a token budget reserves)."""
        return self.prompt_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for XCom ``xai_forecast`` and the log."""
        values = {**vars(self), "tool_calls": dict(self.tool_calls)}  # every field is a plain value
        return {**values, "prompt_tokens": self.prompt_tokens, "total_tokens": self.total_tokens}


def priced(
    forecast: Forecast,
    prices: Mapping[str, Price],
    tool_prices: Mapping[str, float] | None = None,
    unit_prices: Mapping[str, UnitPrice] | None = None,
) -> Forecast:
    """``forecast`` with its worst-case ``cost_usd`` from the price tables (in place).

    Every input token at the uncached input price (images at the image price), output at the
    output price, tool calls at their fees, units (images, seconds) at the unit price; the
    priority tier at its factor. A model in no table is ``unpriced`` (never costed at zero).
    """
    factor = TIER_PRICE_FACTORS.get(forecast.service_tier or "", 1.0)
    tools = DEFAULT_TOOL_PRICES if tool_prices is None else tool_prices
    fees = sum(calls * tools.get(key, 0.0) / 1000 for key, calls in forecast.tool_calls.items())
    if forecast.unit is not None:
        unit_price = (unit_prices or {}).get(forecast.model)
        if unit_price is None:
            return _unpriced(forecast)
        usd = unit_price.at(forecast.resolution) if forecast.resolution else unit_price.worst()
        forecast.cost_usd, forecast.cost_source = forecast.units * usd * factor + fees, "prices"
        return forecast
    price = prices.get(forecast.model)
    if price is None:
        return _unpriced(forecast)
    image_price = price.input if price.image is None else price.image
    text = forecast.prompt_tokens - forecast.image_tokens * forecast.turns
    tokens_usd = (
        text * price.input
        + forecast.image_tokens * forecast.turns * image_price
        + forecast.output_tokens * price.output
    ) / 1_000_000
    forecast.cost_usd, forecast.cost_source = tokens_usd * factor + fees, "prices"
    return forecast


#: Seconds of video assumed for an edit, whose length is its input video's (at most 15 s).
MAX_VIDEO_SECONDS = 15


def forecast_images(body: Mapping[str, Any], _count: TokenCount) -> Forecast:
    """An image generation or edit at its worst: ``n`` images (default 1) at the model's price."""
    n = body.get("n", 1)
    images = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    return Forecast(str(body.get("model") or ""), "images", units=images, unit="image")


def forecast_video(body: Mapping[str, Any], _count: TokenCount) -> Forecast:
    """A video generation, edit or extension at its worst: its ``duration`` (an edit: the
    longest input video) in seconds at the model's price for its ``resolution``."""
    seconds = body.get("duration", body.get("seconds"))
    if isinstance(seconds, str) and seconds.isdigit():
        seconds = int(seconds)
    if not (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and 0 < seconds <= MAX_VIDEO_SECONDS
    ):
        seconds = MAX_VIDEO_SECONDS
    resolution = body.get("resolution") if isinstance(body.get("resolution"), str) else None
    return Forecast(
        str(body.get("model") or ""), "videos", units=float(seconds), unit="second", resolution=resolution
    )


def combined(forecasts: Sequence[Forecast], kind: str) -> Forecast:
    """Several calls' worst cases as one (a batch's): tokens and costs added up; unpriced or
    unbounded when any one is."""
    models = {f.model for f in forecasts}
    costs = [f.cost_usd for f in forecasts]
    unbounded = next((f.unbounded for f in forecasts if not f.bounded), None)
    return Forecast(
        model=models.pop() if len(models) == 1 else "several models",
        kind=kind,
        input_tokens=sum(f.prompt_tokens for f in forecasts),
        input_source=forecasts[0].input_source if forecasts else "estimate",
        output_tokens=sum(f.output_tokens for f in forecasts),
        bounded=all(f.bounded for f in forecasts),
        unbounded=unbounded,
        cost_usd=None if None in costs else sum(c for c in costs if c is not None),
        cost_source="unpriced" if None in costs else "prices",
    )


def _unpriced(forecast: Forecast) -> Forecast:
    forecast.cost_usd, forecast.cost_source = None, "unpriced"
    return forecast


def utf8_bound(texts: Sequence[str], _model: str = "") -> list[int]:
    """A bound on each text's tokens that needs no request: its UTF-8 bytes."""
    return [len(text.encode("utf-8")) for text in texts]


#: Output items whose text a response's output tokens count; the others (server-side tool
#: calls) are kept in the stored conversation as they are, and a continuing call reads them.
COUNTED_ITEMS = frozenset({"message", "reasoning"})


def conversation_tokens(response: Any) -> int | None:
    """A bound on the tokens a stored response's conversation holds for a call that continues
    it: its input and output tokens, and the UTF-8 bytes of the output items its output tokens
    do not count (None: it is no response with usage)."""
    usage = getattr(response, "usage", None)
    inputs, outputs = getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)
    if inputs is None or outputs is None:  # not a response's usage (a chat completion's)
        return None
    items = [i for i in getattr(response, "output", None) or () if getattr(i, "type", None) not in COUNTED_ITEMS]
    return int(inputs) + int(outputs) + sum(len(pydantic_core.to_json(i)) for i in items)


def chars_estimate(texts: Sequence[str], _model: str = "") -> list[int]:
    """The usual estimate (4 characters a token): for calls nothing is enforced on."""
    return [math.ceil(len(text) / 4) for text in texts]


def format_forecast_line(forecast: Forecast) -> str:
    """The INFO line logged for a call's forecast before it is sent."""
    cost = "unpriced" if forecast.cost_source == "unpriced" else f"{forecast.cost_usd or 0.0:.6f}"
    tools = ",".join(f"{k}:{n}" for k, n in sorted(forecast.tool_calls.items())) or "none"
    units = f" units<={forecast.units:g} unit={forecast.unit}" if forecast.unit else ""
    bound = "" if forecast.bounded else f" unbounded={forecast.unbounded}"
    return (
        f"xAI forecast: model={forecast.model} input_tokens={forecast.input_tokens} "
        f"input_source={forecast.input_source} prompt_tokens<={forecast.prompt_tokens} "
        f"output_tokens<={forecast.output_tokens} tool_calls<={tools}{units} "
        f"worst_case_usd={cost}{bound}"
    )


__all__ = [
    "FORMAT_TOKENS_PER_MESSAGE",
    "IMAGE_TOKENS_BOUND",
    "MAX_VIDEO_SECONDS",
    "TOOL_RESULT_TOKENS",
    "TOOL_USAGE_KEYS",
    "UNBOUNDED_OUTPUT_TOKENS",
    "UNBOUNDED_TOOL_TURNS",
    "Forecast",
    "InputSource",
    "TokenCount",
    "chars_estimate",
    "forecast_images",
    "forecast_video",
    "format_forecast_line",
    "priced",
    "utf8_bound",
]
