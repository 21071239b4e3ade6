"""The returned original message of a bounce or complaint: its header fields.

In: a message's MIME tree, or the text of a plain-text bounce. Out: an
:class:`~bounce_in.report.OriginalMessage` (header fields in order, names as
written, values unfolded; its Message-ID), or ``None``.

A report returns the message as a ``message/rfc822`` (or RFC 6532
``message/global``) part, or only its header as ``text/rfc822-headers``
(RFC 6522 §4, RFC 5965 §2(d)); plain-text bounces quote it after a marker
line such as Exim's "------ This is a copy of the message, including all
the headers. ------". The intake reads our own ``X-Penguin-Ref`` there when
a report names no recipient we can place. Pure.
"""

from __future__ import annotations

import re
from typing import Final

from bounce_in.parsing.mime import (
    MAX_FIELDS,
    Part,
    decode_words,
    decoded_body,
    normalize,
    split_header,
    to_text,
)
from bounce_in.report import OriginalMessage

RETURNED_TYPES: Final = ("message/rfc822", "message/global")
HEADER_TYPES: Final = ("text/rfc822-headers", "message/rfc822-headers")

COPY_MARKER: Final = re.compile(
    r"^[ \t]*-*[ \t]*(?:This is a copy of the message|Below this line is a copy of the message"
    r"|Original message headers:|Original message follows|Original Message(?: Headers)?[ \t]*-"
    r"|The header of the original message is following|Undelivered message headers"
    r"|Returned mail:? see transcript|Unsent Message below|Unsent message follows"
    r"|Header of the original message|Original message header"
    r"|Message header follows|Copy of original message)",
    re.IGNORECASE | re.MULTILINE,
)
"""Lines after which plain-text bounces quote the message they return."""

_FIELD_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:[ \t]?(.*)$")


def returned_part(message: Part) -> Part | None:
    """The part holding the returned message or its header, if any."""
    for part in message.walk():
        if part is not message and part.content_type in RETURNED_TYPES + HEADER_TYPES:
            return part
    return None


def original_of(message: Part) -> OriginalMessage | None:
    """The returned message of a MIME report."""
    part = returned_part(message)
    if part is None:
        return None
    return from_bytes(normalize(decoded_body(part)))


def from_text(text: str) -> OriginalMessage | None:
    """The message quoted after a marker line of a plain-text bounce, if any."""
    marker = COPY_MARKER.search(text)
    if marker is None:
        return None
    rest = text[marker.end() :].split("\n", 1)[1] if "\n" in text[marker.end() :] else ""
    original = from_bytes(rest.lstrip("\n").encode("utf-8", "replace"))
    return original if original.headers else None


def from_bytes(data: bytes) -> OriginalMessage:
    """The header fields at the start of ``data``; lines that are no field are skipped."""
    block, _ = split_header(data.lstrip(b"\n"))
    fields: list[tuple[str, str]] = []
    for raw in block.split(b"\n")[: MAX_FIELDS * 4]:
        line = raw.rstrip()
        if raw[:1] in (b" ", b"\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {to_text(line.strip())}".strip())
            continue
        match = _FIELD_LINE.match(line)
        if match is not None and len(fields) < MAX_FIELDS:
            fields.append((to_text(match[1]), to_text(match[2].strip())))
    headers = tuple((name, decode_words(value)) for name, value in fields)
    message_id = next((v for n, v in headers if n.lower() == "message-id"), "")
    return OriginalMessage(headers=headers, message_id=message_id.strip().strip("<>").strip())
