"""Provider-info dict read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Airflow 3.2+ renders the connection form only from ``conn-fields`` and
``ui-field-behaviour`` declared here; no hook class is imported for the UI.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_xai import __version__
from airflow_provider_xai.defaults import DEFAULT_BASE_URL, DEFAULT_MODEL

#: Every release, newest first (provider.yaml's ``versions``); CHANGELOG.md has one section each.
VERSIONS = [__version__, "0.1.0"]


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow uses for discovery."""
    return {
        "package-name": "airflow-provider-xai",
        "name": "xAI",
        "description": (
            "`xAI <https://x.ai/>`__ Grok API: chat, vision, the Responses API with search tools, "
            "batches, structured output, deferrable calls, usage accounting."
        ),
        "versions": list(VERSIONS),
        "integrations": [
            {
                "integration-name": "xAI",
                "external-doc-url": "https://docs.x.ai/",
                "tags": ["ai"],
            }
        ],
        "hooks": [{"integration-name": "xAI", "python-modules": ["airflow_provider_xai.hooks.xai"]}],
        "operators": [
            {
                "integration-name": "xAI",
                "python-modules": [
                    "airflow_provider_xai.operators.chat",
                    "airflow_provider_xai.operators.responses",
                    "airflow_provider_xai.operators.branch",
                    "airflow_provider_xai.operators.vision",
                    "airflow_provider_xai.operators.batch",
                    "airflow_provider_xai.operators.collections",
                    "airflow_provider_xai.operators.voice",
                    "airflow_provider_xai.operators.images",
                    "airflow_provider_xai.operators.video",
                    "airflow_provider_xai.operators.reconcile",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "xAI",
                "python-modules": ["airflow_provider_xai.sensors.usage", "airflow_provider_xai.sensors.balance"],
            }
        ],
        "triggers": [
            {
                "integration-name": "xAI",
                "python-modules": [
                    "airflow_provider_xai.triggers.deferred",
                    "airflow_provider_xai.triggers.batch",
                    "airflow_provider_xai.triggers.responses",
                    "airflow_provider_xai.triggers.usage",
                    "airflow_provider_xai.triggers.collections",
                    "airflow_provider_xai.triggers.media",
                    "airflow_provider_xai.triggers.capacity",
                ],
            }
        ],
        "config": {
            "xai": {
                "description": "The xAI provider's settings.",
                "options": {
                    "usage_page": {
                        "description": "Show the xAI usage page (tokens and cost) in the Airflow UI.",
                        "version_added": "0.2.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "budgets": {
                        "description": (
                            "Budgets every xAI connection enforces (a JSON list): "
                            '{"scope": "team" | "dag:<dag_id>" | "tag:<tag>", "period": "daily" | "monthly", '
                            '"usd": <number> | "tokens": <integer>, "name": <optional>}. A call reserves its '
                            "forecast against each budget that applies before it is sent."
                        ),
                        "version_added": "0.3.0",
                        "type": "string",
                        "example": '[{"scope": "team", "period": "daily", "usd": 25}]',
                        "default": None,
                    },
                },
            }
        },
        "cli": ["airflow_provider_xai.cli.get_xai_cli_commands"],
        "task-decorators": [
            {"class-name": "airflow_provider_xai.decorators.xai.xai_task", "name": "xai"},
            {"class-name": "airflow_provider_xai.decorators.xai.xai_branch_task", "name": "xai_branch"},
            {"class-name": "airflow_provider_xai.decorators.media.xai_image_task", "name": "xai_image"},
            {"class-name": "airflow_provider_xai.decorators.media.xai_video_task", "name": "xai_video"},
        ],
        "connection-types": [
            {
                "connection-type": "xai",
                "hook-class-name": "airflow_provider_xai.hooks.xai.XAIHook",
                "hook-name": "xAI",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"password": "API Key", "host": "Base URL"},
                    "placeholders": {
                        "host": DEFAULT_BASE_URL,
                        "password": "xai-...",
                        "default_model": DEFAULT_MODEL,
                        "timeout": "600",
                        "deadline": "1800",
                        "max_retries": "2",
                        "rate_limit_store": "embedded",
                        "rate_limit_defer_after": "10",
                        "rate_limit_resume_lead": "5",
                    },
                },
                "conn-fields": {
                    "default_model": {
                        "label": "Default model",
                        "description": f"Model used when an operator names none (default {DEFAULT_MODEL}).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Read timeout (seconds)",
                        "description": "Longest wait for the next bytes of one request to xAI (default 600).",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "deadline": {
                        "label": "Request deadline (seconds)",
                        "description": (
                            "Longest one request attempt may take from sending to its last byte, streams "
                            "included (default 1800)."
                        ),
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries for 429, 5xx and dropped connections (0 disables).",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
                    },
                    "prices": {
                        "label": "Price overrides (JSON)",
                        "description": (
                            'USD per million tokens by model, e.g. {"grok-4.3": {"input": 1.25, '
                            '"cached_input": 0.2, "output": 2.5}}. Used when xAI sends no cost.'
                        ),
                        "schema": {"type": ["string", "null"], "format": "multiline"},
                    },
                    "management_key": {
                        "label": "Management key",
                        "description": (
                            "xAI's Management API key (collections, billing): a separate credential, "
                            "masked and never logged. Empty: no Management API calls."
                        ),
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "management_base_url": {
                        "label": "Management API URL",
                        "description": "Empty for https://management-api.x.ai (a local server's otherwise).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain http:// to a remote host",
                        "description": (
                            "The API key would travel unencrypted. Only for a trusted proxy; "
                            "loopback (local test servers) never needs it."
                        ),
                        "schema": {"type": ["boolean", "null"]},
                    },
                    "budgets": {
                        "label": "Budgets (JSON)",
                        "description": (
                            'Daily or monthly budgets, e.g. [{"scope": "team", "period": "daily", "usd": 25}, '
                            '{"scope": "dag:nightly", "period": "monthly", "tokens": 5000000}]; scope team, '
                            "dag:<id> or tag:<tag>. Calls reserve their forecast before they are sent."
                        ),
                        "schema": {"type": ["string", "null"], "format": "multiline"},
                    },
                    "prices_ttl": {
                        "label": "Live prices: seconds kept",
                        "description": (
                            "How long xAI's model-list prices are kept in the shared store "
                            "(default 3600; 0: built-in prices only)."
                        ),
                        "schema": {"type": ["number", "null"], "minimum": 0},
                    },
                    "forecast_tokens": {
                        "label": "Forecast token count",
                        "description": (
                            "auto (default): xAI's tokenizer when a cap or budget applies, else an estimate; "
                            "tokenize: always; bound: the prompt's bytes, no request."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "rate_limit_requests_per_second": {
                        "label": "Rate limit: requests per second",
                        "description": (
                            "Shared by every worker using this key, per model (empty: no client-side "
                            "limit). The team's limit for the model, as xAI states it."
                        ),
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    },
                    "rate_limit_tokens_per_minute": {
                        "label": "Rate limit: tokens per minute",
                        "description": "Shared by every worker using this key, per model (empty: no limit).",
                        "schema": {"type": ["integer", "null"], "minimum": 1},
                    },
                    "rate_limit_buckets": {
                        "label": "Rate limits of images and video (JSON)",
                        "description": (
                            'Requests per second by endpoint family, e.g. {"images": 5, "videos": 1} (xAI\'s '
                            "limits, the default); 0 turns one off."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "rate_limit_store": {
                        "label": "Rate limit store",
                        "description": (
                            "embedded (default): an SQLite file shared by the processes of one machine; "
                            "redis: shared by many machines, through the Redis connection below."
                        ),
                        # free text, not an enum: the UI's select would show an unset value as "null"
                        "schema": {"type": ["string", "null"]},
                    },
                    "rate_limit_path": {
                        "label": "Rate limit file (embedded store)",
                        "description": "On a local disk; default $AIRFLOW_HOME/xai_rate_limits.sqlite.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "rate_limit_redis_conn_id": {
                        "label": "Rate limit Redis connection id",
                        "description": "An Airflow Redis connection (host, port, password, db) for the redis store.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "rate_limit_defer_after": {
                        "label": "Rate limit: wait in the triggerer after (seconds)",
                        "description": (
                            "A prompt task whose rate-limit slot is further away than this waits for it in "
                            "the triggerer, holding no worker slot, and keeps its slot (default 10; 0: "
                            "always wait in the worker)."
                        ),
                        "schema": {"type": ["number", "null"], "minimum": 0, "maximum": 3600},
                    },
                    "rate_limit_resume_lead": {
                        "label": "Rate limit: resume lead (seconds)",
                        "description": (
                            "The longest time before its slot a task waiting in the triggerer is handed back, "
                            "to be on a worker in time; below it the lead is learned from how long tasks take "
                            "to come back (default 5; longer for pods that start slowly)."
                        ),
                        "schema": {"type": ["number", "null"], "minimum": 0, "maximum": 3600},
                    },
                    "rate_limit_send_in_triggerer": {
                        "label": "Rate limit: send from the triggerer",
                        "description": (
                            "A prompt call that waits for its slot in the triggerer is sent from there at "
                            "its slot, and its task resumes with the answer (default on; off: the task goes "
                            "back to a worker to send it, for a triggerer that cannot reach xAI)."
                        ),
                        "schema": {"type": ["boolean", "null"]},
                    },
                },
            }
        ],
    }
