"""Content transfer encodings (RFC 2045 §6) and charsets, as link rewriting needs them.

In: a part's body as sent and its ``Content-Transfer-Encoding``. Out: its
octets; and back. Identity encodings (7bit, 8bit, binary) change nothing;
base64 is written in lines of 76 characters (§6.8); quoted-printable is
read as logical lines (a hard line and its soft line breaks, §6.7 rule 5)
so that only the lines rewritten are encoded again, in lines of at most 76
characters. Line ends are CRLF.

A charset is usable when Python has a codec for it and the codec is
ASCII-compatible (every printable ASCII character and CRLF encode to
themselves): our URLs are ASCII and are spliced in as octets. UTF-16,
UTF-7 and HZ are not; a part in one of them is left alone.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import binascii
import codecs
import functools
from typing import Final

IDENTITY: Final = frozenset({"7bit", "8bit", "binary"})
BASE64: Final = "base64"
QUOTED_PRINTABLE: Final = "quoted-printable"
ENCODINGS: Final = IDENTITY | {BASE64, QUOTED_PRINTABLE}
BASE64_LINE: Final = 76
_PROBE: Final = "".join(map(chr, range(32, 127))) + "\r\n\t"


@functools.lru_cache(maxsize=64)
def usable_codec(charset: str) -> str | None:
    """The Python codec name of ``charset`` if it is known and ASCII-compatible."""
    try:
        name = codecs.lookup(charset).name
        ascii_compatible = _PROBE.encode(name) == _PROBE.encode("ascii")
        return name if ascii_compatible and _PROBE.encode("ascii").decode(name) == _PROBE else None
    except (LookupError, UnicodeError):
        return None


def decode_base64(raw: bytes) -> bytes | None:
    """The octets of a base64 body; None when it is not base64."""
    try:
        return binascii.a2b_base64(raw)
    except binascii.Error:
        return None


def encode_base64(data: bytes) -> bytes:
    """``data`` in base64 lines of 76 characters joined by CRLF, without a final CRLF."""
    text = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join(text[i : i + BASE64_LINE] for i in range(0, len(text), BASE64_LINE))


def logical_lines(raw: bytes) -> list[bytes]:
    """The encoded logical lines of a quoted-printable body: each hard line with its
    soft line breaks, without the CRLF that ends it (split on those CRLFs)."""
    lines: list[bytes] = []
    current: list[bytes] = []
    for physical in raw.split(b"\r\n"):
        current.append(physical)
        if not physical.rstrip(b" \t").endswith(b"="):
            lines.append(b"\r\n".join(current))
            current = []
    if current:
        lines.append(b"\r\n".join(current))
    return lines


def decode_quoted_printable(line: bytes) -> bytes:
    """The octets of one logical line (its soft line breaks removed)."""
    return binascii.a2b_qp(line)


def encode_quoted_printable(data: bytes) -> bytes:
    """``data`` (hard lines joined by CRLF) quoted-printable, lines of at most 76
    characters ending in CRLF, without a final CRLF. A CR or LF that is not part
    of a CRLF is encoded (=0D, =0A), so decoding gives ``data`` back."""
    if b"\n" not in data or data.count(b"\n") == data.count(b"\r\n"):
        # b2a_qp breaks lines the way the first line break it finds ends: the CRLF put
        # at the end makes that CRLF when there is no other; it is taken off again.
        return _text_quoted_printable(data + b"\r\n")[:-2]
    return b"\r\n".join(_quoted_printable_line(line) for line in data.split(b"\r\n"))


def _text_quoted_printable(text: bytes) -> bytes:
    """b2a_qp of ``text`` (CRLF lines, ending in CRLF), in lines of at most 76 characters."""
    encoded = binascii.b2a_qp(text)
    if b" \r\n" not in text and b"\t\r\n" not in text:
        return encoded
    # b2a_qp encodes the white space that ends a line after laying the line out, which
    # can take the line to 77 characters: such a line is broken softly before it.
    lines = encoded.split(b"\r\n")
    return b"\r\n".join(
        line if len(line) <= QP_LINE else line[:-3] + b"=\r\n" + line[-3:] for line in lines
    )


def _quoted_printable_line(line: bytes) -> bytes:
    """One hard line (no CRLF in it) with its bare CRs and LFs encoded."""
    # As binary, b2a_qp encodes CR and LF and breaks soft lines with "=\n" (an LF
    # of the data is =0A, so "=\n" is only ever a soft break).
    return binascii.b2a_qp(line, istext=False).replace(b"=\n", b"=\r\n")


QP_LINE: Final = 76
"""The longest line quoted-printable writes, soft line break included (RFC 2045 §6.7)."""
_QP_PLAIN: Final = bytes(range(33, 61)) + bytes(range(62, 127))
"""Octets quoted-printable writes as themselves anywhere in a line (not ``=``, space,
controls or 8-bit)."""


class QuotedPrintableSplice:
    """One hard line of text with one slot, encoded for each value put in the slot as
    ``encode_quoted_printable`` encodes the whole line: the octets around the slot are
    encoded once (after it, once per column it may start at), so a copy only lays out
    its value and its soft line breaks."""

    def __init__(self, before: bytes, after: bytes) -> None:
        if b"\r" in before + after or b"\n" in before + after:
            raise ValueError("a quoted-printable splice is one hard line")
        # A '=' after the text stands for the value: b2a_qp treats the last octet of the
        # text as it would before the value, and breaks the line before the '=' if at all.
        encoded = binascii.b2a_qp(before + b"=\r\n")[: -len(b"=3D\r\n")]
        self._before = encoded.removesuffix(b"=\r\n")
        self._column = len(self._before) - (self._before.rfind(b"\n") + 1)
        self._room = max(QP_LINE - 1 - self._column, 0)  # a value's octets on that line
        self._after = after
        self._afters: dict[int, bytes] = {}

    def encode(self, value: bytes) -> bytes | None:
        """The line with ``value`` in the slot, encoded; None for a value with an octet
        that needs encoding, or a '.' that might be alone on a line (the caller encodes
        those the long way)."""
        if not value or value.translate(None, _QP_PLAIN) or (not self._after and b"." in value):
            return None
        room, width, size = self._room, QP_LINE - 1, len(value)
        if size <= room:
            return self._before + value + self._after_at(self._column + size)
        lines = [self._before + value[:room]]
        at = room
        while size - at > width:
            lines.append(value[at : at + width])
            at += width
        lines.append(value[at:])
        return b"=\r\n".join(lines) + self._after_at(size - at)

    def _after_at(self, column: int) -> bytes:
        """The text after the slot, encoded from ``column`` on."""
        found = self._afters.get(column)
        if found is None:
            filler = b"x" * column
            encoded = _text_quoted_printable(filler + self._after + b"\r\n")
            found = self._afters[column] = encoded[column:-2]
        return found
