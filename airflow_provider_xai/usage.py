"""Usage accounting: one :class:`UsageRecord` per billed response, its cost, the log line,
the XCom keys, Airflow metrics, and the ledger that survives task retries.

Cost comes from xAI first (``cost_in_usd_ticks``, 1 USD = 1e10 ticks), then from the price
table below (overridable per connection) plus the server-side tool fees as an ``estimate``, else
it is reported as ``unknown``. Chat Completions and Responses usage both make a record
(:func:`build_record` reads either shape).
Adding records up across a DAG run (totals, budgets, the table) lives in
:mod:`airflow_provider_xai.usage_summary`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import msgspec

from airflow_provider_xai.pricing import DEFAULT_PRICES, TIER_PRICE_FACTORS, Price
from airflow_provider_xai.tool_prices import tool_fees

if TYPE_CHECKING:
    from airflow_provider_xai.schemas import ResponseUsage, Usage

TICKS_PER_USD = 10_000_000_000
XCOM_USAGE_KEY = "xai_usage"
XCOM_LEDGER_KEY = "xai_usage_ledger"
XCOM_COMPLETION_ID_KEY = "xai_completion_id"
STATE_LEDGER_KEY = "xai_usage_ledger"
METRIC_PREFIX = "xai"
CostSource = Literal["xai", "estimate", "unknown"]
log = logging.getLogger(__name__)

#: The numbers a stored record may hold (checked only when a record is read back, by
#: :meth:`UsageRecord.from_stored` and the usage page): counts >= 0, a cost from 0 to a
#: trillion USD, a time from 1970 to the year 9999. A stored value outside them is skipped.
MAX_RECORD_USD = 1e12
MAX_TIMESTAMP = 253402300799.0
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
USD = Annotated[float, msgspec.Meta(ge=0, le=MAX_RECORD_USD)]
#: Units billed beyond tokens (images, seconds, characters): >= 0 and at most a trillion.
Units = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
Epoch = Annotated[float, msgspec.Meta(ge=0, le=MAX_TIMESTAMP)]
#: Seconds a call waited (for rate-limit capacity): >= 0 and at most a year.
Seconds = Annotated[float, msgspec.Meta(ge=0, le=366 * 86400)]
T = TypeVar("T")


def stored_as(data: Any, kind: type[T]) -> T | None:
    """A stored usage record (a mapping) as ``kind`` (:class:`UsageRecord`, or a struct of some
    of its fields), every field's type and bounds checked (nulls count as absent, unknown fields
    are ignored); None when ``data`` is no usage record, for the caller to skip and count."""
    if not isinstance(data, Mapping):
        return None
    try:
        return msgspec.convert({k: v for k, v in data.items() if v is not None}, kind)
    except (msgspec.ValidationError, TypeError):
        return None


@dataclass(frozen=True)
class Count:
    """One count of a :class:`UsageRecord`: its field, its usage-table column, its metric."""

    field: str
    column: str
    metric: str


#: The counts of a usage record, in order: the one list that the log line, the Airflow
#: metrics, folding (:func:`combine`), the run totals and the usage table are built from.
COUNTS = (
    Count("prompt_tokens", "prompt", "tokens.prompt"),
    Count("completion_tokens", "completion", "tokens.completion"),
    Count("reasoning_tokens", "reasoning", "tokens.reasoning"),
    Count("cached_tokens", "cached", "tokens.cached"),
    Count("image_tokens", "image", "tokens.image"),
    Count("total_tokens", "total", "tokens.total"),
    Count("num_sources_used", "sources", "sources_used"),
    Count("num_server_side_tools_used", "tools", "server_side_tools_used"),
)
COUNT_FIELDS = tuple(count.field for count in COUNTS)
TOKEN_FIELDS = tuple(name for name in COUNT_FIELDS if name.endswith("_tokens"))


@dataclass
class UsageRecord:
    """Token usage and cost of one billed response, stamped with where in Airflow it ran.

    ``total_tokens`` is xAI's figure, prompt + completion + reasoning (xAI's ``completion_tokens``
    excludes reasoning tokens); it is computed so only when xAI sent none.
    ``num_server_side_tools_used`` counts server-side tool calls (web or X search, code
    execution...), ``server_side_tool_usage`` the same by kind.
    """

    model: str
    prompt_tokens: NonNegInt = 0
    completion_tokens: NonNegInt = 0
    reasoning_tokens: NonNegInt = 0
    cached_tokens: NonNegInt = 0
    image_tokens: NonNegInt = 0
    total_tokens: NonNegInt = 0
    cost_usd: USD | None = None
    cost_source: CostSource = "unknown"
    completion_id: str | None = None
    request_id: str | None = None
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int = -1
    try_number: int | None = None
    timestamp: Epoch = field(default_factory=time.time)
    kind: str = "chat"
    requests: NonNegInt = 1
    # Added later: defaults keep records written before them readable.
    num_sources_used: NonNegInt = 0
    num_server_side_tools_used: NonNegInt = 0
    server_side_tool_usage: dict[str, NonNegInt] = field(default_factory=dict)
    #: What a call billed that is not tokens: images made, seconds of video, characters spoken,
    #: seconds of audio transcribed (``unit`` says which; None for token-billed calls).
    units: Units = 0.0
    unit: str | None = None
    #: The service tier xAI served the answer in, when it said (``priority`` costs 2x).
    service_tier: str | None = None
    #: Waiting for the shared rate limit's capacity: seconds in a worker (sleeping until the
    #: call's slots, and after 429s), seconds deferred (in the triggerer, holding no worker),
    #: and the attempts xAI refused with 429.
    waited_s: Seconds = 0.0
    deferred_s: Seconds = 0.0
    rate_limited: NonNegInt = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for XCom."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_stored(cls, data: Any) -> UsageRecord | None:
        """A record read back from XCom or the task state store, checked (see
        :func:`stored_as`), or None when ``data`` is no usage record."""
        return stored_as(data, cls)

    @property
    def key(self) -> tuple[Any, ...]:
        """Identity used to de-duplicate records gathered from several places."""
        return (self.dag_id, self.task_id, self.run_id, self.map_index, self.completion_id, self.timestamp)


def _token_counts(usage: Usage | ResponseUsage) -> tuple[int, int, int, int, int, int]:
    """(prompt, completion, reasoning, cached, image, total) in the record's terms.

    Chat Completions: ``completion_tokens`` excludes reasoning, ``total_tokens`` includes it.
    Responses: reasoning sits inside ``output_tokens``, so completion = output - reasoning, and
    prompt + completion + reasoning = input + output = xAI's total. A Responses usage whose total
    is input + output + reasoning (or whose reasoning exceeds its output) has reasoning beside
    the output instead, and is read so. Totals are xAI's as sent, computed only when absent.
    """
    from airflow_provider_xai.schemas.response_items import ResponseUsage  # loaded: usage may be one

    sent = "total_tokens" in usage.model_fields_set
    if isinstance(usage, ResponseUsage):
        prompt, output, reasoning = usage.input_tokens, usage.output_tokens, usage.reasoning_tokens
        beside = reasoning > output or (sent and reasoning > 0 and usage.total_tokens == prompt + output + reasoning)
        completion = output if beside else output - reasoning
    else:
        prompt, completion, reasoning = usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens
    total = usage.total_tokens if sent else prompt + completion + reasoning
    return prompt, completion, reasoning, usage.cached_tokens, usage.image_tokens, total


def billed_tokens(answer: Any) -> int | None:
    """The tokens xAI billed for ``answer`` (a chat completion or a response), its usage
    record's ``total_tokens`` (xAI's figure, counted as the record counts it only when absent),
    without making the record: what the rate limiter settles a reservation to. None when the
    answer carries no usage."""
    from airflow_provider_xai.schemas.chat import Usage
    from airflow_provider_xai.schemas.response_items import ResponseUsage

    usage = getattr(answer, "usage", None)
    if not isinstance(usage, Usage | ResponseUsage):
        return None
    return usage.total_tokens if "total_tokens" in usage.model_fields_set else _token_counts(usage)[5]


def served_tier(answer: Any) -> str | None:
    """The service tier an answer says it was served in (``service_tier``), if any."""
    extra = getattr(answer, "model_extra", None)
    if isinstance(extra, dict) and "service_tier" not in getattr(type(answer), "model_fields", ()):
        tier = extra.get("service_tier")  # a tolerant answer model's extra field (no failed lookup)
    else:
        tier = getattr(answer, "service_tier", None)
    return tier if isinstance(tier, str) and tier else None


def build_record(
    usage: Usage | ResponseUsage | None,
    model: str,
    *,
    completion_id: str | None = None,
    request_id: str | None = None,
    prices: Mapping[str, Price] | None = None,
    kind: str | None = None,
    discount: float = 1.0,
    tool_prices: Mapping[str, float] | None = None,
    service_tier: str | None = None,
) -> UsageRecord:
    """Make a record from an API ``usage`` object, Chat Completions (:class:`Usage`) or
    Responses (:class:`ResponseUsage`; ``completion_id`` is then the response id), costing it.

    Cost: xAI's ``cost_in_usd_ticks`` when sent; else an estimate from ``prices`` (default
    :data:`DEFAULT_PRICES`) times ``discount`` (batch), plus the server-side tool fees from
    ``tool_prices`` (default :data:`DEFAULT_TOOL_PRICES`). ``kind`` defaults to ``"chat"`` for
    Chat Completions usage and ``"responses"`` for Responses usage.
    """
    responses = usage is not None and "input_tokens" in type(usage).model_fields
    kind = kind or ("responses" if responses else "chat")
    record = UsageRecord(
        model=model, completion_id=completion_id, request_id=request_id, kind=kind, service_tier=service_tier
    )
    if usage is None:
        return record
    (
        record.prompt_tokens,
        record.completion_tokens,
        record.reasoning_tokens,
        record.cached_tokens,
        record.image_tokens,
        record.total_tokens,  # xAI's own figure, never recomputed
    ) = _token_counts(usage)
    record.num_sources_used = usage.num_sources_used
    record.num_server_side_tools_used = usage.server_side_tools_used
    record.server_side_tool_usage = usage.server_side_tool_usage
    if usage.cost_in_usd_ticks is not None:
        record.cost_usd = usage.cost_in_usd_ticks / TICKS_PER_USD
        record.cost_source = "xai"
    elif (price := (prices if prices is not None else DEFAULT_PRICES).get(model)) is not None:
        discount *= TIER_PRICE_FACTORS.get(service_tier or "", 1.0)
        record.cost_usd = discount * price.cost(
            prompt=record.prompt_tokens,
            cached=record.cached_tokens,
            image=record.image_tokens,
            output=record.completion_tokens + record.reasoning_tokens,
        ) + tool_fees(record.server_side_tool_usage, tool_prices)
        record.cost_source = "estimate"
        if price.cached_input is None and record.cached_tokens:
            _warn_no_cached_price(model)
    return record


@functools.cache
def _warn_no_cached_price(model: str) -> None:
    """Say once per process that a model's cached tokens were costed at its input price."""
    log.warning(
        "xAI price of %s has no cached_input: its cached tokens are estimated at the input price "
        "(an upper bound). Give cached_input in the connection's prices extra to estimate them exactly.",
        model,
    )


