"""Performance suite of airflow-provider-xai (``make bench`` / ``python -m benchmarks``).

Not part of ``make test``. See docs/benchmarks.md for what each figure means and how it is
measured; ``benchmarks/results.json`` holds the last full run with the machine's facts.
"""
