"""``/v1/responses`` on the bundled local xAI server: plain httpx, and the ``openai`` SDK as an
independent check that the wire format (bodies, typed stream events) parses."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pydantic
import pytest

from airflow_provider_xai.testing import PRICES, Fault, XAIServer
from airflow_provider_xai.testing.chat import count_tokens
from airflow_provider_xai.testing.responses_request import item_text
from airflow_provider_xai.testing.responses_tools import TOOL_PRICE_TICKS

pytest_plugins = ["airflow_provider_xai.testing.pytest_plugin"]

DOCS = {"handbook": [
    {"file_id": "file_1", "filename": "vacation.md", "text": "Employees get 25 vacation days."},
    {"file_id": "file_2", "filename": "travel.md", "text": "Book travel through the portal."},
    {"file_id": "file_3", "filename": "expenses.md", "text": "Submit expenses monthly."},
]}
MCP = {"crm.lookup_customer": {"customer": "ACME", "tier": "gold"}, "crm.list_orders": "3 open",
       "wiki.search": "no hits"}
SAVE_NOTE = {"type": "function", "name": "save_note", "description": "Store a note",
             "parameters": {"type": "object", "properties": {
                 "text": {"type": "string"}, "priority": {"enum": ["low", "high"]}},
                 "required": ["text", "priority"]}}


@pytest.fixture
def client(xai_server: XAIServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=xai_server.base_url, timeout=5,
                      headers={"Authorization": f"Bearer {xai_server.api_key}"}) as c:
        yield c


@pytest.fixture
def sdk(xai_server: XAIServer) -> Any:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=xai_server.base_url, api_key=xai_server.api_key,
                         max_retries=0, timeout=5)


def create(client: httpx.Client, prompt: Any = "Hello Grok", **kw: Any) -> dict[str, Any]:
    r = client.post("/responses", json={"model": "grok-4.3", "input": prompt, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def refused(client: httpx.Client, status: int = 400, **body: Any) -> str:
    r = client.post("/responses", json={"model": "grok-4.3", "input": "hi", **body})
    assert r.status_code == status, r.text
    assert set(r.json()) == {"code", "error"}
    return str(r.json()["error"])


def sse(client: httpx.Client, **body: Any) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of a streamed response."""
    body = {"model": "grok-4.3", "input": "Hello Grok", "stream": True, **body}
    frames: list[tuple[str | None, str]] = []
    with client.stream("POST", "/responses", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                frames.append((event, line[6:]))
                event = None
    return frames


def events(frames: list[tuple[str | None, str]]) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in frames if data != "[DONE]"]


def message(resp: dict[str, Any]) -> dict[str, Any]:
    return next(i for i in resp["output"] if i["type"] == "message")["content"][0]


def token_cost(model: str, usage: dict[str, Any]) -> int:
    p = PRICES[model]
    cached = usage["input_tokens_details"]["cached_tokens"]
    usd = ((usage["input_tokens"] - cached) * p.input + cached * (p.cached_input or p.input)
           + usage["output_tokens"] * p.output) / 1e6
    return round(usd * 1e10)


def tokens(items: list[dict[str, Any]]) -> int:
    return sum(max(1, count_tokens(item_text(i))) for i in items)