def format_usage_line(record: UsageRecord) -> str:
    """The stable, greppable INFO line logged for every billed response."""
    cost = "unknown" if record.cost_usd is None else f"{record.cost_usd:.6f}"
    tokens = " ".join(f"{name}={getattr(record, name)}" for name in TOKEN_FIELDS)
    others = " ".join(f"{name}={getattr(record, name)}" for name in COUNT_FIELDS if name not in TOKEN_FIELDS)
    by_tool = ",".join(f"{name}:{n}" for name, n in sorted(record.server_side_tool_usage.items())) or "none"
    units = f" units={record.units:g} unit={record.unit}" if record.unit else ""
    return (
        f"xAI usage: model={record.model} {tokens} cost_usd={cost} cost_source={record.cost_source} "
        f"{others} server_side_tool_usage={by_tool} cache_hit_share={cache_hit_share(record):.2f}{units}"
        f"{waits_of(record)}"
    )


def waits_of(record: UsageRecord) -> str:
    """The usage line's ending for a call that waited for capacity or met 429s ("" otherwise,
    so the line of a call that did neither is as it always was)."""
    if not (record.waited_s or record.deferred_s or record.rate_limited):
        return ""
    return f" waited_s={record.waited_s:.3f} deferred_s={record.deferred_s:.3f} rate_limited={record.rate_limited}"


