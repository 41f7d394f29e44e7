"""The xAI usage page's FastAPI app, mounted by the api-server at ``/xai-usage``.

Every route but the static assets (the chart library, the page's script and style, no data)
needs a logged-in Airflow user: the React UI's ``_token`` cookie or an ``Authorization: Bearer``
JWT, checked by Airflow's own ``get_user``. The numbers cover only the DAGs the auth manager
lets that user read (``get_authorized_dag_ids``); a DAG filter can narrow that, never widen it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from airflow_provider_xai.dashboard.budgets import budget_report
from airflow_provider_xai.dashboard.forecasts import forecast_report
from airflow_provider_xai.dashboard.query import Window, usage_dag_ids, usage_report

STATIC = Path(__file__).with_name("static")
DEFAULT_DAYS = 30
MAX_DAYS = 366
NO_STORE = {"Cache-Control": "no-store"}
#: The days a view may cover: usage records are stamped from 1970 (epoch seconds), and a
#: window ends at midnight after its last day, which must still be a date.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date.max - timedelta(days=1)
#: DAG filter: at most this many ``dag_id`` values, each at most Airflow's id length.
MAX_DAG_FILTER = 1000
MAX_DAG_ID_LENGTH = 250


def readable_dag_ids(user: GetUserDep, session: SessionDep) -> set[str]:
    """The DAG ids the auth manager lets this user read (GET)."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session))


ReadableDagIds = Annotated[set[str], Depends(readable_dag_ids)]


def window_of(start: date | None, end: date | None) -> Window:
    """The requested days (default: the last 30 UTC days up to today), checked: a 422 names
    the parameter that is out of range."""
    for name, day in (("start", start), ("end", end)):
        if day is not None and not FIRST_DAY <= day <= LAST_DAY:
            raise HTTPException(422, f"{name}: must be from {FIRST_DAY} to {LAST_DAY}, got {day}")
    last = end or datetime.now(timezone.utc).date()
    first = start or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise HTTPException(422, "start: must not be after end")
    if (last - first).days >= MAX_DAYS:
        raise HTTPException(422, f"start: at most {MAX_DAYS} days per view")
    return Window(first, last)


def check_dag_filter(dag_ids: list[str] | None) -> None:
    """The ``dag_id`` filter: a 422 naming it when it holds too many or too long ids."""
    if dag_ids is None:
        return
    if len(dag_ids) > MAX_DAG_FILTER:
        raise HTTPException(422, f"dag_id: at most {MAX_DAG_FILTER} DAG ids, got {len(dag_ids)}")
    if too_long := next((d for d in dag_ids if len(d) > MAX_DAG_ID_LENGTH), None):
        raise HTTPException(422, f"dag_id: a DAG id has at most {MAX_DAG_ID_LENGTH} characters, got {len(too_long)}")


@dataclass(frozen=True)
class Selection:
    """What a view covers: the checked window, and the DAGs the user may read narrowed by the
    ``dag_id`` filter (``chosen``: the filter's readable ids, empty without one)."""

    window: Window
    dag_ids: set[str]
    chosen: list[str]


def selection(
    readable: ReadableDagIds,
    start: date | None = None,
    end: date | None = None,
    dag_id: Annotated[list[str] | None, Query()] = None,
) -> Selection:
    """The view's query parameters, checked (a 422 names the one that is wrong)."""
    window = window_of(start, end)
    check_dag_filter(dag_id)
    chosen = set(dag_id) & readable if dag_id else set()
    return Selection(window, chosen if dag_id else readable, sorted(chosen))


Selected = Annotated[Selection, Depends(selection)]


def create_app() -> FastAPI:
    app = FastAPI(title="xAI usage", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HTTPException)
    async def login_page(request: Request, exc: HTTPException) -> Response:
        """API callers get JSON; a browser opening the page logged out gets a link to log in."""
        if "/api/" in request.url.path or exc.status_code not in (401, 403):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=NO_STORE)
        html = (STATIC / "login.html").read_text(encoding="utf-8")
        return HTMLResponse(html, status_code=exc.status_code, headers=NO_STORE)

    @app.get("/", response_class=HTMLResponse)
    def page(user: GetUserDep) -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers=NO_STORE)

    @app.get("/api/usage")
    def usage(session: SessionDep, readable: ReadableDagIds, selected: Selected) -> JSONResponse:
        """Totals, per-day series, breakdowns and top runs (see :func:`usage_report`)."""
        report: dict[str, Any] = usage_report(session, selected.dag_ids, selected.window)
        report["dags"] = usage_dag_ids(session, readable)
        report["selected_dags"] = selected.chosen
        return JSONResponse(report, headers=NO_STORE)

    @app.get("/api/budgets")
    def budgets(readable: ReadableDagIds) -> JSONResponse:
        """Each budget's state in its current period and its burn-down (see :func:`budget_report`)."""
        return JSONResponse(budget_report(readable), headers=NO_STORE)

    @app.get("/api/forecasts")
    def forecasts(session: SessionDep, selected: Selected) -> JSONResponse:
        """Recent calls' forecast against their bill, and the totals (see :func:`forecast_report`)."""
        report = forecast_report(session, selected.dag_ids, selected.window)
        window = selected.window
        report["window"] = {"first": window.first.isoformat(), "last": window.last.isoformat()}
        return JSONResponse(report, headers=NO_STORE)

    return app

