"""The header section of a message: the one reading that acceptance and DKIM signing share.

In: message bytes. Out: a :class:`HeaderSection` (its fields in message
order, each with its name, raw value and byte span, and where the body
starts), or :class:`MalformedHeader` naming the first line that belongs to
no header field.

A header field (RFC 5322 §2.2, §3.6.8 ``optional-field``) is a name of
printable US-ASCII other than the colon (``ftext``), a colon, and a value up
to the end of the line; the lines after it that begin with SP or HTAB
continue it (folding, §2.2.3). White space between the name and the colon is
the obsolete syntax of §4.5 (``obs-optional``): read, never to be generated
(§4 asks receivers to accept it and writers not to produce it). Values are
not checked: RFC 6532 allows UTF-8 in them and ``obs-utext`` control
characters.

The section ends at the first empty line; a message without one is all
header. A line ends at LF, with one CR before it dropped, as DKIM verifiers
read it (acceptance only ever gets CRLF, the SMTP reader refuses bare CR and
LF). Everything else is malformed: a line with no colon, a name that is
empty or holds a space, a control or a non-ASCII octet, and a section that
begins with a continuation line. An mbox ``From `` line is one of those.

Pure: bytes in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

_FIELD: Final = re.compile(
    rb"^([\x21-\x39\x3b-\x7e]+)([ \t]*):"  # name, white space (obsolete), colon
    rb"((?:[^\n]*+\n[ \t])*+"  # the value: lines each followed by a continuation line,
    rb"[^\r\n]*+(?:\r(?!\n)[^\r\n]*+)*+)",  # then the last line up to its CRLF or LF
    re.MULTILINE,
)

Parts = tuple[bytes, bytes, bytes]
"""One field as matched: its name, the white space before its colon, and its value
as written (folding kept, without the line end of its last line)."""


class MalformedHeader(ValueError):
    """A line of the header section that is part of no header field.

    ``str()`` says which line (1 is the first line of the message) and why,
    e.g. ``line 3 has no colon``.
    """

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line} {problem}")
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Field:
    """One header field as it stands in the message."""

    name: bytes
    """As written, without the white space before the colon."""
    value: bytes
    """Everything after the colon up to the field's last line end, folding kept."""
    start: int
    colon: int
    end: int
    """Offsets of the name's first octet, of the colon (after the name unless white
    space stands between them, RFC 5322 §4.5), and just past the last line end."""


@dataclass(frozen=True, slots=True)
class HeaderSection:
    """A well-formed header section: its fields, and where the body starts."""

    block: bytes
    """The message up to the end of its last field."""
    parts: list[Parts]
    body_start: int
    """Offset of the body: past the empty line, or the message's length without one."""
    folded: bool
    """Whether any field has a continuation line."""

    def fields(self) -> list[Field]:
        """The fields with their offsets in the message."""
        return [Field(*span) for span in self.spans()]

    def spans(self) -> Iterator[tuple[bytes, bytes, int, int, int]]:
        """What :meth:`fields` holds, as plain tuples ``(name, value, start, colon, end)``
        for a reader that makes its own objects (acceptance reads every message)."""
        block = self.block
        start = 0
        for name, space, value in self.parts:
            colon = start + len(name) + len(space)
            end = block.find(b"\n", colon + 1 + len(value)) + 1 or len(block)
            yield name, value, start, colon, end
            start = end

    def unfolded(self) -> list[tuple[bytes, bytes]]:
        """(lower-case name, value without line breaks) of every field (RFC 5322 §2.2.3)."""
        if not self.folded:
            return [(name.lower(), value) for name, _, value in self.parts]
        return [
            (name.lower(), value.replace(b"\r\n", b"").replace(b"\n", b""))
            for name, _, value in self.parts
        ]


def parse_header_section(message: bytes) -> HeaderSection:
    """The header section of ``message``; see the module docstring.

    Raises :class:`MalformedHeader` for the first line that is part of no field.
    """
    end, body_start = header_end(message)
    block = message[:end]
    parts: list[Parts] = _FIELD.findall(block)
    # Each match starts on a line that is not a continuation line and takes
    # the continuation lines after it: the block is all fields when the counts agree.
    lines = block.count(b"\n") + (not block.endswith(b"\n") and len(block) > 0)
    continuations = block.count(b"\n ") + block.count(b"\n\t")
    if len(parts) != lines - continuations:
        raise _first_malformed(block)
    return HeaderSection(block, parts, body_start, continuations > 0)


def header_end(message: bytes) -> tuple[int, int]:
    """(end of the header section, start of the body): the first empty line splits them."""
    if message.startswith(b"\n"):
        return 0, 1
    if message.startswith(b"\r\n"):
        return 0, 2
    crlf = message.find(b"\n\r\n")
    lf = message.find(b"\n\n", 0, len(message) if crlf < 0 else crlf + 1)
    if lf >= 0:
        return lf + 1, lf + 2
    if crlf >= 0:
        return crlf + 1, crlf + 3
    return len(message), len(message)


def _first_malformed(block: bytes) -> MalformedHeader:
    """The first line of ``block`` that is part of no field, and why."""
    pos = 0
    while pos < len(block) and (match := _FIELD.match(block, pos)) is not None:
        pos = block.find(b"\n", match.end()) + 1 or len(block)
    number = block.count(b"\n", 0, pos) + 1
    line = block[pos:].split(b"\n", 1)[0]
    if line[:1] in (b" ", b"\t"):
        return MalformedHeader(number, "begins with white space but continues no field")
    name, colon, _ = line.partition(b":")
    if not colon:
        return MalformedHeader(number, "has no colon")
    name = name.rstrip(b" \t")
    if not name:
        return MalformedHeader(number, "has no field name before its colon")
    if b" " in name or b"\t" in name:
        return MalformedHeader(number, "has white space inside its field name")
    return MalformedHeader(number, "has a field name that is not printable US-ASCII")