def same_shape(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Equal once each response's own id and timestamps are masked."""
    def mask(r: dict[str, Any]) -> Any:
        text = json.dumps({k: v for k, v in r.items() if k not in ("created_at", "completed_at")})
        return json.loads(text.replace(r["id"], "ID"))
    assert mask(a) == mask(b)


# -- plain responses -------------------------------------------------------------------------
def test_plain_response_shape_usage_and_cost(client: httpx.Client) -> None:
    text = "Summarise the week in one line please"
    resp = create(client, text)
    uuid.UUID(resp["id"])
    assert resp["object"] == "response" and resp["status"] == "completed"
    assert resp["model"] == "grok-4.3" and resp["error"] is None
    assert [i["type"] for i in resp["output"]] == ["reasoning", "message"]
    reasoning, msg = resp["output"]
    assert reasoning["id"] == f"rs_{resp['id']}" and msg["id"] == f"msg_{resp['id']}"
    assert reasoning["summary"][0]["type"] == "summary_text"
    assert "encrypted_content" not in reasoning
    part = msg["content"][0]
    assert part["type"] == "output_text" and part["text"] == f"Grok (local) heard: {text}"
    assert part["annotations"] == [] and msg["role"] == "assistant"
    # the normalised request configuration is echoed
    assert resp["tool_choice"] == "auto" and resp["parallel_tool_calls"] is True
    assert resp["text"] == {"format": {"type": "text"}} and resp["tools"] == []
    assert resp["reasoning"] == {"effort": None, "summary": None} and resp["store"] is True
    assert resp["temperature"] is None and resp["previous_response_id"] is None
    assert "output_text" not in resp
    u = resp["usage"]
    reasoning_tokens = count_tokens(reasoning["summary"][0]["text"])
    assert u["input_tokens"] == count_tokens(text)
    assert u["output_tokens_details"]["reasoning_tokens"] == reasoning_tokens
    assert u["output_tokens"] == count_tokens(part["text"]) + reasoning_tokens  # reasoning inside
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    assert u["input_tokens_details"] == {"cached_tokens": 0}
    assert u["num_server_side_tools_used"] == 0 and u["num_sources_used"] == 0
    assert set(u["server_side_tool_usage_details"].values()) == {0}
    assert u["cost_in_usd_ticks"] == token_cost("grok-4.3", u)
    plain = create(client, text, model="grok-3", temperature=0.5)
    assert [i["type"] for i in plain["output"]] == ["message"] and plain["temperature"] == 0.5
    assert plain["usage"]["output_tokens_details"]["reasoning_tokens"] == 0


def test_openai_sdk_parses_a_response(sdk: Any) -> None:
    resp = sdk.responses.create(model="grok-4.3", input="Hello from the SDK",
                                instructions="Be brief.", reasoning={"effort": "low"},
                                include=["reasoning.encrypted_content"])
    assert resp.output_text == "Grok (local) heard: Hello from the SDK"
    assert [i.type for i in resp.output] == ["reasoning", "message"]
    assert resp.output[0].encrypted_content and "(low)" in resp.output[0].summary[0].text
    assert resp.instructions == "Be brief." and resp.reasoning.effort == "low"
    u = resp.usage
    assert u.input_tokens == count_tokens("Be brief.") + count_tokens("Hello from the SDK")
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert u.output_tokens_details.reasoning_tokens > 0
    assert u.model_extra["cost_in_usd_ticks"] > 0


def test_input_items_images_and_validation(client: httpx.Client, xai_server: XAIServer) -> None:
    png = "data:image/png;base64,iVBORw0KGgoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    parts = [{"type": "input_text", "text": "What is in this picture?"},
             {"type": "input_image", "image_url": png, "detail": "low"},
             {"type": "input_image", "image_url": "https://example.com/a.jpg"}]
    resp = create(client, [{"role": "user", "content": parts}])
    assert resp["usage"]["input_tokens"] == count_tokens("What is in this picture?") + 256 + 1024
    assert "does not support image input" in refused(client, input=[
        {"role": "user", "content": parts}], model="grok-3")
    assert "at least one content element" in refused(client, input=[{"role": "user",
                                                                      "content": []}])
    assert "use `input`" in refused(client, messages=[{"role": "user", "content": "x"}])
    assert "use `text.format`" in refused(client, response_format={"type": "json_object"})
    assert "input: invalid type: null" in refused(client, 422, input=None)
    r = client.post("/responses", json={"model": "grok-4.3"})
    assert r.status_code == 422 and "missing field `input`" in r.json()["error"]
    assert "does not exist" in refused(client, 404, model="grok-9")
    assert "reasoningEffort" in refused(client, model="grok-3", reasoning={"effort": "high"})
    assert "role" in refused(client, 422, input=[{"role": "robot", "content": "x"}])
    r = httpx.post(xai_server.base_url + "/responses", json={"model": "grok-4.3", "input": "x"})
    assert r.status_code == 401
    r = httpx.post(xai_server.base_url + "/responses", json={"model": "grok-4.3", "input": "x"},
                   headers={"Authorization": "Bearer xai-wrong-key-123456"})
    assert r.status_code == 400 and "Incorrect API key" in r.json()["error"]


