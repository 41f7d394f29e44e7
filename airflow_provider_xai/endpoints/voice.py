"""Voice (``POST /v1/tts``, ``POST /v1/stt``): the declarations, and the calls the hook sends.

Text-to-speech answers audio, written to object storage as it arrives (or, ``with_timestamps``,
a JSON envelope with the audio in base64 and character timings). Speech-to-text sends the
audio as a multipart form whose ``file`` part comes last, as xAI requires (httpx sends the
form's fields before its files). Both are billed by the unit: characters spoken, seconds heard
(``UsageRecord.units``/``unit``), priced from :data:`~airflow_provider_xai.pricing.VOICE_PRICES`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from airflow_provider_xai.endpoints.common import fixed_body, read
from airflow_provider_xai.endpoints.storage import StorageSink, WrittenFile, storage_path, stored_file
from airflow_provider_xai.exceptions import XAIResponseError, XAIValidationError
from airflow_provider_xai.forecast import Forecast, TokenCount
from airflow_provider_xai.pipeline.body import Form
from airflow_provider_xai.pipeline.call import Call, Endpoint
from airflow_provider_xai.pipeline.replies import Reply
from airflow_provider_xai.pricing import VOICE_PRICES, Price
from airflow_provider_xai.schemas import describe_validation_error, parse_response
from airflow_provider_xai.schemas.voice import (
    CODECS,
    Speech,
    SpeechRequest,
    SpeechTimestamps,
    Transcript,
    TranscriptionOptions,
)
from airflow_provider_xai.usage import UsageRecord

#: Largest audio file one transcription sends (xAI's file limit).
MAX_AUDIO_BYTES = 50_000_000
#: Largest audio one speech answer may bring (15,000 characters are minutes, not hours).
MAX_SPEECH_BYTES = 256 * 1024 * 1024
#: The usage record's ``model`` for voice calls (xAI names no model for them).
TTS_MODEL = "tts"
STT_MODEL = "stt"


def unit_record(kind: str, model: str, units: float | None, completion_id: str | None = None) -> UsageRecord:
    """A record of a call billed by the unit, costed from the voice price table (an estimate);
    unknown units (a transcript without a duration) leave the cost unknown, never zero."""
    price = VOICE_PRICES[kind]
    record = UsageRecord(model=model, kind=kind, completion_id=completion_id, units=units or 0.0, unit=price.unit)
    if units is not None:
        record.cost_usd = units * price.usd
        record.cost_source = "estimate"
    return record


def speech_record(speech: Speech, prices: Mapping[str, Price]) -> UsageRecord:
    return unit_record("tts", TTS_MODEL, speech.characters)


def transcript_record(transcript: Transcript, prices: Mapping[str, Price]) -> UsageRecord:
    return unit_record("stt", STT_MODEL, transcript.duration)


def forecast_speech(body: Mapping[str, Any], _count: TokenCount) -> Forecast:
    """Text-to-speech, exactly: its text's characters at the price per character (what xAI
    bills). Speech-to-text is not forecast: its audio's length is known only once heard."""
    text = body.get("text")
    return Forecast(TTS_MODEL, "tts", units=float(len(text)) if isinstance(text, str) else 0.0, unit="characters")


TTS = Endpoint(
    "tts", "POST", "tts", request=SpeechRequest, response=Speech, record=speech_record, forecast=forecast_speech
)
STT = Endpoint("stt", "POST", "stt", response=Transcript, record=transcript_record)
ENDPOINTS = (TTS, STT)


def speech_request(text: Any, **options: Any) -> SpeechRequest:
    """A checked text-to-speech request (``codec``, ``sample_rate`` and ``bit_rate`` make its
    ``output_format``), the field named when it is refused."""
    output = {k: v for k in ("codec", "sample_rate", "bit_rate") if (v := options.pop(k, None)) is not None}
    body = {"text": text, **{k: v for k, v in options.items() if v is not None}}
    if output:
        body["output_format"] = output
    try:
        return SpeechRequest.model_validate(body)
    except ValidationError as exc:
        raise XAIValidationError(*describe_validation_error(exc)) from None


def speak(request: SpeechRequest, destination: Any) -> Call[Speech]:
    """Speak ``request.text`` into the file ``destination`` (object storage)."""
    path = storage_path(destination, "output_path")
    codec = request.output_format.codec

    def finish(file: WrittenFile, duration: float | None = None, timings: Any = None) -> Speech:
        return Speech(
            path=file.path, size=file.size, content_type=CODECS[codec][1], characters=len(request.text),
            voice_id=request.voice_id, duration=duration, audio_timestamps=timings,
        )  # fmt: skip

    body = fixed_body(request.model_dump(exclude_none=True))
    if not request.with_timestamps:
        return Call(TTS, sink=lambda: StorageSink(path, finish), body=body, max_bytes=MAX_SPEECH_BYTES)

    def envelope(reply: Reply) -> Speech:
        answer: SpeechTimestamps = parse_response(SpeechTimestamps, reply.content, "speech")
        try:
            audio = base64.b64decode(answer.audio, validate=True)
        except (binascii.Error, ValueError):
            raise XAIResponseError("Malformed speech from xAI: audio: not base64") from None
        sink = StorageSink(path, lambda file: finish(file, answer.duration, answer.audio_timestamps))
        sink.write(audio)
        return sink.result()

    return Call(TTS, envelope, body=body, max_bytes=MAX_SPEECH_BYTES * 2)


def transcription_options(**options: Any) -> TranscriptionOptions:
    try:
        return TranscriptionOptions.model_validate({k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        raise XAIValidationError(*describe_validation_error(exc)) from None


def transcribe(audio: Any, options: TranscriptionOptions) -> Call[Transcript]:
    """Transcribe the audio file ``audio`` (object storage), sized before anything is sent."""
    file = stored_file(audio, "audio", MAX_AUDIO_BYTES)
    form = Form(options.form_fields(), [file.form_file("file")])  # fields first, the file last
    return Call(STT, read(Transcript, "transcript"), body=fixed_body(form))


__all__ = [
    "ENDPOINTS",
    "MAX_AUDIO_BYTES",
    "STT",
    "STT_MODEL",
    "TTS",
    "TTS_MODEL",
    "speak",
    "speech_record",
    "speech_request",
    "transcribe",
    "transcript_record",
    "transcription_options",
    "unit_record",
]
