"""Run the local xAI server in the foreground: ``python -m airflow_provider_xai.testing``."""

from __future__ import annotations

import argparse
import logging
import sys

from airflow_provider_xai.testing.runner import (
    XAIServer,
    bind_socket,
    make_uvicorn_server,
)
from airflow_provider_xai.testing.state import DEFAULT_API_KEY, ServerState


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, print the connection settings, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_xai.testing",
                                     description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--path-prefix", default="")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat completion")
    parser.add_argument("--stream-interval", type=float, default=0.0,
                        help="seconds between SSE chunks")
    parser.add_argument("--tool-latency", type=float, default=0.0,
                        help="seconds a Responses request with server-side tools takes")
    parser.add_argument("--rate-limit-rps", type=int, default=0,
                        help="requests per second per API key and model (0: no limit)")
    parser.add_argument("--rate-limit-tpm", type=int, default=0,
                        help="billed tokens per minute per API key and model (0: no limit)")
    parser.add_argument("--rate-limit-retry-after", action="store_true",
                        help="send retry-after/retry-after-ms with rate-limit 429s")
    parser.add_argument("--allow-non-loopback", action="store_true",
                        help="allow binding a host that is not a loopback address")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        state = ServerState(api_key=args.api_key, latency=args.latency,
                            stream_interval=args.stream_interval, tool_latency=args.tool_latency,
                            rate_limit_rps=args.rate_limit_rps, rate_limit_tpm=args.rate_limit_tpm,
                            rate_limit_retry_after=args.rate_limit_retry_after)
    except ValueError as exc:
        parser.error(str(exc))
    try:  # XAIServer refuses a non-loopback host unless allowed
        info = XAIServer(api_key=args.api_key, host=args.host, path_prefix=args.path_prefix,
                         state=state, allow_non_loopback=args.allow_non_loopback)
    except ValueError as exc:
        parser.error(str(exc))
    sock = bind_socket(args.host, args.port)
    info._port = sock.getsockname()[1]  # report the bound port without starting a thread
    print(f"Local xAI server: {info.base_url}", flush=True)
    print(f"export AIRFLOW_CONN_XAI_DEFAULT='{info.connection_json(**info.management_extra())}'", flush=True)
    make_uvicorn_server(state, info.path_prefix).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