# -- streaming -------------------------------------------------------------------------------
def test_stream_events_are_typed_numbered_and_carry_usage_last(client: httpx.Client) -> None:
    frames = sse(client, input="What about solar sails?", tools=[{"type": "web_search"}])
    assert frames[-1][1] != "[DONE]"  # no [DONE] by default
    evs = events(frames)
    assert all(name == ev["type"] for (name, _), ev in zip(frames, evs, strict=True))
    assert [ev["sequence_number"] for ev in evs] == list(range(len(evs)))
    types = [ev["type"] for ev in evs]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] == "response.completed" and types.count("response.completed") == 1
    for ev in evs[:-1]:
        assert ev.get("response", {}).get("usage") is None
    final = evs[-1]["response"]
    assert final["usage"]["num_server_side_tools_used"] == 1
    assert evs[0]["response"]["status"] == "in_progress" and evs[0]["response"]["output"] == []
    for kind in ("searching", "in_progress", "completed"):
        assert f"response.web_search_call.{kind}" in types
    for kind in ("part.added", "text.delta", "text.done", "part.done"):
        assert f"response.reasoning_summary_{kind}" in types
    deltas = [ev["delta"] for ev in evs if ev["type"] == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(deltas) == message(final)["text"]
    last_delta = max(i for i, t in enumerate(types) if t == "response.output_text.delta")
    ann = types.index("response.output_text.annotation.added")
    assert last_delta < ann < types.index("response.output_text.done")
    assert evs[ann]["annotation"] == message(final)["annotations"][0]
    done_items = [ev["item"] for ev in evs if ev["type"] == "response.output_item.done"]
    assert done_items == final["output"]


def test_streamed_final_response_matches_the_plain_one(client: httpx.Client,
                                                        xai_server: XAIServer) -> None:
    # identical requests, identical (uncached) usage
    xai_server.configure(prompt_cache=False, responses_collections=DOCS, responses_mcp_tools=MCP)
    body = {"input": "Weather in Paris today? vacation? And 3+4", "tools": [
        {"type": "web_search"}, {"type": "x_search"}, {"type": "code_interpreter"},
        {"type": "file_search", "vector_store_ids": ["handbook"]},
        {"type": "mcp", "server_url": "https://crm.example.com", "server_label": "crm"}]}
    plain = create(client, **body)
    final = events(sse(client, **body))[-1]["response"]
    same_shape(plain, final)
    hosts = {a["url"].split("/")[2] for a in message(final)["annotations"]}
    assert hosts >= {"weather.example.com", "x.com", "handbook"}
    assert final["usage"] == plain["usage"]
    assert final["usage"]["num_server_side_tools_used"] == 6


def test_openai_sdk_streams(sdk: Any) -> None:
    tools = [{"type": "web_search"}, {"type": "code_interpreter"}]
    with sdk.responses.stream(model="grok-4.3", input="solar sails, and 2**10", tools=tools) as s:
        seen = [ev.type for ev in s]
        final = s.get_final_response()
    assert seen[-1] == "response.completed" and "response.output_text.delta" in seen
    assert "1024" in final.output_text and "[[1]](https://en.wikipedia.org" in final.output_text
    assert [i.type for i in final.output] == ["reasoning", "web_search_call",
                                              "code_interpreter_call", "message"]
    assert final.usage.model_extra["server_side_tool_usage_details"]["web_search_calls"] == 1
    raw = list(sdk.responses.create(model="grok-3", input="hi there", stream=True))
    assert [e.sequence_number for e in raw] == list(range(len(raw)))
    assert raw[-1].type == "response.completed"
    assert raw[-1].response.output_text == "Grok (local) heard: hi there"


def test_done_marker_switch(client: httpx.Client, xai_server: XAIServer, sdk: Any) -> None:
    r = httpx.post(xai_server.root_url + "/_control/config", json={"responses_done_marker": True})
    assert r.json()["responses_done_marker"] is True
    frames = sse(client)
    assert frames[-1] == (None, "[DONE]")
    assert json.loads(frames[-2][1])["type"] == "response.completed"
    with sdk.responses.stream(model="grok-4.3", input="tolerate [DONE]") as s:
        assert s.get_final_response().output_text == "Grok (local) heard: tolerate [DONE]"
    xai_server.configure(responses_done_marker=False)
    assert sse(client)[-1][1] != "[DONE]"


def test_stream_interval(client: httpx.Client, xai_server: XAIServer) -> None:
    xai_server.configure(stream_interval=0.01)
    start = time.monotonic()
    n = len(sse(client, model="grok-3", input="a b"))
    assert time.monotonic() - start >= 0.01 * (n - 1)


# -- faults and journal ----------------------------------------------------------------------
def test_faults_and_journal(client: httpx.Client, xai_server: XAIServer) -> None:
    xai_server.enqueue(Fault(503, path="/responses"))
    r = client.post("/responses", json={"model": "grok-4.3", "input": "x"})
    assert r.status_code == 503 and r.json()["code"] == "Service unavailable"
    xai_server.enqueue(Fault(content='{"city": "Lisbon"}', path="/v1/responses"))
    assert message(create(client))["text"] == '{"city": "Lisbon"}'
    xai_server.enqueue(Fault(truncate_stream=True, path="/responses"))
    evs = events(sse(client, input="one two three four five"))
    assert [e["type"] for e in evs].count("response.output_text.delta") == 2
    assert evs[-1]["type"] == "response.output_text.delta"  # no terminal event
    xai_server.enqueue(Fault(truncate_stream=True, path="/responses"))
    evs = events(sse(client, input="call save_note", tools=[SAVE_NOTE]))
    assert evs[-1]["type"] == "response.output_item.done"
    xai_server.enqueue(Fault(malformed_chunk=True, path="/responses"))
    frames = sse(client)
    assert (None, "{not json") in frames and json.loads(frames[-1][1])["type"] == "response.completed"
    assert events(sse(client))[-1]["type"] == "response.completed"  # faults consumed
    posts = xai_server.requests("/v1/responses", "POST")
    assert [p.fault for p in posts][:5] == ["503", "200,content", "200,truncate_stream",
                                             "200,truncate_stream", "200,malformed_chunk"]
    assert posts[0].status == 503 and posts[1].body["input"] == "Hello Grok"
    assert posts[0].headers["authorization"] == "Bearer ***"


def test_fail_stream_fault(client: httpx.Client, xai_server: XAIServer, sdk: Any) -> None:
    xai_server.enqueue(Fault(fail_stream=True, message="upstream broke", path="/responses"))
    evs = events(sse(client, input="one two three four five"))
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert [e["type"] for e in evs].count("response.output_text.delta") == 2
    failed = evs[-1]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "upstream broke"}
    assert failed["response"]["usage"]["total_tokens"] > 0  # billed: a client must record it
    assert client.get(f"/responses/{failed['response']['id']}").json()["status"] == "failed"
    assert xai_server.requests("/v1/responses", "POST")[-1].fault == "200,fail_stream"
    xai_server.enqueue(Fault(fail_stream=True, path="/responses"))
    with sdk.responses.stream(model="grok-4.3", input="will fail") as s:
        seen = [e.type for e in s]
    assert seen[-1] == "response.failed"
    xai_server.enqueue(Fault(fail_stream=True, path="/responses"))
    assert create(client, "not streamed")["status"] == "completed"  # no-op without stream
    assert xai_server.state.pending_faults == 0


