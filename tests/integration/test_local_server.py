"""Integration tests of the bundled local xAI server (plain httpx over loopback)."""

from __future__ import annotations

import ast
import base64
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest

import airflow_provider_xai
from airflow_provider_xai.testing import PRICES, Chaos, Fault, XAIServer
from airflow_provider_xai.testing.chat import count_tokens

pytest_plugins = ["airflow_provider_xai.testing.pytest_plugin"]

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 32).decode()


@pytest.fixture
def client(xai_server: XAIServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=xai_server.base_url, timeout=5,
                      headers={"Authorization": f"Bearer {xai_server.api_key}"}) as c:
        yield c


def chat(client: httpx.Client, text: str = "Hello Grok", **kw: Any) -> httpx.Response:
    body = {"model": kw.pop("model", "grok-3"), "messages": [{"role": "user", "content": text}]}
    return client.post("/chat/completions", json={**body, **kw})


def sse(client: httpx.Client, **body: Any) -> list[str]:
    with client.stream("POST", "/chat/completions", json={"stream": True, **body}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return [line for line in r.iter_lines() if line]


def chunks(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]


def expected_cost(model: str, usage: dict[str, Any]) -> int:
    p = PRICES[model]
    det, out = usage["prompt_tokens_details"], usage["completion_tokens_details"]
    cached_price = p.input if p.cached_input is None else p.cached_input
    usd: float = ((det["text_tokens"] - det["cached_tokens"]) * p.input
           + det["cached_tokens"] * cached_price
           + det["image_tokens"] * (p.image if p.image is not None else p.input)
           + (usage["completion_tokens"] + out["reasoning_tokens"]) * p.output) / 1e6
    return round(usd * 1e10)


def test_import_is_lazy() -> None:
    code = ("import sys, airflow_provider_xai.testing as t; t.Fault; "
            "assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=30)


def class_names(files: list[Path]) -> set[str]:
    """Names of the top-level classes defined in ``files``."""
    trees = [ast.parse(path.read_text()) for path in files]
    return {node.name for tree in trees for node in tree.body if isinstance(node, ast.ClassDef)}


def test_fakes_do_not_reuse_production_class_names() -> None:
    package = Path(airflow_provider_xai.__file__).parent
    fakes = sorted((package / "testing").glob("*.py"))
    production = [p for p in package.rglob("*.py") if "testing" not in p.relative_to(package).parts]
    assert fakes and production
    assert class_names(fakes) & class_names(production) == set()


def test_auth(xai_server: XAIServer) -> None:
    url = xai_server.base_url + "/models"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.json()["code"] == "Unauthenticated"
    assert httpx.get(url, headers={"Authorization": "Basic abc"}).status_code == 401
    wrong_key = "xai-totally-wrong-secret-yz"
    wrong = httpx.get(url, headers={"Authorization": f"Bearer {wrong_key}"})
    assert wrong.status_code == 400
    assert wrong.json() == {
        "code": "Client specified an invalid argument",
        "error": "Incorrect API key provided: xa***yz. You can obtain an API key from "
                 "https://console.x.ai.",
    }
    assert wrong_key not in wrong.text and "totally" not in wrong.text
    assert wrong.headers["x-request-id"]


def test_chat_completion_shape_and_usage(client: httpx.Client) -> None:
    r = client.post("/chat/completions", json={"model": "grok-4", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"}]})
    assert r.status_code == 200 and r.headers["x-request-id"]
    data = r.json()
    uuid.UUID(data["id"])
    assert data["object"] == "chat.completion" and data["model"] == "grok-4.3"
    assert data["system_fingerprint"].startswith("fp_")
    (choice,) = data["choices"]
    msg = choice["message"]
    assert msg["content"] == "Grok (local) heard: What is 2+2?" and msg["refusal"] is None
    assert msg["reasoning_content"] and choice["finish_reason"] == "stop"
    u = data["usage"]
    details = u["prompt_tokens_details"]
    assert details["text_tokens"] == count_tokens("You are terse.") + count_tokens("What is 2+2?")
    assert u["prompt_tokens"] == details["text_tokens"] + details["image_tokens"]
    assert u["completion_tokens"] == count_tokens(msg["content"])
    reasoning = u["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning == count_tokens(msg["reasoning_content"]) > 0
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] + reasoning
    assert details["cached_tokens"] == 0
    assert u["cost_in_usd_ticks"] == expected_cost("grok-4.3", u)
    assert set(u) >= {"num_sources_used"} and set(u["completion_tokens_details"]) == {
        "reasoning_tokens", "audio_tokens", "accepted_prediction_tokens",
        "rejected_prediction_tokens"}


def test_cached_tokens_on_repeated_prefix(client: httpx.Client, xai_server: XAIServer) -> None:
    first = chat(client, "cache me please " * 10).json()["usage"]
    second = chat(client, "cache me please " * 10).json()["usage"]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] == second["prompt_tokens"] > 0
    assert second["cost_in_usd_ticks"] == expected_cost("grok-3", second)
    assert second["cost_in_usd_ticks"] < first["cost_in_usd_ticks"]
    xai_server.configure(omit_cost=True, prompt_cache=False)
    third = chat(client, "cache me please " * 10).json()["usage"]
    assert "cost_in_usd_ticks" not in third
    assert third["prompt_tokens_details"]["cached_tokens"] == 0


def test_non_reasoning_n_and_max_tokens(client: httpx.Client) -> None:
    data = chat(client, "abcdefghijklmnop", n=3).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert "reasoning_content" not in data["choices"][0]["message"]
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    one = count_tokens(data["choices"][0]["message"]["content"])
    assert data["usage"]["completion_tokens"] == 3 * one
    cut = chat(client, "abcdefghijklmnop", max_completion_tokens=2).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["choices"][0]["message"]["content"] == "Grok (lo"
    assert cut["usage"]["completion_tokens"] == 2


def test_images(client: httpx.Client) -> None:
    def img(url: str, detail: str = "auto") -> dict[str, Any]:
        return {"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": url, "detail": detail}}]}

    def post(model: str, *msgs: dict[str, Any]) -> httpx.Response:
        return client.post("/chat/completions", json={"model": model, "messages": list(msgs)})

    ok = post("grok-2-vision-1212", img(f"data:image/png;base64,{PNG}", "low"),
              img(f"data:image/jpeg;base64,{JPEG}"), img("https://example.com/cat.jpg", "high"))
    assert ok.status_code == 200, ok.text
    u = ok.json()["usage"]
    assert u["prompt_tokens_details"]["image_tokens"] == 256 + 1024 + 1024
    assert u["prompt_tokens"] == u["prompt_tokens_details"]["text_tokens"] + 2304
    assert u["cost_in_usd_ticks"] == expected_cost("grok-2-vision-1212", u)
    bad = [
        ("grok-3", img(f"data:image/png;base64,{PNG}")),
        ("grok-4.3", img("data:image/gif;base64,R0lGODlh")),
        ("grok-4.3", img("data:image/png;base64,@@not-base64@@")),
        ("grok-4.3", img(f"data:image/png;base64,{JPEG}")),
        ("grok-4.3", img("ftp://example.com/x.png")),
        ("grok-4.3", img(f"data:image/png;base64,{PNG}", "ultra")),
    ]
    for model, msg in bad:
        r = post(model, msg)
        assert r.status_code == 400, (model, r.text)
        assert r.json()["code"] == "Client specified an invalid argument"


