"""What the local server billed, and the Management API's billing routes that tell it.

Every answer the server bills (chat, Responses, batch results, images, video, voice) is written
to its tick ledger (:class:`TickLedger`): when, which key, ``description`` (``"Chat <model>"``,
``"Batch <model>"``, ``"Image <model>"``, ``"Voice tts"``) and ``cost_in_usd_ticks``. The
billing routes read that ledger, as xAI's read its books:

* ``GET /v1/billing/teams/{team_id}/prepaid/balance``: ``total.val`` is the credit left in
  cents, negated (``prepaid_credit_usd`` minus what was billed), ``changes`` one ``PURCHASE``
  and one ``SPEND`` per day;
* ``GET .../postpaid/invoice/preview``: this month's lines by description (cents) and
  ``effectiveSpendingLimit`` (``spending_limit_usd``);
* ``POST .../usage``: the analytics query (USD per ``TIME_UNIT_DAY`` or ``TIME_UNIT_NONE``
  bucket, grouped by ``description`` or not, ``filters`` ``api_key_id:<id>``; ``endTime``
  exclusive; ``usage_limit_reached`` forces ``limitReached``).

Amounts are int64 written as text inside ``{"val"}``, as xAI writes them. The team is the API
key's (``GET /v1/api-key``); another team id answers 404. Routes under the management mount,
with the management key. ``POST /_control/billing`` plants a bill (a call made outside
Airflow, or through another key); the image and video model lists (API key) serve prices.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_xai.endpoints import billing as endpoints
from airflow_provider_xai.endpoints.routes import route
from airflow_provider_xai.testing.billing_ledger import KIND_LABELS, Bill, api_key_ids
from airflow_provider_xai.testing.bodies import json_body
from airflow_provider_xai.testing.errors import ServedError

TICKS_PER_CENT = 100_000_000
#: Image models the server lists, with their price per image in ticks ($0.02 = 2e8).
IMAGE_MODELS = {"grok-imagine-image": 200_000_000, "grok-imagine-image-quality": 500_000_000,
                "grok-imagine-image-pro": 700_000_000}  # fmt: skip
VIDEO_MODELS = ("grok-imagine-video", "grok-imagine-video-1.5")


def _cents(value: float) -> dict[str, str]:
    return {"val": str(round(value))}


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).date().isoformat()


def _time(text: Any, name: str) -> datetime:
    if not isinstance(text, str):
        raise ServedError(400, f"analyticsRequest.timeRange.{name} must be a string")
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ServedError(400, f"analyticsRequest.timeRange.{name} must look like 2026-09-01 00:00:00") from None


def usage_answer(state: Any, body: Any) -> dict[str, Any]:
    """The analytics query's answer from the ledger (see the module docstring)."""
    query = body.get("analyticsRequest") if isinstance(body, dict) else None
    if not isinstance(query, dict) or not isinstance(query.get("timeRange"), dict):
        raise ServedError(400, "analyticsRequest.timeRange is required")
    window = query["timeRange"]
    if window.get("timezone", "Etc/GMT") not in ("Etc/GMT", "UTC", "Etc/UTC"):
        raise ServedError(400, "analyticsRequest.timeRange.timezone: only Etc/GMT is served here")
    start, end = _time(window.get("startTime"), "startTime"), _time(window.get("endTime"), "endTime")
    if end <= start or end - start > timedelta(days=31):
        raise ServedError(400, "analyticsRequest.timeRange: endTime must follow startTime, at most 31 days later")
    unit = query.get("timeUnit", "TIME_UNIT_DAY")
    if unit not in ("TIME_UNIT_DAY", "TIME_UNIT_NONE"):
        raise ServedError(400, f"analyticsRequest.timeUnit {unit!r} is not served here")
    group_by = query.get("groupBy") or []
    if group_by not in ([], ["description"]):
        raise ServedError(400, "analyticsRequest.groupBy: only [\"description\"] is served here")
    keys = []
    for item in query.get("filters") or []:
        name, _, value = str(item).partition(":")
        if name != "api_key_id" or not value:
            raise ServedError(400, f"analyticsRequest.filters: {item!r} is not served here")
        keys.append(value)
    days = -(-(end - start) // timedelta(days=1))
    buckets = [start] if unit == "TIME_UNIT_NONE" else [start + timedelta(days=n) for n in range(days)]
    sums: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for b in state.ledger.bills():
        when = datetime.fromtimestamp(b.time, timezone.utc)
        if not start <= when < end or (keys and b.api_key_id not in keys):
            continue
        index = 0 if unit == "TIME_UNIT_NONE" else (when - start).days
        sums[b.description if group_by else "total"][index] += b.ticks
    series = [
        {
            "group": [group] if group_by else [],
            "groupLabels": [group] if group_by else [],
            "dataPoints": [
                {"timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "values": [by_bucket.get(i, 0) / 1e10]}
                for i, at in enumerate(buckets)
            ],
        }
        for group, by_bucket in sorted(sums.items())
    ]
    return {"timeSeries": series, "limitReached": bool(state.usage_limit_reached)}


def _check_team(state: Any, team_id: str) -> None:
    if team_id != api_key_ids(state.api_key)[0]:
        raise ServedError(404, f"Team {team_id} was not found or this management key cannot read it.")


def create_billing_router(state: Any) -> APIRouter:
    """The billing routes (under the management mount)."""
    r = APIRouter()

    @r.get(route(endpoints.BALANCE))
    async def balance(team_id: str) -> Response:
        _check_team(state, team_id)
        bills = state.ledger.bills()
        spent = sum(b.ticks for b in bills) / TICKS_PER_CENT
        credit = state.prepaid_credit_usd * 100
        by_day: dict[str, float] = defaultdict(float)
        for b in bills:
            by_day[_day(b.time)] += b.ticks / TICKS_PER_CENT
        changes = [{"changeOrigin": "PURCHASE", "amount": _cents(-credit), "createTime": "2026-01-01T00:00:00Z"}]
        changes += [{"changeOrigin": "SPEND", "amount": _cents(cents), "createTime": f"{day}T23:59:59Z"}
                    for day, cents in sorted(by_day.items())]  # fmt: skip
        return JSONResponse({"changes": changes, "total": _cents(-(credit - spent))})

    @r.get(route(endpoints.INVOICE_PREVIEW))
    async def invoice(team_id: str) -> Response:
        _check_team(state, team_id)
        now = datetime.now(timezone.utc)
        month = now.strftime("%Y-%m")
        lines: dict[str, int] = defaultdict(int)
        for b in state.ledger.bills():
            if _day(b.time).startswith(month):
                lines[b.description] += b.ticks
        core = [{"description": d, "unitType": "USD", "amount": _cents(t / TICKS_PER_CENT)}
                for d, t in sorted(lines.items())]  # fmt: skip
        return JSONResponse({
            "coreInvoice": {"lines": core},
            "effectiveSpendingLimit": _cents(state.spending_limit_usd * 100),
            "billingCycle": {"year": now.year, "month": now.month},
        })  # fmt: skip

    @r.post(route(endpoints.USAGE))
    async def usage(team_id: str, request: Request) -> Response:
        _check_team(state, team_id)
        return JSONResponse(usage_answer(state, await json_body(request)))

    return r


def create_price_list_router(state: Any) -> APIRouter:
    """The image and video model lists (under ``/v1``, with the API key)."""
    r = APIRouter()

    @r.get(route(endpoints.IMAGE_MODELS))
    async def image_models() -> Response:
        models = [{"id": m, "version": "1.0.0", "aliases": [], "image_price": ticks,
                   "pricing": [{"quality": "auto", "resolution": "1k", "price_per_image": ticks}]}
                  for m, ticks in IMAGE_MODELS.items()]  # fmt: skip
        return JSONResponse({"models": models})

    @r.get(route(endpoints.VIDEO_MODELS))
    async def video_models() -> Response:
        return JSONResponse({"models": [{"id": m, "aliases": []} for m in VIDEO_MODELS]})

    return r


def create_billing_control_router(state: Any) -> APIRouter:
    """``POST /_control/billing`` (under the control mount): plant a bill
    ``{"model", "usd", "kind"?, "api_key_id"?, "time"?}``; ``GET`` lists the ledger."""
    r = APIRouter()

    @r.post("/billing")
    async def plant(request: Request) -> Response:
        data = await json_body(request)
        usd, model = data.get("usd") if isinstance(data, dict) else None, (data or {}).get("model")
        if not isinstance(model, str) or isinstance(usd, bool) or not isinstance(usd, int | float) or usd < 0:
            raise ServedError(400, "invalid control request: give a model (text) and usd (a number >= 0)")
        when = data.get("time", time.time())
        key = data.get("api_key_id") or api_key_ids(state.api_key)[1]
        kind = KIND_LABELS.get(data.get("kind", "chat"), "Chat")
        state.ledger.add(Bill(float(when), str(key), f"{kind} {model}", round(usd * 1e10)))
        return JSONResponse({"bills": len(state.ledger.bills())})

    @r.get("/billing")
    async def bills() -> Response:
        return JSONResponse([asdict(b) for b in state.ledger.bills()])

    return r


__all__ = [
    "IMAGE_MODELS",
    "VIDEO_MODELS",
    "create_billing_control_router",
    "create_billing_router",
    "create_price_list_router",
    "usage_answer",
]
