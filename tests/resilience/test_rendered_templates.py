"""Templates that render to the wrong type, in a real DAG run: a message list or an image list
rendered into a string (JSON with ``| tojson``, or the Python repr that plain ``{{ ... }}``
gives) is parsed; a string that is no list fails the task, naming the field, before any request.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pendulum

from airflow_provider_xai.testing import XAIServer
from tests.dags.conftest import task_states
from tests.resilience.conftest import chat_posts, last_user_text, run_inline_dag

PNG_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()


def test_wrongly_typed_renders_are_parsed_or_refused(
    airflow_db: None, xai_server: XAIServer, capfd: Any
) -> None:
    from airflow.sdk import DAG, task

    from airflow_provider_xai.operators.chat import XAIChatOperator
    from airflow_provider_xai.operators.vision import XAIVisionOperator

    tag = uuid.uuid4().hex[:8]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"templated {tag}"}]
    pull = "ti.xcom_pull(task_ids='{}')"

    with DAG(
        "resilience_rendered_types", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")
    ) as dag:

        @task
        def make_messages() -> list[dict[str, str]]:
            return messages

        @task
        def make_images() -> list[str]:
            return [PNG_URI, PNG_URI]

        @task
        def one_image() -> str:
            return PNG_URI

        upstream = [make_messages(), make_images(), one_image()]
        downstream = [
            XAIChatOperator(
                api="chat",
                task_id="messages_tojson", messages="{{ " + pull.format("make_messages") + " | tojson }}"
            ),
            XAIChatOperator(api="chat", task_id="messages_repr", messages="{{ " + pull.format("make_messages") + " }}"),
            XAIChatOperator(api="chat", task_id="messages_not_a_list", messages="{{ 'hello ' ~ 'there' }}"),
            XAIVisionOperator(
                api="chat",
                task_id="images_repr", prompt=f"two {tag}", images="{{ " + pull.format("make_images") + " }}"
            ),
            XAIVisionOperator(
                api="chat",
                task_id="images_tojson",
                prompt=f"two again {tag}",
                images="{{ " + pull.format("make_images") + " | tojson }}",
            ),
            XAIVisionOperator(
                api="chat",
                task_id="image_string", prompt=f"one {tag}", images="{{ " + pull.format("one_image") + " }}"
            ),
        ]
        for operator in downstream:
            operator.set_upstream(upstream)

    dag_run = run_inline_dag(dag)
    out, _ = capfd.readouterr()

    states = {task_id: state for (task_id, _), state in task_states(dag_run).items()}
    assert states.pop("messages_not_a_list") == "failed"
    assert set(states.values()) == {"success"}, states
    assert "Invalid messages: expected a list of messages, got a string that is neither JSON" in out

    posts = chat_posts(xai_server)
    assert len(posts) == 5  # the refused task sent nothing
    by_prompt: dict[str, list[Any]] = {}
    for post in posts:
        by_prompt.setdefault(last_user_text(post), []).append(post.body["messages"])
    assert by_prompt[f"templated {tag}"] == [messages, messages]  # JSON and repr renders alike
    for prompt, images in ((f"two {tag}", 2), (f"two again {tag}", 2), (f"one {tag}", 1)):
        (sent,) = by_prompt[prompt]
        parts = sent[-1]["content"]
        assert [p["type"] for p in parts] == ["image_url"] * images + ["text"], prompt
        assert all(p["image_url"]["url"] == PNG_URI for p in parts[:-1])