def test_json_schema_output_validates(client: httpx.Client) -> None:
    schema = {
        "$defs": {
            "Sentiment": {"type": "string", "enum": ["negative", "neutral", "positive"]},
            "Entity": {"type": "object", "properties": {
                "name": {"type": "string", "minLength": 3},
                "kind": {"enum": ["person", "place"]},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
            }, "required": ["name", "kind", "score"], "additionalProperties": False},
        },
        "type": "object",
        "properties": {
            "sentiment": {"$ref": "#/$defs/Sentiment"},
            "entities": {"type": "array", "items": {"$ref": "#/$defs/Entity"}, "minItems": 2},
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "note": {"type": ["string", "null"]},
            "id": {"anyOf": [{"type": "null"}, {"type": "string", "format": "uuid"}]},
            "meta": {"allOf": [{"type": "object", "properties": {"ok": {"type": "boolean"}},
                                "required": ["ok"]}]},
            "version": {"const": 2},
        },
        "required": ["sentiment", "entities", "stars", "note", "id", "meta", "version"],
        "additionalProperties": False,
    }
    r = chat(client, "I feel positive about Paris", model="grok-4-1-fast-non-reasoning",
             response_format={"type": "json_schema",
                              "json_schema": {"name": "review", "schema": schema, "strict": True}})
    value = json.loads(r.json()["choices"][0]["message"]["content"])
    jsonschema.Draft202012Validator(schema).validate(value)
    assert value["sentiment"] == "positive" and len(value["entities"]) == 2
    obj = chat(client, "x", response_format={"type": "json_object"}).json()
    assert isinstance(json.loads(obj["choices"][0]["message"]["content"]), dict)


