"""xAI-style error bodies (``{"code": ..., "error": ...}``); no web-framework imports."""

from __future__ import annotations

from typing import Any

#: gRPC-status-like ``code`` strings xAI puts in error bodies, by HTTP status.
#: ``None`` means the body carries no ``code`` (xAI's 410 for Live Search does that).
ERROR_CODES: dict[int, str | None] = {
    400: "Client specified an invalid argument",
    401: "Unauthenticated",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    410: None,
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Client specified an invalid argument",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Deadline exceeded",
    529: "Overloaded",
}

#: Default ``error`` messages for injected faults, by HTTP status.
DEFAULT_MESSAGES: dict[int, str] = {
    400: "Bad request.",
    401: "Missing or invalid Authorization header.",
    403: "The API key is not allowed to perform this operation.",
    404: "The requested entity was not found.",
    408: "Request timed out.",
    409: "Conflict.",
    410: "Live search is deprecated. Please switch to the Agent Tools API: "
    "https://docs.x.ai/docs/guides/tools/overview",
    429: "Rate limit exceeded. Please slow down and retry later.",
    500: "Internal server error.",
    502: "Bad gateway.",
    503: "Service unavailable. Please retry later.",
    504: "Deadline exceeded.",
    529: "The service is overloaded. Please retry later.",
}

_UNSET: Any = object()


def error_body(
    status: int, message: str | None = None, code: str | None = _UNSET
) -> dict[str, Any]:
    """Build an xAI error body for ``status`` (defaults from the tables above)."""
    if code is _UNSET:
        code = ERROR_CODES.get(status, "Unknown error")
    body: dict[str, Any] = {}
    if code is not None:
        body["code"] = code
    body["error"] = message if message is not None else DEFAULT_MESSAGES.get(status, "Error.")
    return body


class ServedError(Exception):
    """An error the fake server answers with an xAI-shaped JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = _UNSET,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return error_body(self.status, self.message, self.code)


def mask_key(key: str) -> str:
    """Mask an API key like xAI does: first 2 and last 2 characters only (``xa***yz``)."""
    if len(key) < 6:
        return "***"
    return f"{key[:2]}***{key[-2:]}"


def redact_key(key: str) -> str:
    """The ``redacted_api_key`` form of ``GET /v1/api-key`` (``xai-...b14o``)."""
    return f"xai-...{key[-4:]}" if len(key) >= 8 else "xai-..."


def invalid_type(field: str, got: Any, expected: str) -> ServedError:
    """A 422 in the style of xAI's JSON deserializer."""
    kind = type(got).__name__
    kind = {"str": "string", "int": "integer", "float": "floating point", "bool": "boolean",
            "list": "sequence", "dict": "map", "NoneType": "null"}.get(kind, kind)
    return ServedError(
        422,
        f"Failed to deserialize the JSON body into the target type: {field}: "
        f"invalid type: {kind}, expected {expected}",
    )


def missing_field(field: str) -> ServedError:
    """A 422 for a missing required field."""
    return ServedError(
        422, f"Failed to deserialize the JSON body into the target type: missing field `{field}`"
    )