def test_omit_cost(client: httpx.Client, xai_server: XAIServer) -> None:
    xai_server.configure(omit_cost=True)
    assert "cost_in_usd_ticks" not in create(client, tools=[{"type": "web_search"}])["usage"]


# -- stored responses and chaining -----------------------------------------------------------
def test_get_delete_and_store_false(client: httpx.Client) -> None:
    resp = create(client, "remember me")
    got = client.get(f"/responses/{resp['id']}")
    assert got.status_code == 200 and got.json() == resp
    deleted = client.delete(f"/responses/{resp['id']}")
    assert deleted.json() == {"id": resp["id"], "object": "response", "deleted": True}
    assert client.get(f"/responses/{resp['id']}").status_code == 404
    assert client.delete(f"/responses/{resp['id']}").status_code == 404
    ephemeral = create(client, "forget me", store=False)
    assert ephemeral["store"] is False
    r = client.get(f"/responses/{ephemeral['id']}")
    assert r.status_code == 404 and r.json()["code"] == "Some requested entity was not found"
    assert client.delete(f"/responses/{ephemeral['id']}").status_code == 404
    assert "not found" in refused(client, 404, previous_response_id=ephemeral["id"])
    assert "not found" in refused(client, 404, previous_response_id=str(uuid.uuid4()))
    streamed = events(sse(client, input="kept too"))[-1]["response"]
    assert client.get(f"/responses/{streamed['id']}").json() == streamed


