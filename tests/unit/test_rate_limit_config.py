"""The shared rate limit's connection settings (connection/rate_limits.py): where the store is,
which values are accepted at their edges, and errors that name the connection and the field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_xai.connection.rate_limits import RateLimitConfig, default_path, rate_limit_config
from airflow_provider_xai.exceptions import XAIConfigurationError


def test_the_default_store_is_under_airflow_home_else_under_the_home_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every worker must open the same file: the default is derived, never relative."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert default_path() == str(tmp_path / "xai_rate_limits.sqlite")
    monkeypatch.delenv("AIRFLOW_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert default_path() == os.path.join(str(tmp_path / "me"), "airflow", "xai_rate_limits.sqlite")


def test_the_smallest_limits_are_accepted() -> None:
    config = rate_limit_config({"requests_per_second": 0.001, "tokens_per_minute": 1, "path": "/tmp/x.db"}, "c")
    assert config == RateLimitConfig(0.001, 1, "embedded", "/tmp/x.db", None)


def test_a_path_with_a_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = rate_limit_config({"requests_per_second": 1, "path": "~/limits.db"}, "c")
    assert config is not None and config.path == str(tmp_path / "limits.db")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"requests_per_second": "fast"}, "rate_limit_requests_per_second must be a number, got 'fast'"),
        ({"tokens_per_minute": 2.5}, "rate_limit_tokens_per_minute must be an integer, got 2.5"),
        ({"requests_per_second": 0.0009}, "rate_limit_requests_per_second must be at least 0.001, got 0.0009"),
        ({"tokens_per_minute": 0}, "rate_limit_tokens_per_minute must be at least 1, got 0"),
        ({"requests_per_second": 1, "path": "rel.db"}, "rate_limit_path must be an absolute path, got 'rel.db'"),
        ({"store": "memcached"}, "rate_limit_store must be one of embedded, redis, got 'memcached'"),
    ],
)
def test_a_bad_value_is_refused_naming_the_connection_and_the_field(values: dict[str, Any], message: str) -> None:
    with pytest.raises(XAIConfigurationError) as info:
        rate_limit_config(values, "xai_prod")
    assert str(info.value) == f"Connection 'xai_prod': {message}"
