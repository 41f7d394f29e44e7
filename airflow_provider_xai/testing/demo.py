"""``make demo``: run the example DAGs end to end with ``airflow dags test``.

Uses xAI itself when ``XAI_API_KEY`` is set, otherwise the bundled local xAI server on a
loopback port. Prints each DAG's outcome, the chat answer and every usage line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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


def main() -> int:
    """Run every ``example_dags/example_xai_*.py`` DAG and print what it produced."""
    dags = REPO / "example_dags"
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
        env["AIRFLOW_CONN_XAI_DEFAULT"] = server.connection_json()
        print(f"Using the bundled local xAI server at {server.base_url} (set XAI_API_KEY to use xAI)")
    try:
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, check=True
        )
        failures = 0
        for path in sorted(dags.glob("example_xai_*.py")):
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
