"""Spend control as a layer of the pipeline: a forecast before every call that has one, the
task's cost cap and the budgets enforced before anything is sent, settled to the billed amount
after the answer.

Before the first attempt of a call whose endpoint declares a ``forecast``:

1. the forecast: the declaration's quantities, the prompt counted (xAI's tokenizer, cached per
   distinct text, when a cap or a budget applies; else a local estimate), a stored conversation
   it continues re-read, priced with the current prices (:mod:`.prices`); logged;
2. the cap: a task's ``max_cost_usd`` refuses a call whose worst case would take the task past
   it (:class:`~airflow_provider_xai.exceptions.XAICostCapError`); a server-side tool loop is
   first held to the ``max_turns`` that fits;
3. the budgets that apply (team, the task's DAG, its tags): one store operation reserves the
   worst case against all of them, or none (:class:`~airflow_provider_xai.exceptions.XAIOverBudgetError`).

After a billed answer the reservation is settled to what xAI billed (one store operation); a
call that failed with an error answer (never billed) gives it back; one that failed otherwise
(a dropped connection: xAI may have billed it) keeps it.

A submission answered later (a deferred completion, a Responses call collected in the
triggerer, an image or video job) is answered without a bill: the operator hands its id to
:meth:`SpendLayer.hold`, which keeps the reservation in the shared store under that id, and the
task that records the answer's usage, in whichever process, settles it (:meth:`SpendLayer.settle_held`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_xai.exceptions import XAIAPIError, XAICostCapError, XAIError, XAIOverBudgetError
from airflow_provider_xai.forecast import (
    Forecast,
    InputSource,
    chars_estimate,
    conversation_tokens,
    format_forecast_line,
    priced,
    utf8_bound,
)
from airflow_provider_xai.pipeline.layers import Exchange, Layer, Scope
from airflow_provider_xai.spend.budgets import (
    billed_amount,
    expiry_of,
    key_of,
    reserved_amount,
    states_of,
)
from airflow_provider_xai.spend.prices import PriceBook, PriceTable
from airflow_provider_xai.spend.store import Entry, SpendStore

if TYPE_CHECKING:
    from airflow_provider_xai.connection.settings import ClientSettings
    from airflow_provider_xai.connection.spend import Budget
    from airflow_provider_xai.pipeline.call import ForecastOf

R = TypeVar("R")
log = logging.getLogger(__name__)
#: Distinct texts whose token counts a process keeps.
COUNT_CACHE_SIZE = 4096
#: The shared store's key prefix of a reservation held for an answer collected later.
HELD_PREFIX = "xai-spend-held:"
#: One budget's part of a reservation: the budget's unit (``usd`` or ``tokens``) and its entry.
Held = tuple[str, Entry]


@dataclass
class SpendTask:
    """The task a hook's calls belong to: where budgets apply, its cost cap, what it spent, the
    worst cases of its calls under way (so calls made at once are capped together), the calls
    it approved over budget (by fingerprint) and each call's forecast beside its cost."""

    dag_id: str | None = None
    task_id: str | None = None
    tags: tuple[str, ...] = ()
    max_cost_usd: float | None = None
    spent_usd: float = 0.0
    under_way_usd: float = 0.0
    approved: set[str] = field(default_factory=set)
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take(self, worst_usd: float) -> bool:
        """Count a call's worst case as under way, if it fits the cap with what was spent and
        what is under way (one check for calls made at once, from several threads)."""
        with self.lock:
            if self.max_cost_usd is not None and self.spent_usd + self.under_way_usd + worst_usd > self.max_cost_usd:
                return False
            self.under_way_usd += worst_usd
            return True

    def done(self, worst_usd: float, billed_usd: float | None) -> None:
        """A call under way ended: its worst case no longer counts; what it billed does."""
        with self.lock:
            self.under_way_usd = max(self.under_way_usd - worst_usd, 0.0)
            self.spent_usd += billed_usd or 0.0


