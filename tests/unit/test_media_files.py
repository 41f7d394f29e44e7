"""The local server's generated files are real: each is read back here by a decoder that
knows only the format's specification (PNG: chunks, CRCs, zlib, filters; JPEG: markers,
Huffman tables, the scan; MP4: the box tree and its sample table), never the generator."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest

from airflow_provider_xai.images import sniff_format
from airflow_provider_xai.testing.media_files import (
    FPS,
    jpeg_bytes,
    mp4_chunks,
    mp4_size,
    palette,
    png_bytes,
    size_for,
)


# --- PNG -------------------------------------------------------------------------------------------
def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB PNG; every CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    kinds = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and pos == len(data)
    raw, stride, rows = zlib.decompress(idat), width * 3, []
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        assert line[0] == 0  # filter "none"
        rows.append(line[1:])
    return width, height, rows


def test_a_png_decodes_to_the_seeds_colours() -> None:
    width, height, rows = read_png(png_bytes("a red chair", 64, 40))
    assert (width, height) == (64, 40) and len(rows) == 40
    colours = palette("a red chair")
    assert tuple(rows[0][0:3]) == colours[0] and tuple(rows[39][8 * 3 : 8 * 3 + 3]) == colours[1]
    assert png_bytes("a red chair") == png_bytes("a red chair") != png_bytes("a blue chair")


# --- JPEG ------------------------------------------------------------------------------------------
class Reader:
    """Reads the entropy-coded scan bit by bit (stuffed 0x00 after 0xFF removed)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.bit = data.replace(b"\xff\x00", b"\xff"), 0, 0

    def take(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | ((self.data[self.pos] >> (7 - self.bit)) & 1)
            self.bit += 1
            if self.bit == 8:
                self.pos, self.bit = self.pos + 1, 0
        return value


def huffman(counts: bytes, values: bytes) -> dict[tuple[int, int], int]:
    """The canonical codes of a DHT table: (length, code) -> symbol."""
    table, code, k = {}, 0, 0
    for length, count in enumerate(counts, 1):
        for _ in range(count):
            table[(length, code)] = values[k]
            code, k = code + 1, k + 1
        code <<= 1
    return table


def decode(reader: Reader, table: dict[tuple[int, int], int]) -> int:
    code = 0
    for length in range(1, 17):
        code = (code << 1) | reader.take(1)
        if (length, code) in table:
            return table[(length, code)]
    raise AssertionError("no Huffman code matched")


def read_jpeg(data: bytes) -> dict[str, Any]:
    """The segments of a baseline JPEG, and the DC level of every block of every component
    (the file holds flat blocks: every AC run must be an immediate end-of-block)."""
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    pos, tables, out = 2, {}, {}
    while True:
        marker, (length,) = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])
        body = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker == 0xDB:
            out["quant"] = body[1:65]
        elif marker == 0xC0:
            out["precision"], out["height"], out["width"], out["components"] = struct.unpack(">BHHB", body[:6])
        elif marker == 0xC4:
            i = 0
            while i < len(body):
                counts = body[i + 1 : i + 17]
                values = body[i + 17 : i + 17 + sum(counts)]
                tables[body[i]] = huffman(counts, values)
                i += 17 + sum(counts)
        elif marker == 0xDA:
            break
    reader, blocks, previous = Reader(data[pos:-2]), [], [0, 0, 0]
    for _ in range((out["width"] // 8) * (out["height"] // 8)):
        block = []
        for c in range(3):
            size = decode(reader, tables[0x00])
            diff = reader.take(size) if size else 0
            if size and diff < 1 << (size - 1):
                diff -= (1 << size) - 1
            previous[c] += diff
            block.append(previous[c] * out["quant"][0] // 8 + 128)  # a flat block's level
            assert decode(reader, tables[0x10]) == 0  # end of block: no AC coefficient
        blocks.append(block)
    out["blocks"] = blocks
    return out


def to_rgb(y: int, cb: int, cr: int) -> tuple[int, ...]:
    r, g, b = y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)
    return tuple(max(0, min(255, round(v))) for v in (r, g, b))


def test_a_jpeg_decodes_to_the_seeds_colours() -> None:
    data = jpeg_bytes("a red chair", 64, 40)
    assert sniff_format(data[:24]) == "JPEG"
    image = read_jpeg(data)
    assert (image["precision"], image["width"], image["height"], image["components"]) == (8, 64, 40, 3)
    assert len(image["blocks"]) == 8 * 5
    colours = palette("a red chair")
    for i, block in enumerate(image["blocks"]):
        want = colours[(i % 8) % len(colours)]
        assert all(abs(a - b) <= 3 for a, b in zip(to_rgb(*block), want, strict=True)), (i, block, want)


@pytest.mark.parametrize(
    ("ratio", "size"), [("1:1", (64, 64)), ("16:9", (64, 32)), ("9:16", (32, 64)), (None, (64, 64))]
)
def test_sizes_follow_the_aspect_ratio_in_whole_blocks(ratio: str | None, size: tuple[int, int]) -> None:
    assert size_for(ratio) == size and size[0] % 8 == size[1] % 8 == 0


# --- MP4 -------------------------------------------------------------------------------------------
def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes in ``data[start:end]``; sizes must tile it."""
    end = len(data) if end is None else end
    found, pos = [], start
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        assert size >= header and pos + size <= end, (kind, size)
        found.append((kind, pos + header, pos + size))
        pos += size
    assert pos == end
    return found


def child(data: bytes, parent: tuple[bytes, int, int], kind: bytes, skip: int = 0) -> tuple[bytes, int, int]:
    return next(b for b in boxes(data, parent[1] + skip, parent[2]) if b[0] == kind)


def test_an_mp4_has_a_whole_box_tree_with_its_duration_and_samples() -> None:
    data = b"".join(mp4_chunks("a boat", 3.0, min_bytes=10_000))
    assert len(data) == mp4_size("a boat", 3.0, 10_000) >= 10_000
    assert sniff_format(data[:24]) == "MP4/QuickTime"
    top = boxes(data)
    assert [b[0] for b in top] == [b"ftyp", b"moov", b"mdat"]
    moov = top[1]
    mvhd = child(data, moov, b"mvhd")
    timescale, duration = struct.unpack(">II", data[mvhd[1] + 12 : mvhd[1] + 20])
    assert duration / timescale == 3.0
    stbl = child(data, child(data, child(data, child(data, moov, b"trak"), b"mdia"), b"minf"), b"stbl")
    stsz, co64 = child(data, stbl, b"stsz"), child(data, stbl, b"co64")
    sample_size, frames = struct.unpack(">II", data[stsz[1] + 4 : stsz[1] + 12])
    (offset,) = struct.unpack(">Q", data[co64[1] + 8 : co64[1] + 16])
    assert frames == 3 * FPS and offset == top[2][1] and offset + sample_size * frames == len(data)


def test_a_large_video_is_made_in_chunks() -> None:
    chunks = mp4_chunks("a boat", 2.0, min_bytes=50 << 20)
    sizes = [len(c) for c in chunks]
    assert sum(sizes) == mp4_size("a boat", 2.0, 50 << 20) and max(sizes) <= 1 << 20
