"""The package's shape, as docs/architecture.md draws it: layers import only downwards, no import
circles (type-only imports included), no private name imported across modules, and every
endpoint the hook calls has a declaration."""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

import airflow_provider_xai
from airflow_provider_xai.defaults import DEFAULT_MANAGEMENT_URL
from airflow_provider_xai.endpoints import ENDPOINTS, declaration_of
from airflow_provider_xai.exceptions import XAIStructuredOutputError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.pipeline.call import Call

ROOT = Path(airflow_provider_xai.__file__).parent
PACKAGE = "airflow_provider_xai"
#: Lowest first: a module may import its own layer and the layers below, never one above.
LAYERS = (
    ("", "exceptions", "defaults", "secrets", "task_state", "media_options"),
    (
        "schemas", "pricing", "tool_prices", "forecast", "usage", "usage_summary", "arguments", "images", "tools",
        "structured", "retry_policy", "get_provider_info", "functions", "media_inputs",
    ),
    ("connection",),
    ("pipeline", "polling"),
    ("streams",),
    ("endpoints",),
    ("tracing", "ratelimit", "spend"),
    ("hooks",),
    ("operators", "triggers", "sensors", "decorators", "dashboard", "pools", "cli"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py") if "testing" not in p.relative_to(ROOT).parts}


def imports_of(path: Path) -> Iterator[tuple[str, str, int]]:
    """(module, imported name, line) of every import of the package, at any depth, type-only too."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            for alias in node.names:
                yield node.module, alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield alias.name, "", node.lineno


def target(module: str, name: str) -> str:
    """The module an import reaches (``from pkg import submodule`` reaches the submodule)."""
    return f"{module}.{name}" if f"{module}.{name}" in MODULES else module


def layer_of(module: str) -> int:
    rest = module.removeprefix(PACKAGE).removeprefix(".")
    head = rest.split(".", 1)[0]
    return next(n for n, names in enumerate(LAYERS) if head in names)


def graph() -> dict[str, set[str]]:
    return {m: {target(mod, name) for mod, name, _ in imports_of(p)} - {m} for m, p in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)  # StopIteration names a module no layer holds


def test_imports_never_run_up_a_layer() -> None:
    upward = [
        f"{m} -> {d}"
        for m, deps in graph().items()
        for d in deps
        if d in MODULES and layer_of(d) > layer_of(m)
    ]
    assert upward == []


def test_there_are_no_import_circles() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(edges.get(module, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep] if dep in path else [module, dep]
            if dep not in state and (found := visit(dep, [*path, dep])):
                return found
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (circle := visit(module, [module])):
            pytest.fail(" -> ".join(circle))


def test_no_private_name_is_imported_across_modules() -> None:
    private = [
        f"{m}:{line} imports {name} from {mod}"
        for m, p in MODULES.items()
        for mod, name, line in imports_of(p)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_the_pipeline_imports_no_layer_and_no_endpoint() -> None:
    """Layers wrap the send; the transport never knows them (nor any endpoint by name)."""
    for module, path in MODULES.items():
        if module.startswith(f"{PACKAGE}.pipeline"):
            reached = {target(mod, name) for mod, name, _ in imports_of(path)}
            assert not {r for r in reached if r.split(".")[1] in ("tracing", "ratelimit", "endpoints", "hooks")}


# --- every endpoint the hook calls is declared ------------------------------------------------------
FILE = {"id": "file_1", "object": "file", "bytes": 2, "filename": "a.txt"}
COLLECTION = {"collection_id": "collection_1", "collection_name": "n"}
DOCUMENT = {"file_metadata": {"file_id": "file_1", "name": "a.txt"}, "status": "DOCUMENT_STATUS_PROCESSED"}
#: Answers of the files, collections (the Management API's host) and voice endpoints.
STORAGE_ANSWERS: dict[tuple[str, str], Any] = {
    ("POST", "/v1/files"): FILE,
    ("GET", "/v1/files"): {"data": [FILE]},
    ("GET", "/v1/files/file_1"): FILE,
    ("DELETE", "/v1/files/file_1"): {"id": "file_1", "deleted": True},
    ("GET", "/v1/files/file_1/content"): b"hi",
    ("POST", "/v1/files/file_1/public-url"): {"public_url": "https://files-cdn.x.ai/t/file_1.txt"},
    ("POST", "/v1/files/file_1/public-url/revoke"): {"id": "file_1", "revoked": True},
    ("POST", "/v1/documents/search"): {"matches": []},
    ("POST", "/v1/tts"): b"RIFF",
    ("POST", "/v1/stt"): {"text": "hi", "duration": 1.0},
    ("POST", "/management/v1/collections"): COLLECTION,
    ("GET", "/management/v1/collections"): {"collections": [COLLECTION]},
    ("GET", "/management/v1/collections/collection_1"): COLLECTION,
    ("DELETE", "/management/v1/collections/collection_1"): {},
    ("POST", "/management/v1/collections/collection_1/documents/file_1"): {},
    ("GET", "/management/v1/collections/collection_1/documents"): {"documents": [DOCUMENT]},
    ("GET", "/management/v1/collections/collection_1/documents/file_1"): DOCUMENT,
    ("DELETE", "/management/v1/collections/collection_1/documents/file_1"): {},
}


def host_path(request: httpx.Request) -> str:
    """The request's path, under ``/management`` for the Management API's host."""
    management = request.url.host == httpx.URL(DEFAULT_MANAGEMENT_URL).host
    return f"/management{request.url.path}" if management else request.url.path


def answers(request: httpx.Request) -> httpx.Response:
    """A plausible answer for any endpoint (a stream for a streamed request)."""
    if (stored := STORAGE_ANSWERS.get((request.method, host_path(request)))) is not None:
        return httpx.Response(200, content=stored) if isinstance(stored, bytes) else httpx.Response(200, json=stored)
    path = request.url.path
    body = json.loads(request.read()) if "json" in request.headers.get("content-type", "") else {}
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    if body.get("stream") and path.endswith("chat/completions"):
        choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}
        chunks = [
            {"id": "c", "model": "m", "created": 1, "choices": [choice]},
            {"id": "c", "model": "m", "created": 1, "choices": [], "usage": usage},
        ]
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})
    response = {"id": "r", "object": "response", "model": "m", "status": "completed", "output": [],
                "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}  # fmt: skip
    if body.get("stream"):
        events = [{"type": "response.created", "sequence_number": 0, "response": {**response, "status": "in_progress"}},
                  {"type": "response.completed", "sequence_number": 1, "response": response}]  # fmt: skip
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})
    if request.url.host == "media.x.test":  # a generated file, at the URL xAI handed out
        return httpx.Response(200, content=JPEG)
    image = {"url": "https://media.x.test/i.jpeg", "revised_prompt": "p"}
    if path in ("/v1/images/generations", "/v1/images/edits"):
        return httpx.Response(200, json={"request_id": "i"} if body.get("deferred") else {"data": [image]})
    if path.startswith("/v1/images/"):
        return httpx.Response(200, json={"status": "done", "data": [image], "usage": {"cost_in_usd_ticks": 1}})
    if path.startswith("/v1/videos/") and request.method == "POST":
        return httpx.Response(200, json={"request_id": "v"})
    if path.startswith("/v1/videos/"):
        video = {"url": "https://media.x.test/v.mp4", "duration": 1}
        return httpx.Response(200, json={"status": "done", "video": video, "usage": {"cost_in_usd_ticks": 1}})
    batch = {"batch_id": "b", "name": "n", "state": {"num_requests": 1, "num_pending": 0}}
    by_path: dict[str, Any] = {
        "/v1/chat/completions": {"request_id": "d"} if body.get("deferred") else
        {"id": "c", "model": "m", "created": 1, "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": usage},  # noqa: E501
        "/v1/responses": response,
        "/v1/models": {"data": []},
        "/v1/language-models": {"models": []},
        "/v1/api-key": {"redacted_api_key": "xai-...", "team_id": "t", "api_key_id": "k"},
        "/v1/tokenize-text": {"token_ids": []},
        "/v1/batches": {"batches": [], **batch} if request.method == "POST" else {"batches": []},
        "/v1/files": {"id": "file_1", "object": "file", "bytes": 2, "filename": "batch.jsonl"},
    }
    if (billed := BILLING_ANSWERS.get((request.method, path))) is not None:
        return httpx.Response(200, json=billed)
    if path in by_path:
        return httpx.Response(200, json=by_path[path])
    if path.startswith("/v1/chat/deferred-completion/"):
        return httpx.Response(200, json=by_path["/v1/chat/completions"])
    if path.startswith("/v1/responses/"):
        return httpx.Response(200, json={"id": "r", "object": "response", "deleted": True, **response})
    if path.startswith("/v1/language-models/"):
        return httpx.Response(200, json={"id": "m"})
    if path.endswith("/requests") and request.method == "POST":
        return httpx.Response(200, json={})
    if path.endswith("/requests"):
        return httpx.Response(200, json={"batch_request_metadata": []})
    if path.endswith("/results"):
        return httpx.Response(200, json={"results": []})
    return httpx.Response(200, json=batch)


JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60


class Kept:
    """A sink that keeps a download in memory (the operators' write to object storage)."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, chunk: bytes) -> None:
        self.data += chunk

    def result(self) -> bytes:
        return self.data

    def discard(self) -> None:
        self.data = b""
#: Answers of spend control's price lists and the Management API's billing (team "t").
BILLING_ANSWERS: dict[tuple[str, str], Any] = {
    ("GET", "/v1/image-generation-models"): {"models": []},
    ("GET", "/v1/video-generation-models"): {"models": []},
    ("GET", "/v1/billing/teams/t/prepaid/balance"): {"total": {"val": "-100"}},
    ("GET", "/v1/billing/teams/t/postpaid/invoice/preview"): {"effectiveSpendingLimit": {"val": "0"}},
    ("POST", "/v1/billing/teams/t/usage"): {"timeSeries": []},
}


def unparsed(method: Any, **kwargs: Any) -> None:
    """A structured call whose (plausible, not JSON) answer is refused after it was sent."""
    with contextlib.suppress(XAIStructuredOutputError):
        method(output="json_object", **kwargs)


#: One call of every public hook method that talks to the API, sync and async.
HOOK_CALLS: dict[str, Any] = {
    "chat": lambda h: h.chat(messages=[{"role": "user", "content": "hi"}]),
    "chat_structured": lambda h: unparsed(h.chat_structured, messages=[{"role": "user", "content": "hi"}]),
    "stream_chat": lambda h: list(h.stream_chat(messages=[{"role": "user", "content": "hi"}])),
    "stream_chat_completion": lambda h: h.stream_chat_completion(messages=[{"role": "user", "content": "hi"}]),
    "chat_many": lambda h: h.chat_many([{"messages": [{"role": "user", "content": "hi"}]}]),
    "start_deferred": lambda h: h.start_deferred(messages=[{"role": "user", "content": "hi"}]),
    "get_deferred": lambda h: h.get_deferred("d"),
    "list_models": lambda h: h.list_models(),
    "list_language_models": lambda h: h.list_language_models(),
    "get_language_model": lambda h: h.get_language_model("m"),
    "get_api_key_info": lambda h: h.get_api_key_info(),
    "tokenize": lambda h: h.tokenize("hi"),
    "create_response": lambda h: h.create_response(input="hi"),
    "create_response_structured": lambda h: unparsed(h.create_response_structured, input="hi"),
    "iter_response_events": lambda h: list(h.iter_response_events(input="hi")),
    "stream_response": lambda h: h.stream_response(input="hi"),
    "start_response": lambda h: h.start_response(input="hi"),
    "get_response": lambda h: h.get_response("r"),
    "delete_response": lambda h: h.delete_response("r"),
    "create_batch": lambda h: h.create_batch("n", input_file_id="file_1"),
    "upload_batch_input_file": lambda h: h.upload_batch_input_file(b"{}\n"),
    "get_batch": lambda h: h.get_batch("b"),
    "cancel_batch": lambda h: h.cancel_batch("b"),
    "list_batches": lambda h: list(h.list_batches()),
    "find_batch": lambda h: h.find_batch("n"),
    "add_batch_requests": lambda h: h.add_batch_requests("b", [{"batch_request_id": "r", "batch_request": {}}]),
    "list_batch_requests": lambda h: list(h.list_batch_requests("b")),
    "iter_batch_results": lambda h: list(h.iter_batch_results("b")),
    "upload_file": lambda h: h.upload_file(sample("a.txt")),
    "list_files": lambda h: list(h.list_files()),
    "get_file": lambda h: h.get_file("file_1"),
    "delete_file": lambda h: h.delete_file("file_1"),
    "download_file": lambda h: h.download_file("file_1", sample("out.txt", b"")),
    "create_public_url": lambda h: h.create_public_url("file_1"),
    "revoke_public_url": lambda h: h.revoke_public_url("file_1"),
    "create_collection": lambda h: h.create_collection("n"),
    "get_collection": lambda h: h.get_collection("collection_1"),
    "list_collections": lambda h: list(h.list_collections()),
    "find_collection": lambda h: h.find_collection("n"),
    "delete_collection": lambda h: h.delete_collection("collection_1"),
    "add_document": lambda h: h.add_document("collection_1", "file_1", fields={"k": "v"}),
    "list_documents": lambda h: list(h.list_documents("collection_1")),
    "get_document": lambda h: h.get_document("collection_1", "file_1"),
    "remove_document": lambda h: h.remove_document("collection_1", "file_1"),
    "wait_for_documents": lambda h: h.wait_for_documents("collection_1", ["file_1"], poll_interval=0.01, timeout=5),
    "search_documents": lambda h: h.search_documents("hi", "collection_1"),
    "text_to_speech": lambda h: h.text_to_speech("hi", sample("hi.mp3", b"")),
    "speech_to_text": lambda h: h.speech_to_text(sample("hi.wav")),
    "generate_images": lambda h: h.generate_images(prompt="a cat"),
    "edit_images": lambda h: h.edit_images(prompt="make it blue", images=[JPEG]),
    "submit_images": lambda h: h.submit_images(prompt="a cat", n=6),
    "get_images": lambda h: h.get_images("i"),
    "wait_for_images": lambda h: h.wait_for_images("i"),
    "generate_video": lambda h: h.generate_video(prompt="a cat", duration=2),
    "edit_video": lambda h: h.edit_video(prompt="blue", video="https://x.test/v.mp4"),
    "extend_video": lambda h: h.extend_video(prompt="on", video={"file_id": "file_1"}, duration=3),
    "get_video": lambda h: h.get_video("v"),
    "wait_for_video": lambda h: h.wait_for_video("v"),
    "download_media": lambda h: h.download_media("https://media.x.test/i.jpeg", Kept),
    "count_tokens": lambda h: h.count_tokens("hi"),
    "list_image_generation_models": lambda h: h.list_image_generation_models(),
    "list_video_generation_models": lambda h: h.list_video_generation_models(),
    "get_team_id": lambda h: h.get_team_id(),
    "get_prepaid_balance": lambda h: h.get_prepaid_balance(),
    "get_invoice_preview": lambda h: h.get_invoice_preview(),
    "query_usage": lambda h: h.query_usage(date(2026, 9, 1), date(2026, 9, 2)),
}


SAMPLES = tempfile.TemporaryDirectory(prefix="xai-architecture-")  # removed when the tests end


def sample(name: str, content: bytes = b"hi") -> str:
    """A file to upload (or to download over): the upload and download calls need one."""
    path = Path(SAMPLES.name) / name
    path.write_bytes(content)
    return str(path)


def test_every_api_method_of_the_hook_is_exercised_here() -> None:
    """A new hook method that talks to the API must be added to HOOK_CALLS (and so declared)."""
    public = {
        name for name, member in inspect.getmembers(XAIHook, inspect.isfunction)
        if not name.startswith(("_", "a", "get_conn", "get_async_conn", "get_prices", "test_connection", "close",
                                "request"))
        and name not in ("chat_request", "get_connection", "get_hook", "get_connection_form_widgets",
                         "get_ui_field_behaviour", "wait_for_batch")
        and member.__module__.startswith(PACKAGE)
    }  # fmt: skip
    public |= {"get_deferred", "get_language_model", "get_api_key_info", "get_response", "get_batch",
               "add_batch_requests", "cancel_batch", "add_document", "get_images", "get_video"}  # fmt: skip
    assert public <= set(HOOK_CALLS), sorted(public - set(HOOK_CALLS))


@pytest.mark.parametrize("method", sorted(HOOK_CALLS))
def test_every_call_the_hook_sends_is_declared(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "xai", "password": "xai-architecture-key", "extra": {"management_key": "xai-arch-mgmt-key"}}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers(request)

    hook = XAIHook(client_kwargs={"transport": httpx.MockTransport(handler)}, max_retries=0)
    calls: list[Call[Any]] = []
    send, asend, iterate = hook.transport.send, hook.transport.asend, hook.transport.iterate
    monkeypatch.setattr(hook.transport, "send", lambda call: (calls.append(call), send(call))[1])
    monkeypatch.setattr(hook.transport, "asend", lambda call, client=None: (calls.append(call), asend(call, client))[1])
    monkeypatch.setattr(hook.transport, "iterate", lambda call: (calls.append(call), iterate(call))[1])
    hook.batch_pacer.acquire = lambda: 0.0  # type: ignore[method-assign]
    HOOK_CALLS[method](hook)
    assert sent and calls
    for call in calls:
        assert call.endpoint in ENDPOINTS, f"{method}: {call.endpoint} is not declared in endpoints/"
        if call.endpoint.host == "media":  # an absolute URL xAI handed out
            assert call.target.startswith("https://") and call.url == call.target, (method, call.target)
            continue
        assert call.endpoint.matches(call.endpoint.method, call.target), (method, call.target)
    for request in sent:
        if request.url.host == "media.x.test":  # a file xAI handed out (its call is checked above)
            continue
        path = host_path(request).removeprefix("/management/").removeprefix("/v1/")
        assert declaration_of(request.method, path) is not None, f"{method}: {request.method} {path}"


def test_the_local_server_serves_every_declared_endpoint() -> None:
    """The bundled server's routes are the declarations' paths (one path, written once)."""
    from fastapi.routing import APIRoute

    from airflow_provider_xai.endpoints.routes import mounted
    from airflow_provider_xai.testing.server import create_app
    from airflow_provider_xai.testing.state import ServerState

    app = create_app(ServerState())
    served = {(method, r.path) for r in app.routes if isinstance(r, APIRoute) for method in r.methods}
    missing = [f"{e.method} {mounted(e)}" for e in ENDPOINTS if (e.method, mounted(e)) not in served]
    assert missing == []