def test_tool_call(client: httpx.Client) -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"]}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": params}}]
    data = chat(client, "weather in Oslo?", tools=tools, tool_choice="required").json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), params)
    assert chat(client, "hi", tools=tools).json()["choices"][0]["finish_reason"] == "stop"


def test_validation_errors(client: httpx.Client) -> None:
    r = client.post("/chat/completions", json={"model": "grok-3"})
    assert r.status_code == 422 and "messages" in r.json()["error"] and "code" in r.json()
    r = client.post("/chat/completions", content=b"model=grok-3",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    r = chat(client, model="grok-beta")
    assert r.status_code == 404
    assert r.json()["code"] == "Some requested entity was not found"
    assert r.json()["error"].startswith("The model grok-beta does not exist or your team")
    assert chat(client, temperature=2.5).status_code == 400
    assert chat(client, temperature=2).status_code == 200
    assert chat(client, temperature="hot").status_code == 422
    assert chat(client, model="grok-3-mini", presence_penalty=1).status_code == 400
    r = chat(client, model="grok-4-1-fast-reasoning", reasoning_effort="high")
    assert r.json()["error"] == ("Model grok-4-1-fast-reasoning does not support parameter "
                                 "reasoningEffort.")
    assert chat(client, model="grok-3-mini", reasoning_effort="high").status_code == 200
    gone = chat(client, search_parameters={"mode": "auto"})
    assert gone.status_code == 410 and "code" not in gone.json()
    nf = client.get("/no/such/route")
    assert nf.status_code == 404 and nf.json()["error"].startswith("No handler found on route")
    assert client.delete("/models").status_code == 405


def test_streaming_reassembles(client: httpx.Client, xai_server: XAIServer) -> None:
    xai_server.configure(prompt_cache=False)
    text = "line one\nline two has words\nthird"
    body = {"model": "grok-3-mini", "messages": [{"role": "user", "content": text}]}
    full = client.post("/chat/completions", json=body).json()
    lines = sse(client, **body, stream_options={"include_usage": True})
    assert lines[-1] == "data: [DONE]"
    parsed = chunks(lines)
    assert parsed[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in parsed)
    assert len({c["id"] for c in parsed}) == 1
    pieces = [c["choices"][0]["delta"].get("content") for c in parsed[:-1]]
    pieces = [p for p in pieces if p]
    content = "".join(pieces)
    assert content == full["choices"][0]["message"]["content"] and "\n" in content
    assert len(pieces) > 4 and any(p.endswith("\n") for p in pieces)
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or ""
                        for c in parsed[:-1])
    assert reasoning == full["choices"][0]["message"]["reasoning_content"]
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in parsed[:-1])
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"] == full["usage"]
    no_usage = chunks(sse(client, **body))
    assert all(c["usage"] is None for c in no_usage) and no_usage[-1]["choices"]


def test_stream_interval(client: httpx.Client, xai_server: XAIServer) -> None:
    xai_server.configure(stream_interval=0.02)
    start = time.monotonic()
    n = len(sse(client, model="grok-3", messages=[{"role": "user", "content": "a b c"}]))
    assert time.monotonic() - start >= 0.02 * (n - 2)


