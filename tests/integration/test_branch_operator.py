"""XAIBranchOperator outside a DAG run: an answer that never names a choice fails the task after
``max_attempts`` asks, naming what the model answered, with every attempt's usage recorded."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_xai.exceptions import XAIStructuredOutputError
from airflow_provider_xai.operators.branch import XAIBranchOperator
from airflow_provider_xai.testing import Fault
from tests.helpers.context import FakeTI, make_context


def test_a_branch_that_never_fits_fails_naming_the_answers(xai_server: Any) -> None:
    xai_server.enqueue(Fault(content='{"branch": "nope", "reason": "x"}', path="/v1/responses"), times=3)
    task = XAIBranchOperator(task_id="b", prompt="archive or escalate?", choices=["archive", "escalate"],
                             max_attempts=3)  # fmt: skip
    ti = FakeTI()
    with pytest.raises(XAIStructuredOutputError, match=r"none of \['archive', 'escalate'\] in 3 attempts.*nope"):
        task.execute(make_context(ti))
    assert len(ti.values("xai_usage")) == 3 and len(xai_server.requests("/responses", method="POST")) == 3
