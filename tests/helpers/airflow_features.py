"""What the installed Airflow offers, for tests marked ``task_state_store``: they assert the
store's behaviour where Airflow has it (3.3+) and the documented fallback where it does not
(3.2), so the same test runs, and means something, on every supported version."""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version

AIRFLOW_VERSION = Version(version("apache-airflow-core"))


def _has_task_state_store() -> bool:
    from airflow.sdk.execution_time import context

    return hasattr(context, "TaskStateStoreAccessor")


#: ``context["task_state_store"]`` is there when a task runs (Airflow 3.3+).
HAS_TASK_STATE_STORE = _has_task_state_store()



def _has_retry_policy() -> bool:
    try:
        from airflow.sdk.definitions import retry_policy  # noqa: F401
    except ImportError:
        return False
    return True


#: Task retry policies (``retry_policy=`` on operators) are there (Airflow 3.3+).
HAS_RETRY_POLICY = _has_retry_policy()
