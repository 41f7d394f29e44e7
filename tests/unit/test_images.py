"""images.py: source kinds -> content parts, format sniffing, refusals, memory use."""

from __future__ import annotations

import ast
import base64
import importlib.util
import io
import json
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_xai import images as img
from airflow_provider_xai.exceptions import XAIValidationError
from airflow_provider_xai.images import (
    MAX_IMAGE_BYTES,
    coerce_images,
    encode_stream,
    image_parts,
    resolve_image,
    resolve_images,
    sniff_format,
)

SAMPLES = Path(__file__).resolve().parents[2] / "example_dags" / "sample_images"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(200))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(250)) * 3
OTHER_FORMATS = {
    "GIF": b"GIF89a\x01\x00\x01\x00\x80\x00\x00",
    "BMP": b"BM6\x00\x00\x00\x00\x00\x00\x006\x00\x00\x00(\x00",
    "WebP": b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00",
    "PDF": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
    "text": b"name,price\nwidget,3.50\n",
}


def decoded(url: str) -> tuple[str, bytes]:
    head, _, payload = url.partition(",")
    return head, base64.b64decode(payload, validate=True)


def refusal(source: Any, **kwargs: Any) -> XAIValidationError:
    with pytest.raises(XAIValidationError) as err:
        resolve_images(source, **kwargs)
    return err.value


# --- format detection -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "name"),
    [
        (JPEG, "JPEG"),
        (PNG, "PNG"),
        (b"GIF87a....", "GIF"),
        *[(data, name) for name, data in OTHER_FORMATS.items()],
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIC"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "AVIF"),
        (b'<?xml version="1.0"?><svg', "SVG/XML"),
        (b"\x00\x01\x02\x03garbage", "unrecognised binary data"),
    ],
)
def test_sniff_format_reads_magic_numbers(head: bytes, name: str) -> None:
    assert sniff_format(head[:24]) == name


# --- each source kind -------------------------------------------------------------------------
def test_bytes_become_a_base64_data_uri_with_the_detected_type() -> None:
    for data, mime in ((PNG, "image/png"), (JPEG, "image/jpeg")):
        for source in (data, bytearray(data), memoryview(data)):
            resolved = resolve_image(source, detail="high")
            assert decoded(resolved.url) == (f"data:{mime};base64", data)
            assert resolved.part == {
                "type": "image_url",
                "image_url": {"url": resolved.url, "detail": "high"},
            }
            assert resolved.source == f"<{len(data)} bytes>" and resolved.size == len(data)


def test_local_paths_in_every_spelling(tmp_path: Path) -> None:
    path = tmp_path / "shelf photo.png"
    path.write_bytes(PNG)
    spellings = [
        str(path),
        path,
        path.as_uri(),
        f"file://localhost{path}",
        ObjectStoragePath(f"file://{path}"),
    ]
    for source in spellings:
        assert decoded(resolve_image(source).url) == ("data:image/png;base64", PNG), source


def test_home_relative_paths_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "a.jpg").write_bytes(JPEG)
    assert decoded(resolve_image("~/a.jpg").url) == ("data:image/jpeg;base64", JPEG)