def test_stream_faults(client: httpx.Client, xai_server: XAIServer) -> None:
    body = {"model": "grok-3", "messages": [{"role": "user", "content": "one two three four"}],
            "stream_options": {"include_usage": True}}
    xai_server.enqueue(Fault(truncate_stream=True, path="/chat/completions"))
    lines = sse(client, **body)
    assert "data: [DONE]" not in lines
    parsed = chunks(lines)
    assert all(c["choices"] and c["choices"][0]["finish_reason"] is None for c in parsed)
    assert sum(1 for c in parsed if c["choices"][0]["delta"].get("content")) == 2
    xai_server.enqueue(Fault(malformed_chunk=True))
    lines = sse(client, **body)
    assert "data: {not json" in lines and lines[-1] == "data: [DONE]"
    assert len(chunks(sse(client, **body))) > 3  # fault consumed: next stream is clean
    # A stream that fails midway: two content pieces, then xAI's error body as an event, and no end.
    xai_server.enqueue(Fault(fail_stream=True, message="The model stopped.", code="Internal"))
    lines = sse(client, **body)
    assert "data: [DONE]" not in lines and json.loads(lines[-1][6:]) == {"code": "Internal",
                                                                         "error": "The model stopped."}
    assert sum(1 for c in chunks(lines[:-1]) if c["choices"][0]["delta"].get("content")) == 2
    xai_server.enqueue(Fault(fail_stream=True))
    assert json.loads(sse(client, **body)[-1][6:]) == {"code": "Internal error", "error": "Internal server error."}
    one_piece = {**body, "messages": [{"role": "user", "content": "x"}], "model": "grok-3"}
    xai_server.enqueue(Fault(fail_stream=True, content="short"))  # fewer than two pieces: fails at the end
    lines = sse(client, **one_piece)
    assert json.loads(lines[-1][6:])["code"] == "Internal error" and "data: [DONE]" not in lines


def test_deferred(client: httpx.Client) -> None:
    r = chat(client, "later please", deferred=True)
    assert r.status_code == 200 and set(r.json()) == {"request_id"}
    rid = r.json()["request_id"]
    polls = [client.get(f"/chat/deferred-completion/{rid}") for _ in range(4)]
    assert [p.status_code for p in polls] == [202, 202, 200, 404]
    assert polls[0].content == b""
    done = polls[2].json()
    assert done["object"] == "chat.completion"
    assert done["choices"][0]["message"]["content"] == "Grok (local) heard: later please"
    assert polls[3].json()["code"] == "Some requested entity was not found"
    assert client.get(f"/chat/deferred-completion/{uuid.uuid4()}").status_code == 404


def test_fault_queue_and_retry_headers(client: httpx.Client, xai_server: XAIServer) -> None:
    xai_server.enqueue(Fault(429, retry_after=1.5, retry_after_ms=1500,
                             path="/chat/completions"), times=2)
    bad = httpx.post(xai_server.base_url + "/chat/completions", json={},
                     headers={"Authorization": "Bearer nope-nope"})
    assert bad.status_code == 400  # auth runs first and consumes no fault
    assert client.get("/models").status_code == 200  # path does not match
    for _ in range(2):
        r = chat(client)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1.5" and r.headers["retry-after-ms"] == "1500"
        assert r.json()["code"] == "Too many requests" and r.json()["error"]
    assert chat(client).status_code == 200
    xai_server.enqueue(Fault(503))
    r = client.get("/api-key")  # path=None matches any /v1 request
    assert r.status_code == 503 and r.json()["code"] == "Service unavailable"
    assert "retry-after" not in r.headers
    xai_server.enqueue(Fault(content="not valid json {"))
    forced = chat(client, response_format={"type": "json_object"}).json()
    assert forced["choices"][0]["message"]["content"] == "not valid json {"
    xai_server.enqueue(Fault(body="not json"))
    raw = chat(client)
    assert raw.status_code == 200 and raw.text == "not json"
    xai_server.enqueue(Fault(delay=0.2))
    start = time.monotonic()
    assert chat(client).status_code == 200 and time.monotonic() - start >= 0.2
    assert xai_server.state.pending_faults == 0
    faulted = [e.fault for e in xai_server.requests("/chat/completions") if e.fault]
    assert faulted[:2] == ["429", "429"]


