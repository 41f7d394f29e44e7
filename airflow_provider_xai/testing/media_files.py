"""Small, real image and video files for the local server, deterministic from a seed (the
prompt), made with the standard library only:

- PNG: an RGB picture in eight colour bands, deflated with :mod:`zlib`, CRCs and all;
- JPEG: a baseline (SOF0) JFIF file in 8x8 blocks of flat colour, 4:4:4 YCbCr, with its own
  small Huffman tables (flat blocks need only DC codes and an end-of-block);
- MP4: an ISO base media file (``ftyp``, ``moov`` with one video track of ``seconds`` at
  ``FPS`` frames a second, ``mdat``) whose samples are deterministic bytes; ``min_bytes`` pads
  ``mdat`` (a 200 MB download for the benchmarks), produced in chunks, never held whole.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator

FPS = 24
#: Pixels of the longer side of a generated picture.
SIDE = 64
_CHUNK = 1 << 20


def palette(seed: str, count: int = 8) -> list[tuple[int, int, int]]:
    """``count`` RGB colours derived from ``seed``."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    while len(digest) < count * 3:
        digest += hashlib.sha256(digest).digest()
    return [(digest[3 * i], digest[3 * i + 1], digest[3 * i + 2]) for i in range(count)]


def size_for(aspect_ratio: str | None) -> tuple[int, int]:
    """(width, height) in multiples of 8 for an aspect ratio like ``16:9`` (square otherwise)."""
    try:
        w, h = (float(x) for x in (aspect_ratio or "1:1").split(":"))
    except ValueError:
        w = h = 1.0
    if w <= 0 or h <= 0:
        w = h = 1.0
    long_w = w >= h
    short = max(8, round(SIDE * (min(w, h) / max(w, h)) / 8) * 8)
    return (SIDE, short) if long_w else (short, SIDE)


