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
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from engine.header_section import MalformedHeader, parse_header_section
from tracking_edge.rewriting.transfer import ENCODINGS, usable_codec

MAX_DEPTH: Final = 12
_TEXT_TYPES: Final = frozenset({"text/html", "text/plain"})
_PADDING: Final = b" \t"
_CONTENT_FIELDS: Final = frozenset(
    {b"content-type", b"content-transfer-encoding", b"content-disposition"}
)


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
    fields = tuple(field for field in section.unfolded() if field[0] in _CONTENT_FIELDS)
    entity = _entity(fields, default)
    body = start + section.body_start
    if isinstance(entity, _Multipart):
        if depth >= MAX_DEPTH:
            return
        for part_start, part_end in _parts(message, body, end, entity.boundary):
            yield from _walk(message, part_start, part_end, entity.inner, depth + 1)
    elif entity is not None:
        yield TextPart(body, end, entity.html, entity.codec, entity.encoding)


@dataclass(frozen=True, slots=True)
class _Multipart:
    boundary: bytes
    inner: str
    """The default content type of its parts."""


@dataclass(frozen=True, slots=True)
class _Text:
    html: bool
    codec: str
    encoding: str


@functools.lru_cache(maxsize=256)
def _entity(fields: tuple[tuple[bytes, bytes], ...], default: str) -> _Multipart | _Text | None:
    """What an entity with these content fields (lower-case name, unfolded value) is: a
    multipart, a text part that may be rewritten, or neither (None). Read once for the
    many messages that share their content fields."""
    entity = email.message.Message()
    for name, value in fields:
        entity[name.decode("ascii")] = value.decode("latin-1").strip()
    entity.set_default_type(default)
    content_type = entity.get_content_type()
    if entity.get_content_maintype() == "multipart":
        boundary = entity.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            return None
        inner = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
        return _Multipart(boundary.encode("latin-1"), inner)
    if content_type in _TEXT_TYPES and entity.get_content_disposition() != "attachment":
        encoding = str(entity.get("content-transfer-encoding", "7bit")).strip().lower()
        codec = usable_codec(entity.get_content_charset("us-ascii") or "us-ascii")
        if encoding in ENCODINGS and codec is not None:
            return _Text(content_type == "text/html", codec, encoding)
    return None


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
