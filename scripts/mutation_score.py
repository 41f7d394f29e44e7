"""The mutation score of `make mutate`, per module: reads `mutmut results --all true` on stdin.

A mutant counts as killed when a test failed on it or it made the tests time out (both caught
the change); survived and untested ones count against the score. Standard library only.
Exits 0 whatever the score: the list of survivors is for a person to read.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable

#: ``    airflow_provider_xai.usage.x_build_record__mutmut_12: killed`` (methods: ``xǁClassǁname``).
LINE = re.compile(r"^\s*(?P<module>[\w.]+?)\.xǁ?[^.:]*?__mutmut_\d+: (?P<status>.+?)\s*$")
CAUGHT = frozenset({"killed", "timeout"})
MISSED = frozenset({"survived", "no tests"})


def tally(lines: Iterable[str]) -> dict[str, Counter[str]]:
    """Statuses counted per module."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        if match := LINE.match(line):
            counts[match["module"]][match["status"]] += 1
    return dict(counts)


def report(counts: dict[str, Counter[str]]) -> str:
    """A table: caught / judged (and the percentage) per module, then the total."""
    rows, total = [], Counter[str]()
    for module in sorted(counts):
        total.update(counts[module])
        rows.append(_row(module, counts[module]))
    rows.append(_row("TOTAL", total))
    width = max(len(row[0]) for row in rows)
    head = f"{'module':<{width}}  killed/judged  score  survived  no tests  other"
    body = [f"{m:<{width}}  {k:>13}  {s:>5}  {sv:>8}  {nt:>8}  {o:>5}" for m, k, s, sv, nt, o in rows]
    return "\n".join([head, *body])


def _row(name: str, c: Counter[str]) -> tuple[str, str, str, str, str, str]:
    caught = sum(c[s] for s in CAUGHT)
    judged = caught + sum(c[s] for s in MISSED)
    other = sum(c.values()) - judged
    score = f"{100 * caught / judged:.0f}%" if judged else "-"
    return name, f"{caught}/{judged}", score, str(c["survived"]), str(c["no tests"]), str(other)


if __name__ == "__main__":
    print(report(tally(sys.stdin)))