def test_chaining_bills_the_history_as_cached_input(client: httpx.Client, sdk: Any) -> None:
    first = create(client, "My name is Ada.", instructions="You are terse.")
    history = [{"type": "message", "role": "system", "content": "You are terse."},
               {"type": "message", "role": "user", "content": "My name is Ada."},
               *first["output"]]
    assert first["usage"]["input_tokens"] == tokens(history[:2])
    second = create(client, "What is my name?", previous_response_id=first["id"])
    assert second["previous_response_id"] == first["id"] and second["instructions"] is None
    u = second["usage"]
    new = count_tokens("What is my name?")
    assert u["input_tokens"] == tokens(history) + new
    assert u["input_tokens_details"]["cached_tokens"] == tokens(history)  # the whole history
    assert u["cost_in_usd_ticks"] == token_cost("grok-4.3", u)
    assert "cannot be combined with previous_response_id" in refused(
        client, previous_response_id=first["id"], instructions="Be nice.")
    third = sdk.responses.create(model="grok-4.3", input="And again?",
                                 previous_response_id=second["id"])
    assert third.usage.input_tokens_details.cached_tokens == tokens(
        [*history, {"type": "message", "role": "user", "content": "What is my name?"},
         *second["output"]])


def test_replaying_output_items_without_store(client: httpx.Client) -> None:
    first = create(client, "Plan a trip", store=False, include=["reasoning.encrypted_content"])
    assert first["output"][0]["encrypted_content"]
    replay = [{"role": "user", "content": "Plan a trip"}, *first["output"],
              {"role": "user", "content": "Shorter please"}]
    second = create(client, replay, store=False)
    assert message(second)["text"] == "Grok (local) heard: Shorter please"
    assert second["usage"]["input_tokens_details"]["cached_tokens"] > 0


# -- structured output -----------------------------------------------------------------------
def test_structured_output(client: httpx.Client, sdk: Any) -> None:
    schema = {"type": "object", "properties": {
        "city": {"type": "string"}, "mood": {"enum": ["sad", "happy"]},
        "days": {"type": "integer", "minimum": 2, "maximum": 9}},
        "required": ["city", "mood", "days"], "additionalProperties": False}
    resp = create(client, "A happy trip to Lisbon", tools=[{"type": "web_search"}],
                  text={"format": {"type": "json_schema", "name": "trip", "schema": schema}})
    part = message(resp)
    value = json.loads(part["text"])
    jsonschema.validate(value, schema)
    assert value["mood"] == "happy" and resp["text"]["format"]["name"] == "trip"
    assert part["annotations"] and "start_index" not in part["annotations"][0]
    obj = create(client, "x", text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(message(obj)["text"]), dict)
    assert "flat" in refused(client, text={"format": {"type": "json_schema",
                                                      "json_schema": {"schema": schema}}})
    assert "text: invalid type: string" in refused(client, 422, text="json")
    assert "unknown variant" in refused(client, 422, text={"format": {"type": "yaml"}})

    class Trip(pydantic.BaseModel):
        city: str
        days: int

    parsed = sdk.responses.parse(model="grok-4.3", input="Trip to Oslo", text_format=Trip)
    assert isinstance(parsed.output_parsed, Trip)


def test_max_output_tokens_makes_an_incomplete_response(client: httpx.Client) -> None:
    resp = create(client, "a long enough prompt to overflow the budget", max_output_tokens=12)
    assert resp["status"] == "incomplete"
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert resp["usage"]["output_tokens"] <= 12 and resp["max_output_tokens"] == 12
    evs = events(sse(client, input="a long enough prompt to overflow", max_output_tokens=12))
    assert evs[-1]["type"] == "response.incomplete"
    assert evs[-1]["response"]["usage"]["output_tokens"] <= 12


