"""``[core] hostname_callable`` of the Celery workers in ``celery_stack.py``.

Both workers share this machine's hostname, so each is started with its own name in
``XAI_E2E_WORKER_NAME`` and Airflow records that name in the ``hostname`` of every task instance
the worker runs. Airflow imports this module inside the workers: it must import nothing from
the test suite (``tests/conftest.py`` would point ``AIRFLOW_HOME`` elsewhere on import).
"""

from __future__ import annotations

import os

ENV_VAR = "XAI_E2E_WORKER_NAME"


def worker_hostname() -> str:
    return os.environ[ENV_VAR]
