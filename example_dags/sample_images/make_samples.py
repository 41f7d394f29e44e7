"""Draw the sample images of the vision example, in pure Python (no imaging library).

    python make_samples.py [OUT_DIR]   (default: this folder)

* ``bar_chart.png``: a small bar chart titled SALES with bars labelled Q1..Q4 (PNG, text).
* ``open_sign.png``: a shop sign reading OPEN (PNG, text).
* ``sunset.jpg``: a sun setting over the sea (baseline JPEG, no text).

The PNG writer uses zlib; the JPEG encoder is a small baseline (SOF0) encoder using only
integer arithmetic, so its output is byte-for-byte reproducible on any machine.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from pathlib import Path

RGB = tuple[int, int, int]
Canvas = list[list[RGB]]
WIDTH, HEIGHT = 160, 120

# --- drawing -------------------------------------------------------------------------------------
FONT = {  # 5x7 glyphs, one string of 5 bits per row
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "N": "10001 11001 10101 10011 10001 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
}


def canvas(color: RGB) -> Canvas:
    return [[color] * WIDTH for _ in range(HEIGHT)]


def rect(img: Canvas, x0: int, y0: int, x1: int, y1: int, color: RGB) -> None:
    for y in range(max(y0, 0), min(y1, HEIGHT)):
        row = img[y]
        for x in range(max(x0, 0), min(x1, WIDTH)):
            row[x] = color


def text(img: Canvas, x: int, y: int, word: str, color: RGB, scale: int = 1) -> None:
    for ch in word:
        for r, bits in enumerate(FONT[ch].split()):
            for c, bit in enumerate(bits):
                if bit == "1":
                    rect(img, x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, color)
        x += 6 * scale


def bar_chart() -> Canvas:
    img = canvas((255, 255, 255))
    text(img, 65, 6, "SALES", (20, 20, 20))
    rect(img, 20, 20, 22, 102, (40, 40, 40))  # y axis
    rect(img, 20, 100, 150, 102, (40, 40, 40))  # x axis
    colors = [(66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88)]
    for i, (height, color) in enumerate(zip([40, 62, 51, 75], colors, strict=True)):
        x = 32 + i * 30
        rect(img, x, 100 - height, x + 20, 100, color)
        text(img, x + 4, 106, f"Q{i + 1}", (20, 20, 20))
    return img


def open_sign() -> Canvas:
    img = canvas((236, 229, 216))  # a wall
    rect(img, 18, 28, 142, 92, (30, 30, 36))  # the sign board
    rect(img, 22, 32, 138, 88, (12, 12, 16))
    text(img, 33, 46, "OPEN", (255, 64, 64), scale=4)
    rect(img, 78, 10, 82, 28, (90, 90, 90))  # the hanger
    return img


def sunset() -> Canvas:
    img = canvas((0, 0, 0))
    horizon = 78
    for y in range(HEIGHT):
        if y < horizon:  # sky: purple at the top to orange at the horizon
            t = y / horizon
            color = (int(70 + 180 * t), int(40 + 90 * t), int(120 - 80 * t))
        else:  # sea: darker bands
            t = (y - horizon) / (HEIGHT - horizon)
            color = (int(60 - 30 * t), int(50 - 20 * t), int(110 - 40 * t))
        img[y] = [color] * WIDTH
    cx, cy, radius = 80, horizon, 22
    for y in range(cy - radius, horizon):
        for x in range(cx - radius, cx + radius + 1):
            if (x - cx) ** 2 + (y - cy) ** 2 <= radius * radius:
                img[y][x] = (255, 214, 90)
    for y in range(horizon + 2, HEIGHT, 5):  # the sun's reflection
        half = max(2, 20 - (y - horizon) // 2)
        rect(img, cx - half, y, cx + half, y + 2, (230, 150, 70))
    return img


# --- PNG ----------------------------------------------------------------------------------------
def png(img: Canvas) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in img)
    header = struct.pack(">IIBBBBB", len(img[0]), len(img), 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


# --- baseline JPEG ------------------------------------------------------------------------------
LUMA_Q = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
          14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
          49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # fmt: skip
CHROMA_Q = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
            47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32  # fmt: skip
ZIGZAG = [
    r * 8 + (s - r)
    for s in range(15)
    for r in (reversed if s % 2 == 0 else list)(range(max(0, s - 7), min(s, 7) + 1))
]
# DCT basis in fixed point (2**11): COS[k][n] = C(k)/2 * cos((2n+1) k pi / 16)
COS = [
    [
        round(2048 * (math.sqrt(0.5) if k == 0 else 1) / 2 * math.cos((2 * n + 1) * k * math.pi / 16))
        for n in range(8)
    ]
    for k in range(8)
]
# Simple complete-enough Huffman tables: DC categories 0..11 as 4-bit codes; every AC symbol
# (EOB, ZRL, run/size for runs 0..15 and sizes 1..10) as an 8-bit code. Valid for any decoder.
DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 11)]
DC_CODES = {s: (i, 4) for i, s in enumerate(DC_SYMBOLS)}
AC_CODES = {s: (i, 8) for i, s in enumerate(AC_SYMBOLS)}


def _scaled(table: list[int], quality: int) -> list[int]:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (q * scale + 50) // 100)) for q in table]


def _fdct_quantize(block: list[int], quant: list[int]) -> list[int]:
    """Forward DCT of a level-shifted 8x8 block, quantized, in zigzag order (integers only)."""
    rows = [[sum(block[y * 8 + x] * COS[u][x] for x in range(8)) for u in range(8)] for y in range(8)]
    out = [0] * 64
    for v in range(8):
        for u in range(8):
            coef = sum(COS[v][y] * rows[y][u] for y in range(8))  # scaled by 2**22
            div = quant[v * 8 + u] << 22
            out[v * 8 + u] = (abs(coef) + div // 2) // div * (1 if coef >= 0 else -1)
    return [out[i] for i in ZIGZAG]


class _Bits:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)  # byte stuffing
        self.acc &= (1 << self.n) - 1

    def flush(self) -> bytes:
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)
        return bytes(self.out)


def _magnitude(value: int) -> tuple[int, int]:
    size = abs(value).bit_length()
    return size, (value if value >= 0 else value + (1 << size) - 1)


def _encode_block(bits: _Bits, coefs: list[int], pred: int) -> int:
    size, extra = _magnitude(coefs[0] - pred)
    bits.put(*DC_CODES[size])
    bits.put(extra, size)
    run = 0
    for coef in coefs[1:]:
        if coef == 0:
            run += 1
            continue
        while run > 15:
            bits.put(*AC_CODES[0xF0])
            run -= 16
        size, extra = _magnitude(coef)
        bits.put(*AC_CODES[(run << 4) | size])
        bits.put(extra, size)
        run = 0
    if run:
        bits.put(*AC_CODES[0x00])
    return coefs[0]


def _dht(cls_id: int, symbols: list[int], length: int) -> bytes:
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    return bytes([cls_id, *counts, *symbols])


def jpeg(img: Canvas, quality: int = 85) -> bytes:
    height, width = len(img), len(img[0])
    quants = [_scaled(LUMA_Q, quality), _scaled(CHROMA_Q, quality)]
    planes: list[list[int]] = [[], [], []]
    for row in img:
        for r, g, b in row:  # YCbCr in 16-bit fixed point, level-shifted by -128
            planes[0].append(((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) - 128)
            planes[1].append((-11059 * r - 21709 * g + 32768 * b + 32768) >> 16)
            planes[2].append((32768 * r - 27439 * g - 5329 * b + 32768) >> 16)
    bits, preds = _Bits(), [0, 0, 0]
    for by in range(0, height, 8):
        for bx in range(0, width, 8):
            for c, plane in enumerate(planes):
                block = [plane[(by + y) * width + bx + x] for y in range(8) for x in range(8)]
                preds[c] = _encode_block(bits, _fdct_quantize(block, quants[c > 0]), preds[c])

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">HH", marker, len(payload) + 2) + payload

    dqt = b"".join(bytes([i, *(q[z] for z in ZIGZAG)]) for i, q in enumerate(quants))
    sof = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    dht = _dht(0x00, DC_SYMBOLS, 4) + _dht(0x10, AC_SYMBOLS, 8)
    sos = bytes([3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0])
    return (
        b"\xff\xd8"
        + segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xFFDB, dqt)
        + segment(0xFFC0, sof)
        + segment(0xFFC4, dht)
        + segment(0xFFDA, sos)
        + bits.flush()
        + b"\xff\xd9"
    )


def render_samples() -> dict[str, bytes]:
    """File name -> encoded image."""
    return {
        "bar_chart.png": png(bar_chart()),
        "open_sign.png": png(open_sign()),
        "sunset.jpg": jpeg(sunset()),
    }


HERE = Path(__file__).resolve().parent


def main(out_dir: Path = HERE) -> None:
    for name, data in render_samples().items():
        (out_dir / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
