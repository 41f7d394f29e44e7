"""Pools sized from an xAI connection's rate limits (airflow_provider_xai.pools) and
``airflow xai pools``, through Airflow's own CLI parser and the test metadata DB."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_xai.exceptions import XAIConfigurationError, XAIValidationError
from airflow_provider_xai.pools import PoolSpec, ensure_pool, pool_name, xai_pool

KEY = "xai-pools-test-key"


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_limits(conn_id: str = "xai_default", **extra: Any) -> None:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "xai", "password": KEY, "extra": extra})
        )

    return set_limits


def pool_row(name: str) -> Any:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        pool = session.query(Pool).filter(Pool.pool == name).one_or_none()
        return None if pool is None else (pool.slots, pool.description, pool.include_deferred)


def test_a_pool_holds_what_the_limit_serves_in_the_time_a_task_holds_its_slot(connection: Any) -> None:
    connection(rate_limit_requests_per_second=2.5, default_model="grok-4.3")
    spec = xai_pool(seconds_per_call=8)
    assert (spec.name, spec.slots, spec.include_deferred) == ("xai_default_grok-4.3", 20, False)
    assert "2.5 requests/s x 8 s per call" in spec.description and KEY not in spec.description
    assert xai_pool(model="grok-3-mini", seconds_per_call=0.1).slots == 1  # never 0


def test_tokens_per_minute_bound_the_pool_when_a_call_says_what_it_spends(connection: Any) -> None:
    connection(rate_limit_requests_per_second=10, rate_limit_tokens_per_minute=60_000)
    assert xai_pool(seconds_per_call=6).slots == 60
    by_tokens = xai_pool(seconds_per_call=6, tokens_per_call=3000)  # 1,000 tokens a second / 3,000
    assert by_tokens.slots == 2 and "60000 tokens/min" in by_tokens.description


def test_names_are_per_connection_and_model_and_fit_a_metric_name() -> None:
    assert pool_name("xai_prod", "grok-4.3") == "xai_prod_grok-4.3"
    assert pool_name("team a", "grok/4") == "xai_team_a_grok_4"


@pytest.mark.parametrize(
    ("extra", "arguments", "field"),
    [
        ({}, {}, "rate_limit_requests_per_second"),
        ({"rate_limit_tokens_per_minute": 1000}, {}, "rate_limit_requests_per_second"),
        ({"rate_limit_requests_per_second": 2}, {"seconds_per_call": 0}, "seconds_per_call"),
        ({"rate_limit_requests_per_second": 2}, {"seconds_per_call": float("nan")}, "seconds_per_call"),
        ({"rate_limit_requests_per_second": 2}, {"tokens_per_call": 1.5}, "tokens_per_call"),
    ],
)
def test_what_cannot_size_a_pool_is_refused_naming_it(
    connection: Any, extra: dict[str, Any], arguments: dict[str, Any], field: str
) -> None:
    connection(**extra)
    with pytest.raises((XAIConfigurationError, XAIValidationError), match=field):
        xai_pool(**arguments)


def test_the_cli_creates_then_updates_a_pool_per_model(airflow_db: None, connection: Any, capsys: Any) -> None:
    from airflow.cli.cli_parser import get_parser

    connection("xai_pools_cli", rate_limit_requests_per_second=3)
    parser = get_parser()
    argv = ["xai", "pools", "--conn-id", "xai_pools_cli", "--model", "grok-4.3", "--model", "grok-3-mini"]
    args = parser.parse_args([*argv, "--seconds-per-call", "4"])
    args.func(args)
    assert pool_row("xai_pools_cli_grok-4.3")[0] == pool_row("xai_pools_cli_grok-3-mini")[0] == 12
    assert "Pool xai_pools_cli_grok-4.3 is 12 slot(s)" in capsys.readouterr().out
    connection("xai_pools_cli", rate_limit_requests_per_second=1)  # the limit changed: run it again
    args = parser.parse_args([*argv, "--include-deferred"])
    args.func(args)
    assert pool_row("xai_pools_cli_grok-4.3")[0::2] == (10, True)
    dry = parser.parse_args([*argv, "--seconds-per-call", "30", "--dry-run"])
    dry.func(dry)
    assert "would be 30 slot(s)" in capsys.readouterr().out and pool_row("xai_pools_cli_grok-4.3")[0] == 10


def test_the_cli_says_what_is_wrong_without_a_traceback(airflow_db: None, connection: Any) -> None:
    from airflow.cli.cli_parser import get_parser

    connection("xai_pools_bad")
    args = get_parser().parse_args(["xai", "pools", "--conn-id", "xai_pools_bad"])
    with pytest.raises(SystemExit, match="rate_limit_requests_per_second is not set"):
        args.func(args)


def test_ensure_pool_writes_the_spec(airflow_db: None) -> None:
    spec = PoolSpec("xai_spec_pool", 7, "seven", include_deferred=True)
    assert ensure_pool(spec) == spec and pool_row("xai_spec_pool") == (7, "seven", True)
