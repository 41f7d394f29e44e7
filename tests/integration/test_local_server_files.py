"""The local server's files, collections (its Management API: own mount, own key), document
search and voice, spoken to over raw HTTP, as xAI's are: its rules and its refusals."""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_xai.testing import Fault, XAIServer


@pytest.fixture
def api(xai_server: XAIServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=xai_server.base_url, headers={"Authorization": f"Bearer {xai_server.api_key}"}) as c:
        yield c


@pytest.fixture
def management(xai_server: XAIServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {xai_server.management_key}"}
    with httpx.Client(base_url=xai_server.management_url + "/v1", headers=headers) as c:
        yield c


def multipart(*parts: tuple[str, Any]) -> tuple[bytes, str]:
    """A multipart body with the parts in exactly this order (a file part is ``(name, bytes)``)."""
    boundary, body = "xai-test-boundary", b""
    for name, value in parts:
        if isinstance(value, tuple):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n\r\n'
            content = value[1]
        else:
            head, content = f'Content-Disposition: form-data; name="{name}"\r\n\r\n', str(value).encode()
        body += f"--{boundary}\r\n{head}".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_form(client: httpx.Client, path: str, *parts: tuple[str, Any]) -> httpx.Response:
    body, kind = multipart(*parts)
    return client.post(path, content=body, headers={"Content-Type": kind})


def upload(client: httpx.Client, name: str = "a.md", content: bytes = b"Tides in Brest.") -> dict[str, Any]:
    answer = post_form(client, "/files", ("file", (name, content)))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


class TestFiles:
    def test_expires_after_must_come_before_the_file(self, api: httpx.Client) -> None:
        late = post_form(api, "/files", ("file", ("a.md", b"x")), ("expires_after", "3600"))
        assert late.status_code == 400 and "before file" in late.json()["error"]
        ok = post_form(api, "/files", ("expires_after", "3600"), ("file", ("a.md", b"x")))
        assert ok.status_code == 200 and ok.json()["expires_at"] - ok.json()["created_at"] == 3600

    @pytest.mark.parametrize("seconds", ["59", "2592001", "soon"])
    def test_a_lifetime_out_of_range_is_400(self, api: httpx.Client, seconds: str) -> None:
        answer = post_form(api, "/files", ("expires_after", seconds), ("file", ("a.md", b"x")))
        assert answer.status_code == 400 and "expires_after" in answer.json()["error"]

    def test_no_file_is_400_and_a_large_one_413(self, xai_server: XAIServer, api: httpx.Client) -> None:
        assert post_form(api, "/files", ("expires_after", "3600")).status_code == 400
        xai_server.configure(files_max_bytes=10)
        assert post_form(api, "/files", ("file", ("a.md", b"x" * 11))).status_code == 413

    def test_pages_carry_a_token_and_the_short_one_is_the_last(self, api: httpx.Client) -> None:
        ids = [upload(api, f"{n}.md")["id"] for n in range(3)]
        first = api.get("/files", params={"limit": 2}).json()
        second = api.get("/files", params={"limit": 2, "pagination_token": first["pagination_token"]}).json()
        assert len(first["data"]) == 2 and len(second["data"]) == 1 and second["pagination_token"]
        assert sorted(f["id"] for f in first["data"] + second["data"]) == sorted(ids)
        assert api.get("/files", params={"limit": 0}).status_code == 400

    def test_content_delete_and_404(self, api: httpx.Client) -> None:
        file = upload(api, content=b"Tide tables")
        assert api.get(f"/files/{file['id']}/content").content == b"Tide tables"
        assert api.get(f"/files/{file['id']}/content", params={"format": "text"}).text == "Tide tables"
        assert api.delete(f"/files/{file['id']}").json() == {"id": file["id"], "deleted": True, "object": "file"}
        assert [api.get(f"/files/{file['id']}{s}").status_code for s in ("", "/content")] == [404, 404]

    def test_a_public_url_needs_no_key_until_it_is_revoked(self, api: httpx.Client) -> None:
        file = upload(api, "notes.txt", b"public notes")
        url = api.post(f"/files/{file['id']}/public-url", json={"expires_after": 3600}).json()["public_url"]
        assert url.endswith(f"/{file['id']}.txt") and httpx.get(url).content == b"public notes"
        revoked = [api.post(f"/files/{file['id']}/public-url/revoke").json() for _ in range(2)]  # idempotent
        assert revoked[0] == revoked[1] == {"id": file["id"], "revoked": True, "public_url": None}
        assert httpx.get(url).status_code == 404


class TestManagementAPI:
    def test_it_takes_the_management_key_and_refuses_the_api_key(
        self, xai_server: XAIServer, management: httpx.Client
    ) -> None:
        assert management.get("/collections").status_code == 200
        with_api_key = httpx.get(f"{xai_server.management_url}/v1/collections",
                                 headers={"Authorization": f"Bearer {xai_server.api_key}"})  # fmt: skip
        assert with_api_key.status_code == 403 and "management key" in with_api_key.json()["error"]
        wrong = httpx.get(f"{xai_server.management_url}/v1/collections", headers={"Authorization": "Bearer nope-1234"})
        assert wrong.status_code == 401
        # and the API does not take the management key
        management_key = {"Authorization": f"Bearer {xai_server.management_key}"}
        assert httpx.get(f"{xai_server.base_url}/models", headers=management_key).status_code == 400
        # nor are collections served on the API's own root
        assert httpx.get(f"{xai_server.base_url}/collections",
                         headers={"Authorization": f"Bearer {xai_server.api_key}"}).status_code == 404  # fmt: skip

    def test_the_journal_shows_no_management_key(self, xai_server: XAIServer, management: httpx.Client) -> None:
        management.post("/collections", json={"collection_name": "n"})
        assert xai_server.management_key not in json.dumps([e.to_dict() for e in xai_server.journal])
        control = httpx.get(f"{xai_server.root_url}/_control/state").text
        assert xai_server.management_key not in control and "management_key" not in control

    def test_faults_reach_management_routes(self, xai_server: XAIServer, management: httpx.Client) -> None:
        xai_server.enqueue(Fault(status=503, path="/collections"))
        assert management.get("/collections").status_code == 503
        assert management.get("/collections").status_code == 200

    def test_a_document_is_processing_then_processed_or_failed(
        self, xai_server: XAIServer, api: httpx.Client, management: httpx.Client
    ) -> None:
        collection = management.post("/collections", json={
            "collection_name": "handbook", "field_definitions": [{"key": "path", "required": True}]}).json()
        cid = collection["collection_id"]
        text, binary = upload(api, "a.md", b"Tides in Brest."), upload(api, "b.bin", b"\xff\xfe\x00")
        for file in (text, binary):
            path = f"/collections/{cid}/documents/{file['id']}"
            assert management.post(path, json={"fields": {"path": file["filename"]}}).status_code == 200
        statuses = [[d["status"] for d in management.get(f"/collections/{cid}/documents").json()["documents"]]
                    for _ in range(3)]  # fmt: skip
        assert statuses[0] == ["DOCUMENT_STATUS_PROCESSING"] * 2
        assert statuses[-1] == ["DOCUMENT_STATUS_PROCESSED", "DOCUMENT_STATUS_FAILED"]
        failed = management.get(f"/collections/{cid}/documents/{binary['id']}").json()
        assert "UTF-8" in failed["error_message"]

    def test_fields_follow_the_definitions(self, api: httpx.Client, management: httpx.Client) -> None:
        cid = management.post("/collections", json={
            "collection_name": "n", "field_definitions": [{"key": "path", "required": True}]}).json()["collection_id"]
        file = upload(api)
        assert management.post(f"/collections/{cid}/documents/{file['id']}", json={}).status_code == 400
        undeclared = management.post(f"/collections/{cid}/documents/{file['id']}",
                                     json={"fields": {"path": "a", "author": "me"}})  # fmt: skip
        assert undeclared.status_code == 400 and "author" in undeclared.json()["error"]

    def test_unknown_collection_or_file_is_404(self, api: httpx.Client, management: httpx.Client) -> None:
        assert management.get("/collections/collection_nope").status_code == 404
        cid = management.post("/collections", json={"collection_name": "n"}).json()["collection_id"]
        assert management.post(f"/collections/{cid}/documents/file_nope", json={}).status_code == 404
        assert management.delete(f"/collections/{cid}/documents/file_nope").status_code == 404


class TestSearch:
    def test_it_finds_the_paragraph_that_says_it(self, api: httpx.Client, management: httpx.Client) -> None:
        cid = management.post("/collections", json={"collection_name": "n"}).json()["collection_id"]
        file = upload(api, "tides.md", b"# Tides\n\nHigh tide in Brest is at 14:05.\n\nParking is free on Sundays.")
        management.post(f"/collections/{cid}/documents/{file['id']}", json={})
        before = api.post("/documents/search", json={"query": "high tide", "source": {"collection_ids": [cid]}})
        assert before.json() == {"matches": []}  # not indexed yet
        for _ in range(3):
            management.get(f"/collections/{cid}/documents")
        question = {"query": "When is high tide in Brest?", "source": {"collection_ids": [cid]}}
        found = api.post("/documents/search", json=question).json()["matches"]
        assert found[0]["chunk_content"] == "High tide in Brest is at 14:05." and found[0]["file_id"] == file["id"]
        assert all("Parking" not in m["chunk_content"] for m in found)

    def test_search_takes_the_api_key_and_checks_its_input(self, xai_server: XAIServer, api: httpx.Client) -> None:
        unknown = {"query": "x", "source": {"collection_ids": ["c_nope"]}}
        assert api.post("/documents/search", json=unknown).status_code == 404
        assert api.post("/documents/search", json={**unknown, "query": ""}).status_code == 400
        with_management_key = httpx.post(f"{xai_server.base_url}/documents/search", json={"query": "x"},
                                         headers={"Authorization": f"Bearer {xai_server.management_key}"})
        assert with_management_key.status_code == 400


class TestVoice:
    def test_speech_is_a_real_wav_and_hearing_it_gives_the_text_back(self, api: httpx.Client) -> None:
        audio = api.post("/tts", json={"text": "High tide at noon.", "output_format": {"codec": "wav",
                                                                                     "sample_rate": 16000}})
        assert audio.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(audio.content)) as spoken:
            assert (spoken.getframerate(), spoken.getnchannels()) == (16000, 1) and spoken.getnframes() > 0
        heard = post_form(api, "/stt", ("language", "en"), ("file", ("a.wav", audio.content))).json()
        assert heard["text"] == "High tide at noon." and heard["duration"] > 0
        assert [w["text"] for w in heard["words"]] == ["High", "tide", "at", "noon."]

    def test_mp3_frames_and_timestamps(self, api: httpx.Client) -> None:
        mp3 = api.post("/tts", json={"text": "Hi"})
        assert mp3.headers["content-type"] == "audio/mpeg" and mp3.content[:2] == b"\xff\xfb"
        timed = api.post("/tts", json={"text": "Hi", "with_timestamps": True}).json()
        assert base64.b64decode(timed["audio"])[:2] == b"\xff\xfb"
        assert timed["audio_timestamps"]["graph_chars"] == ["H", "i"] and timed["duration"] > 0

    @pytest.mark.parametrize(("body", "status"), [({"text": ""}, 400), ({"text": "x", "voice_id": "nobody"}, 404),
                                                  ({"text": "x", "output_format": {"codec": "ogg"}}, 400)])
    def test_speech_refusals(self, api: httpx.Client, body: dict[str, Any], status: int) -> None:
        assert api.post("/tts", json=body).status_code == status

    def test_the_file_must_be_the_last_part(self, api: httpx.Client) -> None:
        early = post_form(api, "/stt", ("file", ("a.wav", b"RIFF")), ("language", "en"))
        assert early.status_code == 400 and "last" in early.json()["error"]
        assert post_form(api, "/stt", ("language", "en")).status_code == 400
