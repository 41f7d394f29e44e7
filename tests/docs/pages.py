"""The documentation pages under test, and what the docs tests share about their blocks."""

from __future__ import annotations

import re
from pathlib import Path

from sybil import Document
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

from tests.conftest import REPO

README = REPO / "README.md"
GETTING_STARTED = REPO / "docs" / "getting-started.md"
#: Every page: the README and the MkDocs site.
PAGES = (README, *sorted((REPO / "docs").rglob("*.md")))
#: A newcomer's path, run block by block in a clean venv (``test_newcomer.py``); their Python
#: blocks run there too. Every other page's Python blocks run in-process (``test_snippets.py``).
NEWCOMER_PAGES = (README, GETTING_STARTED)
SNIPPET_PAGES = tuple(page for page in PAGES if page not in NEWCOMER_PAGES)

_DAG_FILE = re.compile(r"^@dag\b|^with DAG\(", re.MULTILINE)
_FENCE_LANGUAGE = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<language>[^\n]*)$\n", re.MULTILINE))


def name(page: Path) -> str:
    return str(page.relative_to(REPO))


def is_dag_file(source: str) -> bool:
    """A Python block that is a whole DAG file (a ``@dag`` function or ``with DAG(...)``)."""
    return bool(_DAG_FILE.search(source))


def fence_languages(page: Path) -> list[str]:
    """The info string of every fenced block of ``page``, in order (``""`` for none)."""
    document = Document(page.read_text(), str(page))
    return [region.lexemes["language"].strip() for region in _FENCE_LANGUAGE(document)]


def evaluate(document: Document) -> None:
    """Evaluate a parsed page's examples in order; a failure names the page and the block's line."""
    for example in document.examples():
        try:
            example.evaluate()
        except Exception as exc:
            where = name(Path(document.path))
            raise AssertionError(f"{where}, block at line {example.line}: {type(exc).__name__}: {exc}") from exc