def fingerprint(body: Any) -> str:
    """A call's fingerprint: a digest of the body it sends (what an approval names)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class TokenCounter:
    """Counts texts with xAI's tokenizer (one call per distinct text and model, cached for the
    process); a text it cannot count is bounded by its UTF-8 bytes instead (logged)."""

    def __init__(self, tokenize: Callable[[str, str], int]) -> None:
        self.tokenize = tokenize
        self._cache: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0

    def count(self, texts: Sequence[str], model: str, sources: set[str]) -> list[int]:
        out = []
        for text in texts:
            key = (model, hashlib.sha256(text.encode("utf-8")).hexdigest())
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
            if cached is not None:
                sources.add("cache")
                out.append(cached)
                continue
            try:
                self.calls += 1
                counted = self.tokenize(text, model)
            except XAIError as exc:
                log.warning("xAI tokenize failed (%s): the prompt is bounded by its bytes instead", exc)
                sources.add("bound")
                out.append(utf8_bound([text])[0])
                continue
            sources.add("tokenize")
            with self._lock:
                self._cache[key] = counted
                while len(self._cache) > COUNT_CACHE_SIZE:
                    self._cache.popitem(last=False)
            out.append(counted)
        return out


class SpendLayer(Layer):
    """Spend control around every call that declares a forecast (see the module docstring).

    :param settings: the connection's settings (read once, blocking).
    :param get_connection: blocking connection lookup (``rate_limit_redis_conn_id``).
    :param tokenize: counts one text's tokens for a model (xAI's ``/v1/tokenize-text``).
    :param fetch_prices: xAI's model lists: ``(language models, image models)``.
    :param history: the tokens a stored response's conversation holds (None: unknown).
    """

    def __init__(
        self,
        settings: Callable[[], ClientSettings],
        get_connection: Callable[[str], Any],
        tokenize: Callable[[str, str], int],
        fetch_prices: Callable[[], Any],
        history: Callable[[str], int | None],
    ) -> None:
        self.settings = settings
        self._get_connection = get_connection
        self.counter = TokenCounter(tokenize)
        self.fetch_prices = fetch_prices
        self.history = history
        self.task: SpendTask | None = None
        self._store: SpendStore | None = None
        self._book: PriceBook | None = None
        self._history: dict[str, int] = {}
        #: The reservation of the last call answered without a bill (see :meth:`hold`).
        self.unbilled: list[Held] = []

    # --- what the hook and operators use ------------------------------------------------------------
    def store(self, settings: ClientSettings) -> SpendStore:
        """The shared store: the rate limiter's (its settings), else the embedded file."""
        if self._store is None:
            from airflow_provider_xai.connection.rate_limits import RateLimitConfig, default_path
            from airflow_provider_xai.ratelimit.store import open_states

            config = settings.rate_limit or RateLimitConfig(path=default_path())
            redis = self._get_connection(config.redis_conn_id) if config.redis_conn_id else None
            self._store = SpendStore(open_states(config.store, config.path, config.redis_conn_id, redis))
        return self._store

    def book(self, settings: ClientSettings) -> PriceBook:
        if self._book is None:
            self._book = PriceBook(self.fetch_prices, settings.prices, settings.spend.prices_ttl)
        return self._book

    def prices(self, settings: ClientSettings, *, refresh: bool = True) -> PriceTable:
        """The current prices (``refresh``: from the shared store, asking xAI when stale; else
        what this process already has, or the built-in table)."""
        book = self.book(settings)
        if not refresh:
            return book.table(None, "")
        from airflow_provider_xai.ratelimit.limiter import fingerprint as key_fingerprint

        return book.table(self.store(settings), f"xai-prices:{key_fingerprint(settings.api_key)}")

    def budgets(self, settings: ClientSettings) -> list[Budget]:
        """The budgets that apply to this hook's calls now (the team's, its task's DAG and tags)."""
        task = self.task or SpendTask()
        return [b for b in settings.spend.budgets if b.applies(task.dag_id, task.tags)]

    def controls(self, budgets: Sequence[Budget]) -> bool:
        """Whether this hook's calls are under spend control: a budget applies (``budgets``, as
        :meth:`budgets` gives them), or the task has a cost cap."""
        return bool(budgets) or (self.task is not None and self.task.max_cost_usd is not None)

    def budget_states(self, settings: ClientSettings, budgets: Sequence[Budget] | None = None) -> list[Any]:
        """The budgets' states in their current periods (one store operation)."""
        budgets = list(self.budgets(settings) if budgets is None else budgets)
        if not budgets:
            return []
        now = time.time()
        values = self.store(settings).read([key_of(b, now) for b in budgets])
        return states_of(budgets, values, now)

    def forecast(
        self, declared: ForecastOf, body: Mapping[str, Any], settings: ClientSettings, controlled: bool = True
    ) -> tuple[Forecast, PriceTable]:
        """``body``'s forecast by its declaration, priced (``controlled``: the prompt counted by
        xAI's tokenizer and live prices; else an estimate and the prices at hand), and the
        price table it was priced with."""
        mode = settings.spend.forecast_tokens
        sources: set[str] = set()
        if mode == "tokenize" or (mode == "auto" and controlled):

            def count(texts: Sequence[str], model: str) -> list[int]:
                return self.counter.count(texts, model, sources)
        else:

            def count(texts: Sequence[str], model: str) -> list[int]:
                sources.add("bound" if mode == "bound" else "estimate")
                return (utf8_bound if mode == "bound" else chars_estimate)(texts, model)

        forecast = declared(body, count)
        order: tuple[InputSource, ...] = ("estimate", "bound", "tokenize", "cache")
        forecast.input_source = next((s for s in order if s in sources), "cache")
        if forecast.history_of:  # read back from xAI when the forecast decides something, or is asked exact
            of, exact = forecast.history_of, controlled or mode == "tokenize"
            forecast.history_tokens = self._history_tokens(of) if exact else self._history.get(of, 0)
        table = self.prices(settings, refresh=controlled)
        return priced(forecast, table.tokens, None, table.units), table

    def _history_tokens(self, response_id: str) -> int:
        known = self._history.get(response_id)
        if known is not None:
            return known
        try:
            found = self.history(response_id)
        except XAIError as exc:
            log.warning("xAI forecast: the stored response %s could not be read (%s)", response_id, exc)
            found = None
        return found or 0

    def reserve(
        self, settings: ClientSettings, budgets: list[Budget], forecast: Forecast, call: str
    ) -> tuple[list[Held], list[dict[str, Any]]]:
        """Reserve ``forecast``'s worst case against every budget, or none (one store operation);
        ``call``: its fingerprint (what an approval names). Returns the entries and the budgets'
        states; raises :class:`XAIOverBudgetError` when it does not fit (unless approved)."""
        now = time.time()
        entries: list[Held] = []
        for budget in budgets:
            amount = reserved_amount(budget, forecast)
            if amount is None:
                why = f"model {forecast.model!r} has no known price, so a USD budget cannot admit it"
                raise _over(budgets, [0] * len(budgets), forecast, now, why, call)
            entries.append((budget.unit, Entry(key_of(budget, now), amount, budget.limit, expiry_of(budget, now))))
        approved = self.task is not None and call in self.task.approved
        verdict = self.store(settings).reserve([e for _, e in entries], force=approved)
        if not verdict.granted:
            raise _over(budgets, list(verdict.values), forecast, now, "its forecast does not fit", call)
        states = states_of(budgets, verdict.values, now)
        if approved and self.task is not None:
            self.task.approved.discard(call)
            log.warning("xAI: an approved call goes past its budget: %s", "; ".join(s.describe() for s in states))
        return entries, [s.to_dict() for s in states]

    def tally(self, records: list[Any]) -> None:
        """Add recorded usage to the shared store's daily tallies (what a reconciliation reads),
        when the connection has a management key (one store operation)."""
        settings = self.settings()
        if not settings.management_key:
            return
        from airflow_provider_xai.spend.tally import entries_of

        self.store(settings).settle(entries_of(records))

    def hold(self, handle: str) -> str:
        """Keep the reservation of the call just answered without a bill (a submission whose
        answer is collected later, by ``handle``) in the shared store, until the answer's usage
        is recorded and :meth:`settle_held` settles it; returns ``handle``. Never raises."""
        unbilled, self.unbilled = self.unbilled, []
        self._keep(handle, unbilled)
        return handle

    def start_within_budgets(
        self, forecast: Forecast, call: str, start: Callable[[], R], handle: Callable[[R], str]
    ) -> R:
        """Start what ``forecast`` (made outside one call: a batch's) pays for, within the
        budgets that apply: its worst case reserved first (``call``: its fingerprint; refused
        with :class:`XAIOverBudgetError` when it does not fit), then held under
        ``handle(started)`` until :meth:`settle_held`; given back when xAI refuses the start."""
        settings = self.settings()
        budgets = self.budgets(settings)
        if not budgets:
            return start()
        held, _ = self.reserve(settings, budgets, forecast, call)
        try:
            started = start()
        except XAIAPIError as exc:
            if exc.status is not None and exc.billed is None:  # an error answer: nothing billed
                self.store(settings).settle(given_back(held))
            raise
        self._keep(handle(started), held)
        return started

    def _keep(self, handle: str, held: list[Held]) -> None:
        """Keep ``held`` in the shared store under ``handle`` until its budgets' periods are
        forgotten (logged, never raised, when the store fails: it then stays as reserved)."""
        if not held:
            return
        kept = {"written_at": time.time(), "entries": [[unit, e.key, e.amount, e.expires] for unit, e in held]}
        until = max(e.expires for _, e in held)
        try:
            self.store(self.settings()).cache(HELD_PREFIX + handle, json.dumps(kept), until - time.time())
        except Exception as exc:
            log.warning("xAI spend control could not keep the reservation of %s: %s", handle, exc)

    def settle_held(self, handle: str, record: Any) -> None:
        """Settle the reservation :meth:`hold` kept for ``handle`` to ``record``'s bill (once,
        by whichever process records it). Never raises: a billed answer must not be lost."""
        settings = self.settings()
        if not settings.spend.budgets:
            return
        try:
            store = self.store(settings)
            kept = json.loads(store.take(HELD_PREFIX + handle) or "{}")
            entries = kept.get("entries", [])
            held = [(unit, Entry(key, amount, expires=expires)) for unit, key, amount, expires in entries]
            store.settle(billed_corrections(held, record))
        except Exception as exc:  # logged: the reservation then stays as reserved
            log.warning("xAI spend control could not settle the reservation of %s: %s", handle, exc)

    def remember(self, answer: Any) -> None:
        """The size of an answer's stored conversation, when it is a response a later call may
        continue (see :func:`~airflow_provider_xai.forecast.conversation_tokens`)."""
        response_id = getattr(answer, "id", None)
        tokens = conversation_tokens(answer) if isinstance(response_id, str) else None
        if response_id and tokens is not None:
            self._history[response_id] = tokens

    def scope(self, exchange: Exchange) -> Scope | None:
        if exchange.call.endpoint.forecast is None or not isinstance(exchange.body, dict):
            return None  # the forecast names the model (text-to-speech bodies name none)
        if self.task is None and not self.budgets(exchange.settings):
            return None  # no task to report the forecast to, no cap and no budget: nothing to do
        return _SpentCall(self, exchange)


