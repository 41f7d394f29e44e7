"""``python -m benchmarks`` (``make bench``): run the suite, print the table, write results.json.

Each benchmark runs in its own fresh interpreter (``python -m benchmarks.<name>``), so one
benchmark's imports, pools and memory never colour another's, and a crash is reported as a
MISS with its error instead of ending the run. ``--only 1,3`` runs a subset; ``--quick`` runs
fewer rounds (for trying things out; the committed results come from a full run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, machine_facts, run_child

BENCHMARKS = {
    "1": ("benchmarks.overhead", "per-call overhead"),
    "2": ("benchmarks.fanout", "fan-out"),
    "3": ("benchmarks.imports", "DAG-parse import cost"),
    "4": ("benchmarks.image", "image memory"),
    "5": ("benchmarks.streaming", "streaming first line"),
    "6": ("benchmarks.deferred", "deferred polling"),
    "7": ("benchmarks.tracing", "OpenTelemetry span cost"),
    "8": ("benchmarks.dashboard", "usage page query at 100,000 records"),
    "9": ("benchmarks.rate_limit", "shared rate limiter overhead"),
    "10": ("benchmarks.agents", "deferrable agent calls and prompt-cache routing"),
    "11": ("benchmarks.media", "video download memory and video polls"),
    "12": ("benchmarks.forecast", "spend control: the forecast's cost per call"),
}
RESULTS = Path(__file__).resolve().parent / "results.json"


def _format_value(figure: Figure) -> str:
    if figure.value is None:
        return "-"
    if figure.unit == "x":
        return f"{figure.value:.3f}x"
    return f"{figure.value:.1f} {figure.unit}"


def _format_target(figure: Figure) -> str:
    if figure.target is None:
        return "(info)"
    unit = "x" if figure.unit == "x" else f" {figure.unit}"
    return f"{figure.op} {figure.target:g}{unit}"


def table(figures: list[Figure]) -> str:
    """A Markdown table: figure, value, target, verdict, server."""
    rows = [("#", "figure", "value", "target", "result", "server")]
    for f in figures:
        name = f.name if f.error is None else f"{f.name} (error: {f.error.splitlines()[-1][:80]})"
        rows.append((f.key, name, _format_value(f), _format_target(f), f.verdict, f.server))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: 1,2,...,11")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (not for results.json)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    chosen = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    facts = machine_facts()
    print(
        f"airflow-provider-xai benchmarks: {facts['cpu_count']} CPUs, Python {facts['python']}, "
        f"load {facts['load_average_at_start']}",
        flush=True,
    )
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    started = time.monotonic()
    for key in chosen:
        module, title = BENCHMARKS[key]
        print(f"[{key}] {title} ...", flush=True)
        t0 = time.monotonic()
        try:
            out: list[dict[str, Any]] = run_child(module, *(["--quick"] if args.quick else []), timeout=600)
            for item in out:
                item.pop("passed", None)
                item.pop("verdict", None)
                figures.append(Figure(**item))
        except Exception as exc:  # report, keep going: one broken benchmark must not hide the rest
            figures.append(Figure(f"{key}_error", title, None, None, error=f"{type(exc).__name__}: {exc}"))
        timings[key] = round(time.monotonic() - t0, 1)
        print(f"[{key}] done in {timings[key]} s", flush=True)
    print()
    print(table(figures))
    results = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": facts,
        "seconds": {"total": round(time.monotonic() - started, 1), **timings},
        "figures": [f.to_json() for f in figures],
        "table": table(figures),
    }
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, args.output)
    print(f"\nwrote {args.output}")
    return 0 if all(f.passed is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
