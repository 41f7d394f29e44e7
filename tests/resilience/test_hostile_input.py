"""Hostile and wrong input: property-based tests over the request model and the operators'
arguments. Every input is either accepted and sent exactly as built, or refused with the
provider's own error before any request; never an unrelated exception.
"""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from airflow_provider_xai.exceptions import XAIAPIError, XAIError, XAIValidationError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.operators.chat import XAIChatOperator
from airflow_provider_xai.schemas import ChatRequest, build_chat_request
from airflow_provider_xai.testing import XAIServer
from airflow_provider_xai.testing.chat import REPLY_PREFIX
from tests.resilience.conftest import FakeTI, chat_posts, fake_context

PURE = settings(max_examples=150, deadline=None)
WITH_SERVER = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ROLES = ["system", "user", "assistant", "tool", "developer"]
MODELS = ["grok-3", "grok-4.3", "grok-3-mini"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


class Opaque:
    """An object JSON has no encoding for."""

    def __repr__(self) -> str:
        return "Opaque()"


# --- strategies ---------------------------------------------------------------------------------
surrogates = st.sampled_from(["\ud800", "x\udfffy", "\udbff\udc00"])  # lone halves, not pairs
texts = st.text(max_size=40) | st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**90)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
    | surrogates
)
odd = st.binary(max_size=8) | st.frozensets(st.integers(), max_size=2) | st.builds(Opaque)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
anything = json_like | odd | st.lists(odd, min_size=1, max_size=2) | st.dictionaries(texts, odd, min_size=1)
deep = st.integers(min_value=60, max_value=120).map(lambda n: _nest(n))
# What a template renders from deeply nested data: beyond any recursion limit as well
deep_rendered = st.sampled_from([60, 70, 1_000, 100_000]).map(
    lambda n: f'[{{"role": "user", "content": {"[" * n}{"]" * n}}}]'
)


def _nest(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


# Valid inputs, then 0-2 fields (or message fields) replaced by something hostile: enough
# valid requests reach the server to check what is sent, enough bad ones to check refusals.
hostile = anything | surrogates | deep | deep_rendered | texts | st.integers()
valid_text = st.text(max_size=40)
prompt_text = st.text(min_size=1, max_size=40).filter(str.strip)
json_valid = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | valid_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(valid_text, inner, max_size=3),
    max_leaves=6,
)
text_part = st.fixed_dictionaries({"type": st.just("text"), "text": valid_text})
image_part = st.fixed_dictionaries(
    {
        "type": st.just("image_url"),
        "image_url": st.fixed_dictionaries(
            {"url": st.just(PNG_URI)}, optional={"detail": st.sampled_from(["low", "high"])}
        ),
    }
)
valid_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "system", "assistant"]),
        "content": valid_text | st.lists(text_part | image_part, min_size=1, max_size=3),
    }
)
valid_messages = st.lists(valid_message, min_size=1, max_size=3).map(
    lambda ms: [*ms[:-1], {**ms[-1], "role": "user"}]
)
REQUEST_FIELDS = [
    "messages",
    "model",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "user",
    "response_format",
    "reasoning_effort",
    "tools",
    "some_future_field",
]
MESSAGE_FIELDS = ["role", "content", "name", "extra_field"]
valid_request = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS), "messages": valid_messages},
    optional={
        "temperature": st.floats(min_value=0, max_value=2),
        "top_p": st.floats(min_value=0.01, max_value=1),
        "max_tokens": st.integers(min_value=1, max_value=64),
        "seed": st.integers(min_value=0, max_value=2**31),
        "stop": st.lists(st.text(min_size=1, max_size=5), max_size=4),
        "user": valid_text,
        "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}]),
        "some_future_field": json_valid,
    },
)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """``base``, with 0-2 of its fields (or of its messages' fields) set to hostile values."""
    fields = draw(base)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        value = draw(hostile)
        messages_ = fields.get("messages")
        dicts = [m for m in messages_ if isinstance(m, dict)] if isinstance(messages_, list) else []
        if draw(st.booleans()) and dicts:
            draw(st.sampled_from(dicts))[draw(st.sampled_from(MESSAGE_FIELDS))] = value
        else:
            fields[draw(st.sampled_from(names))] = value
    return fields


request_fields = mutated(valid_request, REQUEST_FIELDS)


@pytest.fixture
def no_retries(xai_server: XAIServer, monkeypatch: pytest.MonkeyPatch) -> XAIServer:
    """The local server, with ``xai_default`` set to give up at the first error (fast)."""
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(max_retries=0))
    return xai_server


