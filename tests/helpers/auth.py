"""A small auth manager for the usage page's tests: Airflow's SimpleAuthManager, except that
the user ``analyst`` may not read the DAG ``example_xai_usage`` (every other DAG, yes).

Configured by ``AIRFLOW__CORE__AUTH_MANAGER=tests.helpers.auth.DenyOneDagAuthManager``.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

RESTRICTED_USER = "analyst"
DENIED_DAG = "example_xai_usage"


class DenyOneDagAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if user.get_name() == RESTRICTED_USER and details is not None and details.id == DENIED_DAG:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
