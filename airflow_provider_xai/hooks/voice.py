"""xAI voice methods of :class:`XAIHook`: text-to-speech into object storage and
speech-to-text from it. The calls are described in :mod:`airflow_provider_xai.endpoints.voice`;
their answers carry a usage record by the unit (characters, seconds of audio)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_xai.endpoints import voice as api
from airflow_provider_xai.pipeline.transport import XAITransport
from airflow_provider_xai.schemas.voice import Speech, Transcript


class XAIVoiceMixin:
    """Voice methods of :class:`XAIHook`; they need only its ``transport``."""

    transport: XAITransport

    def text_to_speech(
        self,
        text: str,
        output_path: Any,
        *,
        voice_id: str | None = None,
        language: str = "auto",
        codec: str = "mp3",
        sample_rate: int | None = None,
        bit_rate: int | None = None,
        speed: float | None = None,
        with_timestamps: bool | None = None,
    ) -> Speech:
        """``POST /v1/tts``: speak ``text`` (at most 15,000 characters) into ``output_path``
        (``ObjectStoragePath``, URI or local path), written as it arrives. ``codec``: ``mp3``,
        ``wav``, ``pcm``, ``mulaw`` or ``alaw``; ``with_timestamps`` adds character timings."""
        request = api.speech_request(
            text, voice_id=voice_id, language=language, codec=codec, sample_rate=sample_rate, bit_rate=bit_rate,
            speed=speed, with_timestamps=with_timestamps,
        )  # fmt: skip
        return self.transport.send(api.speak(request, output_path))

    def speech_to_text(
        self,
        audio: Any,
        *,
        language: str | None = None,
        audio_format: str | None = None,
        sample_rate: int | None = None,
        diarize: bool | None = None,
        keyterms: Sequence[str] | None = None,
    ) -> Transcript:
        """``POST /v1/stt``: transcribe the audio file ``audio`` (object storage; at most 50 MB,
        checked before sending). The transcript has word timings (and speakers with
        ``diarize``) when xAI sends them."""
        options = api.transcription_options(
            language=language, audio_format=audio_format, sample_rate=sample_rate, diarize=diarize,
            keyterms=keyterms,
        )  # fmt: skip
        return self.transport.send(api.transcribe(audio, options))


__all__ = ["XAIVoiceMixin"]
