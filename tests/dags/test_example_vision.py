"""example_xai_vision end to end under dag.test() against the local xAI server."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.dags.conftest import DAGS_FOLDER, run_dag, task_states, xcom_values

SAMPLES = DAGS_FOLDER / "sample_images"
MIME = {".png": "image/png", ".jpg": "image/jpeg"}


def test_example_vision_dag_runs_green_and_writes_report(dagbag: Any, xai_server: Any) -> None:
    dr = run_dag(dagbag, "example_xai_vision")
    states = task_states(dr)
    assert set(states.values()) == {"success"}, states
    samples = sorted(p for p in SAMPLES.iterdir() if p.suffix in MIME)
    assert len(samples) == 3
    assert sorted(m for t, m in states if t == "describe_image") == [0, 1, 2]

    # One request per image, each carrying that image's bytes as a data URI of its real type,
    # then one request with all three for the cover; on the Responses API (the operators' default).
    asks = [e for e in xai_server.journal if e.path.endswith("/responses") and e.method == "POST"]
    assert len(asks) == 4 and not xai_server.requests("/chat/completions")
    (cover_request,) = [e for e in asks if "instructions" not in e.body]
    *cover_images, cover_prompt = cover_request.body["input"][0]["content"]
    assert "best cover" in cover_prompt["text"]
    assert [base64.b64decode(p["image_url"].partition(",")[2]) for p in cover_images] == [
        p.read_bytes() for p in samples
    ]
    sent = {}
    for entry in asks:
        if entry is cover_request:
            continue
        assert entry.body["instructions"]
        (user,) = entry.body["input"]
        image, prompt = user["content"]
        assert prompt["type"] == "input_text" and "written text" in prompt["text"]
        assert image["type"] == "input_image" and image["detail"] == "low"
        head, _, b64 = image["image_url"].partition(",")
        sent[base64.b64decode(b64)] = head
        assert entry.body["model"] == "grok-4.3"
        assert entry.body["text"]["format"]["type"] == "json_schema"
    assert sent == {p.read_bytes(): f"data:{MIME[p.suffix]};base64" for p in samples}

    facts = xcom_values(dr, "describe_image")
    assert sorted(facts) == [0, 1, 2]
    for value in facts.values():
        assert set(value) == {"caption", "objects", "has_text"}
        assert isinstance(value["objects"], list) and isinstance(value["has_text"], bool)
        assert value["caption"].startswith("(local server) ") and "Describe" not in value["caption"]
    usage = xcom_values(dr, "describe_image", "xai_usage")
    # detail=low: 256 tokens an image, inside the input tokens (Responses itemizes no image tokens)
    assert all(usage[i]["prompt_tokens"] > 256 and usage[i]["image_tokens"] == 0 for i in range(3))

    result = xcom_values(dr, "write_report")[-1]
    assert result["path"].startswith(f"file://{os.environ['AIRFLOW_HOME']}/xai_reports/")
    report_path = Path(urlsplit(result["path"]).path)
    assert report_path.is_file()
    report = json.loads(report_path.read_text())
    assert report["run_id"] == dr.run_id
    assert report["summary"] == result["summary"]
    assert [e["image"] for e in report["images"]] == [p.name for p in samples]
    assert [{k: e[k] for k in ("caption", "objects", "has_text")} for e in report["images"]] == [
        facts[i] for i in range(3)
    ]
    summary = result["summary"]
    assert summary["images"] == 3
    assert report["cover"] == xcom_values(dr, "pick_cover")[-1]
    assert summary["prompt_tokens"] > 3 * 256 + 3 * 1024  # three low-detail images, three auto, and text
    usage[3] = xcom_values(dr, "pick_cover", "xai_usage")[-1]
    assert summary["total_tokens"] == sum(u["total_tokens"] for u in usage.values())
    assert summary["cost_usd"] > 0