def test_urls_pass_through_untouched_and_are_described_without_query() -> None:
    url = "https://cdn.example.com/cat.png?X-Amz-Signature=secret123"
    resolved = resolve_image(url, detail="low")
    assert resolved.part == {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
    assert "secret123" not in resolved.summary and "cdn.example.com/cat.png" in resolved.summary
    assert resolve_image("http://example.com/x.jpg").url == "http://example.com/x.jpg"


def test_data_uris_are_kept_as_is_and_relabelled_only_when_the_content_disagrees() -> None:
    payload = base64.b64encode(PNG).decode()
    uri = f"data:image/png;base64,{payload}"
    assert resolve_image(uri).url is uri
    jpg_alias = f"data:image/jpg;base64,{base64.b64encode(JPEG).decode()}"
    assert resolve_image(jpg_alias).url is jpg_alias
    mislabelled = resolve_image(f"data:image/jpeg;base64,{payload}")
    assert mislabelled.url == uri and mislabelled.mime == "image/png" and mislabelled.size == len(PNG)


def test_format_comes_from_content_not_the_file_name(tmp_path: Path) -> None:
    disguised = tmp_path / "photo.jpg"
    disguised.write_bytes(PNG)
    assert decoded(resolve_image(disguised).url)[0] == "data:image/png;base64"
    gif = tmp_path / "photo.png"
    gif.write_bytes(OTHER_FORMATS["GIF"])
    err = refusal([PNG, gif])
    assert err.field == "images[1]" and "is a GIF image" in err.problem and str(gif) in err.problem


# --- lists, templates and per-image detail ----------------------------------------------------
def test_coerce_images_accepts_one_or_many_and_rendered_lists(tmp_path: Path) -> None:
    assert coerce_images("a.png") == ["a.png"]
    assert coerce_images(PNG) == [PNG]
    assert coerce_images(("a", "b")) == ["a", "b"]
    assert coerce_images(json.dumps(["a.png", "b.png"])) == ["a.png", "b.png"]
    assert coerce_images(str(["a.png", "b.png"])) == ["a.png", "b.png"]  # what Jinja renders
    assert coerce_images({"source": "a.png", "detail": "low"}) == [{"source": "a.png", "detail": "low"}]
    for bad, problem in ((None, "is required"), ([], "is empty"), ("[]", "is empty"), ("[a.png", "neither")):
        with pytest.raises(XAIValidationError) as err:
            coerce_images(bad)
        assert err.value.field == "images" and problem in err.value.problem


def test_a_deeply_nested_rendered_list_is_refused_naming_the_field() -> None:
    for text in ("[" * 100_000 + "]" * 100_000, '["a.png", ' + "[" * 100_000):
        with pytest.raises(XAIValidationError) as err:
            coerce_images(text, "frames")
        assert err.value.field.startswith("frames[") and err.value.field.count("[") == 64
        assert err.value.problem == "is nested more than 64 levels deep"


def test_per_image_detail_overrides_the_default_and_order_is_kept(tmp_path: Path) -> None:
    parts = image_parts(
        [
            {"source": PNG, "detail": "high"},
            "https://example.com/a.png",
            {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "auto"}},
            {"source": JPEG},
        ],
        detail="low",
    )
    assert [p["image_url"]["detail"] for p in parts] == ["high", "low", "auto", "low"]
    assert [p["image_url"]["url"][:22] for p in parts] == [
        "data:image/png;base64,",
        "https://example.com/a.",
        "https://example.com/b.",
        "data:image/jpeg;base64",
    ]


@pytest.mark.parametrize(
    ("images", "detail", "field", "problem"),
    [
        ([PNG, {"source": PNG, "detail": "ultra"}], "auto", "images[1].detail", "'ultra'"),
        ([{"path": "a.png"}], "auto", "images[0]", "needs 'source'"),
        ([{"source": PNG, "detail": "low", "x": 1}], "auto", "images[0]", "got keys"),
        ([PNG], "medium", "detail", "'medium'"),
        ([PNG, 42], "auto", "images[1]", "type int"),
    ],
)
def test_bad_items_and_details_name_their_field(images: Any, detail: str, field: str, problem: str) -> None:
    err = refusal(images, detail=detail)
    assert err.field == field and problem in err.problem