def test_drop_fault(client: httpx.Client, xai_server: XAIServer) -> None:
    xai_server.enqueue(Fault(drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client)
    assert chat(client).status_code == 200
    assert xai_server.requests("/chat/completions")[0].fault == "200,drop"


def test_journal_redacts_key(client: httpx.Client, xai_server: XAIServer) -> None:
    key = xai_server.api_key
    client.post("/chat/completions?trace=1", headers={"x-echo": f"k={key}"},
                json={"model": "grok-3", "messages": [{"role": "user", "content": key}]})
    (entry,) = xai_server.requests("/chat/completions")
    assert entry.method == "POST" and entry.status == 200 and entry.query == {"trace": "1"}
    assert entry.headers["authorization"] == "Bearer ***"
    assert entry.headers["x-echo"] == "k=***"
    assert entry.body["messages"][0]["content"] == "***"
    assert key not in json.dumps([e.to_dict() for e in xai_server.journal])
    control = httpx.get(xai_server.root_url + "/_control/journal").json()
    assert control[0]["path"] == "/v1/chat/completions" and key not in json.dumps(control)


def test_path_prefix() -> None:
    with XAIServer(path_prefix="/proxy/xai/", api_key="xai-prefixed-key-9999") as server:
        assert server.base_url.endswith("/proxy/xai/v1")
        auth = {"Authorization": "Bearer xai-prefixed-key-9999"}
        assert httpx.get(server.base_url + "/models", headers=auth).status_code == 200
        root = server.base_url.split("/proxy")[0]
        assert httpx.get(root + "/v1/models", headers=auth).status_code == 404
        assert httpx.post(server.root_url + "/_control/reset", json={}).status_code == 200
        conn = json.loads(server.connection_json(timeout=3))
        assert conn == {"conn_type": "xai", "host": server.base_url,
                        "password": "xai-prefixed-key-9999", "extra": {"timeout": 3}}
        assert server.connection_uri().startswith("xai://http://:xai-prefixed-key-9999@127.0.0.1")


def test_models_and_language_models(client: httpx.Client) -> None:
    ids = {m["id"] for m in client.get("/models").json()["data"]}
    assert {"grok-4.3", "grok-3-mini", "grok-2-vision-1212"} <= ids
    assert client.get("/models/grok-4").json()["id"] == "grok-4.3"
    assert client.get("/models/grok-beta").status_code == 404
    models = {m["id"]: m for m in client.get("/language-models").json()["models"]}
    g43 = models["grok-4.3"]
    assert (g43["prompt_text_token_price"], g43["cached_prompt_text_token_price"],
            g43["completion_text_token_price"]) == (12500, 2000, 25000)
    assert g43["aliases"] == ["grok-4"] and g43["input_modalities"] == ["text", "image"]
    assert models["grok-3-mini"]["cached_prompt_text_token_price"] == 750
    assert models["grok-2-vision-1212"]["prompt_image_token_price"] == 20000
    assert models["grok-3"]["input_modalities"] == ["text"]
    assert client.get("/language-models/grok-3").json()["completion_text_token_price"] == 150000
    assert client.get("/language-models/nope").status_code == 404


def test_api_key_flags(client: httpx.Client, xai_server: XAIServer) -> None:
    info = client.get("/api-key").json()
    assert info["redacted_api_key"] == "xai-..." + xai_server.api_key[-4:]
    assert xai_server.api_key not in json.dumps(info)
    assert not (info["api_key_blocked"] or info["api_key_disabled"] or info["team_blocked"])
    assert info["acls"] == ["api-key:model:*", "api-key:endpoint:*"]
    xai_server.configure(api_key_blocked=True)
    assert client.get("/api-key").json()["api_key_blocked"] is True
    blocked = chat(client)
    assert blocked.status_code == 403 and blocked.json()["code"].startswith("The caller")


def test_tokenize_matches_usage(client: httpx.Client, xai_server: XAIServer) -> None:
    text = "hello world, tokens!"
    toks = client.post("/tokenize-text", json={"text": text, "model": "grok-3"}).json()
    pieces = toks["token_ids"]
    assert "".join(t["string_token"] for t in pieces) == text
    assert all(bytes(t["token_bytes"]).decode() == t["string_token"] for t in pieces)
    assert all(isinstance(t["token_id"], int) for t in pieces)
    xai_server.configure(prompt_cache=False)
    assert chat(client, text).json()["usage"]["prompt_tokens"] == len(pieces)
    assert client.post("/tokenize-text", json={"text": "x", "model": "nope"}).status_code == 404


def test_chaos_is_deterministic(client: httpx.Client, xai_server: XAIServer) -> None:
    chaos = Chaos(rate_429_retry_after=0.3, rate_503=0.2, rate_truncate=0.1, seed=7)

    def run() -> list[int]:
        xai_server.set_chaos(chaos)
        return [chat(client).status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second and {200, 429, 503} <= set(first)
    rng = random.Random(7)
    picks = [chaos.pick(rng.random()) for _ in range(20)]
    assert first == [p[1].status if p else 200 for p in picks]
    assert dict(xai_server.state.chaos_counts) == dict(Counter(p[0] for p in picks if p))
    assert client.get("/models").status_code == 200  # chaos only hits chat completions


def test_control_endpoints(xai_server: XAIServer, client: httpx.Client) -> None:
    ctl = httpx.Client(base_url=xai_server.root_url + "/_control", timeout=5)
    r = ctl.post("/faults", json={"faults": [{"status": 503, "retry_after": 2}],
                                          "times": 2})
    assert r.json()["pending"] == 2
    assert [chat(client).status_code for _ in range(3)] == [503, 503, 200]
    assert ctl.post("/config", json={"deferred_pending_polls": 0}).status_code == 200
    rid = chat(client, deferred=True).json()["request_id"]
    assert client.get(f"/chat/deferred-completion/{rid}").status_code == 200
    assert ctl.post("/config", json={"latency": "slow"}).status_code == 400
    assert ctl.post("/config", json={"bogus": 1}).status_code == 400
    assert ctl.post("/faults", json={"faults": [{"sttus": 500}]}).status_code == 400
    ctl.post("/chaos", json={"rate_429": 1.0, "seed": 1})
    assert chat(client).status_code == 429
    state = ctl.get("/state").json()
    assert state["chaos_counts"] == {"429": 1}
    assert len(ctl.get("/journal").json()) == len(xai_server.journal) > 5
    assert ctl.post("/reset", json={}).status_code == 200
    assert ctl.get("/journal").json() == []
    assert chat(client).status_code == 200  # chaos and config cleared
    assert xai_server.state.deferred_pending_polls == 2
    ctl.close()


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/reset", {}),  # no body, no content type: what a page's fetch() or <form> could send
        ("/reset", {"content": b"{}", "headers": {"content-type": "text/plain"}}),
        ("/faults", {"content": b'{"faults": [{"status": 503}]}', "headers": {"content-type": "text/plain"}}),
        ("/config", {"data": {"latency": "5"}}),  # a form post
        ("/chaos", {"content": b'{"rate_503": 1.0}', "headers": {"content-type": "multipart/form-data; boundary=x"}}),
    ],
)
def test_control_posts_that_a_web_page_could_send_are_refused(
    xai_server: XAIServer, client: httpx.Client, path: str, kwargs: dict[str, Any]
) -> None:
    """A cross-site page can send these without a CORS preflight; a JSON POST it cannot."""
    assert chat(client).status_code == 200
    before = len(xai_server.journal)
    refused = httpx.post(xai_server.root_url + "/_control" + path, timeout=5, **kwargs)
    assert refused.status_code == 415 and "application/json" in refused.json()["error"]
    assert len(xai_server.journal) == before and xai_server.state.pending_faults == 0  # nothing changed
    assert xai_server.state.latency == 0.0 and chat(client).status_code == 200
    typed = {"headers": {"content-type": "application/json; charset=utf-8"}, "content": b"{}"}
    assert httpx.post(xai_server.root_url + "/_control" + path, timeout=5, **typed).status_code == 200


