"""``airflow xai ...``: the provider's commands (provider info ``cli``).

``airflow xai pools [--conn-id ID] [--model M ...] [--seconds-per-call S] [--tokens-per-call N]
[--include-deferred] [--dry-run]`` creates or updates one pool per model from the connection's
rate limits (:mod:`airflow_provider_xai.pools`).
"""

from __future__ import annotations

from typing import Any


def get_xai_cli_commands() -> list[Any]:
    """The ``xai`` command group (read by Airflow's CLI parser)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    from airflow_provider_xai.pools import DEFAULT_SECONDS_PER_CALL

    args = (
        Arg(("--conn-id",), default="xai_default", help="The xAI connection (default xai_default)"),
        Arg(("--model",), action="append", help="A model (repeat for more; default the connection's)"),
        Arg(
            ("--seconds-per-call",), type=float, default=DEFAULT_SECONDS_PER_CALL,
            help=f"Seconds a task holds its worker slot for one call (default {DEFAULT_SECONDS_PER_CALL:g})",
        ),
        Arg(("--tokens-per-call",), type=int, help="Tokens one call spends, to size by tokens per minute too"),
        Arg(("--include-deferred",), action="store_true", help="Deferred tasks hold their pool slot"),
        Arg(("--dry-run",), action="store_true", help="Print the pools, change nothing"),
    )
    pools = ActionCommand(
        name="pools",
        help="Create or update an Airflow pool per model from an xAI connection's rate limits",
        func=lazy_load_command("airflow_provider_xai.cli.pools_command"),
        args=args,
    )
    return [GroupCommand(name="xai", help="xAI provider commands", subcommands=(pools,))]


def pools_command(args: Any) -> None:
    """``airflow xai pools``: one line per pool, ``name slots description``."""
    from airflow_provider_xai.exceptions import XAIError
    from airflow_provider_xai.pools import ensure_pool, xai_pool

    for model in args.model or [None]:
        try:
            spec = xai_pool(
                args.conn_id, model, seconds_per_call=args.seconds_per_call, tokens_per_call=args.tokens_per_call,
                include_deferred=args.include_deferred,
            )
        except XAIError as exc:  # a bad connection or argument: said, not a traceback
            raise SystemExit(f"airflow xai pools: {exc}") from None
        if not args.dry_run:
            ensure_pool(spec)
        verb = "would be" if args.dry_run else "is"
        print(f"Pool {spec.name} {verb} {spec.slots} slot(s): {spec.description}")


__all__ = ["get_xai_cli_commands", "pools_command"]