# --- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(OTHER_FORMATS))
def test_unsupported_formats_are_refused_by_name(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "upload.png"
    path.write_bytes(OTHER_FORMATS[kind])
    for source in (path, OTHER_FORMATS[kind], ObjectStoragePath(path.as_uri())):
        err = refusal(["https://example.com/ok.png", source])
        assert err.field == "images[1]"
        assert f"{kind} " in err.problem and "only JPEG and PNG" in err.problem


def test_missing_empty_and_directory_sources(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cases = [
        (tmp_path / "nope.png", "file not found"),
        (ObjectStoragePath((tmp_path / "nope.png").as_uri()), "object not found"),
        (empty, "is empty (0 bytes)"),
        (ObjectStoragePath(empty.as_uri()), "is empty (0 bytes)"),
        (b"", "<0 bytes> is empty"),
        (tmp_path, "is a directory"),
        (ObjectStoragePath(tmp_path.as_uri()), "is a directory"),
        ("   ", "empty string"),
    ]
    for source, problem in cases:
        err = refusal(source)
        assert err.field == "images[0]" and problem in err.problem, (source, err.problem)


def test_a_refused_file_is_reported_once_not_wrapped_again(tmp_path: Path) -> None:
    pdf, empty = tmp_path / "doc.png", tmp_path / "empty.png"
    pdf.write_bytes(OTHER_FORMATS["PDF"])
    empty.write_bytes(b"")
    not_an_image = "is a PDF document (detected from its content); xAI accepts only JPEG and PNG"
    cases = [
        (pdf, f"{str(pdf)!r} {not_an_image}"),
        (pdf.as_uri(), f"{pdf.as_uri()!r} {not_an_image}"),
        (empty, f"{str(empty)!r} is empty (0 bytes)"),
        (tmp_path, f"{str(tmp_path)!r} is a directory, not an image file"),
    ]
    for source, problem in cases:
        err = refusal(source)
        assert (err.field, err.problem) == ("images[0]", problem)
        assert str(err) == f"Invalid images[0]: {problem}"


def test_too_large_files_are_refused_from_stat_without_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "huge.png"
    with big.open("wb") as f:  # sparse: no 20 MiB written
        f.write(PNG)
        f.truncate(MAX_IMAGE_BYTES + 1)
    with big.open("rb") as f:
        at_limit = f.read(24)
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("opened a file over the limit"))
    err = refusal(big)
    assert err.field == "images[0]" and "20.0 MiB" in err.problem and "huge.png" in err.problem
    monkeypatch.undo()
    err = refusal(ObjectStoragePath(big.as_uri()))
    assert "at most 20.0 MiB" in err.problem
    assert sniff_format(at_limit) == "PNG"


def test_too_large_bytes_and_data_uris_are_refused_without_dumping_data() -> None:
    data = PNG + bytes(MAX_IMAGE_BYTES + 1 - len(PNG))
    err = refusal(data)
    assert err.problem.startswith(f"<{len(data)} bytes> is 20.0 MiB")
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    err = refusal(uri)
    assert "at most 20.0 MiB" in err.problem and len(str(err)) < 300


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("data:image/png;base64,iVBORw0KGgo*AAAA", "invalid character '*' at offset 11"),
        ("data:image/png;base64,iVBORw0KGgoAAA", "not a multiple of 4"),
        ("data:image/png;base64,iVBO=w0KGgoAAAA", "padding before the end"),
        ("data:image/png;base64,iVBORw0K\nGgoAAAA", "invalid character '\\n'"),
        ("data:image/png,%89PNG", "not base64-encoded"),
        ("data:text/plain;base64,aGVsbG8=", "media type 'text/plain'"),
        ("data:image/png;base64,", "is empty"),
        ("data:image/gif;base64," + base64.b64encode(OTHER_FORMATS["GIF"]).decode(), "is a GIF image"),
        ("data:image/png;base64" + "A" * 600, "no ','"),
    ],
)
def test_bad_data_uris(uri: str, problem: str) -> None:
    err = refusal(["https://example.com/ok.png", uri])
    assert err.field == "images[1]" and problem in err.problem
    assert "'data:image" in err.problem or "'data:text" in err.problem


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("ftp://example.com/cat.png", "unsupported scheme 'ftp'"),
        ("s3://bucket/cat.png", "ObjectStoragePath('s3://...', conn_id=...)"),
        ("file://otherhost/cat.png", "must be local"),
        ("https:///cat.png", "has no host"),
    ],
)
def test_unsupported_urls(source: str, problem: str) -> None:
    err = refusal(source)
    assert err.field == "images[0]" and problem in err.problem


