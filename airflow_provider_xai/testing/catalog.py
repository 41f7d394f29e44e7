"""JSON bodies of the catalog endpoints: models, language-models, api-key."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from airflow_provider_xai.testing.billing_ledger import api_key_ids
from airflow_provider_xai.testing.errors import redact_key
from airflow_provider_xai.testing.models import ModelSpec
from airflow_provider_xai.testing.state import ServerState


def model_json(m: ModelSpec) -> dict[str, Any]:
    return {"id": m.id, "created": m.created, "object": "model", "owned_by": "xai",
            "aliases": list(m.aliases), "context_length": m.context_length,
            **prices(m)}


def prices(m: ModelSpec) -> dict[str, int]:
    p = m.price  # ticks per token == US cents per 100M tokens
    return {"prompt_text_token_price": p.input_ticks,
            "cached_prompt_text_token_price": p.cached_ticks,
            "prompt_image_token_price": p.image_ticks if m.vision else 0,
            "completion_text_token_price": p.output_ticks}


def language_model_json(m: ModelSpec) -> dict[str, Any]:
    return {"id": m.id, "fingerprint": m.fingerprint, "created": m.created, "object": "model",
            "owned_by": "xai", "version": "1.0.0", "input_modalities": m.input_modalities,
            "output_modalities": ["text"], **prices(m), "search_price": 0,
            "aliases": list(m.aliases)}


def api_key_json(state: ServerState) -> dict[str, Any]:
    key = state.api_key
    ns = uuid.uuid5(uuid.NAMESPACE_URL, "xai-local:" + key)
    team_id, key_id = api_key_ids(key)
    when = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return {"redacted_api_key": redact_key(key), "user_id": str(uuid.uuid5(ns, "user")),
            "name": "local-test-key", "create_time": when, "modify_time": when,
            "modified_by": str(uuid.uuid5(ns, "user")), "team_id": team_id,
            "acls": ["api-key:model:*", "api-key:endpoint:*"],
            "api_key_id": key_id, "team_blocked": state.team_blocked,
            "api_key_blocked": state.api_key_blocked, "api_key_disabled": state.api_key_disabled}