class _SpentCall(Scope):
    """One call's forecast, cap check, reservation and settlement."""

    def __init__(self, layer: SpendLayer, exchange: Exchange) -> None:
        self.layer, self.exchange = layer, exchange
        self.prepared = False
        self.entries: list[Held] = []
        self.forecast: Forecast | None = None
        self.call: dict[str, Any] | None = None
        self.settled = False
        self.under_way = 0.0  # the worst case counted against the task's cap while the call runs

    # --- before the first attempt -------------------------------------------------------------
    def _prepare(self) -> None:
        if self.prepared:
            return
        self.prepared = True
        layer, ex = self.layer, self.exchange
        settings, task = ex.settings, layer.task
        budgets = layer.budgets(settings)
        controlled = layer.controls(budgets)
        forecast = self._forecast(controlled)
        self.call = {"forecast": forecast.to_dict(), "actual_usd": None, "actual_tokens": None}
        if task is not None:
            task.calls.append(self.call)
        try:
            if task is not None and task.max_cost_usd is not None:
                forecast = self._capped(forecast, task)
                self.call["forecast"] = forecast.to_dict()
                if not task.take(forecast.cost_usd or 0.0):  # calls made at once took the room
                    raise self._cap_error(forecast, task, "the calls under way leave no room for its worst case")
                self.under_way = forecast.cost_usd or 0.0
            # A line per call under a cap or budget; the rest only at DEBUG (a fan-out of
            # thousands of calls would log thousands of lines, and formatting each one costs)
            if controlled or log.isEnabledFor(logging.DEBUG):
                log.log(logging.INFO if controlled else logging.DEBUG, "%s", format_forecast_line(forecast))
            self.forecast = forecast
            if budgets:
                self._reserve(budgets, forecast)
        except XAIError as exc:
            self.call["refused"] = exc.message
            self._done(None)
            raise

    def _forecast(self, controlled: bool, body: Mapping[str, Any] | None = None) -> Forecast:
        ex = self.exchange
        declared = ex.call.endpoint.forecast
        assert declared is not None
        forecast, table = self.layer.forecast(declared, ex.body if body is None else body, ex.settings, controlled)
        ex.prices = {**ex.prices, **table.tokens}  # the usage record's estimate, if xAI sends no cost
        return forecast

    def _capped(self, forecast: Forecast, task: SpendTask) -> Forecast:
        """The forecast within the task's cap: a tool loop held to the turns that fit; else
        refused, naming what to set."""
        cap = task.max_cost_usd or 0.0
        left = cap - task.spent_usd - task.under_way_usd
        body = self.exchange.body
        if forecast.cost_usd is None:
            raise self._cap_error(
                forecast, task, f"model {forecast.model!r} has no known price, so no worst case"
            )
        if not forecast.bounded:
            field_name = "max_tokens" if forecast.unbounded != "max_turns" else "max_turns"
            raise self._cap_error(
                forecast, task, f"set {field_name}: without it the call's worst case has no bound"
            )
        if forecast.cost_usd > left and forecast.turns > 1 and isinstance(body.get("max_turns"), int):
            for turns in range(forecast.turns - 1, 0, -1):
                fitted = self._forecast(True, {**body, "max_turns": turns})
                if fitted.cost_usd is not None and fitted.cost_usd <= left:
                    log.warning("xAI: max_turns lowered from %d to %d to stay within max_cost_usd %.6f",
                                body["max_turns"], turns, cap)  # fmt: skip
                    body["max_turns"] = turns
                    return fitted
        if forecast.cost_usd > left:
            raise self._cap_error(
                forecast, task,
                f"its worst case ${forecast.cost_usd:.6f} would take the task to "
                f"${task.spent_usd + forecast.cost_usd:.6f}",
            )  # fmt: skip
        return forecast

    @staticmethod
    def _cap_error(forecast: Forecast, task: SpendTask, why: str) -> XAICostCapError:
        error = XAICostCapError(
            f"xAI call refused before sending: max_cost_usd is ${task.max_cost_usd:.6f} "
            f"(${task.spent_usd:.6f} spent{_under_way(task)}) and {why}"
        )
        error.forecast, error.spent_usd = forecast.to_dict(), task.spent_usd
        return error

    def _reserve(self, budgets: list[Budget], forecast: Forecast) -> None:
        settings, call = self.exchange.settings, fingerprint(self.exchange.body)
        self.entries, states = self.layer.reserve(settings, budgets, forecast, call)
        if self.call is not None:
            self.call["budgets"] = states

    # --- the scope's points ---------------------------------------------------------------------------
    def attempt(self, send: Callable[[], R]) -> R:
        self._prepare()
        return send()

    async def aattempt(self, send: Callable[[], Any]) -> Any:
        if not self.prepared:
            await asyncio.to_thread(self._prepare)
        return await send()

    def answered(self) -> None:
        record = self.exchange.record
        if self.settled:
            return
        self.settled = True
        self._done(record.cost_usd if record is not None else None)
        if record is None:  # a submission answered later, or an answer that names no usage
            self.layer.unbilled = self.entries
            return
        if self.call is not None:
            self.call.update(actual_usd=record.cost_usd, actual_tokens=record.total_tokens,
                             actual_prompt_tokens=record.prompt_tokens, cost_source=record.cost_source)  # fmt: skip
        self.layer.remember(self.exchange.answer)
        self._settle(billed_corrections(self.entries, record))

    async def aanswered(self) -> None:
        await asyncio.to_thread(self.answered)

    def finish(self, exc: BaseException | None) -> None:
        if self.settled:
            return
        if exc is None:  # a stream its caller closed once it named the answer's id
            self.answered()
            return
        self.settled = True
        self._done(None)
        if self.entries and isinstance(exc, XAIAPIError) and exc.status is not None and exc.billed is None:
            self._settle(given_back(self.entries))

    def _done(self, billed_usd: float | None) -> None:
        """The call no longer runs: its worst case leaves the task's cap; its bill joins it."""
        task = self.layer.task
        if task is not None:
            task.done(self.under_way, billed_usd)
        self.under_way = 0.0

    def _settle(self, corrections: list[Entry]) -> None:
        """Never raises: a billed answer must not be lost to a store that is down."""
        if not corrections:
            return
        try:
            self.layer.store(self.exchange.settings).settle(corrections)
        except Exception as exc:  # logged: the reservation then stays as it was
            log.warning("xAI spend control could not settle a budget reservation: %s", exc)