def cache_hit_share(record: UsageRecord) -> float:
    """The share of the prompt xAI served from its prompt cache (0 without a prompt)."""
    return min(record.cached_tokens / record.prompt_tokens, 1.0) if record.prompt_tokens > 0 else 0.0


def airflow_stats() -> Any:
    """Airflow's ``Stats`` (StatsD/OpenTelemetry), or None where Airflow has none."""
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # Airflow < 3.3 keeps Stats elsewhere
        try:
            from airflow.stats import Stats  # type: ignore[no-redef]
        except ImportError:
            return None
    return Stats


def emit_metrics(record: UsageRecord) -> None:
    """Request, count and cost counters, tagged by model, dag and task."""
    if (backend := airflow_stats()) is None:
        return
    tags = {"model": record.model, "dag_id": record.dag_id or "", "task_id": record.task_id or ""}
    backend.incr(f"{METRIC_PREFIX}.requests", record.requests, tags=tags)
    for count in COUNTS:
        backend.incr(f"{METRIC_PREFIX}.{count.metric}", getattr(record, count.field), tags=tags)
    for tool, calls in record.server_side_tool_usage.items():
        backend.incr(f"{METRIC_PREFIX}.server_side_tool_usage.{tool}", calls, tags=tags)
    if record.unit:
        backend.incr(f"{METRIC_PREFIX}.units.{record.unit}", round(record.units), tags=tags)
    if record.cost_usd is not None:
        backend.incr(f"{METRIC_PREFIX}.cost_micro_usd", round(record.cost_usd * 1_000_000), tags=tags)
    for name, value in wait_counts(record):
        if value:
            backend.incr(f"{METRIC_PREFIX}.rate_limit.{name}", value, tags=tags)