def check_body_is_json(request: ChatRequest) -> dict[str, Any]:
    """An accepted request always encodes as strict JSON (what httpx sends)."""
    body = request.to_body()
    encoded = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert json.loads(encoded) == body
    return body


# --- the request model -------------------------------------------------------------------------
@PURE
@given(fields=request_fields)
def test_build_chat_request_accepts_or_refuses_with_a_typed_error(fields: dict[str, Any]) -> None:
    try:
        request = build_chat_request(fields)
    except XAIValidationError as exc:
        assert exc.field and exc.problem
        event("refused")
        return
    event("accepted")
    body = check_body_is_json(request)
    assert len(body["messages"]) == len(fields["messages"])
    for sent, given_message in zip(body["messages"], fields["messages"], strict=True):
        if isinstance(given_message.get("content"), str):
            assert sent["content"] == given_message["content"]


@PURE
@given(request=anything | texts | st.lists(st.integers(), max_size=2))
def test_non_mapping_requests_are_refused_with_a_typed_error(request: Any) -> None:
    assume(request is not None and not isinstance(request, dict))
    with pytest.raises(XAIValidationError) as info:
        build_chat_request(request)
    assert info.value.field == "request"


@PURE
@given(fields=request_fields, update=st.dictionaries(st.sampled_from(["temperature", "seed", "x"]), anything))
def test_updating_a_valid_request_revalidates_it(fields: dict[str, Any], update: dict[str, Any]) -> None:
    try:
        base = build_chat_request(fields)
    except XAIValidationError:
        return
    try:
        updated = build_chat_request(base, **update)
    except XAIValidationError as exc:
        assert exc.field.split(".")[0].split("[")[0] in update  # the update is what was refused
        return
    body = check_body_is_json(updated)
    assert {k for k, v in update.items() if v is not None} <= set(body)


@WITH_SERVER
@given(fields=request_fields)
def test_hook_sends_accepted_requests_exactly_and_refused_ones_never(
    xai_server: XAIServer, make_hook: Callable[..., XAIHook], fields: dict[str, Any]
) -> None:
    hook = make_hook(max_retries=0)
    before = len(chat_posts(xai_server))
    try:
        expected = json.loads(json.dumps(hook.chat_request(fields).to_body()))
    except XAIValidationError:
        with pytest.raises(XAIValidationError):
            hook.chat(fields)
        assert len(chat_posts(xai_server)) == before, "refused input reached the server"
        event("refused")
        return
    try:
        hook.chat(fields)
        event("answered")
    except XAIAPIError:
        event("refused by the server")  # unknown model, unsupported field...: a typed error
    posts = chat_posts(xai_server)
    assert len(posts) == before + 1
    assert posts[-1].body == expected


def test_huge_prompt_is_sent_intact(xai_server: XAIServer, make_hook: Callable[..., XAIHook]) -> None:
    prompt = "≈ Grok ünïcødé 🚀 " * 120_000  # ~2.3 MB of UTF-8
    completion = make_hook().chat(model="grok-3", messages=[{"role": "user", "content": prompt}])
    assert completion.text == REPLY_PREFIX + prompt[:200]  # the server echoes the prompt's start
    (post,) = chat_posts(xai_server)
    assert post.body["messages"][0]["content"] == prompt


# --- the operators' arguments ------------------------------------------------------------------
class Verdict(BaseModel):
    label: str
    score: float


OPERATOR_FIELDS = [
    "prompt",
    "messages",
    "system_prompt",
    "model",
    "temperature",
    "max_tokens",
    "seed",
    "stop",
    "reasoning_effort",
    "response_format",
    "request_kwargs",
    "poll_interval",
    "deferred_timeout",
]
operator_options = {
    "system_prompt": valid_text,
    "model": st.sampled_from(MODELS),
    "temperature": st.floats(min_value=0, max_value=2),
    "max_tokens": st.integers(min_value=1, max_value=64),
    "seed": st.integers(min_value=0, max_value=2**31),
    "stop": st.lists(st.text(min_size=1, max_size=5), max_size=4),
    "response_format": st.sampled_from([None, "json_object", Verdict, {"type": "object"}]),
    "request_kwargs": st.fixed_dictionaries({}, optional={"user": valid_text, "top_p": st.just(0.5)}),
    "poll_interval": st.floats(min_value=0.01, max_value=5),
    "deferred_timeout": st.floats(min_value=1, max_value=60),
    "stream": st.booleans(),
}
rendered_messages = (
    valid_messages.flatmap(lambda ms: st.sampled_from([ms, json.dumps(ms), str(ms)])) | deep_rendered
)
operator_kwargs = mutated(
    st.fixed_dictionaries({"prompt": prompt_text}, optional=operator_options)
    | st.fixed_dictionaries({"messages": rendered_messages}, optional=operator_options),
    OPERATOR_FIELDS,
)


