"""Mutable, thread-safe state of the local xAI server: models, faults, chaos, journal.

This module never imports FastAPI/uvicorn, so tests can build faults cheaply.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xai.testing.billing_ledger import TickLedger
from airflow_provider_xai.testing.collections import CollectionStore
from airflow_provider_xai.testing.errors import error_body
from airflow_provider_xai.testing.files import MAX_FILE_BYTES, FileStore
from airflow_provider_xai.testing.models import MODELS, ModelSpec, resolve_model
from airflow_provider_xai.testing.rate_limit import (
    LimitKey,
    RateLimitRefusal,
    ServerRateLimiter,
    key_fingerprint,
)

DEFAULT_API_KEY = "xai-test-key-0123456789"
#: The Management API's own key (collections); the API key is refused on its routes.
DEFAULT_MANAGEMENT_KEY = "xai-management-test-key-9876543210"
#: ASGI scope key under which the gateway hands a route its consumed ``Fault``.
FAULT_SCOPE_KEY = "xai.fault"
#: ASGI scope key under which the gateway hands a rate-limited route its ``LimitKey``.
RATE_KEY_SCOPE_KEY = "xai.rate_key"
#: Journal entries kept by default; older ones are dropped first.
DEFAULT_JOURNAL_LIMIT = 10_000


@dataclass
class Fault:
    """One injected fault; consumed by the first matching request (FIFO)."""

    status: int = 200
    retry_after: float | None = None
    retry_after_ms: int | None = None
    code: str | None = None
    message: str | None = None
    delay: float = 0.0
    drop: bool = False
    truncate_stream: bool = False
    malformed_chunk: bool = False
    #: A stream fails midway: ``/v1/responses`` ends with ``response.failed``, chat with an error
    #: event (``code``, and ``message`` as its ``error``) after two content pieces.
    fail_stream: bool = False
    content: str | None = None
    body: str | None = None
    path: str | None = None
    headers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not 100 <= int(self.status) <= 599:
            raise ValueError(f"invalid status {self.status!r}")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build from JSON (unknown keys raise ``ValueError``)."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def matches(self, rel_path: str) -> bool:
        """``rel_path`` is relative to ``/v1``; match if equal, ending with, or under ``path``."""
        if self.path is None:
            return True
        p = self.path[3:] if self.path.startswith("/v1/") else self.path
        return rel_path == p or rel_path.endswith(p) or rel_path.startswith(p.rstrip("/") + "/")

    @property
    def is_error(self) -> bool:
        return self.status != 200

    def error_body(self, status: int | None = None) -> dict[str, Any]:
        """The xAI error body of this fault's ``status`` (or of ``status``: a failing chat
        stream's event is a 500's body)."""
        status = self.status if status is None else status
        code = self.code if self.code is not None else error_body(status).get("code")
        return error_body(status, self.message, code)

    def response_headers(self) -> dict[str, str]:
        out = dict(self.headers or {})
        if self.retry_after is not None:
            ra = self.retry_after
            out["retry-after"] = str(int(ra)) if float(ra).is_integer() else repr(float(ra))
        if self.retry_after_ms is not None:
            out["retry-after-ms"] = str(int(self.retry_after_ms))
        return out

    def describe(self) -> str:
        flags = [k for k in ("drop", "truncate_stream", "malformed_chunk", "fail_stream")
                 if getattr(self, k)]
        flags += [k for k in ("content", "body") if getattr(self, k) is not None]
        return ",".join([str(self.status), *flags])


@dataclass
class Chaos:
    """Random faults for chat completions; the n-th chat request gets the n-th seeded draw."""

    rate_429_retry_after: float = 0.0
    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    rate_truncate: float = 0.0
    retry_after: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        rates = [self.rate_429_retry_after, self.rate_429, self.rate_503, self.rate_drop,
                 self.rate_truncate]
        if any(r < 0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError("chaos rates must be >= 0 and sum to <= 1")

    def pick(self, r: float) -> tuple[str, Fault] | None:
        """Map a uniform draw ``r`` in [0, 1) to a fault (or None)."""
        ms = round(self.retry_after * 1000)
        table = [
            ("429_retry_after", self.rate_429_retry_after,
             Fault(429, retry_after=self.retry_after, retry_after_ms=ms)),
            ("429", self.rate_429, Fault(429)),
            ("503", self.rate_503, Fault(503)),
            ("drop", self.rate_drop, Fault(drop=True)),
            ("truncate", self.rate_truncate, Fault(truncate_stream=True)),
        ]
        edge = 0.0
        for name, rate, fault in table:
            edge += rate
            if r < edge:
                return name, fault
        return None


@dataclass
class JournalEntry:
    """One request seen by the server (secrets redacted)."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any
    status: int | None = None
    time: float = field(default_factory=time.monotonic)
    request_id: str = ""
    fault: str | None = None
    #: Set on rate-limited endpoints: the model, the key's fingerprint (never the key) and,
    #: when the request was refused with 429, which limit refused it.
    model: str | None = None
    key_fingerprint: str | None = None
    rate_limited: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Settable via ``configure`` / ``POST /_control/config``: name -> accepted types.