# -- server-side tools -----------------------------------------------------------------------
# The SDK knows no ``x_search_call`` item: copying one in its stream state warns (a real xAI
# stream does the same), so that warning is expected here.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
@pytest.mark.parametrize(("tool", "item_type", "counter", "prompt"), [
    ({"type": "web_search"}, "web_search_call", "web_search_calls", "Tides in Brest"),
    ({"type": "x_search"}, "x_search_call", "x_search_calls", "solar sail news"),
    ({"type": "code_interpreter"}, "code_interpreter_call", "code_interpreter_calls", "7*6"),
    ({"type": "file_search", "vector_store_ids": ["handbook"]}, "file_search_call",
     "file_search_calls", "vacation days"),
    ({"type": "mcp", "server_url": "https://mcp.example.com/sse", "server_label": "crm"},
     "mcp_call", "mcp_calls", "customer ACME"),
])
def test_each_tool_round_trips(sdk: Any, xai_server: XAIServer, tool: dict[str, Any],
                               item_type: str, counter: str, prompt: str) -> None:
    xai_server.configure(responses_collections=DOCS, responses_mcp_tools=MCP)
    resp = sdk.responses.create(model="grok-4-1-fast-reasoning", input=prompt, tools=[tool])
    calls = [i for i in resp.output if i.type == item_type]
    assert calls and resp.output[0].type == "reasoning" and resp.output[-1].type == "message"
    assert resp.output_text.startswith(f"Grok (local) heard: {prompt}")
    u = resp.usage.model_dump()
    assert u["server_side_tool_usage_details"][counter] == len(calls)
    assert u["num_server_side_tools_used"] == len(calls)
    kind = "code_interpreter" if item_type.startswith("code") else item_type.removesuffix("_call")
    fee = u["cost_in_usd_ticks"] - token_cost("grok-4-1-fast-reasoning", u)
    assert fee == TOOL_PRICE_TICKS[kind] * len(calls)
    assert fee == {"mcp": 0, "file_search": 25_000_000}.get(kind, 50_000_000) * len(calls)
    again = sdk.responses.retrieve(resp.id)
    assert again.output_text == resp.output_text
    with sdk.responses.stream(model="grok-4-1-fast-reasoning", input=prompt, tools=[tool]) as s:
        streamed = s.get_final_response()
    assert streamed.output_text == resp.output_text
    assert [i.type for i in streamed.output] == [i.type for i in resp.output]


def test_web_search_filters_and_citations(client: httpx.Client) -> None:
    resp = create(client, "Lisbon and solar sails", tools=[
        {"type": "web_search", "allowed_domains": ["wikipedia.org"]}],
        include=["web_search_call.action.sources"])
    part = message(resp)
    urls = [a["url"] for a in part["annotations"]]
    assert urls and all(u.startswith("https://en.wikipedia.org/") for u in urls)
    for n, a in enumerate(part["annotations"], 1):
        assert part["text"][a["start_index"]:a["end_index"]] == f"[[{n}]]({a['url']})"
        assert a["title"] == str(n)
    call = resp["output"][1]
    assert call["id"] == f"ws_{resp['id']}_0" and call["action"]["query"] == "Lisbon and solar sails"
    assert [s["url"] for s in call["action"]["sources"]] == urls
    assert resp["usage"]["num_sources_used"] == len(urls)
    quiet = create(client, "Lisbon", include=["no_inline_citations"], tools=[
        {"type": "web_search", "filters": {"excluded_domains": ["wikipedia.org"]}}])
    part = message(quiet)
    assert "[[" not in part["text"] and quiet["output"][1]["action"]["sources"] == []
    assert all("wikipedia" not in a["url"] and "start_index" not in a
               for a in part["annotations"])
    odd = create(client, "anything", tools=[{"type": "web_search",
                                             "allowed_domains": ["example.net"]}])
    assert [a["url"] for a in message(odd)["annotations"]] == ["https://example.net/"]


def test_x_search_filters(client: httpx.Client) -> None:
    resp = create(client, "solar sail", tools=[{"type": "x_search", "allowed_x_handles": ["NASA"],
                                                "from_date": "2026-03-01",
                                                "to_date": "2026-03-31"}],
                  include=["x_search_call.outputs"])
    urls = [a["url"] for a in message(resp)["annotations"]]
    assert urls == ["https://x.com/NASA/status/1879000000000000003"]
    assert resp["output"][1]["action"]["sources"] == [{"type": "url", "url": urls[0]}]
    later = create(client, "solar sail", tools=[{"type": "x_search", "from_date": "2026-09-01"}])
    assert [a["url"] for a in message(later)["annotations"]] == [
        "https://x.com/solar_sail_fan/status/1879000000000000004"]