def _band(seed: str, width: int, height: int) -> list[list[tuple[int, int, int]]]:
    """Rows of pixels: eight vertical bands of the seed's colours (each 8 pixels wide at least)."""
    colours = palette(seed)
    return [[colours[(x // 8) % len(colours)] for x in range(width)] for _ in range(height)]


# --- PNG ------------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(seed: str, width: int = SIDE, height: int = SIDE) -> bytes:
    """A valid 8-bit RGB PNG of ``width`` x ``height``."""
    rows = _band(seed, width, height)
    raw = b"".join(b"\x00" + bytes(c for pixel in row for c in pixel) for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw, 9)) + (
        _png_chunk(b"IEND", b"")
    )


# --- JPEG ------------------------------------------------------------------------------------------
#: DC table: twelve categories, all 4-bit codes (canonical: 0000, 0001, ...).
DC_BITS = (0, 0, 0, 12) + (0,) * 12
DC_VALUES = tuple(range(12))
#: AC table: only end-of-block (0x00), code ``00``.
AC_BITS = (0, 1) + (0,) * 14
AC_VALUES = (0,)
#: Every coefficient is divided by 8: a flat block's DC is then its level - 128.
QUANT = 8


def _ycbcr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return tuple(max(0, min(255, round(v))) for v in (y, cb, cr))  # type: ignore[return-value]


class _Bits:
    """An entropy-coded segment: bits appended MSB first, 0xFF bytes stuffed with 0x00."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc, self.count = 0, 0

    def put(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.count += 1
            if self.count == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.count = 0, 0

    def flush(self) -> bytes:
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)
        return bytes(self.out)


def _category(value: int) -> int:
    return abs(value).bit_length()


def _segment(marker: int, data: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(data) + 2) + data


def jpeg_bytes(seed: str, width: int = SIDE, height: int = SIDE) -> bytes:
    """A valid baseline JPEG of ``width`` x ``height`` (multiples of 8): flat 8x8 blocks in
    eight vertical bands of the seed's colours."""
    colours = [_ycbcr(c) for c in palette(seed)]
    bits, previous = _Bits(), [0, 0, 0]
    for _row in range(height // 8):
        for column in range(width // 8):
            for component, level in enumerate(colours[column % len(colours)]):
                dc = level - 128  # the flat block's DC coefficient, quantized
                diff, previous[component] = dc - previous[component], dc
                size = _category(diff)
                bits.put(size, 4)  # the DC table's codes are the categories in 4 bits
                if size:
                    bits.put(diff if diff > 0 else diff + (1 << size) - 1, size)
                bits.put(0, 2)  # end of block
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"".join(bytes((i, 0x11, 0)) for i in (1, 2, 3))
    tables = bytes((0x00, *DC_BITS, *DC_VALUES)) + bytes((0x10, *AC_BITS, *AC_VALUES))
    scan = bytes((3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0))
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            _segment(0xDB, bytes((0,)) + bytes((QUANT,)) * 64),
            _segment(0xC0, frame),
            _segment(0xC4, tables),
            _segment(0xDA, scan),
            bits.flush(),
            b"\xff\xd9",
        )
    )


# --- MP4 ---------------------------------------------------------------------------------------------
def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _moov(seconds: float, width: int, height: int, sample_size: int, frames: int, mdat_offset: int) -> bytes:
    timescale = 1000
    duration = round(seconds * timescale)
    mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, timescale, duration), struct.pack(">IH", 0x10000, 0x100),
                 b"\x00" * 10, _MATRIX, b"\x00" * 24, struct.pack(">I", 2))  # fmt: skip
    tkhd = _full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, duration), b"\x00" * 8,
                 struct.pack(">HHHH", 0, 0, 0, 0), _MATRIX, struct.pack(">II", width << 16, height << 16))  # fmt: skip
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, timescale, duration), struct.pack(">HH", 0x55C4, 0))
    hdlr = _full(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", b"\x00" * 12, b"VideoHandler\x00")
    entry = _box(b"mp4v", b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 16, struct.pack(">HH", width, height),
                 struct.pack(">II", 0x480000, 0x480000), struct.pack(">I", 0), struct.pack(">H", 1),
                 b"\x00" * 32, struct.pack(">Hh", 0x18, -1))  # fmt: skip
    delta = max(1, round(timescale / FPS))
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full(b"stts", 0, 0, struct.pack(">III", 1, frames, delta)),
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, frames, 1)),
        _full(b"stsz", 0, 0, struct.pack(">II", sample_size, frames)),
        _full(b"co64", 0, 0, struct.pack(">IQ", 1, mdat_offset)),
    )
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", _full(b"vmhd", 0, 1, b"\x00" * 8), dinf, stbl)
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
    return _box(b"moov", mvhd, trak)


def mp4_chunks(seed: str, seconds: float, width: int = SIDE, height: int = 36, min_bytes: int = 0) -> Iterator[bytes]:
    """A valid MP4 file of ``seconds`` of video, in chunks; ``min_bytes`` makes it at least that
    large (the samples grow)."""
    frames = max(1, round(seconds * FPS))
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"mp41")
    sample = max(64, -(-max(min_bytes, 0) // frames))
    # The sizes of moov do not depend on the offset's value: lay it out once, then with the offset.
    moov_size = len(_moov(seconds, width, height, sample, frames, 0))
    mdat_size = 16 + sample * frames  # a 64-bit size header
    offset = len(ftyp) + moov_size + 16
    yield ftyp + _moov(seconds, width, height, sample, frames, offset)
    yield struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", mdat_size)
    pattern = hashlib.sha256(seed.encode("utf-8")).digest() * (_CHUNK // 32)
    remaining = sample * frames
    while remaining:
        piece = pattern[: min(remaining, len(pattern))]
        remaining -= len(piece)
        yield piece


def mp4_size(seed: str, seconds: float, min_bytes: int = 0) -> int:
    """The length of :func:`mp4_chunks`' file (for ``Content-Length``)."""
    frames = max(1, round(seconds * FPS))
    sample = max(64, -(-max(min_bytes, 0) // frames))
    head = next(mp4_chunks(seed, seconds, min_bytes=0))  # ftyp + moov: its size does not depend on the samples
    return len(head) + 16 + sample * frames


__all__ = ["FPS", "SIDE", "jpeg_bytes", "mp4_chunks", "mp4_size", "palette", "png_bytes", "size_for"]
