"""Wire models of xAI's Batch API (``/v1/batches...``): tolerant of fields xAI adds later.

A batch has no status field: it is done when ``num_pending == 0 and num_requests > 0``, or
when it was cancelled or has expired (see :attr:`Batch.done`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_provider_xai.exceptions import XAIResponseError
from airflow_provider_xai.schemas.chat import ChatCompletion

_FRACTION = re.compile(r"(\.\d{6})\d+")
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class BatchState(_Model):
    """Request counters of a batch."""

    num_requests: int = 0
    num_pending: int = 0
    num_success: int = 0
    num_error: int = 0
    num_cancelled: int = 0


def parse_time(value: str | None) -> float | None:
    """Epoch seconds from an RFC 3339 time (``Z`` or offset, any fraction); None if unreadable."""
    if not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


class Batch(_Model):
    """A batch as xAI describes it (``POST/GET /v1/batches...``)."""

    batch_id: str = Field(min_length=1)
    name: str = ""
    create_time: str | None = None
    expire_time: str | None = None
    create_api_key_id: str | None = None
    cancel_time: str | None = None
    cancel_by_xai_message: str | None = None
    state: BatchState = Field(default_factory=BatchState)

    @property
    def cancelled(self) -> bool:
        return self.cancel_time is not None or self.cancel_by_xai_message is not None

    def expired(self, now: float | None = None) -> bool:
        expires = parse_time(self.expire_time)
        return expires is not None and expires <= (time.time() if now is None else now)

    @property
    def ended(self) -> bool:
        """Cancelled (by you or by xAI) or expired: it will never make more progress."""
        return self.cancelled or self.expired()

    @property
    def done(self) -> bool:
        """No request left to wait for (xAI has no status field; this is the documented rule)."""
        s = self.state
        return (s.num_pending == 0 and s.num_requests > 0) or self.ended

    @property
    def outcome(self) -> str:
        """``completed``, ``cancelled``, ``expired`` or ``running``."""
        if self.cancelled:
            return "cancelled"
        if self.expired():
            return "expired"
        return "completed" if self.done else "running"

    def progress(self) -> str:
        s = self.state
        finished = s.num_success + s.num_error + s.num_cancelled
        return (
            f"{finished}/{s.num_requests} finished ({s.num_success} succeeded, {s.num_error} failed, "
            f"{s.num_cancelled} cancelled, {s.num_pending} pending)"
        )


class BatchList(_Model):
    batches: list[Batch]
    pagination_token: str | None = None


class BatchRequestMetadata(_Model):
    """State of one request in a batch (``pending``, ``succeeded``, ``failed``, ``cancelled``)."""

    batch_request_id: str
    endpoint: str | None = None
    model: str | None = None
    state: str = "unknown"
    create_time: str | None = None
    finish_time: str | None = None


class BatchRequestList(_Model):
    batch_request_metadata: list[BatchRequestMetadata]
    pagination_token: str | None = None


class BatchResult(_Model):
    """One finished request: an answer (``batch_result.response.<kind>``) or an error message.

    The answer's kind is the key it comes under: ``chat_get_completion`` (also for many
    Responses requests: xAI answers them in chat-completion shape), ``responses``,
    ``image_generation``...; :meth:`parsed` reads it as the model of that kind.
    """

    batch_request_id: str
    batch_result: dict[str, Any] | None = None
    error_message: str | None = None

    def _response(self) -> dict[str, Any]:
        response = (self.batch_result or {}).get("response")
        return response if isinstance(response, dict) else {}

    @property
    def response_kind(self) -> str | None:
        """The key the answer comes under (``chat_get_completion``, ``responses``...), or None."""
        kinds = [key for key, value in self._response().items() if value is not None]
        return kinds[0] if len(kinds) == 1 else None

    def parsed(self, model: type[M]) -> M:
        """The answer read as ``model`` (raises :class:`XAIResponseError` if it is malformed)."""
        body = self._response().get(self.response_kind or "")
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise XAIResponseError(
                f"Malformed {self.response_kind} answer for batch request {self.batch_request_id}: "
                f"{exc.errors()[0]['msg']}"
            ) from None

    @property
    def completion(self) -> ChatCompletion | None:
        """The chat completion, or None for a failed request or another kind (raises if it is
        malformed)."""
        return self.parsed(ChatCompletion) if self.response_kind == "chat_get_completion" else None

    @property
    def error(self) -> str | None:
        """xAI's error message for a failed request; None when it succeeded.

        An error object whose every value is empty (``{"code": 0, "message": ""}``: gRPC's OK
        status, sent beside a response) is no error.
        """
        error = (self.batch_result or {}).get("error")
        if isinstance(error, dict):
            error = error.get("message") or (json.dumps(error) if any(error.values()) else None)
        raw = error or self.error_message
        if raw:
            return str(raw)
        if self.response_kind is None:
            return "xAI returned neither a response nor an error for this request"
        return None


class BatchResultList(_Model):
    results: list[BatchResult]
    pagination_token: str | None = None


def batch_request(custom_id: str, body: Mapping[str, Any], kind: str = "chat_get_completion") -> dict[str, Any]:
    """One item of ``POST /v1/batches/{id}/requests``: a request ``body`` of ``kind``
    (``chat_get_completion``, ``responses``...) called ``custom_id``."""
    return {"batch_request_id": custom_id, "batch_request": {kind: dict(body)}}
