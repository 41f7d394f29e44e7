"""Structured output: turn a pydantic model, a JSON schema or ``"json_object"`` into the
``response_format`` xAI expects, and validate the answer against it.

A schema's ``$ref`` s resolve inside the schema only: they are checked when the schema is given,
and nothing is ever fetched (no remote schema, no network call from a worker).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from airflow_provider_xai.arguments import nesting_problem, value_nesting_problem
from airflow_provider_xai.exceptions import XAIStructuredOutputError, XAIValidationError

if TYPE_CHECKING:
    from referencing import Registry, Resource

EXCERPT_CHARS = 200
_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line excerpt of a model answer for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True)
class OutputSpec:
    """What the answer must look like, and how to check it."""

    response_format: dict[str, Any]
    model: type[BaseModel] | None = None
    schema: dict[str, Any] | None = None

    @classmethod
    def required(cls, value: Any, field: str = "output") -> OutputSpec:
        """The spec of ``value`` (an :class:`OutputSpec` or what :meth:`from_user` accepts),
        refusing "no structure", naming ``field``."""
        spec = value if isinstance(value, OutputSpec) else cls.from_user(value, field)
        if spec is None:
            raise XAIValidationError(field, "needs a pydantic model, a JSON schema or 'json_object'")
        return spec

    @classmethod
    def from_user(cls, value: Any, field: str = "response_format") -> OutputSpec | None:
        """Accept a pydantic model class, a JSON-schema dict, a full response_format dict,
        ``"json_object"`` or ``"text"``; raise :class:`XAIValidationError` naming ``field``."""
        if value is None or value == "text" or value == {"type": "text"}:
            return None
        if isinstance(value, type) and issubclass(value, BaseModel):
            schema = value.model_json_schema()
            return cls(_json_schema_format(value.__name__, schema), model=value)
        if value == "json_object" or value == {"type": "json_object"}:
            return cls({"type": "json_object"})
        if isinstance(value, dict):
            if value.get("type") == "json_schema":
                inner = value.get("json_schema")
                if not isinstance(inner, dict) or not isinstance(inner.get("schema"), dict):
                    raise XAIValidationError(field, "json_schema.schema must be a JSON-schema object")
                _check_schema(inner["schema"], f"{field}.json_schema.schema")
                return cls({"type": "json_schema", "json_schema": inner}, schema=inner["schema"])
            if "type" in value or "properties" in value or "$ref" in value or "anyOf" in value:
                _check_schema(value, field)
                name = str(value.get("title") or "output")
                return cls(_json_schema_format(name, value), schema=value)
        raise XAIValidationError(
            field,
            f"expected a pydantic model class, a JSON-schema dict or 'json_object', got {_describe(value)}",
        )

    def parse(self, text: str, completion: Any = None) -> Any:
        """Validate the answer text; return JSON-safe data (dict/list) or raise."""
        if too_deep := nesting_problem(text):  # refused before parsing: never a RecursionError
            raise self._error(" ".join(too_deep), text, completion)
        try:
            if self.model is not None:
                return self.model.model_validate_json(text).model_dump(mode="json")
            data = json.loads(text)
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise self._error(problem, text, completion) from None
        except ValueError as exc:
            raise self._error(f"not valid JSON ({exc})", text, completion) from None
        if self.schema is not None:
            import jsonschema  # shipped with Airflow; imported only when a schema is checked
            from referencing.exceptions import Unresolvable

            validator = jsonschema.Draft202012Validator(self.schema, registry=local_registry())
            try:
                errors = sorted(validator.iter_errors(data), key=str)
            except Unresolvable as exc:  # only a dynamic reference can get here (refs are checked)
                problem = f"the schema's reference cannot be resolved ({exc})"
                raise self._error(problem, text, completion, permanent=True) from None
            if errors:
                problem = "; ".join(
                    f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5]
                )
                raise self._error(problem, text, completion)
        elif not isinstance(data, dict):
            raise self._error(f"expected a JSON object, got {type(data).__name__}", text, completion)
        return data

    def _error(self, problem: str, text: str, completion: Any,
               permanent: bool = False) -> XAIStructuredOutputError:
        target = self.model.__name__ if self.model else "the JSON schema"
        return XAIStructuredOutputError(
            f"The model's answer does not match {target}: {problem}. Answer excerpt: {excerpt(text)!r}",
            completion=completion,
            permanent=permanent,
        )


def _json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": _NAME_RE.sub("_", name)[:64] or "output", "schema": schema, "strict": True},
    }


def _check_schema(schema: dict[str, Any], field: str) -> None:
    import jsonschema

    if too_deep := value_nesting_problem(schema, field):
        raise XAIValidationError(*too_deep)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise XAIValidationError(field, f"not a valid JSON schema: {exc.message}") from None
    _check_refs(schema, field)


def _refuse_to_fetch(uri: str) -> Resource:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class mypy cannot see


def local_registry() -> Registry:
    """A ``referencing`` registry that never fetches: only what is in the schema resolves."""
    from referencing import Registry

    return Registry(retrieve=_refuse_to_fetch)  # type: ignore[call-arg]  # attrs, as above


def _check_refs(schema: dict[str, Any], field: str) -> None:
    """Every ``$ref``/``$dynamicRef`` the validator could follow must resolve inside ``schema``."""
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    root = DRAFT202012.create_resource(schema)
    pending, seen = [(root, local_registry().resolver_with_root(root))], set()
    while pending:  # no recursion: schemas may be deep and refs may be cyclic
        resource, resolver = pending.pop()
        if id(resource.contents) in seen:
            continue
        seen.add(id(resource.contents))
        resolver = resolver.in_subresource(resource)
        pending.extend((sub, resolver) for sub in resource.subresources())
        for keyword in ("$ref", "$dynamicRef"):
            ref = resource.contents.get(keyword) if isinstance(resource.contents, dict) else None
            if not isinstance(ref, str):
                continue
            try:
                resolved = resolver.lookup(ref)
            except Unresolvable:
                raise XAIValidationError(
                    field,
                    f"{keyword} {ref!r} does not resolve inside the schema; remote schemas are never "
                    "fetched: put the definition under '$defs' and refer to it as '#/$defs/<name>'",
                ) from None
            pending.append((DRAFT202012.create_resource(resolved.contents), resolved.resolver))


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