CONFIG_FIELDS: dict[str, tuple[type, ...]] = {
    "api_key": (str,),
    "latency": (int, float),
    "stream_interval": (int, float),
    "deferred_pending_polls": (int,),
    "api_key_blocked": (bool,),
    "api_key_disabled": (bool,),
    "team_blocked": (bool,),
    "omit_cost": (bool,),
    "prompt_cache": (bool,),
    "cache_servers": (int,),
    "batch_pending_polls": (int,),
    "batch_request_delay": (int, float),
    "batch_max_body_bytes": (int,),
    "batch_responses_shape": (str,),
    "batch_file_load_polls": (int,),
    "journal_limit": (int,),
    "responses_done_marker": (bool,),
    "tool_latency": (int, float),
    "responses_collections": (dict,),
    "responses_mcp_tools": (dict,),
    "rate_limit_rps": (int,),
    "rate_limit_tpm": (int,),
    "rate_limit_retry_after": (bool,),
    "management_key": (str,),
    "files_max_bytes": (int,),
    "documents_pending_polls": (int,),
    # images and video (testing/media.py)
    "media_pending_polls": (int,),
    "media_url_ttl": (int, float),
    "image_format": (str,),
    "video_bytes": (int,),
    "prepaid_credit_usd": (int, float),
    "spending_limit_usd": (int, float),
    "usage_limit_reached": (bool,),
}
#: Config fields the control endpoints never show.
SECRET_FIELDS = frozenset({"api_key", "management_key"})