def billed_corrections(held: Sequence[Held], record: Any) -> list[Entry]:
    """What corrects each part of a reservation to what ``record`` billed (none where the
    bill's cost is unknown, or equal to what was reserved)."""
    return [
        entry._replace(amount=billed - entry.amount)
        for unit, entry in held
        if (billed := billed_amount(unit, record)) is not None and billed != entry.amount
    ]


def given_back(held: Sequence[Held]) -> list[Entry]:
    """What gives a reservation back whole (a call xAI refused: nothing billed)."""
    return [entry._replace(amount=-entry.amount) for _, entry in held]


def _under_way(task: SpendTask) -> str:
    return f", ${task.under_way_usd:.6f} under way" if task.under_way_usd > 0 else ""


def _over(
    budgets: list[Budget], values: list[int], forecast: Forecast, now: float, why: str, call: str
) -> XAIOverBudgetError:
    """The refusal of a call (fingerprint ``call``) whose forecast does not fit, naming the
    budgets it would pass."""
    states = states_of(budgets, values, now)
    over = [
        s
        for s, b in zip(states, budgets, strict=True)
        if forecast.cost_usd is None or (reserved_amount(b, forecast) or 0) + s.committed > b.limit
    ] or states
    error = XAIOverBudgetError(
        f"xAI call refused before sending: {why} "
        f"(worst case {'unpriced' if forecast.cost_usd is None else f'${forecast.cost_usd:.6f}'}, "
        f"{forecast.total_tokens} tokens): " + "; ".join(s.describe() for s in over)
    )
    error.budgets = [s.to_dict() for s in over]
    error.forecast = forecast.to_dict()
    error.fingerprint = call
    error.resets_at = max(s.ends for s in over).isoformat()
    return error


__all__ = ["COUNT_CACHE_SIZE", "SpendLayer", "SpendTask", "TokenCounter", "fingerprint"]