def test_journal_masks_the_key_in_path_query_and_escaped_bodies(client: httpx.Client, xai_server: XAIServer) -> None:
    """Issue 27: ``GET /v1/models/<key>?api_key=<key>`` showed the key in ``/_control/journal``."""
    key = xai_server.api_key
    client.get(f"/models/{key}", params={"api_key": key, key: "x", "other": f"pre{key}post"})
    escaped = json.dumps({"model": "grok-3", "messages": [{"role": "user", "content": key}]}, ensure_ascii=True)
    escaped = escaped.replace(key, f"\\u{ord(key[0]):04x}{key[1:]}")  # the key behind a JSON escape
    client.post("/chat/completions", content=escaped, headers={"content-type": "application/json"})
    client.get(f"/models/{quote(key, safe='')}%2F", params={"k": key.upper()})  # percent-encoded in the path
    wrong = "xai-some-other-key-" + uuid.uuid4().hex  # a wrong (or rotated) key is a secret too
    httpx.get(f"{xai_server.base_url}/models/{wrong}", params={"q": wrong}, headers={"x-echo": wrong,
              "authorization": f"Bearer {wrong}"})
    control = httpx.get(xai_server.root_url + "/_control/journal")
    entries = [e.to_dict() for e in xai_server.journal]
    for shown in (control.text, json.dumps(entries)):
        assert key not in shown and wrong not in shown
    models, chat_entry, encoded, other = entries
    assert models["path"] == "/v1/models/***" and models["status"] == 404
    assert models["query"] == {"api_key": "***", "***": "x", "other": "pre***post"}
    assert chat_entry["body"]["messages"][0]["content"] == "***" and chat_entry["status"] == 200
    assert encoded["path"] == "/v1/models/***/" and encoded["query"] == {"k": key.upper()}
    assert other["path"] == "/v1/models/***" and other["query"] == {"q": "***"}
    assert other["headers"]["x-echo"] == "***" and other["status"] == 400


