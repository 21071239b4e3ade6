"""Reading a PNG screenshot's pixels with the standard library (zlib), for the browser
tests: 8-bit RGB or RGBA, not interlaced, as Chromium writes them."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {2: 3, 6: 4}
"""Channels per pixel of the colour types read: RGB and RGBA."""

Rgb = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Image:
    width: int
    height: int
    pixels: list[Rgb]
    """Row after row, left to right."""

    def count_near(self, colour: Rgb, tolerance: int = 40) -> int:
        """How many pixels are within ``tolerance`` of ``colour`` on every channel."""
        return sum(
            1
            for pixel in self.pixels
            if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))
        )


def hex_colour(text: str) -> Rgb:
    """``#1a7f37`` as ``(26, 127, 55)``."""
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def decode(data: bytes) -> Image:
    """The image of the PNG ``data``."""
    assert data.startswith(SIGNATURE), "not a PNG"
    at, idat = len(SIGNATURE), bytearray()
    width = height = channels = 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour_type in CHANNELS and not interlace, (depth, colour_type)
            channels = CHANNELS[colour_type]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    rows = _unfiltered(zlib.decompress(bytes(idat)), width, height, channels)
    pixels = [
        (row[x], row[x + 1], row[x + 2]) for row in rows for x in range(0, len(row), channels)
    ]
    return Image(width, height, pixels)


def _unfiltered(raw: bytes, width: int, height: int, bpp: int) -> list[bytes]:
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            upper_left = previous[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + _predictor(kind, left, up, upper_left)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return rows


def _predictor(kind: int, left: int, up: int, upper_left: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    assert kind == 4, f"unknown PNG filter {kind}"
    guess = left + up - upper_left
    near_left, near_up, near_corner = abs(guess - left), abs(guess - up), abs(guess - upper_left)
    if near_left <= near_up and near_left <= near_corner:
        return left
    return up if near_up <= near_corner else upper_left
