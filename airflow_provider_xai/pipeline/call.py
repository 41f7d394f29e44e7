"""What one API call is, described without I/O: its endpoint's declaration, its body, and how
its answer is read (a whole body, or an event stream folded by an assembler).

:class:`Endpoint` is the one place the provider states what it knows about an endpoint: its
path, its models, how a billed answer becomes a usage record, its span, its token estimate, its
cost forecast and its rate-limit bucket. The pipeline and its layers (tracing, the shared rate
limit, spend control) read the
declaration of the call they carry; none of them knows an endpoint by its path. The
declarations themselves live in :mod:`airflow_provider_xai.endpoints`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from airflow_provider_xai.connection.settings import ClientSettings
    from airflow_provider_xai.exceptions import XAIAPIError, XAIError
    from airflow_provider_xai.forecast import Forecast, TokenCount
    from airflow_provider_xai.pipeline.replies import Reply
    from airflow_provider_xai.pricing import Price
    from airflow_provider_xai.usage import UsageRecord

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
#: How a billed answer becomes a usage record (the price table for estimates when xAI sends no
#: cost); None when the answer carries no usage.
RecordOf = Callable[[Any, Mapping[str, "Price"]], "UsageRecord | None"]
#: The most a request body may bill, given a token counter (see :mod:`airflow_provider_xai.forecast`).
ForecastOf = Callable[[Mapping[str, Any], "TokenCount"], "Forecast"]


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the xAI API, declared once.

    :param name: the API's name for it (``chat.completions``, ``responses``...): the usage
        record's ``kind`` and the span's ``xai.api``.
    :param method: the HTTP method.
    :param path: the path under the base URL, ``{name}`` marking an id (``responses/{id}``).
    :param request: the request model (None: no body, or a body the caller builds).
    :param response: the model its answer is read as.
    :param record: how a billed answer becomes a :class:`UsageRecord` (None: never billed).
    :param operation: the GenAI operation of its span (``chat``); None: no span.
    :param estimate: the tokens a request body may spend, before it is sent (the limiter's
        charge, corrected to the billed amount after).
    :param forecast: the most a request body may bill, before it is sent (the spend layer's
        cost cap and budget reservation, settled to the billed amount after); None: not billed
        when sent, or not forecast.
    :param bucket: the rate-limit bucket it charges: ``"model"`` for the requests and tokens of
        the model named in the body; None: none.
    :param polled: a poll that is usually still pending: its span is made only when an answer
        (or a failure) arrives.
    :param host: where it is served: ``"api"`` (the connection's base URL, with the API key),
        ``"management"`` (xAI's Management API, with the management key) or ``"media"`` (an
        absolute URL xAI handed out, such as a generated image's: sent without credentials).
    """

    name: str
    method: str
    path: str
    request: type | None = None
    response: type | None = None
    record: RecordOf | None = None
    operation: str | None = None
    estimate: Callable[[Mapping[str, Any]], int] | None = None
    bucket: str | None = None
    forecast: ForecastOf | None = None
    polled: bool = False
    host: Literal["api", "management", "media"] = "api"

    def matches(self, method: str, path: str) -> bool:
        """Whether ``method path`` (ids filled in, query left out) is this endpoint."""
        if method != self.method:
            return False
        want, got = self.path.split("/"), path.split("?", 1)[0].split("/")
        return len(want) == len(got) and all(
            w == g or (w.startswith("{") and "}" in w and g.endswith(w[w.index("}") + 1 :]) and g)
            for w, g in zip(want, got, strict=True)
        )


class Assembler(Protocol[T_co]):
    """Folds the events of one streamed answer into the answer (see ``streams/``)."""

    def feed(self, data: str) -> Any:
        """Take one event's ``data``; return the typed event, or None for one to skip."""

    def check_complete(self) -> None:
        """Raise the typed error of a stream that ended before its answer did."""

    def result(self) -> T_co:
        """The whole answer, as a non-streamed call would have returned it."""

    def snapshot(self) -> Any:
        """What the stream said so far (carrying the billed usage, if any), or None."""


class Sink(Protocol[T_co]):
    """Takes a body as it is read, chunk by chunk, with bounded memory (a download written to
    object storage); a new sink serves each attempt."""

    def write(self, chunk: bytes) -> None:
        """Take the next chunk."""

    def result(self) -> T_co:
        """What the whole body became (a path, a digest...)."""

    def discard(self) -> None:
        """The attempt failed: drop what was written."""


#: Called with each streamed event and the assembler (for logging text and tool steps).
OnEvent = Callable[[Any, Any], None]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: its endpoint, what to send, and how to read the answer.

    Exactly one of ``read`` (a whole answer), ``stream`` (an event stream) and ``sink`` (a body
    written away as it is read) says how to read.

    :param endpoint: the declaration of the endpoint called.
    :param read: reads a successful whole answer.
    :param stream: makes the assembler of a streamed answer, given the body sent.
    :param sink: makes the sink a body is written to, for each attempt.
    :param path: the path with its ids filled in (default: the endpoint's path).
    :param url: the absolute URL of a ``"media"`` endpoint's call.
    :param max_bytes: the most this answer may hold (default: the connection's
        ``max_response_bytes``), for a download larger than any API answer.
    :param body: builds (and validates) the JSON body once the settings are known, before
        anything is sent; the body is built once per call.
    :param on_event: called with each streamed event and the assembler.
    :param restartable: a stream that breaks may be requested again whole, within the retry
        budget (``on_event`` then sees the answer again from its beginning).
    :param on_error: may turn the final API error (after retries) into a more precise one.
    :param headers: request headers of this call (e.g. chat's cache routing ``x-grok-conv-id``).
    """

    endpoint: Endpoint
    read: Callable[[Reply], T] | None = None
    stream: Callable[[Any], Assembler[T]] | None = None
    sink: Callable[[], Sink[T]] | None = None
    path: str = ""
    url: str = ""
    max_bytes: int | None = None
    body: Callable[[ClientSettings], Any] | None = None
    on_event: OnEvent | None = None
    restartable: bool = False
    on_error: Callable[[XAIAPIError], XAIError] | None = None
    headers: Mapping[str, str] | None = None

    @property
    def target(self) -> str:
        """The path sent (an absolute URL for a ``"media"`` endpoint)."""
        return self.url or self.path or self.endpoint.path


__all__ = ["Assembler", "Call", "Endpoint", "ForecastOf", "OnEvent", "RecordOf", "Sink"]
