"""``make demo``: run the example DAGs end to end with ``airflow dags test``.

Uses xAI itself when ``XAI_API_KEY`` is set, otherwise the bundled local xAI server on a
loopback port. Prints each DAG's outcome, the chat answer and every usage line.

The example DAGs ship inside the package (``airflow_provider_xai/example_dags``, copied from
the repository's ``example_dags/`` when the wheel is built), so an installed provider runs them
with ``python -m airflow_provider_xai.testing.demo``. ``--dags-folder`` (or
``XAI_DEMO_DAGS_FOLDER``) points at another folder: ``make demo`` passes the checkout's
``example_dags``, which an editable install does not copy into the package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGED_DAGS = Path(__file__).resolve().parent.parent / "example_dags"
USAGE_RE = re.compile(r"xAI usage: .*?server_side_tool_usage=\S+")
CITATION_RE = re.compile(r"xAI \| \[\d+\] \S+")
RETURN_RE = re.compile(r"Done\. Returned value was: (.*?) \[airflow\.task")


def _airflow_env(home: Path, dags: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
    )
    return env


def _run_dag(dag_id: str, env: dict[str, str], log_dir: Path) -> tuple[bool, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = proc.stdout + proc.stderr
    (log_dir / f"{dag_id}.log").write_text(output)
    ok = proc.returncode == 0 and "state=failed" not in output and "DagRunState.FAILED" not in output
    return ok, output, time.monotonic() - started


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_xai.testing.demo",
        description="Run the example DAGs (every example_xai_*.py) with `airflow dags test`.",
    )
    parser.add_argument(
        "--dags-folder",
        type=Path,
        default=Path(os.environ.get("XAI_DEMO_DAGS_FOLDER") or PACKAGED_DAGS),
        help="folder holding the example_xai_*.py DAG files (default: $XAI_DEMO_DAGS_FOLDER, "
        "else the copy shipped in the package)",
    )
    parser.add_argument(
        "dag_ids", nargs="*", metavar="DAG_ID", help="run only these DAGs (default: every example)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every ``example_xai_*.py`` DAG of the dags folder and print what it produced."""
    args = _parse_args(argv)
    dags = args.dags_folder.resolve()
    paths = sorted(dags.glob("example_xai_*.py"))
    if args.dag_ids:
        unknown = set(args.dag_ids) - {path.stem for path in paths}
        if unknown:
            print(f"No such example DAG in {dags}: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        paths = [path for path in paths if path.stem in args.dag_ids]
    if not paths:
        print(
            f"No example_xai_*.py DAGs in {dags}. An editable install does not copy them into the"
            " package: pass --dags-folder example_dags from the repository checkout.",
            file=sys.stderr,
        )
        return 2
    work = Path(os.environ.get("XAI_DEMO_DIR") or tempfile.mkdtemp(prefix="xai-demo-"))
    home = work / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    env = _airflow_env(home, dags)
    server = None
    if os.environ.get("XAI_API_KEY"):
        print("Using xAI at https://api.x.ai/v1 (XAI_API_KEY is set)")
    else:
        from airflow_provider_xai.testing.runner import XAIServer

        server = XAIServer().start()
        # Finish batches by the trigger's first poll: the batch example polls every 60 s, as
        # suits xAI's real batches, which would make the demo wait a minute for nothing.
        server.configure(batch_pending_polls=1)
        env["AIRFLOW_CONN_XAI_DEFAULT"] = server.connection_json(**server.management_extra())
        print(f"Using the bundled local xAI server at {server.base_url} (set XAI_API_KEY to use xAI)")
    try:
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, check=True
        )
        failures = 0
        for path in paths:
            dag_id = path.stem
            ok, output, seconds = _run_dag(dag_id, env, work)
            failures += not ok
            print(
                f"\n=== {dag_id}: {'success' if ok else 'FAILED'} in {seconds:.1f}s (log: {work / dag_id}.log)"
            )
            for value in RETURN_RE.findall(output)[-1:]:
                print(f"  result: {value[:600]}")
            for line in USAGE_RE.findall(output):
                print(f"  {line}")
            for line in dict.fromkeys(CITATION_RE.findall(output)):
                print(f"  {line}")
        if server is not None:
            chats, responses = len(server.requests("/chat/completions")), len(server.requests("/responses"))
            print(f"\nLocal server answered {chats} chat completion and {responses} Responses API requests.")
        print(json.dumps({"dags_failed": failures}))
        return 1 if failures else 0
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