def test_fixture_sets_connection_env(xai_server: XAIServer) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_XAI_DEFAULT"])
    assert conn["host"] == xai_server.base_url and conn["password"] == xai_server.api_key


def test_control_endpoints_never_return_the_key(xai_server: XAIServer) -> None:
    ctl = httpx.Client(base_url=xai_server.root_url + "/_control", timeout=5)
    key, rotated = (f"xai-{name}-{uuid.uuid4().hex}" for name in ("secret", "rotated"))
    xai_server.configure(api_key=key)
    state = ctl.get("/state")
    assert state.status_code == 200 and state.json()["config"]["latency"] == 0.0
    assert key not in state.text
    configured = ctl.post("/config", json={"latency": 0.25})
    assert configured.json()["latency"] == 0.25 and key not in configured.text
    configured = ctl.post("/config", json={"api_key": rotated})
    assert configured.status_code == 200 and rotated not in configured.text
    assert rotated not in ctl.get("/state").text
    assert xai_server.api_key == rotated  # set, just never shown
    ctl.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.com"])
def test_server_and_cli_refuse_a_non_loopback_host(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_provider_xai.testing.__main__ import main

    refusal = f"refusing non-loopback host {host!r}"
    with pytest.raises(ValueError, match=refusal):
        XAIServer(host=host)
    assert XAIServer(host=host, allow_non_loopback=True).host == host  # built, not started
    with pytest.raises(SystemExit) as exc:
        main(["--host", host])
    assert exc.value.code == 2 and refusal in capsys.readouterr().err


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "localhost", "::1"])
def test_server_accepts_a_loopback_host(host: str) -> None:
    assert XAIServer(host=host).host == host


def test_journal_keeps_the_newest_entries_up_to_its_limit(client: httpx.Client, xai_server: XAIServer) -> None:
    default = xai_server.state.journal_limit
    assert default >= 10_000  # generous: a test's whole traffic fits
    xai_server.configure(journal_limit=3)
    models = ["grok-3", "grok-4", "grok-3-mini", "grok-4.3", "grok-code-fast-1"]
    for model in models:
        assert client.get(f"/models/{model}").status_code == 200
    assert [e.path for e in xai_server.journal] == [f"/v1/models/{m}" for m in models[-3:]]
    ctl = httpx.Client(base_url=xai_server.root_url + "/_control", timeout=5)
    assert ctl.post("/config", json={"journal_limit": 0}).status_code == 400
    assert ctl.post("/config", json={"journal_limit": 1}).json()["journal_limit"] == 1
    assert [e.path for e in xai_server.journal] == ["/v1/models/grok-code-fast-1"]
    ctl.close()
    xai_server.reset()
    assert xai_server.state.journal_limit == default
