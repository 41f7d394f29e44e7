"""Models, the API key and tokenizing (``/v1/models``, ``/v1/language-models``, ``/v1/api-key``,
``/v1/tokenize-text``): free calls, no usage, no span. The declarations and the calls."""

from __future__ import annotations

from typing import Any

from airflow_provider_xai.connection.settings import ClientSettings
from airflow_provider_xai.endpoints.common import read, segment
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.schemas import (
    ApiKeyInfo,
    LanguageModel,
    LanguageModelList,
    ModelList,
    TokenizeResponse,
)

MODELS = Endpoint("models", "GET", "models", response=ModelList)
LANGUAGE_MODELS = Endpoint("models", "GET", "language-models", response=LanguageModelList)
LANGUAGE_MODEL = Endpoint("models", "GET", "language-models/{model_id}", response=LanguageModel)
API_KEY = Endpoint("api-key", "GET", "api-key", response=ApiKeyInfo)
TOKENIZE = Endpoint("tokenize", "POST", "tokenize-text", response=TokenizeResponse)
ENDPOINTS = (MODELS, LANGUAGE_MODELS, LANGUAGE_MODEL, API_KEY, TOKENIZE)


def models() -> Call[ModelList]:
    return Call(MODELS, read(ModelList, "models"))


def language_models() -> Call[LanguageModelList]:
    return Call(LANGUAGE_MODELS, read(LanguageModelList, "language models"))


def language_model(model: str) -> Call[LanguageModel]:
    return Call(LANGUAGE_MODEL, read(LanguageModel, "language model"), path=f"language-models/{segment(model)}")


def api_key() -> Call[ApiKeyInfo]:
    return Call(API_KEY, read(ApiKeyInfo, "api-key"))


def tokenize(text: str, model: str | None) -> Call[TokenizeResponse]:
    def body(settings: ClientSettings) -> dict[str, Any]:
        return {"text": text, "model": model or settings.default_model}

    return Call(TOKENIZE, read(TokenizeResponse, "tokens"), body=body)


__all__ = ["API_KEY", "ENDPOINTS", "LANGUAGE_MODEL", "LANGUAGE_MODELS", "MODELS", "TOKENIZE", "api_key",
           "language_model", "language_models", "models", "tokenize"]
