"""Voice operators: text to an audio file (``XAITextToSpeechOperator``) and an audio file to a
transcript (``XAISpeechToTextOperator``), both in object storage. Their usage (characters
spoken, seconds heard) is recorded like every other call's, before anything else can fail.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_xai.arguments import check_number
from airflow_provider_xai.exceptions import XAIError
from airflow_provider_xai.operators.base import XAIBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_xai.pipeline.call import Endpoint
    from airflow_provider_xai.schemas.voice import Speech, Transcript
    from airflow_provider_xai.usage import UsageLedger

XCOM_AUDIO_PATH_KEY = "xai_audio_path"


class _VoiceOperator(XAIBaseOperator):
    """Runs one billed voice call: usage recorded first (also of a call that was billed and
    then failed, such as audio that could not be written), then XComs, then the value."""

    def call(self) -> Any:
        raise NotImplementedError

    def execute(self, context: Context) -> Any:
        ledger = self.ledger(context)
        return self.within_budget(context, ledger, lambda: self._run(context, ledger))

    def _run(self, context: Context, ledger: UsageLedger) -> Any:
        try:
            answer = self.call()
        except XAIError as exc:
            self.record_billed(ledger, exc)
            raise
        return self.finish(context, ledger, answer)


class XAITextToSpeechOperator(_VoiceOperator):
    """Speak ``text`` into an audio file.

    :param text: what to say, at most 15,000 characters (speech tags allowed). (templated)
    :param output_path: where the audio goes (``ObjectStoragePath``, URI or local path); it is
        written as it arrives. (templated)
    :param voice_id: the voice (xAI's default: ``eve``). (templated)
    :param language: BCP-47 code or ``auto``. (templated)
    :param codec: ``mp3`` (default), ``wav``, ``pcm``, ``mulaw`` or ``alaw``.
    :param sample_rate: 8000, 16000, 22050, 24000, 44100 or 48000.
    :param bit_rate: mp3 only: 32000 to 192000.
    :param speed: 0.7 to 1.5.
    :param with_timestamps: ask for character timings (returned in ``duration``; the timings
        themselves stay out of XCom).

    Returns ``{"path", "size", "content_type", "characters", "voice_id", "duration"}``; the path
    also goes to XCom ``xai_audio_path``. And :class:`XAIBaseOperator`'s ``xai_conn_id``,
    ``retry_policy``.
    """

    template_fields: Sequence[str] = ("text", "output_path", "voice_id", "language")
    ui_color = "#c4b5fd"

    def __init__(
        self,
        *,
        text: str,
        output_path: Any,
        voice_id: str | None = None,
        language: str = "auto",
        codec: str = "mp3",
        sample_rate: int | None = None,
        bit_rate: int | None = None,
        speed: float | None = None,
        with_timestamps: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.text, self.output_path, self.voice_id, self.language = text, output_path, voice_id, language
        self.codec, self.sample_rate, self.bit_rate, self.speed = codec, sample_rate, bit_rate, speed
        self.with_timestamps = with_timestamps
        check_number("speed", speed, 0.7, 1.5)
        check_number("sample_rate", sample_rate, 1, integer=True)
        check_number("bit_rate", bit_rate, 1, integer=True)

    def endpoint(self) -> Endpoint:
        from airflow_provider_xai.endpoints.voice import TTS

        return TTS

    def call(self) -> Speech:
        return self.hook.text_to_speech(
            self.text, self.output_path, voice_id=self.voice_id, language=self.language, codec=self.codec,
            sample_rate=self.sample_rate, bit_rate=self.bit_rate, speed=self.speed,
            with_timestamps=self.with_timestamps or None,
        )  # fmt: skip

    def xcom_values(self, answer: Speech) -> dict[str, Any]:
        return {XCOM_AUDIO_PATH_KEY: answer.path}

    def result(self, answer: Speech) -> dict[str, Any]:
        self.log.info("xAI spoke %d characters into %s (%d bytes)", answer.characters, answer.path, answer.size)
        return answer.model_dump(include={"path", "size", "content_type", "characters", "voice_id", "duration"})


class XAISpeechToTextOperator(_VoiceOperator):
    """Transcribe an audio file.

    :param audio: the audio file (``ObjectStoragePath``, URI or local path; at most 50 MB). (templated)
    :param output_path: where to write the whole transcript as JSON (text, language, duration,
        words with timings, segments); then only the text, language, duration and path go to
        XCom. None: everything goes to XCom. (templated)
    :param language: the language spoken (BCP-47), if known. (templated)
    :param audio_format: the audio's format when its name does not say it.
    :param sample_rate: the audio's sample rate (raw audio).
    :param diarize: tell speakers apart (words then carry ``speaker``).
    :param keyterms: words to listen for (names, jargon). (templated)

    Returns ``{"text", "language", "duration", "words", "segments"}`` (or, with ``output_path``,
    ``{"text", "language", "duration", "path", "words": <count>}``). And
    :class:`XAIBaseOperator`'s ``xai_conn_id``, ``retry_policy``.
    """

    template_fields: Sequence[str] = ("audio", "output_path", "language", "keyterms")
    ui_color = "#c4b5fd"

    def __init__(
        self,
        *,
        audio: Any,
        output_path: Any = None,
        language: str | None = None,
        audio_format: str | None = None,
        sample_rate: int | None = None,
        diarize: bool | None = None,
        keyterms: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.audio, self.output_path, self.language, self.audio_format = audio, output_path, language, audio_format
        self.sample_rate, self.diarize, self.keyterms = sample_rate, diarize, keyterms
        check_number("sample_rate", sample_rate, 1, integer=True)

    def endpoint(self) -> Endpoint:
        from airflow_provider_xai.endpoints.voice import STT

        return STT

    def call(self) -> Transcript:
        return self.hook.speech_to_text(
            self.audio, language=self.language, audio_format=self.audio_format, sample_rate=self.sample_rate,
            diarize=self.diarize, keyterms=self.keyterms,
        )  # fmt: skip

    def result(self, answer: Transcript) -> dict[str, Any]:
        whole = answer.model_dump(mode="json", include={"text", "language", "duration", "words", "segments"})
        self.log.info("xAI heard %s s of audio: %d words", answer.duration, len(answer.words))
        if self.output_path is None:
            return whole
        from airflow_provider_xai.endpoints.storage import storage_path

        path = storage_path(self.output_path, "output_path")
        with contextlib.suppress(OSError, NotImplementedError):  # object stores have no folders
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(whole, ensure_ascii=False, indent=2))
        return {"text": answer.text, "language": answer.language, "duration": answer.duration,
                "path": str(path), "words": len(answer.words)}  # fmt: skip


__all__ = ["XCOM_AUDIO_PATH_KEY", "XAISpeechToTextOperator", "XAITextToSpeechOperator"]
