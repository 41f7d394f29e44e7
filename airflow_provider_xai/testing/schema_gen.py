"""Deterministic JSON instances for the JSON Schema subset xAI structured outputs support.

Rules: ``const`` wins, then ``enum`` (the first value that occurs in the prompt text,
case-insensitively, else the first value); ``anyOf``/``oneOf`` take the first non-null
branch; ``allOf`` branches are merged; ``$ref`` resolves ``#/$defs/..``/``#/definitions/..``
(recursion is cut off at depth 12); type lists take the first non-``null`` type; objects
get every declared property; arrays get ``max(minItems, 1)`` items (capped by maxItems);
strings are a snippet of the prompt (or the property name) honouring min/maxLength and
common ``format`` values; numbers honour minimum/maximum/exclusive bounds.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

_MAX_DEPTH = 12
_FORMATS = {
    "date": "2025-01-01",
    "time": "12:00:00",
    "date-time": "2025-01-01T12:00:00Z",
    "email": "grok@example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
}


def generate(schema: Any, hint: str = "") -> Any:
    """Return a value that satisfies ``schema``; ``hint`` is the prompt text."""
    return _Gen(schema, hint).value(schema, None, 0)


class _Gen:
    def __init__(self, root: Any, hint: str) -> None:
        self.root = root
        self.hint = " ".join(hint.split())

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref supported: {ref}")
        node: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def merge(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        """Inline ``$ref`` and ``allOf`` into one dict."""
        out = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        parts = []
        if "$ref" in schema:
            parts.append(self.resolve(schema["$ref"]))
        parts.extend(schema.get("allOf", []))
        for part in parts:
            if not isinstance(part, dict):
                continue
            part = self.merge(part, depth)
            for key, val in part.items():
                if key == "properties":
                    out["properties"] = {**val, **out.get("properties", {})}
                elif key == "required":
                    out["required"] = list(dict.fromkeys([*out.get("required", []), *val]))
                else:
                    out.setdefault(key, val)
        return out

    def value(self, schema: Any, name: str | None, depth: int) -> Any:
        if schema is True or schema is None or schema == {}:
            return self.string({}, name)
        if schema is False:
            return None
        schema = self.merge(schema, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.enum(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = schema[key]
                chosen = next((o for o in options if not _is_null(o)), options[0])
                rest = {k: v for k, v in schema.items() if k != key}
                return self.value({**rest, **chosen} if isinstance(chosen, dict) else chosen,
                                  name, depth + 1)
        typ = schema.get("type")
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "null")
        if typ is None:
            typ = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if depth >= _MAX_DEPTH and typ in ("object", "array"):
            return None if _nullable(schema) else ({} if typ == "object" else [])
        if typ == "object":
            props = schema.get("properties", {})
            out = {k: self.value(v, k, depth + 1) for k, v in props.items()}
            for k in schema.get("required", []):
                out.setdefault(k, self.string({}, k))
            return out
        if typ == "array":
            count = max(int(schema.get("minItems", 0)), 1)
            if "maxItems" in schema:
                count = min(count, int(schema["maxItems"]))
            prefix = schema.get("prefixItems", [])
            items = schema.get("items", {})
            return [self.value(prefix[i] if i < len(prefix) else items, name, depth + 1)
                    for i in range(count)]
        if typ in ("integer", "number"):
            return self.number(schema, typ == "integer")
        if typ == "boolean":
            return True
        if typ == "null":
            return None
        return self.string(schema, name)

    def enum(self, values: list[Any]) -> Any:
        text = self.hint.lower()
        for v in values:
            if isinstance(v, str) and v and v.lower() in text:
                return v
        return values[0] if values else None

    def string(self, schema: dict[str, Any], name: str | None) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}:{self.hint}"))
        if fmt in _FORMATS:
            return _FORMATS[fmt]
        text = self.hint[:60].strip() or name or "grok"
        lo = int(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        if len(text) < lo:
            text = text + "x" * (lo - len(text))
        if hi is not None:
            text = text[: int(hi)]
        return text

    @staticmethod
    def number(schema: dict[str, Any], integer: bool) -> int | float:
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        step = 1 if integer else 0.5
        if isinstance(xlo, (int, float)) and not isinstance(xlo, bool):
            lo = xlo + step if lo is None else max(lo, xlo + step)
        if isinstance(xhi, (int, float)) and not isinstance(xhi, bool):
            hi = xhi - step if hi is None else min(hi, xhi - step)
        if lo is not None and hi is not None:
            val = (lo + hi) / 2
        elif lo is not None:
            val = lo
        elif hi is not None:
            val = min(hi, 1)
        else:
            val = 1 if integer else 1.5
        mult = schema.get("multipleOf")
        if mult:
            val = math.ceil(val / mult) * mult
        if integer:
            val = math.ceil(val) if lo is not None else math.floor(val)
            return int(val)
        return float(val)


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _nullable(schema: dict[str, Any]) -> bool:
    typ = schema.get("type")
    return isinstance(typ, list) and "null" in typ