def wait_counts(record: UsageRecord) -> tuple[tuple[str, int], ...]:
    """The waiting counters of a record: milliseconds in a worker, milliseconds deferred, 429s."""
    return (
        ("waited_ms", round(record.waited_s * 1000)),
        ("deferred_ms", round(record.deferred_s * 1000)),
        ("refused", record.rate_limited),
    )


def stamp(record: UsageRecord, context: Mapping[str, Any]) -> UsageRecord:
    """Fill in dag/task/run/map index/try number from an Airflow task context."""
    ti = context["ti"]
    record.dag_id = ti.dag_id
    record.task_id = ti.task_id
    record.run_id = ti.run_id
    record.map_index = ti.map_index if ti.map_index is not None else -1
    record.try_number = ti.try_number
    return record


def add_tool_usage(into: dict[str, int], more: Mapping[str, int]) -> None:
    """Add server-side tool calls by kind (``{"web_search_calls": 2}``) into ``into``."""
    for tool, calls in more.items():
        into[tool] = into.get(tool, 0) + calls


def combine(records: Iterable[UsageRecord], group_id: str) -> list[UsageRecord]:
    """Fold many billed responses into one record per (model, cost source), ``requests`` = N.

    Keeps a batch of thousands of results out of XCom and the task state store while every
    total stays exact (costs are summed as whole ticks). ``completion_id`` becomes
    ``"{group_id}:{model}:{cost_source}"`` so a re-run can tell the group was recorded.
    """
    groups: dict[tuple[str, str], tuple[UsageRecord, list[int | None]]] = {}
    for record in records:
        key = (record.model, record.cost_source)
        if key not in groups:
            folded = UsageRecord(
                model=record.model,
                cost_source=record.cost_source,
                kind=record.kind,
                requests=0,
                completion_id=f"{group_id}:{record.model}:{record.cost_source}",
            )
            groups[key] = (folded, [0])
        folded, ticks = groups[key]
        folded.requests += record.requests
        for name in COUNT_FIELDS:
            setattr(folded, name, getattr(folded, name) + getattr(record, name))
        folded.units += record.units
        folded.unit = folded.unit or record.unit
        add_tool_usage(folded.server_side_tool_usage, record.server_side_tool_usage)
        if record.cost_usd is None or ticks[0] is None:
            ticks[0] = None
        else:
            ticks[0] += round(record.cost_usd * TICKS_PER_USD)
    for folded, ticks in groups.values():
        folded.cost_usd = None if ticks[0] is None else ticks[0] / TICKS_PER_USD
    return [folded for folded, _ in groups.values()]


