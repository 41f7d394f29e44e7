"""The one scrubber: every secret the provider holds, removed from every text that leaves it.

A secret (the API key, an MCP server's authorization, a management key, a store password) is
registered the moment it is read from its connection; :func:`scrub` then removes every
registered secret, in plain and URL-encoded form, from a text. Typed errors scrub their own
messages (:class:`~airflow_provider_xai.exceptions.XAIError`), so an exception, a span built
from one, a log line or an XCom never carries a secret whatever path it took. Registration also
hands the secret to Airflow's own masker, which covers task logs and rendered templates.
"""

from __future__ import annotations

import threading
from urllib.parse import quote, quote_plus

#: Shorter values are not secrets worth scrubbing (and would mangle ordinary text).
MIN_SECRET_LENGTH = 4
_lock = threading.Lock()
_forms: tuple[str, ...] = ()  # every registered secret and its encoded forms, longest first


def register(secret: str | None) -> str | None:
    """Remember ``secret`` for :func:`scrub` and Airflow's masker; returns it unchanged."""
    global _forms
    if not secret or len(secret) < MIN_SECRET_LENGTH or secret in _forms:
        return secret
    with _lock:
        forms = {*_forms, secret, quote(secret, safe=""), quote_plus(secret)}
        _forms = tuple(sorted(forms, key=len, reverse=True))
    _mask_in_airflow(secret)
    return secret


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for form in _forms:
        if form in text:
            text = text.replace(form, "***")
    return text


def _mask_in_airflow(secret: str) -> None:
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # masking must never stop a task; scrub() still keeps it out of messages
        pass


__all__ = ["MIN_SECRET_LENGTH", "register", "scrub"]
