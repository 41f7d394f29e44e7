"""What the image and video families share: downloading a generated file from the short-lived
URL xAI handed out (``"media"`` host: no credentials sent), written to a sink chunk by chunk,
and the usage record of a call billed per image or per second of video.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from airflow_provider_xai.pipeline.call import Call, Endpoint, Sink
from airflow_provider_xai.pricing import MEDIA_PRICES
from airflow_provider_xai.schemas.media import MediaUsage
from airflow_provider_xai.usage import TICKS_PER_USD, UsageRecord

T = TypeVar("T")
#: The largest generated file read (a 15 s 1080p video is tens of MB; this bounds a bad URL).
MAX_MEDIA_BYTES = 2 * 1024**3

#: A file xAI generated, at the absolute URL it handed out (``Call.url``).
DOWNLOAD = Endpoint("media", "GET", "{url}", host="media")
ENDPOINTS = (DOWNLOAD,)


def download(url: str, sink: Callable[[], Sink[T]], max_bytes: int | None = None) -> Call[T]:
    """Stream the file at ``url`` into a new ``sink`` per attempt (bounded memory)."""
    return Call(DOWNLOAD, sink=sink, url=url, max_bytes=max_bytes or MAX_MEDIA_BYTES)


def media_record(
    kind: str,
    model: str,
    units: float,
    unit: str,
    usage: MediaUsage | None,
    completion_id: str | None,
    resolution: str | None = None,
    discount: float = 1.0,
) -> UsageRecord:
    """The usage record of a media call: ``units`` images or seconds, costed from xAI's
    ``cost_in_usd_ticks``, else estimated from the dated media price table times ``discount``
    (a batch's), unpriced when the model, or the number of units, is unknown."""
    record = UsageRecord(model=model, kind=kind, completion_id=completion_id, units=units, unit=unit)
    if usage is not None and usage.cost_in_usd_ticks is not None:
        record.cost_usd, record.cost_source = usage.cost_in_usd_ticks / TICKS_PER_USD, "xai"
    elif (price := MEDIA_PRICES.get(model)) is not None and units > 0:
        record.cost_usd, record.cost_source = discount * price.cost(units, resolution), "estimate"
    return record


__all__ = ["DOWNLOAD", "ENDPOINTS", "MAX_MEDIA_BYTES", "download", "media_record"]