class UsageLedger:
    """Usage of one task instance across its attempts.

    Airflow deletes every XCom of a task instance when a new attempt starts (a per-try XCom key
    would go too), so the records are also kept in the task state store (Airflow 3.3+; keyed by
    dag/run/task/map index, not by try, so it survives retries) and re-published in XCom
    ``xai_usage_ledger`` when each attempt starts. Checked under ``dag.test()`` with a retry.
    """

    def __init__(
        self,
        context: Mapping[str, Any],
        log: logging.Logger | Any,
        on_record: Callable[[list[UsageRecord]], None] | None = None,
    ) -> None:
        from airflow_provider_xai.task_state import StoredValue

        self.context = context
        self.log = log
        #: Told of every record recorded (spend control's daily tallies); never fails a record.
        self.on_record = on_record
        self.state = StoredValue(context, STATE_LEDGER_KEY, log, "xAI usage ledger")
        #: Stored items that were no usage record (left out, and dropped at the next publish).
        self.skipped = 0
        self.records: list[dict[str, Any]] = self._load()
        self._recorded: dict[int, UsageRecord] = {}  # records of this try (kept: ids stay theirs)
        if self.records:
            self._publish()

    def _load(self) -> list[dict[str, Any]]:
        stored = self.state.read()
        if stored is None:
            return []
        items = stored if isinstance(stored, list) else [stored]
        records = [item for item in items if UsageRecord.from_stored(item) is not None]
        self.skipped = len(items) - len(records)
        if self.skipped:
            self.state.skipped(self.skipped, "not usage records")
        return records

    def _publish(self) -> None:
        self.context["ti"].xcom_push(key=XCOM_LEDGER_KEY, value=self.records)
        self.state.write(self.records)

    def record(self, record: UsageRecord) -> UsageRecord:
        """Log, publish and count one billed response (call it before anything can fail); a
        record recorded already (the same object) is not counted again."""
        if self._recorded.get(id(record)) is record:
            return record
        self._recorded[id(record)] = record
        stamp(record, self.context)
        self.log.info(format_usage_line(record))
        data = record.to_dict()
        self.records.append(data)
        self.context["ti"].xcom_push(key=XCOM_USAGE_KEY, value=data)
        self._publish()
        emit_metrics(record)
        self._tell([record])
        return record

    def record_many(self, records: Iterable[UsageRecord]) -> list[UsageRecord]:
        """Stamp and count many billed responses (e.g. a batch's results) with one ledger
        publish: no per-record log line or ``xai_usage`` XCom (the caller logs a summary)."""
        stamped = [stamp(record, self.context) for record in records]
        self.records.extend(record.to_dict() for record in stamped)
        self._publish()
        for record in stamped:
            emit_metrics(record)
        self._tell(stamped)
        return stamped

    def _tell(self, records: list[UsageRecord]) -> None:
        if self.on_record is not None and records:
            try:
                self.on_record(records)
            except Exception:  # a record is never lost to whoever listens
                self.log.warning("xAI usage: a listener failed on %d record(s)", len(records), exc_info=True)
