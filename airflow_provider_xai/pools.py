"""Airflow pools sized from an xAI connection's rate limits: one pool per API key and model.

A pool caps how many tasks run at once; the shared rate limit paces their requests. A task
that holds a worker slot ``seconds_per_call`` seconds for one call (start-up, the answer, the
usage record) keeps a limit of R requests per second busy with ``R x seconds_per_call`` tasks
running (Little's law): that many slots, and more would only queue for capacity (in workers,
or past ``rate_limit_defer_after`` in the triggerer). With ``tokens_per_call`` and a tokens
limit, the pool is no larger than the tokens per minute allow either. Deferred tasks hold no
pool slot unless ``include_deferred``.

:func:`xai_pool` says what the pool should be; :func:`ensure_pool` creates or updates it (in
the metadata database, as ``airflow pools set`` does): ``ensure_pool(xai_pool("xai_default",
"grok-4.3"))``. ``airflow xai pools`` does both from the command line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import XAIConfigurationError

#: Seconds a task holds its worker slot for one call when the caller does not say.
DEFAULT_SECONDS_PER_CALL = 10.0
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class PoolSpec:
    """An Airflow pool: its name, slots, description and whether deferred tasks count."""

    name: str
    slots: int
    description: str
    include_deferred: bool = False


def pool_name(conn_id: str, model: str) -> str:
    """``<connection>_<model>`` (``xai_`` first unless the connection id starts so), with what
    a metric name cannot hold replaced by ``_``: ``xai_default_grok-4.3``."""
    prefix = "" if conn_id.startswith("xai") else "xai_"
    return _NOT_IN_NAME.sub("_", f"{prefix}{conn_id}_{model}")


def xai_pool(
    conn_id: str = "xai_default",
    model: str | None = None,
    *,
    seconds_per_call: float = DEFAULT_SECONDS_PER_CALL,
    tokens_per_call: int | None = None,
    include_deferred: bool = False,
    name: str | None = None,
) -> PoolSpec:
    """The pool for ``model`` (default: the connection's default model) on ``conn_id``'s key,
    from its ``rate_limit_requests_per_second`` (and ``rate_limit_tokens_per_minute``)."""
    from airflow_provider_xai.hooks.xai import XAIHook
    from airflow_provider_xai.ratelimit.limiter import fingerprint

    check_number("seconds_per_call", seconds_per_call, 0, 86400, positive=True)
    check_number("tokens_per_call", tokens_per_call, 1, integer=True)
    settings = XAIHook(xai_conn_id=conn_id).settings
    limits, model = settings.rate_limit, model or settings.default_model
    if limits is None or limits.requests_per_second is None:
        raise XAIConfigurationError(
            f"Connection {conn_id!r}: rate_limit_requests_per_second is not set: there is no limit to size a pool from"
        )
    rps = limits.requests_per_second
    slots = math.ceil(rps * seconds_per_call - 1e-9)
    how = f"{rps:g} requests/s x {seconds_per_call:g} s per call"
    if tokens_per_call and limits.tokens_per_minute:
        by_tokens = math.floor(limits.tokens_per_minute / 60 * seconds_per_call / tokens_per_call)
        if by_tokens < slots:
            slots = by_tokens
            how = f"{limits.tokens_per_minute} tokens/min x {seconds_per_call:g} s per call / {tokens_per_call} tokens"
    return PoolSpec(
        name or pool_name(conn_id, model),
        max(1, slots),
        f"xAI {model} on connection {conn_id} (key {fingerprint(settings.api_key)}): {how}",
        include_deferred,
    )


def ensure_pool(spec: PoolSpec) -> PoolSpec:
    """Create ``spec``'s pool, or update the pool of that name to it; the pool."""
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(spec.name, spec.slots, spec.description, spec.include_deferred)
    return spec


__all__ = ["DEFAULT_SECONDS_PER_CALL", "PoolSpec", "ensure_pool", "pool_name", "xai_pool"]
