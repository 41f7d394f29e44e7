"""The deterministic "world" behind the local server's server-side tools.

* ``WEB``: a handful of web pages ``web_search`` ranks; ``X_POSTS``: X posts ``x_search`` ranks.
* ``rank(query, docs, text_of, k)``: at most ``k`` documents sharing words (3+ letters, minus
  a few stop words) with the query, most shared first, ties in corpus order; when none shares
  a word, the first document (so a search always finds something).
* ``run_code(prompt)``: what ``code_interpreter`` "runs": ``print(<expr>)`` for the first
  arithmetic expression in the prompt (evaluated safely; ``1/0`` prints a ZeroDivisionError
  line), else a word count of the prompt.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass(frozen=True)
class WebPage:
    url: str
    title: str
    text: str

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[-1].split("/", 1)[0].lower()


@dataclass(frozen=True)
class XPost:
    handle: str
    date: str  # YYYY-MM-DD
    post_id: str
    text: str

    @property
    def url(self) -> str:
        return f"https://x.com/{self.handle}/status/{self.post_id}"


WEB: tuple[WebPage, ...] = (
    WebPage("https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/dags.html",
            "DAGs - Airflow Documentation",
            "A DAG is the core concept of Airflow: it collects tasks together, organised with "
            "dependencies and relationships that say how they should run."),
    WebPage("https://docs.x.ai/docs/guides/tools/overview", "Tools overview - xAI Docs",
            "Grok can call server-side tools such as web search, X search, code execution and "
            "collections search, and client-side function tools."),
    WebPage("https://en.wikipedia.org/wiki/Solar_sail", "Solar sail - Wikipedia",
            "Solar sails use the radiation pressure of sunlight on large mirrors to propel "
            "spacecraft without fuel."),
    WebPage("https://docs.python.org/3/tutorial/index.html", "The Python Tutorial",
            "Python is an easy to learn, powerful programming language with efficient "
            "high-level data structures."),
    WebPage("https://tides.example.org/brest", "Tide tables for Brest",
            "High tide in Brest is at 14:05 today and low tide at 20:17."),
    WebPage("https://en.wikipedia.org/wiki/Lisbon", "Lisbon - Wikipedia",
            "Lisbon is the capital and the largest city of Portugal, on the Tagus estuary."),
    WebPage("https://weather.example.com/paris", "Paris weather today",
            "The weather in Paris today is sunny with a high of 24 degrees Celsius."),
    WebPage("https://news.example.com/markets", "Markets wrap",
            "Stock markets closed higher today as technology shares rallied."),
)

X_POSTS: tuple[XPost, ...] = (
    XPost("xai", "2026-01-15", "1879000000000000001",
          "Grok 4.3 is now available in the API, with agent tools: web search, X search and code "
          "execution."),
    XPost("ApacheAirflow", "2026-02-02", "1879000000000000002",
          "Airflow 3.1 is out: human-in-the-loop tasks, better DAG versioning and a faster UI."),
    XPost("NASA", "2026-03-10", "1879000000000000003",
          "Our solar sail demonstrator unfurled its sail in orbit today."),
    XPost("solar_sail_fan", "2026-09-03", "1879000000000000004",
          "Solar sails are back: three missions this year ride on sunlight alone."),
    XPost("paris_weather", "2026-06-21", "1879000000000000005",
          "Sunny in Paris today, 24 degrees, light wind from the west."),
)

_STOP = frozenset({
    "the", "and", "what", "about", "for", "with", "does", "this", "that", "are", "how", "you",
    "who", "why", "say", "says", "tell", "from", "into", "have", "has", "was", "were", "can",
    "could", "would", "should", "please",
})
_T = TypeVar("_T")


def words(text: str) -> set[str]:
    """Lower-cased words of 3+ letters/digits, without a few stop words."""
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in _STOP}


def overlap(query: str, text: str) -> int:
    return len(words(query) & words(text))


def rank(query: str, docs: Sequence[_T], text_of: Callable[[_T], str], k: int) -> list[_T]:
    """Up to ``k`` docs by word overlap with ``query`` (ties in corpus order), else the first."""
    scores = [overlap(query, text_of(d)) for d in docs]
    order = sorted((i for i in range(len(docs)) if scores[i]), key=lambda i: (-scores[i], i))
    return [docs[i] for i in order[:k]] or list(docs[:1])


# -- code interpreter -----------------------------------------------------------------------
_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos,
}
_CANDIDATE = re.compile(r"[\d.()+\-*/% ]+")


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            raise ValueError("exponent too large")
        return _OPS[type(node.op)](left, right)
    raise ValueError("not arithmetic")


def _expression(prompt: str) -> str | None:
    for m in _CANDIDATE.finditer(prompt):
        expr = m.group().strip().rstrip(".")
        if len(re.findall(r"\d+", expr)) < 2 or not re.search(r"\d\s*(\*\*|[-+*/%])\s*[\d(]", expr):
            continue
        try:
            ast.parse(expr, mode="eval")
        except SyntaxError:
            continue
        return expr
    return None


def run_code(prompt: str) -> tuple[str, str]:
    """``(code, logs)`` the fake sandbox "ran" for ``prompt``."""
    expr = _expression(prompt)
    if expr is None:
        code = f"text = {prompt[:200]!r}\nprint(len(text.split()))"
        return code, f"{len(prompt[:200].split())}\n"
    code = f"print({expr})"
    try:
        value = _eval(ast.parse(expr, mode="eval"))
    except ZeroDivisionError as exc:
        return code, f"ZeroDivisionError: {exc}\n"
    except (ValueError, OverflowError, TypeError):
        return code, "ValueError: expression not supported by the local sandbox\n"
    return code, f"{value}\n"