def test_code_interpreter_output(client: httpx.Client) -> None:
    resp = create(client, "What is (17 + 4) * 2?", tools=[{"type": "code_execution"}])
    call = resp["output"][1]
    assert call["type"] == "code_interpreter_call" and call["id"] == f"ci_{resp['id']}_0"
    assert call["code"] == "print((17 + 4) * 2)"
    assert call["outputs"] == [{"type": "logs", "logs": "42\n"}]
    assert "The code printed: 42." in message(resp)["text"]
    words = create(client, "count my words", tools=[{"type": "code_interpreter"}])["output"][1]
    assert words["outputs"][0]["logs"] == "3\n"


def test_file_search_collections(client: httpx.Client, xai_server: XAIServer) -> None:
    r = httpx.post(xai_server.root_url + "/_control/config", json={"responses_collections": DOCS})
    assert r.status_code == 200
    tool = {"type": "file_search", "vector_store_ids": ["handbook"], "max_num_results": 1}
    resp = create(client, "How many vacation days?", tools=[tool],
                  include=["file_search_call.results"])
    call = resp["output"][1]
    assert call["queries"] == ["How many vacation days?"]
    assert [(h["file_id"], h["filename"]) for h in call["results"]] == [("file_1", "vacation.md")]
    assert message(resp)["annotations"][0]["url"] == "collections://handbook/files/file_1"
    assert "25 vacation days" in message(resp)["text"]
    assert create(client, "vacation", tools=[tool])["output"][1]["results"] is None
    assert "not found" in refused(client, 404, tools=[{"type": "file_search",
                                                       "vector_store_ids": ["nope"]}])
    bad = httpx.post(xai_server.root_url + "/_control/config",
                     json={"responses_collections": {"c": [{"file_id": 1}]}})
    assert bad.status_code == 400 and "file_id" in bad.json()["error"]


def test_mcp_table(client: httpx.Client, xai_server: XAIServer) -> None:
    xai_server.configure(responses_mcp_tools=MCP)
    tool = {"type": "mcp", "server_url": "https://crm.example.com/mcp", "server_label": "crm",
            "allowed_tools": ["lookup_customer"]}
    resp = create(client, "who is ACME?", tools=[tool])
    calls = [i for i in resp["output"] if i["type"] == "mcp_call"]
    assert [(c["server_label"], c["name"]) for c in calls] == [("crm", "lookup_customer")]
    assert json.loads(calls[0]["output"]) == MCP["crm.lookup_customer"]
    assert json.loads(calls[0]["arguments"]) == {"query": "who is ACME?"}
    assert "crm.lookup_customer returned:" in message(resp)["text"]
    both = create(client, "orders", tools=[{**tool, "allowed_tools": None}], max_turns=5)
    assert both["usage"]["server_side_tool_usage_details"]["mcp_calls"] == 2
    capped = create(client, "orders", tools=[{**tool, "allowed_tools": None},
                                             {"type": "web_search"}], max_turns=1)
    assert capped["usage"]["num_server_side_tools_used"] == 1


@pytest.mark.parametrize(("tool", "needle"), [
    ({"type": "web_search", "allowed_domains": [f"d{i}.com" for i in range(6)]},
     "A maximum of 5 domains can be allowed, but 6 were provided."),
    ({"type": "web_search", "excluded_domains": [f"d{i}.com" for i in range(7)]},
     "A maximum of 5 domains can be excluded, but 7 were provided."),
    ({"type": "web_search", "allowed_domains": ["a.com"], "excluded_domains": ["b.com"]},
     "mutually exclusive"),
    ({"type": "web_search", "filters": {"allowed_domains": ["https://a.com"]}}, "bare domain"),
    ({"type": "web_search", "user_location": {"country": "PT"}}, "user_location"),
    ({"type": "x_search", "allowed_x_handles": [f"h{i}" for i in range(21)]},
     "A maximum of 20 X handles can be allowed, but 21 were provided."),
    ({"type": "x_search", "allowed_x_handles": ["a"], "excluded_x_handles": ["b"]},
     "mutually exclusive"),
    ({"type": "x_search", "from_date": "2026/01/01"}, "from_date must be a date in YYYY-MM-DD"),
    ({"type": "x_search", "from_date": "2026-02-01", "to_date": "2026-01-01"}, "is after"),
    ({"type": "file_search", "vector_store_ids": []}, "vector_store_ids"),
    ({"type": "file_search", "vector_store_ids": ["a"], "filters": {}}, "filters"),
    ({"type": "mcp", "server_url": "https://m.example.com"}, "server_label is required"),
    ({"type": "mcp", "server_url": "ftp://m", "server_label": "m"}, "http(s)"),
    ({"type": "function", "name": "f", "parameters": {"type": "array"}},
     "Invalid function tool 'f': the root of `parameters` must be"),
])
def test_bad_tool_options_are_refused(client: httpx.Client, xai_server: XAIServer,
                                      tool: dict[str, Any], needle: str) -> None:
    assert needle in refused(client, tools=[tool])
    assert xai_server.requests("/v1/responses")[-1].status == 400


