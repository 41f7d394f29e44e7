"""Wire models of xAI's voice endpoints: text-to-speech (``POST /v1/tts``: JSON in, audio out)
and speech-to-text (``POST /v1/stt``: a multipart form, ``file`` last; a transcript out).

xAI bills speech by the character of the text and transcription by the second of audio; the
answers here carry what the usage record counts.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_provider_xai.schemas.billed import Billed

Codec = Literal["mp3", "wav", "pcm", "mulaw", "alaw"]
#: The audio formats xAI's text-to-speech writes, with the file suffix and media type of each.
CODECS: dict[str, tuple[str, str]] = {
    "mp3": (".mp3", "audio/mpeg"),
    "wav": (".wav", "audio/wav"),
    "pcm": (".pcm", "audio/pcm"),
    "mulaw": (".ulaw", "audio/basic"),
    "alaw": (".alaw", "audio/x-alaw-basic"),
}
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
BIT_RATES = (32000, 64000, 96000, 128000, 192000)  # mp3 only
#: Longest text one request speaks (xAI's SDK; a 2026 page says 60,000: the conservative one).
MAX_SPEECH_CHARACTERS = 15_000
MIN_SPEED, MAX_SPEED = 0.7, 1.5
#: Longest audio a transcript may claim to cover (a day): a larger or odd duration is not trusted.
MAX_AUDIO_SECONDS = 24 * 3600.0


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OutputFormat(_Request):
    codec: Codec = "mp3"
    sample_rate: int | None = None
    bit_rate: int | None = None

    @field_validator("sample_rate")
    @classmethod
    def _sample_rate(cls, value: int | None) -> int | None:
        if value is not None and value not in SAMPLE_RATES:
            raise ValueError(f"must be one of {', '.join(map(str, SAMPLE_RATES))}")
        return value

    @field_validator("bit_rate")
    @classmethod
    def _bit_rate(cls, value: int | None) -> int | None:
        if value is not None and value not in BIT_RATES:
            raise ValueError(f"must be one of {', '.join(map(str, BIT_RATES))}")
        return value

    @model_validator(mode="after")
    def _bit_rate_is_mp3(self) -> OutputFormat:
        if self.bit_rate is not None and self.codec != "mp3":
            raise ValueError("bit_rate is only for codec 'mp3'")
        return self


class SpeechRequest(_Request):
    """Body of ``POST /v1/tts``."""

    text: str = Field(min_length=1, max_length=MAX_SPEECH_CHARACTERS)
    language: str = Field(default="auto", min_length=1)
    voice_id: str | None = Field(default=None, min_length=1)
    output_format: OutputFormat = Field(default_factory=OutputFormat)
    speed: float | None = Field(default=None, ge=MIN_SPEED, le=MAX_SPEED)
    with_timestamps: bool | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class TranscriptionOptions(_Request):
    """The form fields of ``POST /v1/stt`` (the audio itself is the ``file`` part, sent last)."""

    language: str | None = Field(default=None, min_length=1)
    audio_format: str | None = Field(default=None, min_length=1)
    sample_rate: int | None = Field(default=None, gt=0)
    diarize: bool | None = None
    keyterms: list[str] | None = None

    def form_fields(self) -> list[tuple[str, str]]:
        """The fields in the order they are sent (before ``file``); ``keyterm`` once per term."""
        fields: list[tuple[str, str]] = []
        for name in ("language", "audio_format", "sample_rate"):
            if (value := getattr(self, name)) is not None:
                fields.append((name, str(value)))
        if self.diarize is not None:
            fields.append(("diarize", "true" if self.diarize else "false"))
        fields += [("keyterm", term) for term in self.keyterms or ()]
        return fields


# --- answers (tolerant) ------------------------------------------------------------------------------
def bounded_seconds(value: Any) -> float | None:
    """A duration from the server, trusted only when it is a finite number of seconds in range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and 0 <= seconds <= MAX_AUDIO_SECONDS else None


class SpeechTimestamps(BaseModel):
    """``with_timestamps``: the JSON envelope xAI answers instead of bare audio."""

    model_config = ConfigDict(extra="allow")
    audio: str
    content_type: str | None = None
    duration: float | None = None
    audio_timestamps: Any = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return bounded_seconds(value)


class Speech(Billed):
    """Audio xAI spoke, as written to object storage, and the characters it billed."""

    path: str
    size: int
    content_type: str
    characters: int
    voice_id: str | None = None
    duration: float | None = None
    audio_timestamps: Any = None

    @property
    def usage(self) -> int:
        """What xAI billed: the characters spoken."""
        return self.characters


class TranscriptWord(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str = ""
    start: float | None = None
    end: float | None = None
    speaker: int | str | None = None


class Transcript(Billed):
    """What xAI heard: the text, its language and length, and word timings when it sent them."""

    model_config = ConfigDict(extra="allow")
    text: str = ""
    language: str | None = None
    duration: float | None = None
    words: list[TranscriptWord] = Field(default_factory=list)
    segments: list[dict[str, Any]] | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return bounded_seconds(value)

    @field_validator("words", mode="before")
    @classmethod
    def _no_words(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def usage(self) -> float | None:
        """What xAI billed: the seconds of audio heard (None when it did not say)."""
        return self.duration


__all__ = [
    "BIT_RATES",
    "CODECS",
    "MAX_AUDIO_SECONDS",
    "MAX_SPEECH_CHARACTERS",
    "SAMPLE_RATES",
    "Codec",
    "OutputFormat",
    "Speech",
    "SpeechRequest",
    "SpeechTimestamps",
    "Transcript",
    "TranscriptWord",
    "TranscriptionOptions",
    "bounded_seconds",
]
