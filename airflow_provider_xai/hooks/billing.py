"""Spend control's methods of :class:`XAIHook`: the image and video model lists (live prices)
and the Management API's billing (prepaid balance, invoice preview and spending limit, usage),
through the same transport. The billing calls need the connection's management key and the
team id, which the free ``GET /v1/api-key`` tells (asked once per hook).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from airflow_provider_xai.endpoints import billing as api
from airflow_provider_xai.exceptions import XAIResponseError
from airflow_provider_xai.pipeline.transport import XAITransport
from airflow_provider_xai.schemas.billing import (
    ImageGenerationModel,
    InvoicePreview,
    PrepaidBalance,
    UsageAnalytics,
    VideoGenerationModel,
)

if TYPE_CHECKING:
    from airflow_provider_xai.schemas import ApiKeyInfo


class XAIBillingMixin:
    """Billing and price-list methods of :class:`XAIHook`; they need its ``transport`` and
    ``get_api_key_info``."""

    transport: XAITransport
    _team_id: str | None = None

    if TYPE_CHECKING:

        def get_api_key_info(self) -> ApiKeyInfo: ...

    def list_image_generation_models(self) -> list[ImageGenerationModel]:
        """``GET /v1/image-generation-models``: image models with their prices per image."""
        return self.transport.send(api.image_models()).models

    def list_video_generation_models(self) -> list[VideoGenerationModel]:
        """``GET /v1/video-generation-models`` (xAI lists no video prices)."""
        return self.transport.send(api.video_models()).models

    def get_team_id(self) -> str:
        """The team the API key belongs to (``GET /v1/api-key``, free; asked once), for the
        billing calls: refused before any request when the connection has no management key."""
        if self._team_id is None:
            self.transport.settings.require_management_key(self.transport.conn_id)
            team = self.get_api_key_info().team_id
            if not isinstance(team, str) or not team:
                raise XAIResponseError("xAI's GET /v1/api-key named no team_id")
            self._team_id = team
        return self._team_id

    def get_prepaid_balance(self) -> PrepaidBalance:
        """The team's prepaid credit (``credit_usd``) and its changes (management key)."""
        return self.transport.send(api.balance(self.get_team_id()))

    def get_invoice_preview(self) -> InvoicePreview:
        """This month's invoice so far (``spent_usd``) and the spending limit in force
        (``spending_limit_usd``; management key)."""
        return self.transport.send(api.invoice_preview(self.get_team_id()))

    def query_usage(self, first: date, last: date, filters: list[str] | None = None) -> UsageAnalytics:
        """USD billed per UTC day and description (``"<kind> <model>"``) from ``first`` to
        ``last`` (at most 31 days; management key). ``filters``: e.g. ``["api_key_id:<id>"]``."""
        return self.transport.send(api.usage_query(self.get_team_id(), first, last, filters))


__all__ = ["XAIBillingMixin"]
