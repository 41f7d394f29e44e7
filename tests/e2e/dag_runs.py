"""Running the example DAGs on a live deployment and reading back what they did, shared by the
LocalExecutor test (``test_deployment.py``) and the CeleryExecutor one (``test_celery.py``).

Every ``example_dags/example_*.py`` is parsed by the dag-processor without import errors,
triggered through the REST API and must succeed; the chat answer, the vision report and the
usage summary are read back as XComs over REST. The deferrable chat task is seen ``deferred``
with an ``XAIDeferredCompletionTrigger`` assigned to the triggerer job, and the triggerer (not
an in-line ``dag.test()`` loop) runs it: its trigger log is written by the triggerer process.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_xai.testing.runner import XAIServer
from tests.e2e.conftest import DAGS_FOLDER, AirflowStack
from tests.e2e.waiting import file_sizes, wait_while_moving

TRIGGER_CLASS = "airflow_provider_xai.triggers.deferred.XAIDeferredCompletionTrigger"
DEFERRED_TASK = "deferred_haiku"
# The local server answers 202 this many times before handing out a deferred result; at the
# DAG's poll_interval of 0.5 s that keeps the task deferred for several seconds.
DEFERRED_POLLS = 4
TERMINAL = {"success", "failed"}


def xcom(
    api: httpx.Client,
    dag_id: str,
    run_id: str,
    task_id: str,
    key: str = "return_value",
    map_index: int = -1,
    missing_ok: bool = False,
) -> Any:
    """An XCom value read over REST (``None`` for a missing one when ``missing_ok``)."""
    response = api.get(
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
        params={"map_index": map_index},
    )
    if missing_ok and response.status_code == 404:
        return None
    assert response.status_code == 200, f"{dag_id}/{task_id}/{key}: {response.text}"
    return response.json()["value"]


def check_chat(api: httpx.Client, run_id: str, stack: AirflowStack, server: XAIServer) -> None:
    dag_id = "example_xai_chat"
    report = xcom(api, dag_id, run_id, "report")
    assert "Lisbon" in report["tip"]
    assert report["plain"].strip() and report["haiku"].strip()
    assert set(report["facts"]) == {"city", "country", "population_millions", "known_for"}
    assert len(report["french"]) == 3
    assert report["haiku"] == xcom(api, dag_id, run_id, DEFERRED_TASK)
    usage = xcom(api, dag_id, run_id, DEFERRED_TASK, "xai_usage")
    assert usage["task_id"] == DEFERRED_TASK and usage["total_tokens"] > 0
    for index in range(3):
        assert xcom(api, dag_id, run_id, "translate", "xai_usage", index)["map_index"] == index
    # The request id pushed before deferring was polled until ready, then collected once.
    request_id = xcom(api, dag_id, run_id, DEFERRED_TASK, "xai_request_id")
    polls = [e.status for e in server.journal if e.path.endswith(f"/deferred-completion/{request_id}")]
    assert polls == [202] * DEFERRED_POLLS + [200], polls


def check_vision(api: httpx.Client, run_id: str, stack: AirflowStack, server: XAIServer) -> None:
    result = xcom(api, "example_xai_vision", run_id, "write_report")
    summary = result["summary"]
    images = sorted(p for p in (DAGS_FOLDER / "sample_images").iterdir() if p.suffix in {".png", ".jpg"})
    assert summary["images"] == len(images) > 0
    assert summary["prompt_tokens"] > 0 and summary["cost_usd"] > 0
    report = Path(urlsplit(result["path"]).path)
    assert report.is_relative_to(stack.home / "xai_reports") and report.is_file(), (report, stack.home)
    for index in range(len(images)):
        facts = xcom(api, "example_xai_vision", run_id, "describe_image", map_index=index)
        assert set(facts) == {"caption", "objects", "has_text"}


def check_usage(api: httpx.Client, run_id: str, stack: AirflowStack, server: XAIServer) -> None:
    report = xcom(api, "example_xai_usage", run_id, "xai_usage")
    totals = report["totals"]
    assert report["records"] == 6 and totals["total_tokens"] > 0
    assert report["budget"]["status"] == "ok"
    line = xcom(api, "example_xai_usage", run_id, "spend_report")
    assert line.startswith(f"6 xAI requests, {totals['total_tokens']} tokens")


def check_batch(api: httpx.Client, run_id: str, stack: AirflowStack, server: XAIServer) -> None:
    report = xcom(api, "example_xai_batch", run_id, "summarise")
    assert report["labelled"] == report["tickets"] > 0 and report["failed"] == 0, report
    assert sum(report["by_category"].values()) == report["labelled"]
    assert server.requests("/batches", "POST"), "no batch was created on the server"


def check_collections(api: httpx.Client, run_id: str, stack: AirflowStack, server: XAIServer) -> None:
    report = xcom(api, "example_xai_collections", run_id, "report")
    assert report["synced"]["indexed"] == 3 and report["failed"] == [], report
    assert "25 vacation days" in report["answer"] and "vacation.md" in report["sources"], report
    assert Path(urlsplit(report["audio"]).path).is_file() and report["heard_the_answer"] is True
    collections = [e.path for e in server.journal if "/collections" in e.path]
    assert collections and all(path.startswith("/management/v1/") for path in collections)


def check_agents(api: httpx.Client, run_id: str, stack: AirflowStack, server: XAIServer) -> None:
    # The deferrable research call was sent once and collected by the triggerer.
    sent = [e for e in server.journal if e.method == "POST" and e.path.endswith("/responses")
            and any(t.get("type") == "code_interpreter" for t in (e.body or {}).get("tools", []))]
    assert len(sent) == 1, sent
    assert xcom(api, "example_xai_agents", run_id, "triage", "xai_branch_reason")
    assert xcom(api, "example_xai_agents", run_id, "escalate").startswith("escalated with context")


def check_images(api: httpx.Client, run_id: str, stack: AirflowStack, server: XAIServer) -> None:
    result = xcom(api, "example_xai_images", run_id, "write_report")
    summary = result["summary"]
    assert (summary["made"], summary["checked"], summary["refused_by_moderation"]) == (4, 4, 0), summary
    assert summary["image_cost_usd"] > 0 and summary["cost_usd"] > summary["image_cost_usd"]
    report = Path(urlsplit(result["path"]).path)
    assert report.is_file() and json.loads(report.read_text())["summary"] == summary
    for index in range(3):
        shot = xcom(api, "example_xai_images", run_id, "product_shot", map_index=index)
        assert Path(urlsplit(shot["paths"][0]).path).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
        usage = xcom(api, "example_xai_images", run_id, "product_shot", "xai_usage", index)
        assert (usage["kind"], usage["units"], usage["map_index"]) == ("images", 1, index)


def check_video(api: httpx.Client, run_id: str, stack: AirflowStack, server: XAIServer) -> None:
    teaser = xcom(api, "example_xai_video", run_id, "teaser")
    video = Path(urlsplit(teaser["path"]).path)
    assert video.read_bytes()[4:8] == b"ftyp" and video.stat().st_size == teaser["bytes"] > 0
    assert xcom(api, "example_xai_video", run_id, "teaser", "xai_request_id") == teaser["request_id"]
    polls = [e.status for e in server.journal if e.path.endswith(f"/videos/{teaser['request_id']}")]
    assert polls and polls[-1] == 200 and 202 in polls, polls
    # The triggerer (not the worker) waited: the trigger's log holds the job's progress.
    logs = stack.home / "logs" / "dag_id=example_xai_video" / f"run_id={run_id}" / "task_id=teaser"
    (trigger_log,) = logs.glob("attempt=1.log.trigger.*.log")
    assert f"xAI video {teaser['request_id']}: pending" in trigger_log.read_text()


#: What each known example must leave in XCom; any other example DAG must at least succeed.
CHECKS: dict[str, Callable[[httpx.Client, str, AirflowStack, XAIServer], None]] = {
    "example_xai_chat": check_chat,
    "example_xai_vision": check_vision,
    "example_xai_usage": check_usage,
    "example_xai_batch": check_batch,
    "example_xai_collections": check_collections,
    "example_xai_agents": check_agents,
    "example_xai_images": check_images,
    "example_xai_video": check_video,
}


def failure_details(api: httpx.Client, stack: AirflowStack, runs: dict[str, str]) -> str:
    lines = []
    for dag_id, run_id in runs.items():
        tis = task_instances(api, dag_id, run_id)
        lines += [f"{dag_id}.{t['task_id']}[{t['map_index']}]: {t['state']}" for t in tis]
    for name in stack.procs:
        lines.append(f"--- {name} (tail) ---\n{stack.log(name)[-2000:]}")
    return "\n".join(lines)


def wait_parsed(api: httpx.Client, stack: AirflowStack, expected: set[str]) -> list[str]:
    """Wait until the dag-processor has parsed the DAGs ``expected``, with zero import errors."""
    dag_ids: list[str] = []

    def parsed() -> bool:
        errors = api.get("/importErrors").json()
        assert errors["total_entries"] == 0, errors["import_errors"]
        dag_ids[:] = sorted(d["dag_id"] for d in api.get("/dags", params={"limit": 100}).json()["dags"])
        return expected <= set(dag_ids)

    def moved() -> tuple[Any, ...]:
        return tuple(dag_ids), file_sizes(stack.log_path("dag-processor"))

    wait_while_moving(parsed, moved, f"the dag-processor to parse {sorted(expected)}", interval=1)
    return sorted(expected)


def parsed_examples(api: httpx.Client, stack: AirflowStack) -> list[str]:
    """Wait until the dag-processor has parsed every example file; their DAG ids."""
    expected = {p.stem for p in DAGS_FOLDER.glob("example_*.py")}
    assert "example_xai_chat" in expected
    return wait_parsed(api, stack, expected)


def trigger(api: httpx.Client, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> str:
    """Unpause ``dag_id`` and start a manual run (with ``conf``, at ``logical_date``: none by
    default) through the REST API; its run id."""
    response = api.patch(f"/dags/{dag_id}", json={"is_paused": False})
    assert response.status_code == 200, response.text
    run_id = f"e2e_{uuid.uuid4().hex[:8]}"
    response = api.post(
        f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": logical_date, "conf": conf or {}}
    )
    assert response.status_code == 200, response.text
    return run_id


def run_snapshot(api: httpx.Client, runs: dict[str, str]) -> tuple[dict[str, str], dict[Any, Any]]:
    """The state of each of ``runs`` (by DAG id), and their task instances by (dag, task, map
    index): few requests (one a hundred task instances), to keep the polling light."""
    wanted = set(runs.items())
    dag_runs = api.get("/dags/~/dagRuns", params={"limit": 100}).json()["dag_runs"]
    states = {r["dag_id"]: r["state"] for r in dag_runs if (r["dag_id"], r["dag_run_id"]) in wanted}
    tis = {
        (t["dag_id"], t["task_id"], t["map_index"]): t
        for t in task_instances(api)
        if (t["dag_id"], t["dag_run_id"]) in wanted
    }
    return states, tis


def task_instances(api: httpx.Client, dag_id: str = "~", run_id: str = "~") -> list[dict[str, Any]]:
    """Every task instance of ``dag_id``/``run_id`` (``~``: all), page by page."""
    found: list[dict[str, Any]] = []
    while True:
        page = api.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(found)}
        ).json()
        found += page["task_instances"]
        if not page["task_instances"] or len(found) >= page["total_entries"]:
            return found


def watch(
    api: httpx.Client, stack: AirflowStack, runs: dict[str, str], dag_id: str, task_id: str
) -> tuple[dict[str, str], list[str | None], dict[str, Any]]:
    """Wait until every run ends, as long as run or task states keep changing; meanwhile record
    each state the task ``dag_id.task_id`` passes through, and that task instance as seen while
    deferred with a trigger and triggerer job."""
    seen: list[str | None] = []
    while_deferred: dict[str, Any] = {}
    states: dict[str, str] = {}
    moves: list[Any] = []

    def ended() -> bool:
        stack.check_alive()
        run_states, tis = run_snapshot(api, runs)
        ti = tis.get((dag_id, task_id, -1), {"state": None})
        if not seen or seen[-1] != ti["state"]:
            seen.append(ti["state"])
        if ti["state"] == "deferred" and ti.get("trigger") and ti.get("triggerer_job"):
            while_deferred.update(ti)
        states.update(run_states)
        moves[:] = [sorted(states.items()), sorted((k, t["state"], t["try_number"]) for k, t in tis.items())]
        return states.keys() == runs.keys() and set(states.values()) <= TERMINAL

    try:
        wait_while_moving(ended, lambda: list(moves), f"the runs {runs} to end", interval=0.3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{failure_details(api, stack, runs)}") from None
    return states, seen, while_deferred


def run_example_dags(
    api: httpx.Client, stack: AirflowStack, server: XAIServer, *secret_free: Path
) -> dict[str, str]:
    """Trigger every example DAG on a running deployment and check what it did: each run
    succeeds, the deferrable chat task is deferred and finished by the triggerer, each DAG
    leaves the expected XComs, and the API key is in no file under AIRFLOW_HOME or
    ``secret_free`` (e.g. the PostgreSQL data directory). Returns the run ids by DAG id."""
    t0 = time.monotonic()
    dag_ids = parsed_examples(api, stack)
    print(f"{time.monotonic() - t0:.1f}s: parsed {dag_ids}")

    runs = {dag_id: trigger(api, dag_id) for dag_id in dag_ids}
    chat_run = runs["example_xai_chat"]
    states, seen, while_deferred = watch(api, stack, runs, "example_xai_chat", DEFERRED_TASK)
    print(f"{time.monotonic() - t0:.1f}s: runs ended {states}; {DEFERRED_TASK} went {seen}")
    assert states and all(s == "success" for s in states.values()), (
        f"{states}\n{failure_details(api, stack, runs)}"
    )

    # --- the deferrable task was deferred, and the triggerer ran its trigger -------------
    assert "deferred" in seen and seen[-1] == "success", seen
    assert seen.index("deferred") < seen.index("success")
    assert while_deferred, f"never saw {DEFERRED_TASK} deferred with a trigger and triggerer job"
    assert while_deferred["trigger"]["classpath"] == TRIGGER_CLASS
    assert while_deferred["triggerer_job"]["job_type"] == "TriggererJob"
    logs = (
        stack.home
        / "logs"
        / "dag_id=example_xai_chat"
        / f"run_id={chat_run}"
        / f"task_id={DEFERRED_TASK}"
    )
    trigger_logs = list(logs.glob("attempt=1.log.trigger.*.log"))
    assert len(trigger_logs) == 1, sorted(p.name for p in logs.iterdir())
    # named after the triggerer job that ran it
    assert trigger_logs[0].name.endswith(f".trigger.{while_deferred['triggerer_job']['id']}.log")
    trigger_log = trigger_logs[0].read_text()
    assert "starting" in trigger_log and "Trigger fired event" in trigger_log, trigger_log[-2000:]
    assert "running trigger in line" not in (logs / "attempt=1.log").read_text()

    # --- what each DAG left in XCom ------------------------------------------------------
    for dag_id, run_id in runs.items():
        if dag_id in CHECKS:
            CHECKS[dag_id](api, run_id, stack, server)

    # --- the API and management keys never reached a log, a task log or the metadata DB ---
    assert stack.files_containing(server.api_key, *secret_free) == []
    assert stack.files_containing(server.management_key, *secret_free) == []
    return runs
