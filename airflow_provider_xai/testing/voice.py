"""The local server's voice: real, small, deterministic audio, and transcripts of it.

Text-to-speech makes a tone as long as the text (50 ms a character, at most 10 s): a WAV
written with the standard library's ``wave`` (the text kept in its ``LIST/INFO/ICMT`` chunk),
raw 16-bit PCM, silent MPEG-1 Layer III frames for ``mp3``, or silent G.711 bytes for
``mulaw``/``alaw``. Speech-to-text reads that comment back, so speaking a text and
transcribing the audio gives the text again; any other audio gets a fixed sentence naming it.
Words are spread evenly over the audio's duration.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from typing import Any

from airflow_provider_xai.testing.errors import ServedError

CODECS = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm", "mulaw": "audio/basic",
          "alaw": "audio/x-alaw-basic"}
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
VOICES = ("eve", "ara", "leo", "rex", "sal")
MAX_CHARACTERS = 15_000
SECONDS_PER_CHARACTER = 0.05
MAX_SECONDS = 10.0
DEFAULT_RATE = 24000
#: One silent MPEG-1 Layer III frame: 128 kbit/s, 44.1 kHz, joint stereo, 1152 samples.
_MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)
_MP3_FRAME_SECONDS = 1152 / 44100


def seconds_of(text: str) -> float:
    return min(MAX_SECONDS, max(SECONDS_PER_CHARACTER, len(text) * SECONDS_PER_CHARACTER))


def check_speech(body: Any) -> tuple[str, str, int, str]:
    """(text, codec, sample rate, language) of a ``POST /v1/tts`` body, or the 4xx xAI gives."""
    if not isinstance(body, dict):
        raise ServedError(422, "The body must be a JSON object.")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ServedError(400, "text must be a non-empty string.")
    if len(text) > MAX_CHARACTERS:
        raise ServedError(400, f"text exceeds maximum length of {MAX_CHARACTERS} characters (got {len(text)}).")
    voice = body.get("voice_id", "eve")
    if voice is not None and (not isinstance(voice, str) or voice.lower() not in VOICES):
        raise ServedError(404, f"Voice {voice!r} was not found.")
    fmt = body.get("output_format") or {}
    codec, rate = fmt.get("codec", "mp3"), fmt.get("sample_rate", DEFAULT_RATE)
    if codec not in CODECS:
        raise ServedError(400, f"Invalid output_format.codec {codec!r}.")
    if rate not in SAMPLE_RATES:
        raise ServedError(400, f"Invalid output_format.sample_rate {rate!r}.")
    language = body.get("language", "auto")
    return text, codec, int(rate), language if isinstance(language, str) else "auto"


def _tone(seconds: float, rate: int) -> bytes:
    frames = int(seconds * rate)
    return b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * n / rate))) for n in range(frames))


def _wav(text: str, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(_tone(seconds_of(text), rate))
    data = buffer.getvalue()
    comment = text.encode("utf-8") + b"\0"
    sub = b"ICMT" + struct.pack("<I", len(comment)) + comment + (b"\0" if len(comment) % 2 else b"")
    info = b"LIST" + struct.pack("<I", 4 + len(sub)) + b"INFO" + sub
    return data[:4] + struct.pack("<I", len(data) - 8 + len(info)) + data[8:] + info


def speech_audio(text: str, codec: str, rate: int) -> bytes:
    """The audio xAI's text-to-speech would send for ``text``, deterministically."""
    seconds = seconds_of(text)
    if codec == "wav":
        return _wav(text, rate)
    if codec == "pcm":
        return _tone(seconds, rate)
    if codec == "mp3":
        return _MP3_FRAME * max(1, round(seconds / _MP3_FRAME_SECONDS))
    return (b"\xff" if codec == "mulaw" else b"\xd5") * int(seconds * 8000)  # G.711 silence


def timestamps(text: str) -> dict[str, Any]:
    """Character timings of spoken ``text`` (``graph_chars``/``graph_times``)."""
    step = seconds_of(text) / max(1, len(text))
    return {"graph_chars": list(text), "graph_times": [[round(i * step, 3), round((i + 1) * step, 3)]
                                                        for i in range(len(text))]}


# -- speech-to-text --------------------------------------------------------------------------------
def _chunks(data: bytes) -> dict[bytes, bytes]:
    """The RIFF chunks of a WAV file (``LIST`` sub-chunks included by their own id)."""
    found: dict[bytes, bytes] = {}
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        body = data[at + 8:at + 8 + size]
        if kind == b"LIST" and body[:4] == b"INFO":
            found.update(_chunks(b"\0" * 8 + body))  # the INFO list holds chunks of its own
        found.setdefault(kind, body)
        at += 8 + size + size % 2
    return found


def hear(audio: bytes, filename: str) -> tuple[str, float]:
    """(text, seconds) a transcription of ``audio`` finds."""
    if audio[:4] == b"RIFF" and audio[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(audio)) as heard:
                seconds = heard.getnframes() / heard.getframerate()
        except (wave.Error, EOFError, ZeroDivisionError):
            raise ServedError(400, f"{filename} is not a readable WAV file.") from None
        comment = _chunks(audio).get(b"ICMT", b"").split(b"\0", 1)[0].decode("utf-8", "replace")
        if comment:
            return comment, round(seconds, 3)
        return f"Local transcript of {filename}.", round(seconds, 3)
    if not audio:
        raise ServedError(400, "The audio file is empty.")
    return f"Local transcript of {filename}.", round(len(audio) / 16000, 3)


def transcript(audio: bytes, filename: str, language: str | None, diarize: bool) -> dict[str, Any]:
    text, seconds = hear(audio, filename)
    spoken = text.split()
    step = seconds / max(1, len(spoken))
    words = [{"text": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3),
              **({"speaker": 0} if diarize else {})} for i, w in enumerate(spoken)]
    return {"text": text, "language": language or "en", "duration": seconds, "words": words}


__all__ = ["CODECS", "VOICES", "check_speech", "hear", "speech_audio", "timestamps", "transcript"]
