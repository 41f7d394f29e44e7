"""The hook's files, collections, search and voice methods against the local server: answers
read into their models, failures retried (an upload's file reopened, a download's partial file
dropped), typed errors, and the management key kept to its own host and out of every message."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from airflow_provider_xai.exceptions import XAIAuthenticationError, XAINotFoundError, XAIPermissionError
from airflow_provider_xai.hooks.xai import XAIHook
from airflow_provider_xai.testing import Fault, XAIServer


@pytest.fixture
def hook(xai_server: XAIServer) -> XAIHook:
    return XAIHook(backoff_base=0.01)


def local(uri: str) -> Path:
    return Path(urlsplit(uri).path)


def test_an_upload_retried_after_a_503_sends_the_whole_file_again(
    xai_server: XAIServer, hook: XAIHook, tmp_path: Path
) -> None:
    (tmp_path / "notes.md").write_text("High tide at 14:05.")
    xai_server.enqueue(Fault(status=503, path="/files"))
    uploaded = hook.upload_file(tmp_path / "notes.md", expires_after=3600)
    assert [e.status for e in xai_server.requests("/v1/files", "POST")] == [503, 200]
    assert hook.get_file(uploaded.id).filename == "notes.md" and uploaded.size == 19
    assert xai_server.state.files.get(uploaded.id).content == b"High tide at 14:05."


def test_files_are_listed_page_by_page_and_gone_once_deleted(
    xai_server: XAIServer, hook: XAIHook, tmp_path: Path
) -> None:
    (tmp_path / "a.md").write_text("a")
    ids = {hook.upload_file(tmp_path / "a.md", filename=f"{n}.md").id for n in range(5)}
    assert {f.id for f in hook.list_files(limit=2)} == ids
    assert len(xai_server.requests("/v1/files", "GET")) == 3  # 2 + 2 + the short last page
    gone = ids.pop()
    assert hook.delete_file(gone).deleted is True
    with pytest.raises(XAINotFoundError):
        hook.get_file(gone)


def test_a_dropped_download_is_tried_again_into_a_clean_file(
    xai_server: XAIServer, hook: XAIHook, tmp_path: Path
) -> None:
    (tmp_path / "a.md").write_text("The whole content, every byte of it.")
    file_id = hook.upload_file(tmp_path / "a.md").id
    xai_server.enqueue(Fault(drop=True, path="/content"))
    written = hook.download_file(file_id, tmp_path / "copy" / "a.md")
    assert (tmp_path / "copy" / "a.md").read_text() == "The whole content, every byte of it."
    assert written.size == 36 and len(xai_server.requests("/content", "GET")) == 2


def test_a_public_url_is_read_without_credentials(xai_server: XAIServer, hook: XAIHook, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("shared")
    file_id = hook.upload_file(tmp_path / "a.txt").id
    url = hook.create_public_url(file_id, expires_after=3600)
    assert url.expires_at and httpx.get(url.public_url).text == "shared"
    assert hook.revoke_public_url(file_id).revoked and httpx.get(url.public_url).status_code == 404


def test_a_synced_collection_is_searched_with_the_api_key(
    xai_server: XAIServer, hook: XAIHook, tmp_path: Path
) -> None:
    (tmp_path / "tides.md").write_text("# Tides\n\nHigh tide in Brest is at 14:05.\n\nParking is free.")
    collection = hook.create_collection("tides", description="Tide tables")
    file_id = hook.upload_file(tmp_path / "tides.md").id
    hook.add_document(collection.collection_id, file_id)
    (document,) = hook.wait_for_documents(collection.collection_id, [file_id], poll_interval=0.01, timeout=10)
    assert document.indexed and not document.failed and document.name == "tides.md"
    found = hook.search_documents("When is high tide?", collection.collection_id, limit=1)
    assert [m.chunk_content for m in found.matches] == ["High tide in Brest is at 14:05."]
    found_async = asyncio.run(hook.asearch_documents("parking", [collection.collection_id]))
    assert found_async.matches[0].chunk_content == "Parking is free."
    search = xai_server.requests("/documents/search", "POST")[0]
    assert search.path == "/v1/documents/search" and search.body["source"] == {
        "collection_ids": [collection.collection_id]}  # fmt: skip
    hook.remove_document(collection.collection_id, file_id)
    with pytest.raises(XAINotFoundError):
        hook.get_document(collection.collection_id, file_id)


def test_speech_written_as_it_arrives_survives_a_dropped_connection(
    xai_server: XAIServer, hook: XAIHook, tmp_path: Path
) -> None:
    xai_server.enqueue(Fault(drop=True, path="/tts"))
    speech = hook.text_to_speech("Low tide at 20:17.", tmp_path / "tide.wav", codec="wav", sample_rate=16000)
    with wave.open(str(local(speech.path))) as audio:
        assert audio.getframerate() == 16000 and audio.getnframes() > 0
    assert speech.usage_record.units == 18 and speech.usage_record.request_id
    heard = hook.speech_to_text(speech.path, language="en", diarize=True)
    assert heard.text == "Low tide at 20:17." and all(w.speaker == 0 for w in heard.words)
    assert heard.usage_record.unit == "audio_seconds" and heard.usage_record.units == heard.duration > 0


def test_speech_with_timestamps(hook: XAIHook, tmp_path: Path) -> None:
    speech = hook.text_to_speech("Hi", tmp_path / "hi.mp3", with_timestamps=True)
    assert speech.duration and speech.audio_timestamps["graph_chars"] == ["H", "i"]
    assert (tmp_path / "hi.mp3").read_bytes()[:2] == b"\xff\xfb"


class TestManagementKey:
    def test_collections_go_to_the_management_api_with_its_key(self, xai_server: XAIServer, hook: XAIHook) -> None:
        hook.create_collection("n")
        (entry,) = xai_server.requests("/collections", "POST")
        assert entry.path == "/management/v1/collections" and entry.status == 200

    def test_a_wrong_management_key_fails_typed_and_never_shows(
        self, xai_server: XAIServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        wrong = "xai-management-wrong-5555666677"
        extra = {**xai_server.management_extra(), "management_key": wrong}
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(**extra))
        with pytest.raises(XAIAuthenticationError) as info:
            XAIHook().create_collection("n")
        assert wrong not in f"{info.value} {info.value!r} {json.dumps(info.value.to_dict())}"
        ok, message = XAIHook().test_connection()
        assert ok is False and "management key was refused" in message and wrong not in message

    def test_the_api_key_is_refused_as_a_management_key(
        self, xai_server: XAIServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        extra = {**xai_server.management_extra(), "management_key": xai_server.api_key}
        monkeypatch.setenv("AIRFLOW_CONN_XAI_DEFAULT", xai_server.connection_json(**extra))
        with pytest.raises(XAIPermissionError, match="management key, not an API key"):
            list(XAIHook().list_collections())

    def test_test_connection_checks_it_for_free(self, xai_server: XAIServer, hook: XAIHook) -> None:
        ok, message = hook.test_connection()
        assert ok and "management key accepted" in message
        assert [(e.method, e.path) for e in xai_server.journal] == [
            ("GET", "/v1/api-key"), ("GET", "/management/v1/collections")]  # fmt: skip
        assert xai_server.journal[1].query == {"limit": "1"}
