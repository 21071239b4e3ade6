"""Walking an inbound message: a tolerant MIME reader for bounces and complaints.

In: the raw bytes of a message, as any mail system wrote them. Out: a tree of
:class:`Part` (header fields, content type and parameters, the body as
written, the child parts) and the decoded text of a part.

Bounces come from every kind of software, so nothing here refuses input
(RFC 2045, RFC 2046 read leniently): lines may end in LF, CRLF or CR; a
header line with no colon is skipped; a multipart without its closing
delimiter ends at the end of the data; an unknown charset is read as
Latin-1; a broken base64 or quoted-printable body is decoded as far as it
goes. Unlike ``engine.header_section``, which refuses what it cannot place
because it guards what we sign, this reader keeps what it can.

Invariants: the work is bounded whatever the input: at most
:data:`MAX_BYTES` of the message are read, :data:`MAX_PARTS` parts,
:data:`MAX_DEPTH` levels of nesting and :data:`MAX_FIELDS` header fields per
part. Pure: no I/O.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header
from typing import Final

MAX_BYTES: Final = 4 * 1024 * 1024
"""Only this much of a message is read: a report's parts come first."""
MAX_PARTS: Final = 64
MAX_DEPTH: Final = 8
MAX_FIELDS: Final = 400
MAX_FIELD_BYTES: Final = 16 * 1024
"""A longer header value is cut here."""

_PARAM = re.compile(r';\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


@dataclass(slots=True)
class Part:
    """One MIME entity: its header fields and body, and its parts if it has any."""

    fields: list[tuple[str, str]]
    """(lower-case name, value unfolded) in order."""
    body: bytes
    """As written (transfer encoding not undone), line ends LF."""
    content_type: str = "text/plain"
    params: dict[str, str] = field(default_factory=dict)
    children: list[Part] = field(default_factory=list)

    def header(self, name: str) -> str:
        """The first field called ``name`` (lower case), or ``""``."""
        for key, value in self.fields:
            if key == name:
                return value
        return ""

    def walk(self) -> Iterator[Part]:
        """This part and every part below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


def normalize(raw: bytes) -> bytes:
    """The first :data:`MAX_BYTES` of ``raw`` with every line ending made LF."""
    data = raw[:MAX_BYTES]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def parse_message(raw: bytes) -> Part:
    """The MIME tree of ``raw``; never raises."""
    budget = [MAX_PARTS]
    return _entity(normalize(raw), 0, budget, "text/plain")


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of LF-ended ``data``: the first empty line splits them."""
    if data.startswith(b"\n"):
        return b"", data[1:]
    end = data.find(b"\n\n")
    if end < 0:
        return data, b""
    return data[: end + 1], data[end + 2 :]


def read_fields(block: bytes) -> list[tuple[str, str]]:
    """(lower-case name, unfolded value) of each field of a header block.

    Lines that continue no field and have no colon are skipped, as is an mbox
    ``From`` line.
    """
    out: list[tuple[str, str]] = []
    for line in block.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if out and len(out[-1][1]) < MAX_FIELD_BYTES:
                last, text = out[-1]
                out[-1] = (last, text + " " + to_text(line.strip()))
            continue
        raw_name, colon, raw_value = line.partition(b":")
        raw_name = raw_name.strip()
        if not colon or not raw_name or b" " in raw_name or len(out) >= MAX_FIELDS:
            continue
        out.append((to_text(raw_name).lower(), to_text(raw_value.strip()[:MAX_FIELD_BYTES])))
    return out


def to_text(data: bytes) -> str:
    """Header bytes as text: UTF-8 if they are, else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_words(value: str) -> str:
    """``value`` with its RFC 2047 encoded words decoded (those that can be)."""
    if "=?" not in value or not _ENCODED_WORD.search(value):
        return value
    try:
        pieces = decode_header(value)
        return "".join(
            chunk if isinstance(chunk, str) else chunk.decode(_codec(charset), "replace")
            for chunk, charset in pieces
        )
    except (ValueError, LookupError, AssertionError):
        return value


def content_type(value: str, default: str) -> tuple[str, dict[str, str]]:
    """The lower-case type/subtype of a Content-Type value and its parameters."""
    kind = value.split(";", 1)[0].strip().lower()
    if "/" not in kind:
        kind = default
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(value[:4096]):
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params.setdefault(name.lower(), raw)
    return kind, params


def decoded_body(part: Part) -> bytes:
    """The body with its Content-Transfer-Encoding undone (as far as it goes)."""
    encoding = part.header("content-transfer-encoding").strip().lower()
    if encoding == "base64":
        return _base64(part.body)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(part.body)
    return part.body


def text_of(part: Part) -> str:
    """The body as text: transfer encoding undone, then its charset (Latin-1 if unknown)."""
    data = decoded_body(part)
    charset = part.params.get("charset", "")
    if not charset:
        return to_text(data)
    return data.decode(_codec(charset), "replace")


def _codec(charset: str | None) -> str:
    name = (charset or "utf-8").strip().strip('"').lower()
    if name in ("gb2312", "gbk"):
        name = "gb18030"  # the superset that mail clients mean
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return "latin-1"


def _base64(body: bytes) -> bytes:
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
    rest = len(cleaned) % 4
    cleaned = cleaned[:-1] if rest == 1 else cleaned + b"=" * ((4 - rest) % 4)
    try:
        return binascii.a2b_base64(cleaned)
    except binascii.Error:
        return b""


def _entity(data: bytes, depth: int, budget: list[int], default: str) -> Part:
    budget[0] -= 1
    block, body = split_header(data)
    fields = read_fields(block)
    part = Part(fields, body)
    part.content_type, part.params = content_type(part.header("content-type"), default)
    if depth >= MAX_DEPTH or budget[0] <= 0:
        return part
    if part.content_type.startswith("multipart/"):
        inner = "message/rfc822" if part.content_type == "multipart/digest" else "text/plain"
        for chunk in _chunks(body, part.params.get("boundary", "")):
            if budget[0] <= 0:
                break
            part.children.append(_entity(chunk, depth + 1, budget, inner))
    elif part.content_type in ("message/rfc822", "message/global"):
        inner_data = normalize(decoded_body(part))
        part.children.append(_entity(inner_data, depth + 1, budget, "text/plain"))
    return part


def _chunks(body: bytes, boundary: str) -> list[bytes]:
    """The parts between the delimiter lines of ``boundary`` (RFC 2046 §5.1.1)."""
    if not boundary:
        return []
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    chunks: list[bytes] = []
    start = -1
    pos = 0
    while len(chunks) < MAX_PARTS:
        found = body.find(delimiter, pos)
        if found < 0:
            break
        at_line_start = found == 0 or body[found - 1 : found] == b"\n"
        line_end = body.find(b"\n", found)
        line_end = len(body) if line_end < 0 else line_end
        pos = found + len(delimiter)
        if not at_line_start:
            continue
        if start >= 0:
            chunks.append(body[start : max(start, found - 1)])
        if body[pos : pos + 2] == b"--":
            return chunks
        start = line_end + 1
        pos = start
    if start >= 0 and start <= len(body):
        chunks.append(body[start:])
    return chunks
