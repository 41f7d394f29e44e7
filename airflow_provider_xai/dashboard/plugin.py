"""The Airflow plugin behind the "xAI usage" page (entry point ``airflow.plugins``; also provider info ``plugins``).

``fastapi_apps`` mounts the page and its data at ``/xai-usage`` in the api-server;
``external_views`` puts "xAI usage" in the UI's navigation, shown inside the UI at
``/plugin/xai-usage``. ``[xai] usage_page = False`` (``AIRFLOW__XAI__USAGE_PAGE=False``)
turns both off.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/xai-usage"


def page_enabled() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("xai", "usage_page", fallback=True)


class LazyApp:
    """An ASGI app that builds the page's FastAPI app on its first request, so that importing
    the plugin (every Airflow component does) imports no FastAPI code outside the api-server."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            from airflow_provider_xai.dashboard.app import create_app

            self.app = create_app()
        await self.app(scope, receive, send)


def _apps() -> list[dict[str, Any]]:
    return [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "xAI usage"}]


def _views() -> list[dict[str, Any]]:
    return [
        {
            "name": "xAI usage",
            "href": f"{URL_PREFIX}/",
            "url_route": "xai-usage",
            "destination": "nav",
            "icon": f"{URL_PREFIX}/static/icon.svg",
            "icon_dark_mode": f"{URL_PREFIX}/static/icon-dark.svg",
        }
    ]


class XAIUsagePlugin(AirflowPlugin):
    """Token and cost dashboard of the provider's usage records, inside the Airflow UI."""

    name = "xai_usage"
    fastapi_apps = _apps() if page_enabled() else []
    external_views = _views() if page_enabled() else []
