"""example_xai_images and example_xai_video end to end under dag.test() against the local server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_xai.images import sniff_format
from tests.dags.conftest import run_dag, task_states, xcom_values


def local(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri.removeprefix("file://"))


def test_example_images_dag_makes_edits_checks_and_reports(
    dagbag: Any, xai_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XAI_EXAMPLE_DATA", f"file://{tmp_path}")
    dr = run_dag(dagbag, "example_xai_images")
    states = task_states(dr)
    assert set(states.values()) == {"success"}, states
    assert sorted(m for t, m in states if t == "product_shot") == [0, 1, 2]

    shots = xcom_values(dr, "product_shot")
    for index, shot in shots.items():
        (path,) = shot["paths"]
        assert path.startswith(f"file://{tmp_path}/media/example_xai_images/") and f"/product_shot_{index}/" in path
        assert sniff_format(local(path).read_bytes()[:24]) == "JPEG"
    edit = xcom_values(dr, "lifestyle_edit")[-1]
    (edit_request,) = xai_server.requests("/images/edits", "POST")
    sent = edit_request.body["image"]["url"]
    assert sent.startswith("data:image/jpeg;base64,") and edit["paths"][0].endswith("/lifestyle_edit/image_00.jpeg")

    checks = [e for e in xai_server.journal if e.method == "POST" and e.path.endswith(("/responses", "/completions"))]
    assert len(checks) == 4  # every image made, checked once by the vision operator
    result = xcom_values(dr, "write_report")[-1]
    summary = result["summary"]
    assert (summary["made"], summary["checked"], summary["refused_by_moderation"]) == (4, 4, 0)
    assert 0 <= summary["rejected"] <= 4 and summary["image_cost_usd"] == pytest.approx(0.08)
    assert summary["cost_usd"] > summary["image_cost_usd"]  # the checks cost something too
    assert result["path"].startswith(f"file://{tmp_path}/media/report_")
    report = json.loads(local(result["path"]).read_text())
    assert report["summary"] == summary and len(report["images"]) == 4


def test_example_video_dag_animates_a_still(
    dagbag: Any, xai_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XAI_EXAMPLE_DATA", f"file://{tmp_path}")
    xai_server.configure(media_pending_polls=1)
    dr = run_dag(dagbag, "example_xai_video")
    assert set(task_states(dr).values()) == {"success"}
    teaser = xcom_values(dr, "teaser")[-1]
    video = local(teaser["path"])
    assert teaser["path"].startswith(f"file://{tmp_path}/media/example_xai_video/")
    assert video.name == "video.mp4" and sniff_format(video.read_bytes()[:24]) == "MP4/QuickTime"
    (submitted,) = xai_server.requests("/videos/generations", "POST")
    assert submitted.body["image"]["url"].startswith("data:image/jpeg;base64,") and submitted.body["duration"] == 5
    assert xcom_values(dr, "teaser", "xai_request_id")[-1] == teaser["request_id"]
    announced = xcom_values(dr, "announce")[-1]
    assert announced == {"video": teaser["path"], "seconds": 5.0, "cost_usd": pytest.approx(0.27)}
    usage = xcom_values(dr, "teaser", "xai_usage")[-1]
    assert (usage["kind"], usage["units"], usage["unit"]) == ("videos", 5.0, "second")