def expected_user_content(kwargs: dict[str, Any]) -> Any:
    if kwargs.get("prompt") is not None:
        return kwargs["prompt"]
    given_messages = kwargs["messages"]
    if isinstance(given_messages, str):  # what a template renders: JSON, or a Python literal
        given_messages = (
            ast.literal_eval(given_messages) if given_messages[:3] == "[{'" else json.loads(given_messages)
        )
    return given_messages[-1].get("content")


@WITH_SERVER
@given(kwargs=operator_kwargs)
@example(kwargs={"messages": f'[{{"role": "user", "content": {"[" * 100_000}{"]" * 100_000}}}]'})
def test_chat_operator_arguments_are_sent_or_refused_before_any_request(
    no_retries: XAIServer, kwargs: dict[str, Any]
) -> None:
    xai_server = no_retries
    before = len(chat_posts(xai_server))
    try:
        operator = XAIChatOperator(task_id="hostile", api="chat", **kwargs)
    except XAIError:
        assert len(chat_posts(xai_server)) == before
        event("refused when built")
        return
    ti = FakeTI()
    try:
        result = operator.execute(fake_context(ti))
    except XAIValidationError:
        assert len(chat_posts(xai_server)) == before, "refused input reached the server"
        event("refused")
        return
    except XAIError:  # refused by the server, or a structured answer that does not validate
        assert len(chat_posts(xai_server)) == before + 1
        event("refused by the server")
        return
    finally:
        operator.hook.close()
    event("answered")
    posts = chat_posts(xai_server)
    assert len(posts) == before + 1
    sent = posts[-1].body
    assert sent["messages"][-1].get("content") == expected_user_content(kwargs)
    if kwargs.get("system_prompt") is not None:
        assert sent["messages"][0] == {"role": "system", "content": kwargs["system_prompt"]}
    for name, field in (("temperature", "temperature"), ("max_tokens", "max_completion_tokens")):
        if kwargs.get(name) is not None:
            assert sent[field] == kwargs[name]
    assert len(ti.values("xai_usage")) == 1
    json.dumps(result)  # the XCom value is JSON-safe


odd_images = (
    st.just(b"GIF89a" + b"\x00" * 8)
    | st.just("https://")
    | st.just("ftp://example.com/cat.png")
    | st.just("/nonexistent/cat.png")
    | st.just("[not a list")
    | st.just("data:image/png;base64,!!!")
    | st.fixed_dictionaries({"source": st.just(PNG_URI), "detail": hostile})
    | st.lists(st.just(PNG_URI) | hostile, min_size=1, max_size=3)
    | hostile
)
good_images = st.sampled_from(
    [
        PNG_URI,
        PNG,
        "https://example.com/cat.png",
        [PNG_URI, "https://example.com/dog.jpg"],
        json.dumps([PNG_URI, "https://example.com/dog.jpg"]),
        str([PNG_URI, PNG_URI]),
        {"source": PNG_URI, "detail": "low"},
    ]
)
vision_kwargs = mutated(
    st.fixed_dictionaries(
        {"prompt": prompt_text, "images": good_images, "detail": st.sampled_from(["auto", "low", "high"])}
    ),
    ["prompt", "images", "detail"],
) | st.fixed_dictionaries({"prompt": prompt_text, "images": odd_images})


@WITH_SERVER
@given(kwargs=vision_kwargs)
@example(kwargs={"prompt": "Describe", "images": "[" * 100_000 + "]" * 100_000})
def test_vision_operator_arguments_are_sent_or_refused_before_any_request(
    no_retries: XAIServer, kwargs: dict[str, Any]
) -> None:
    xai_server = no_retries
    from airflow_provider_xai.operators.vision import XAIVisionOperator

    before = len(chat_posts(xai_server))
    try:
        operator = XAIVisionOperator(task_id="hostile_vision", api="chat", **kwargs)
    except XAIError:
        assert len(chat_posts(xai_server)) == before
        event("refused when built")
        return
    try:
        operator.execute(fake_context())
    except XAIValidationError:
        assert len(chat_posts(xai_server)) == before, "refused input reached the server"
        event("refused")
        return
    except XAIError:
        assert len(chat_posts(xai_server)) == before + 1
        event("refused by the server")
        return
    finally:
        operator.hook.close()
    event("answered")
    content = chat_posts(xai_server)[-1].body["messages"][-1]["content"]
    assert content[-1] == {"type": "text", "text": kwargs["prompt"]}
    assert all(part["type"] == "image_url" for part in content[:-1]) and len(content) >= 2
