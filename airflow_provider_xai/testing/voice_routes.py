"""Routes of ``/v1/tts`` and ``/v1/stt`` on the local server (see ``voice.py``).

* ``POST /v1/tts``: JSON; answers the audio (``output_format.codec``, default mp3) or, with
  ``with_timestamps``, ``{audio (base64), content_type, duration, audio_timestamps}``.
* ``POST /v1/stt``: multipart; the ``file`` part must be the last one (400 otherwise, as xAI
  answers); ``language``, ``audio_format``, ``sample_rate``, ``diarize``, ``keyterm`` fields.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_xai.endpoints import voice as voice_endpoints
from airflow_provider_xai.endpoints.routes import route
from airflow_provider_xai.testing.billing_ledger import bill_units
from airflow_provider_xai.testing.bodies import UploadedPart, form_parts, json_body
from airflow_provider_xai.testing.errors import ServedError
from airflow_provider_xai.testing.state import ServerState
from airflow_provider_xai.testing.voice import (
    CODECS,
    check_speech,
    seconds_of,
    speech_audio,
    timestamps,
    transcript,
)

STT_FIELDS = ("model", "language", "audio_format", "sample_rate", "diarize", "keyterm", "url")


def create_voice_router(state: ServerState) -> APIRouter:
    """The voice routes (under ``/v1``)."""
    r = APIRouter()

    @r.post(route(voice_endpoints.TTS))
    async def speak(request: Request) -> Response:
        body = await json_body(request)
        text, codec, rate, _language = check_speech(body)
        audio = speech_audio(text, codec, rate)
        bill_units(state, "tts", len(text))
        if not body.get("with_timestamps"):
            return Response(audio, media_type=CODECS[codec])
        return JSONResponse({"audio": base64.b64encode(audio).decode("ascii"), "content_type": CODECS[codec],
                             "duration": seconds_of(text), "audio_timestamps": timestamps(text)})

    @r.post(route(voice_endpoints.STT))
    async def listen(request: Request) -> Response:
        parts = await form_parts(request)
        names = [name for name, _ in parts]
        if "file" not in names:
            raise ServedError(400, "The form has no file: send the audio as the `file` part (last).")
        file = parts[-1][1]
        if names[-1] != "file" or names.count("file") > 1 or not isinstance(file, UploadedPart):
            raise ServedError(400, "The file part must be the last field of the form.")
        fields = {name: value for name, value in parts[:-1] if isinstance(value, str)}
        unknown = sorted(set(fields) - set(STT_FIELDS))
        if unknown:
            raise ServedError(400, f"Unknown field(s): {', '.join(unknown)}.")
        filename, audio = file
        diarize = fields.get("diarize", "false").lower() == "true"
        answer = transcript(audio, filename, fields.get("language"), diarize)
        bill_units(state, "stt", float(answer.get("duration") or 0.0))
        return JSONResponse(answer)

    return r


__all__ = ["create_voice_router"]
