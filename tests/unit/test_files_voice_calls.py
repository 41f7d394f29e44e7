"""The files and voice calls without a server: bad input refused naming the field (nothing
sent), multipart forms in the order xAI wants, uploads and downloads streamed with bounded
memory, and what the voice answers bill (characters, seconds of audio) priced by the unit."""

from __future__ import annotations

import json
import math
import re
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_xai import tools
from airflow_provider_xai.endpoints import voice
from airflow_provider_xai.exceptions import XAIError, XAIValidationError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.pricing import VOICE_PRICES, VOICE_PRICES_AS_OF
from airflow_provider_xai.schemas.voice import Speech, Transcript

KEY = "xai-files-unit-key-1234"
MB = 1 << 20


def hook_for(handler: Callable[[httpx.Request], httpx.Response], monkeypatch: pytest.MonkeyPatch) -> XAIHook:
    conn = {"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY, "extra": {"max_retries": 1}}
    monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
    return XAIHook(client_kwargs={"transport": httpx.MockTransport(handler)}, backoff_base=0.01)


def refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing should be sent, got {request.method} {request.url}")


class TestRefusedBeforeSending:
    @pytest.mark.parametrize(
        ("call", "field"),
        [
            (lambda h, p: h.upload_file(p / "missing.txt"), "path"),
            (lambda h, p: h.upload_file(p / "a.txt", expires_after=60), "expires_after"),
            (lambda h, p: h.upload_file(p / "a.txt", filename="two\nlines"), "filename"),
            (lambda h, p: list(h.list_files(limit=101)), "limit"),
            (lambda h, p: list(h.list_files(order="sideways")), "order"),
            (lambda h, p: h.get_file(""), "file_id"),
            (lambda h, p: h.create_public_url("f", expires_after=3_000_000), "expires_after"),
            (lambda h, p: h.text_to_speech("   ", p / "a.mp3"), "text"),
            (lambda h, p: h.text_to_speech("x" * 15_001, p / "a.mp3"), "text"),
            (lambda h, p: h.text_to_speech("hi", p / "a.ogg", codec="ogg"), "output_format.codec"),
            (lambda h, p: h.text_to_speech("hi", p / "a.wav", codec="wav", bit_rate=64000), "output_format"),
            (lambda h, p: h.text_to_speech("hi", p / "a.mp3", sample_rate=12345), "output_format.sample_rate"),
            (lambda h, p: h.text_to_speech("hi", p / "a.mp3", speed=math.nan), "speed"),
            (lambda h, p: h.text_to_speech("hi", p / "a.mp3", speed=2.0), "speed"),
            (lambda h, p: h.speech_to_text(p / "missing.wav"), "audio"),
            (lambda h, p: h.speech_to_text(p / "a.txt", keyterms="one term"), "keyterms"),
            (lambda h, p: h.search_documents(" ", "c1"), "query"),
            (lambda h, p: h.search_documents("tides", []), "source.collection_ids"),
            (lambda h, p: h.search_documents("tides", "c1", limit=0), "limit"),
            (lambda h, p: h.add_document("c1", "f1", fields={"year": 2026}), "fields['year']"),
            (lambda h, p: h.create_collection(""), "collection_name"),
        ],
    )
    def test_bad_input_names_the_field(
        self, call: Callable[[XAIHook, Path], Any], field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "a.txt").write_text("hello")
        monkeypatch.setenv("XAI_MANAGEMENT_KEY", "xai-management-unit-key")
        with pytest.raises(XAIValidationError) as info:
            call(hook_for(refuse, monkeypatch), tmp_path)
        assert info.value.field == field, info.value

    def test_a_file_over_50_mb_is_refused_before_sending(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        big = tmp_path / "big.pdf"
        with big.open("wb") as handle:  # sparse: 50 MB + 1 byte on paper, nothing on disk
            handle.truncate(50_000_001)
        with pytest.raises(XAIValidationError, match=r"50,000,001 bytes; xAI accepts at most 50,000,000"):
            hook_for(refuse, monkeypatch).upload_file(big)


class TestForms:
    def test_an_upload_sends_expires_after_before_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bodies: list[bytes] = []

        def answer(request: httpx.Request) -> httpx.Response:
            bodies.append(request.read())
            return httpx.Response(200, json={"id": "file_1", "bytes": 5, "filename": "a.txt"})

        (tmp_path / "a.txt").write_text("hello")
        uploaded = hook_for(answer, monkeypatch).upload_file(tmp_path / "a.txt", expires_after=7200)
        (body,) = bodies
        assert body.index(b'name="expires_after"') < body.index(b'name="file"; filename="a.txt"')
        assert b"7200" in body and b"hello" in body and uploaded.size == 5

    def test_a_transcription_sends_the_file_last_and_each_keyterm(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bodies: list[bytes] = []

        def answer(request: httpx.Request) -> httpx.Response:
            bodies.append(request.read())
            return httpx.Response(200, json={"text": "hi", "duration": 2.5})

        (tmp_path / "a.wav").write_bytes(b"RIFF0000WAVE")
        hook = hook_for(answer, monkeypatch)
        hook.speech_to_text(tmp_path / "a.wav", language="en", diarize=True, keyterms=["Brest", "tide"])
        (body,) = bodies
        names = re.findall(rb'; name="([^"]+)"', body)
        assert names == [b"language", b"diarize", b"keyterm", b"keyterm", b"file"]
        assert body.index(b"Brest") < body.index(b"tide") < body.index(b"RIFF0000WAVE")


class Draining(httpx.BaseTransport):
    """Reads each request's body as it is sent, keeping only its length (httpx's MockTransport
    reads the whole body into memory first)."""

    seen = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for chunk in request.stream:  # type: ignore[union-attr]
            self.seen += len(chunk)
        return httpx.Response(200, json={"id": "file_1"})


class TestBoundedMemory:
    """httpx reads an upload from storage a chunk at a time, and a download is written away as it
    arrives: the peak of allocations stays far below the file's size."""

    SIZE = 24 * MB

    def test_an_upload_is_streamed(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        source = tmp_path / "big.bin"
        with source.open("wb") as handle:
            for _ in range(self.SIZE // MB):
                handle.write(b"x" * MB)
        drain = Draining()
        conn = {"conn_type": "xai", "host": "https://xai.test/v1", "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", json.dumps(conn))
        hook = XAIHook(client_kwargs={"transport": drain})
        hook.get_conn()  # the client and its SSL context are made outside the measure
        tracemalloc.start()
        try:
            hook.upload_file(source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert drain.seen > self.SIZE and peak < 4 * MB, (drain.seen, peak)

    def test_a_download_is_written_as_it_arrives(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def chunks() -> Iterator[bytes]:
            for _ in range(self.SIZE // MB):
                yield b"y" * MB

        hook = hook_for(lambda r: httpx.Response(200, content=chunks()), monkeypatch)
        hook.get_conn()
        tracemalloc.start()
        try:
            written = hook.download_file("file_1", tmp_path / "out" / "big.bin")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert written.size == self.SIZE == (tmp_path / "out" / "big.bin").stat().st_size
        assert peak < 6 * MB, peak

    def test_a_download_cut_short_leaves_no_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def broken() -> Iterator[bytes]:
            yield b"half"
            raise httpx.ReadError("connection reset")

        hook = hook_for(lambda r: httpx.Response(200, content=broken()), monkeypatch)
        with pytest.raises(XAIError):
            hook.download_file("file_1", tmp_path / "cut.bin")
        assert not (tmp_path / "cut.bin").exists()


class TestVoiceUsage:
    def test_speech_is_billed_by_the_character(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        hook = hook_for(lambda r: httpx.Response(200, content=b"ID3audio", headers={"x-request-id": "r-1"}),
                        monkeypatch)  # fmt: skip
        speech = hook.text_to_speech("Hello Brest", tmp_path / "hi.mp3")
        record = speech.usage_record
        assert (record.kind, record.unit, record.units, record.request_id) == ("tts", "characters", 11, "r-1")
        assert record.cost_usd == pytest.approx(11 * 4.20 / 1_000_000) and record.cost_source == "estimate"
        assert (tmp_path / "hi.mp3").read_bytes() == b"ID3audio" and speech.content_type == "audio/mpeg"

    def test_a_transcript_is_billed_by_the_second(self) -> None:
        record = voice.transcript_record(Transcript(text="hi", duration=90.0), {})
        assert (record.kind, record.unit, record.units) == ("stt", "audio_seconds", 90.0)
        assert record.cost_usd == pytest.approx(90 * 0.10 / 3600)

    @pytest.mark.parametrize("duration", [None, -1, math.inf, "3", 10**9, True])
    def test_a_duration_that_is_no_sane_number_leaves_the_cost_unknown(self, duration: Any) -> None:
        transcript = Transcript.model_validate({"text": "hi", "duration": duration})
        record = voice.transcript_record(transcript, {})
        assert transcript.duration is None and record.cost_usd is None and record.cost_source == "unknown"

    def test_speech_that_cannot_be_stored_still_reports_what_was_billed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("a file, not a folder")
        hook = hook_for(lambda r: httpx.Response(200, content=b"audio"), monkeypatch)
        with pytest.raises(XAIError, match="Could not write") as info:
            hook.text_to_speech("Hello", blocker / "hi.mp3")
        billed = info.value.billed
        assert isinstance(billed, Speech) and billed.usage_record.units == 5  # the five characters

    def test_the_voice_prices_are_dated(self) -> None:
        assert VOICE_PRICES_AS_OF and {k: p.unit for k, p in VOICE_PRICES.items()} == {
            "tts": "characters", "stt": "audio_seconds"}  # fmt: skip


def test_file_search_takes_one_collection_id_rendered_from_a_template() -> None:
    tool = tools.file_search("{{ ti.xcom_pull(task_ids='sync', key='xai_collection_id') }}", max_num_results=3)
    rendered = {**tool, "vector_store_ids": "collection_123"}  # what the template renders to
    assert tools.check_tools([rendered]) == [
        {"type": "file_search", "vector_store_ids": ["collection_123"], "max_num_results": 3}
    ]
    with pytest.raises(XAIValidationError, match=r"tools\[0\]\.vector_store_ids"):
        tools.check_tools([{**tool, "vector_store_ids": ""}])