def test_malformed_tools_and_tool_choice(client: httpx.Client) -> None:
    nested = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    assert "flat" in refused(client, 422, tools=[nested])
    assert "unknown variant `browser`" in refused(client, 422, tools=[{"type": "browser"}])
    assert "duplicate" in refused(client, tools=[SAVE_NOTE, SAVE_NOTE])
    assert "unknown function 'nope'" in refused(client, tools=[SAVE_NOTE], tool_choice={
        "type": "function", "name": "nope"})
    assert "server-side tools cannot be forced" in refused(
        client, tools=[{"type": "web_search"}], tool_choice={"type": "web_search"})
    assert "tool_choice" in refused(client, tool_choice="always")
    union = {"type": "function", "name": "g", "parameters": {"anyOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "object"}]}}
    assert create(client, tools=[union])["status"] == "completed"


# -- function calls --------------------------------------------------------------------------
@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "save_note"},
                                    {"type": "function", "function": {"name": "save_note"}}])
def test_function_call_and_follow_up(client: httpx.Client, choice: Any) -> None:
    resp = create(client, "note: buy rope, high priority", tools=[SAVE_NOTE, {"type": "web_search"}],
                  tool_choice=choice)
    assert [i["type"] for i in resp["output"]] == ["reasoning", "function_call"]
    call = resp["output"][1]
    assert call["id"] == f"fc_{resp['id']}_0" and call["name"] == "save_note"
    assert re.fullmatch(r"call_[0-9a-f]{20}", call["call_id"]) and call["call_id"] != call["id"]
    args = json.loads(call["arguments"])
    jsonschema.validate(args, SAVE_NOTE["parameters"])
    assert args["priority"] == "high"
    assert resp["usage"]["num_server_side_tools_used"] == 0  # the turn ended on the call
    follow = create(client, [{"type": "function_call_output", "call_id": call["call_id"],
                              "output": '{"saved": true}'}], previous_response_id=resp["id"],
                    tools=[SAVE_NOTE], tool_choice=choice)
    assert message(follow)["text"] == 'Grok (local) heard: {"saved": true}'
    assert "no function_call with call_id" in refused(client, input=[
        {"type": "function_call_output", "call_id": "call_unknown", "output": "x"}],
        previous_response_id=resp["id"])


def test_function_calls_with_the_sdk(sdk: Any) -> None:
    other = {**SAVE_NOTE, "name": "send_mail"}
    both = sdk.responses.create(model="grok-3", input="save_note and send_mail please",
                                tools=[SAVE_NOTE, other])
    assert [i.name for i in both.output if i.type == "function_call"] == ["save_note", "send_mail"]
    one = sdk.responses.create(model="grok-3", input="save_note and send_mail please",
                               tools=[SAVE_NOTE, other], parallel_tool_calls=False)
    assert [i.type for i in one.output] == ["function_call"] and one.output_text == ""
    plain = sdk.responses.create(model="grok-3", input="just chat", tools=[SAVE_NOTE])
    assert [i.type for i in plain.output] == ["message"]
    none = sdk.responses.create(model="grok-3", input="save_note", tools=[SAVE_NOTE],
                                tool_choice="none")
    assert [i.type for i in none.output] == ["message"]
    call = one.output[0]
    replay = [{"role": "user", "content": "save_note please"}, call.model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": call.call_id, "output": "done"}]
    answer = sdk.responses.create(model="grok-3", input=replay, tools=[SAVE_NOTE], store=False)
    assert answer.output_text == "Grok (local) heard: done"
