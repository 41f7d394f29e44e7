"""Python callables as function tools: the task runs them when the model asks (the loop is in
``operators/responses_api.py``).

A callable becomes a ``function`` tool named after it, described by its docstring's first
paragraph, its parameters described (and the model's arguments validated) by a pydantic model
built from its signature. A call whose arguments do not validate, or whose function raises, is
answered to the model as an error it can act on; it never fails the task.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.secrets import scrub

#: Longest answer of a function sent back to the model (characters).
MAX_OUTPUT_CHARS = 100_000


@dataclass(frozen=True)
class PythonTool:
    """One callable offered to the model as a function tool."""

    fn: Callable[..., Any]

    @property
    def name(self) -> str:
        return str(getattr(self.fn, "__name__", "function"))

    @property
    def description(self) -> str | None:
        doc = inspect.getdoc(self.fn)
        return doc.split("\n\n", 1)[0].replace("\n", " ") if doc else None

    @cached_property
    def arguments(self) -> Any:
        """The pydantic model of the callable's keyword arguments."""
        from pydantic import create_model

        fields: dict[str, Any] = {}
        for name, parameter in inspect.signature(self.fn).parameters.items():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
                raise XAIValidationError("tools", f"function {self.name!r}: parameter {name!r} must be a keyword")
            annotation = Any if parameter.annotation is parameter.empty else parameter.annotation
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[name] = (annotation, default)
        return create_model(f"{self.name}_arguments", **fields)

    def spec(self) -> dict[str, Any]:
        """The function tool sent to xAI."""
        from airflow_provider_xai.tools import function

        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return function(self.name, schema, description=self.description)

    def call(self, arguments: dict[str, Any]) -> str:
        """Run the function with the model's arguments; its result (JSON unless text), or the
        error the model is told about."""
        from pydantic import ValidationError

        try:
            kwargs = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            return _error(f"invalid arguments: {exc.errors(include_url=False)}")
        try:
            result = self.fn(**{name: getattr(kwargs, name) for name in type(kwargs).model_fields})
        except Exception as exc:  # the model hears of it and may try otherwise; the task goes on
            return _error(f"{type(exc).__name__}: {exc}")
        text = result if isinstance(result, str) else json.dumps(result, default=str, ensure_ascii=False)
        return scrub(text[:MAX_OUTPUT_CHARS])


def _error(message: str) -> str:
    return json.dumps({"error": scrub(message)[:MAX_OUTPUT_CHARS]}, ensure_ascii=False)


def python_tools(tools: Sequence[Any] | None) -> dict[str, PythonTool]:
    """The callables among ``tools``, by function name (two with one name are refused)."""
    found: dict[str, PythonTool] = {}
    for tool in tools or ():
        if callable(tool) and not isinstance(tool, type):
            python = PythonTool(tool)
            if python.name in found:
                raise XAIValidationError("tools", f"two functions are named {python.name!r}")
            found[python.name] = python
    return found


def as_tool_specs(tools: Sequence[Any] | None) -> list[Any] | None:
    """``tools`` with each callable replaced by its function tool spec."""
    if tools is None or isinstance(tools, str):
        return tools  # type: ignore[return-value]  # a template, checked once rendered
    return [PythonTool(t).spec() if callable(t) and not isinstance(t, type) else t for t in tools]


__all__ = ["MAX_OUTPUT_CHARS", "PythonTool", "as_tool_specs", "python_tools"]