# --- reading and encoding ---------------------------------------------------------------------
class Dribble(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, like some network files."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def read(self, n: int = -1) -> bytes:
        n = len(self.data) - self.pos if n < 0 else n
        chunk = self.data[self.pos : self.pos + min(n, self.step)]
        self.pos += len(chunk)
        self.reads = getattr(self, "reads", 0) + len(chunk)
        return chunk


@pytest.mark.parametrize("size", [5, 24, 25, 1000, img.CHUNK_BYTES + 7])
def test_encode_stream_handles_short_reads_and_unknown_sizes(size: int) -> None:
    data = (JPEG * (size // len(JPEG) + 1))[:size]
    for known in (size, None):
        url, mime, n = encode_stream(Dribble(data, 7919).read, known, "<stream>", "images[0]")
        assert (mime, n) == ("image/jpeg", size) and decoded(url) == ("data:image/jpeg;base64", data)


def test_encode_stream_notices_files_changing_under_it() -> None:
    with pytest.raises(XAIValidationError, match="grew while"):
        encode_stream(io.BytesIO(PNG + b"more").read, len(PNG), "'a.png'", "images[0]")
    with pytest.raises(XAIValidationError, match="changed while it was being read"):
        encode_stream(io.BytesIO(PNG[:100]).read, len(PNG), "'a.png'", "images[0]")


def test_unknown_size_streams_stop_reading_just_past_the_limit() -> None:
    stream = Dribble(PNG + bytes(MAX_IMAGE_BYTES + 10_000_000), 4 * 1024 * 1024)
    with pytest.raises(XAIValidationError, match=r"at most 20\.0 MiB"):
        encode_stream(stream.read, None, "<stream>", "images[0]")
    assert stream.reads == MAX_IMAGE_BYTES + 1


def test_large_file_is_read_once_and_encoded_without_extra_copies(tmp_path: Path) -> None:
    size = 3 * img.CHUNK_BYTES + 1
    path = tmp_path / "big.jpg"
    path.write_bytes((JPEG * (size // len(JPEG) + 1))[:size])
    tracemalloc.start()
    try:
        resolved = resolve_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    encoded = len(resolved.url)
    # The final str and the one buffer it is decoded from, plus one chunk in flight. Reading
    # the file whole and then concatenating prefix and base64 would need >= 3.6x the file.
    assert encoded == len("data:image/jpeg;base64,") + 4 * ((size + 2) // 3)
    assert peak < 2 * encoded + 2.5 * img.CHUNK_BYTES, peak / size


# --- the bundled sample images ----------------------------------------------------------------
def _png_pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    return size, zlib.decompress(idat)


def test_sample_images_match_their_generator_and_are_small() -> None:
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render_samples()
    assert sorted(rendered) == sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    for name, data in rendered.items():
        shipped = (SAMPLES / name).read_bytes()
        assert len(shipped) < 20 * 1024
        if name.endswith(".png"):  # zlib builds may differ: compare pixels, not bytes
            assert _png_pixels(shipped) == _png_pixels(data)
            assert _png_pixels(shipped)[0] == (160, 120)
            assert resolve_image(SAMPLES / name).mime == "image/png"
        else:  # the JPEG encoder is integer-only, so bytes are reproducible
            assert shipped == data
            assert shipped[:2] == b"\xff\xd8" and shipped[-2:] == b"\xff\xd9"
            sof = shipped.index(b"\xff\xc0")
            assert struct.unpack(">HH", shipped[sof + 5 : sof + 9]) == (120, 160)
            assert resolve_image(SAMPLES / name).mime == "image/jpeg"


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_images_is_a_leaf_and_the_operator_imports_nothing_heavy_at_parse() -> None:
    ours = {
        m for m in _imports(Path(img.__file__), top_level_only=False) if m.startswith("airflow_provider_xai")
    }
    assert ours == {"airflow_provider_xai.exceptions", "airflow_provider_xai.arguments"}  # both leaves
    vision = Path(img.__file__).parent / "operators" / "vision.py"
    top = _imports(vision, top_level_only=True)  # TYPE_CHECKING imports sit inside an `if`
    assert not {
        m for m in top if m.startswith(("airflow_provider_xai.hooks", "httpx", "airflow_provider_xai.usage"))
    }
    assert "airflow_provider_xai.images" in top
