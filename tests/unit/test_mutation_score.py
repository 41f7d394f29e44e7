"""``scripts/mutation_score.py``: the per-module score of ``make mutate`` from mutmut's results."""

from __future__ import annotations

from scripts.mutation_score import report, tally

RESULTS = """\
    airflow_provider_xai.usage.x_build_record__mutmut_1: killed
    airflow_provider_xai.usage.x_build_record__mutmut_2: survived
    airflow_provider_xai.usage.xǁPriceǁcost__mutmut_1: timeout
    airflow_provider_xai.usage.xǁUsageLedgerǁ_load__mutmut_3: no tests
    airflow_provider_xai.hooks.errors.x_scrub__mutmut_1: killed
    airflow_provider_xai.hooks.errors.x_scrub__mutmut_2: not checked
some other line
"""


def test_statuses_are_counted_per_module_methods_included() -> None:
    counts = tally(RESULTS.splitlines())
    assert set(counts) == {"airflow_provider_xai.usage", "airflow_provider_xai.hooks.errors"}
    assert dict(counts["airflow_provider_xai.usage"]) == {"killed": 1, "survived": 1, "timeout": 1, "no tests": 1}
    assert dict(counts["airflow_provider_xai.hooks.errors"]) == {"killed": 1, "not checked": 1}


def test_timeouts_count_as_caught_and_untested_as_missed() -> None:
    lines = report(tally(RESULTS.splitlines())).splitlines()
    usage = next(line for line in lines if line.startswith("airflow_provider_xai.usage"))
    errors = next(line for line in lines if line.startswith("airflow_provider_xai.hooks.errors"))
    total = lines[-1]
    assert usage.split()[1:] == ["2/4", "50%", "1", "1", "0"]
    assert errors.split()[1:] == ["1/1", "100%", "0", "0", "1"]
    assert total.split() == ["TOTAL", "3/5", "60%", "1", "1", "1"]
