"""The text parts of a message that link rewriting may touch, found by walking its MIME tree.

In: a stored message (bytes, CRLF). Out: the byte spans of its text/html and
text/plain bodies, each with its charset's codec and its transfer encoding,
in message order. Nothing is copied or re-serialized: a rewriter replaces
those spans and leaves every other octet (headers, boundaries, preamble and
epilogue, other parts) as it was.

The walk follows RFC 2046 §5.1: a multipart body is split at its delimiter
lines (``--boundary`` at the start of a line, then ``--`` for the last one,
or transport padding); the CRLF before a delimiter belongs to it. It goes
down every ``multipart/*`` (mixed, alternative, related, ...) to a depth of
:data:`MAX_DEPTH`. A part is left alone when it is an attachment
(``Content-Disposition: attachment``), an enclosed message
(``message/rfc822``: someone else's mail), in an unknown transfer encoding
or charset, or in a charset that is not ASCII-compatible
(``tracking_edge.rewriting.transfer``); so is a multipart whose last
delimiter is missing, and a message whose header section is malformed.

Pure: bytes in, spans out.
"""

from __future__ import annotations

import email.message
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from engine.header_section import MalformedHeader, parse_header_section
from tracking_edge.rewriting.transfer import ENCODINGS, usable_codec

MAX_DEPTH: Final = 12
_TEXT_TYPES: Final = frozenset({"text/html", "text/plain"})
_PADDING: Final = b" \t"


@dataclass(frozen=True, slots=True)
class TextPart:
    """The body of one text part: ``message[start:end]``."""

    start: int
    end: int
    html: bool
    """text/html (else text/plain)."""
    codec: str
    """The Python codec of its charset (us-ascii when none is given)."""
    encoding: str
    """Its transfer encoding, lower case (7bit when none is given)."""


def text_parts(message: bytes) -> list[TextPart]:
    """The text parts of ``message`` that may be rewritten, in message order."""
    return list(_walk(message, 0, len(message), "text/plain", 0))


def _walk(message: bytes, start: int, end: int, default: str, depth: int) -> Iterator[TextPart]:
    try:
        section = parse_header_section(message[start:end])
    except MalformedHeader:
        return
    entity = email.message.Message()
    for name, value in section.unfolded():
        if name in (b"content-type", b"content-transfer-encoding", b"content-disposition"):
            entity[name.decode("ascii")] = value.decode("latin-1").strip()
    entity.set_default_type(default)
    body = start + section.body_start
    content_type = entity.get_content_type()
    if entity.get_content_maintype() == "multipart":
        boundary = entity.get_param("boundary")
        if not isinstance(boundary, str) or not boundary or depth >= MAX_DEPTH:
            return
        inner = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
        for part_start, part_end in _parts(message, body, end, boundary.encode("latin-1")):
            yield from _walk(message, part_start, part_end, inner, depth + 1)
    elif content_type in _TEXT_TYPES and entity.get_content_disposition() != "attachment":
        encoding = str(entity.get("content-transfer-encoding", "7bit")).strip().lower()
        codec = usable_codec(entity.get_content_charset("us-ascii") or "us-ascii")
        if encoding in ENCODINGS and codec is not None:
            yield TextPart(body, end, content_type == "text/html", codec, encoding)


def _parts(message: bytes, body: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The (start, end) of each body part of a multipart body ``message[body:end]``;
    none unless its close delimiter is there."""
    parts: list[tuple[int, int]] = []
    opened: int | None = None
    for line_start, line_end, close in _delimiters(message, body, end, b"--" + boundary):
        if opened is not None:
            parts.append((opened, max(opened, line_start - 2)))
        if close:
            return parts
        opened = line_end
    return []


def _delimiters(
    message: bytes, body: int, end: int, delimiter: bytes
) -> Iterator[tuple[int, int, bool]]:
    """(start, end past its CRLF, is the close delimiter) of each delimiter line."""
    pos = body if message.startswith(delimiter, body) else -1
    if pos < 0:
        pos = _next(message, body, end, delimiter)
    while pos >= 0:
        after = pos + len(delimiter)
        line_end = message.find(b"\r\n", after, end)
        line_end = end if line_end < 0 else line_end
        rest = message[after:line_end]
        if rest.startswith(b"--"):
            yield pos, min(line_end + 2, end), True
            return
        if not rest.strip(_PADDING):
            yield pos, min(line_end + 2, end), False
        pos = _next(message, after, end, delimiter)


def _next(message: bytes, pos: int, end: int, delimiter: bytes) -> int:
    found = message.find(b"\r\n" + delimiter, pos, end)
    return found + 2 if found >= 0 else -1