class ServerState:
    """Everything the server reads or records; safe to use from any thread."""

    def __init__(self, api_key: str = DEFAULT_API_KEY, *,
                 clock: Callable[[], float] = time.monotonic, **config: Any) -> None:
        self._lock = threading.RLock()
        self.api_key = api_key
        self.latency: float = 0.0
        self.stream_interval: float = 0.0
        self.deferred_pending_polls: int = 2
        self.api_key_blocked = False
        self.api_key_disabled = False
        self.team_blocked = False
        self.omit_cost = False
        self.prompt_cache = True
        #: Servers behind the API, each with a prompt cache of its own, as at xAI: a request with
        #: a routing key (``x-grok-conv-id``, ``prompt_cache_key``) always lands on the same one,
        #: a request without lands on any (1: one server, every repeat hits).
        self.cache_servers = 1
        self.batch_pending_polls: int = 2  # batch polls before a request finishes (see batch.py)
        self.batch_request_delay: float = 0.0  # and seconds after it was added
        self.batch_max_body_bytes: int = 25_000_000  # add-requests body limit (413 above)
        self.batches: dict[str, Any] = {}  # batch id -> testing.batch.BatchRecord
        #: how Responses batch requests are answered: "chat" (xAI's chat-completion shape) or "responses"
        self.batch_responses_shape = "chat"
        self.batch_file_load_polls: int = 1  # polls before an input file's lines show as requests
        self.responses_done_marker = False  # end Responses streams with ``data: [DONE]``
        #: Seconds a Responses request with server-side tools takes (the tools "run"): a stream
        #: pauses after ``response.in_progress``; a stored response reads as in progress until
        #: then, and completes whether or not its client stayed connected.
        self.tool_latency: float = 0.0
        self.clock = clock
        #: file_search documents: collection id -> [{"file_id", "filename", "text"}]
        self.responses_collections: dict[str, list[dict[str, str]]] = {}
        #: mcp answers: "<server_label>.<tool>" -> output (a string, or JSON-serialised)
        self.responses_mcp_tools: dict[str, Any] = {}
        self._responses: dict[str, Any] = {}  # response id -> testing.responses.StoredResponse
        self.models: dict[str, ModelSpec] = dict(MODELS)
        #: xAI's per-key, per-model limits (0 = off) and whether a 429 says when to come back
        self.rate_limit_rps: int = 0
        self.rate_limit_tpm: int = 0
        self.rate_limit_retry_after = False
        self.rate_limiter = ServerRateLimiter(clock)
        #: files, collections and their documents (see ``files.py``, ``collections.py``)
        self.management_key = DEFAULT_MANAGEMENT_KEY
        self.files_max_bytes: int = MAX_FILE_BYTES  # uploads above it: 413
        self.documents_pending_polls: int = 2  # reads of a document before it is indexed
        self.files = FileStore()
        self.collections = CollectionStore()
        #: Images and video (see testing/media.py): polls a job stays pending, seconds an output
        #: URL lives, the format of URL images (``jpeg`` or ``png``), the least bytes of a video.
        self.media_pending_polls: int = 2
        self.media_url_ttl: float = 3600.0
        self.image_format = "jpeg"
        self.video_bytes: int = 0
        self.media_jobs: dict[str, Any] = {}  # request id -> testing.media.MediaJob
        self.media_files: dict[str, Any] = {}  # file name -> testing.media.MediaFile
        #: what the server billed (``billing.py``), the team's prepaid credit and spending limit,
        #: and whether the usage query says its answer was cut
        self.ledger = TickLedger()
        self.prepaid_credit_usd: float = 1000.0
        self.spending_limit_usd: float = 0.0
        self.usage_limit_reached = False
        self.chaos: Chaos | None = None
        self.chaos_counts: Counter[str] = Counter()
        self._chaos_rng = random.Random(0)
        self._faults: deque[Fault] = deque()
        self.journal_limit: int = DEFAULT_JOURNAL_LIMIT  # newest entries kept (at least 1)
        self._journal: deque[JournalEntry] = deque(maxlen=self.journal_limit)
        self._deferred: dict[str, list[Any]] = {}  # id -> [polls_left, completion]
        self._seen_prefixes: dict[int, set[str]] = {}  # server -> the prefixes it cached
        self._cache_rng = random.Random(11)
        self.configure(**config)
        self._initial = self.config()

    # -- configuration -------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Current values of the settable fields."""
        with self._lock:
            return {name: getattr(self, name) for name in CONFIG_FIELDS}

    def public_config(self) -> dict[str, Any]:
        """``config()`` without the secret fields (the API key)."""
        return {k: v for k, v in self.config().items() if k not in SECRET_FIELDS}

    def configure(self, **values: Any) -> None:
        """Set config fields (see ``CONFIG_FIELDS``); raises ``ValueError`` on bad input."""
        for name, value in values.items():
            types = CONFIG_FIELDS.get(name)
            if types is None:
                raise ValueError(f"unknown config field {name!r}")
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise ValueError(f"{name} must be of type {types[0].__name__}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if values.get("journal_limit") == 0:
            raise ValueError("journal_limit must be >= 1")
        if values.get("image_format", "jpeg") not in ("jpeg", "png"):
            raise ValueError("image_format must be 'jpeg' or 'png'")
        if values.get("batch_responses_shape", "chat") not in ("chat", "responses"):
            raise ValueError("batch_responses_shape must be 'chat' or 'responses'")
        if "responses_collections" in values:
            _check_collections(values["responses_collections"])
        if "responses_mcp_tools" in values:
            _check_mcp_tools(values["responses_mcp_tools"])
        with self._lock:
            for name, value in values.items():
                setattr(self, name, copy.deepcopy(value) if isinstance(value, dict) else value)
            if self._journal.maxlen != self.journal_limit:
                self._journal = deque(self._journal, maxlen=self.journal_limit)

    def set_chaos(self, chaos: Chaos | None) -> None:
        """Enable (or disable with None) chaos; restarts the seeded sequence."""
        with self._lock:
            self.chaos = chaos
            self.chaos_counts.clear()
            self._chaos_rng = random.Random(chaos.seed if chaos else 0)

    def reset(self) -> None:
        """Clear faults, journal, chaos, deferred results, batches, stored responses, prompt
        cache, rate-limit windows and counts; restore config."""
        with self._lock:
            self._faults.clear()
            self._journal.clear()
            self._deferred.clear()
            self._seen_prefixes.clear()
            self.batches.clear()
            self._responses.clear()
            self.files.clear()
            self.collections.clear()
            self.media_jobs.clear()
            self.media_files.clear()
            self.ledger.clear()
            self.models = dict(MODELS)
            self.rate_limiter.reset()
            self.set_chaos(None)
            self.configure(**self._initial)

    # -- faults --------------------------------------------------------------------
    def enqueue(self, fault: Fault, times: int = 1) -> None:
        """Queue ``fault`` ``times`` times."""
        with self._lock:
            self._faults.extend(copy.deepcopy(fault) for _ in range(times))

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def take_fault(self, rel_path: str, is_chat: bool) -> tuple[str, Fault] | None:
        """Pop the first queued fault matching ``rel_path``; else a chaos draw for chat."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(rel_path):
                    del self._faults[i]
                    return fault.describe(), fault
            if is_chat and self.chaos is not None:
                picked = self.chaos.pick(self._chaos_rng.random())
                if picked is not None:
                    self.chaos_counts[picked[0]] += 1
                    return f"chaos:{picked[0]}", picked[1]
        return None

    # -- rate limits -------------------------------------------------------------------
    def rate_limit_key(self, model: str) -> LimitKey:
        """The window a request for ``model`` (an alias counts as its model) falls in."""
        spec = resolve_model(self.models, model)
        return key_fingerprint(self.api_key), spec.id if spec is not None else model

    def admit(self, key: LimitKey) -> RateLimitRefusal | None:
        """Count a request against the configured limits; a ``RateLimitRefusal`` means answer 429."""
        return self.rate_limiter.admit(key, self.rate_limit_rps, self.rate_limit_tpm)

    def charge_tokens(self, key: LimitKey | None, usage: Mapping[str, Any] | None) -> None:
        """Charge an answer's billed ``total_tokens`` to its window (no-op without a key)."""
        if key is not None and usage:
            self.rate_limiter.charge(key, int(usage.get("total_tokens") or 0))

    @property
    def rate_limited(self) -> dict[str, int]:
        """Requests refused with 429 by the rate limits, by limit name."""
        return dict(self.rate_limiter.refused)

    # -- journal -------------------------------------------------------------------
    def record(self, entry: JournalEntry) -> None:
        with self._lock:
            self._journal.append(entry)

    @property
    def journal(self) -> list[JournalEntry]:
        """A copy of the journal: the newest ``journal_limit`` requests, oldest first."""
        with self._lock:
            return [copy.copy(e) for e in self._journal]

    def requests(
        self, path_suffix: str | None = None, method: str | None = None
    ) -> list[JournalEntry]:
        """Journal entries whose path ends with ``path_suffix`` (and method matches)."""
        return [
            e for e in self.journal
            if (path_suffix is None or e.path.endswith(path_suffix))
            and (method is None or e.method.upper() == method.upper())
        ]

    # -- deferred completions -------------------------------------------------------
    def store_deferred(self, completion: dict[str, Any]) -> str:
        request_id = str(uuid.uuid4())
        with self._lock:
            self._deferred[request_id] = [self.deferred_pending_polls, completion]
        return request_id

    def poll_deferred(self, request_id: str) -> tuple[int, dict[str, Any] | None]:
        """(202, None) while pending, (200, completion) once, then (404, None)."""
        with self._lock:
            item = self._deferred.get(request_id)
            if item is None:
                return 404, None
            if item[0] > 0:
                item[0] -= 1
                return 202, None
            del self._deferred[request_id]
            return 200, item[1]

    # -- stored responses (``/v1/responses``) -------------------------------------------
    def store_response(self, response_id: str, stored: Any) -> None:
        with self._lock:
            self._responses[response_id] = stored

    def get_response(self, response_id: str) -> Any:
        """The stored response (a ``testing.responses.StoredResponse``) or None."""
        with self._lock:
            return self._responses.get(response_id)

    def delete_response(self, response_id: str) -> bool:
        with self._lock:
            return self._responses.pop(response_id, None) is not None

    def file_search_collections(self) -> dict[str, list[dict[str, str]]]:
        """What the Responses ``file_search`` tool searches: the configured
        ``responses_collections`` and the indexed documents of real collections."""
        return {**self.collections.file_search_documents(), **self.responses_collections}

    # -- prompt cache ----------------------------------------------------------------
    def cached_prefix(self, keys: list[str], route: str | None = None) -> int:
        """Length of the longest leading run of ``keys`` the serving server saw before; then it
        remembers all. ``route`` (a routing key) picks the server; without one, any serves."""
        with self._lock:
            if not self.prompt_cache:
                return 0
            servers = max(self.cache_servers, 1)
            if route:
                server = int(hashlib.sha256(route.encode()).hexdigest(), 16) % servers
            else:
                server = self._cache_rng.randrange(servers)
            seen = self._seen_prefixes.setdefault(server, set())
            hit = 0
            for i, key in enumerate(keys):
                if key in seen:
                    hit = i + 1
            seen.update(keys)
            return hit


def _check_collections(value: dict[str, Any]) -> None:
    for cid, docs in value.items():
        if not isinstance(docs, list):
            raise ValueError(f"responses_collections[{cid!r}] must be a list of documents")
        for doc in docs:
            if not isinstance(doc, dict) or not all(
                isinstance(doc.get(k), str) for k in ("file_id", "filename", "text")
            ):
                raise ValueError(f"responses_collections[{cid!r}]: each document needs string "
                                 "file_id, filename and text")


def _check_mcp_tools(value: dict[str, Any]) -> None:
    for name in value:
        label, dot, tool = name.partition(".")
        if not (label and dot and tool):
            raise ValueError(f"responses_mcp_tools key {name!r} must be '<server_label>.<tool>'")
