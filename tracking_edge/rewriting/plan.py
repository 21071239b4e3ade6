"""A submission's rewriting plan: parsed once, then spliced for each recipient.

In: the body of a submission (bytes, CRLF). Out: a :class:`Plan` whose
:meth:`Plan.render` gives one recipient's copy from that recipient's URLs
(:class:`Links`). Link rewriting runs for every recipient (each has its own
tokens), so everything that does not depend on the recipient is done here
once: the MIME walk (``mime``), the transfer and charset decoding
(``transfer``), the HTML and plain-text scans (``html``, ``text``), the
encoding of the text between the slots, and the header section without its
List-Unsubscribe fields (``headers``). A copy is then a join of prepared
octets and URLs; only a part in base64, or the quoted-printable lines that
hold a slot, are encoded again.

A part's plan depends only on its octets, transfer encoding and charset:
``PartPlans`` keeps the latest ones, so the submissions of one campaign,
whose parts are the same octets under headers of their own, share the
scanning of them.

Invariants: with every kind of tracking off the copy is the submission,
octet for octet; a rewritten part keeps its charset and transfer encoding;
octets outside the rewritten parts and header fields never change. A part
whose text does not survive decoding and encoding again unchanged (a
malformed byte sequence, a stateful charset that would encode differently
in pieces) is left alone.

Pure: bytes in, bytes out; the URLs come in as values.
"""

from __future__ import annotations

import bisect
import dataclasses
import html
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from tracking_edge.rewriting.headers import UnsubscribeHeaders
from tracking_edge.rewriting.html import html_slots
from tracking_edge.rewriting.mime import TextPart, text_parts
from tracking_edge.rewriting.slots import Slot, SlotKind
from tracking_edge.rewriting.text import text_slots
from tracking_edge.rewriting.transfer import (
    BASE64,
    QUOTED_PRINTABLE,
    QuotedPrintableSplice,
    decode_base64,
    decode_quoted_printable,
    encode_base64,
    encode_quoted_printable,
    logical_lines,
)

PIXEL: tuple[str, str] = (
    '<img src="',
    '" width="1" height="1" alt="" border="0" '
    'style="display:none;width:1px;height:1px;border:0;" />',
)
"""The open pixel's markup, before and after its URL."""


@dataclass(frozen=True, slots=True)
class Links:
    """One recipient's URLs; None where that kind of tracking is off."""

    click: Callable[[str], str] | None
    """The click URL that redirects to a given link."""
    unsubscribe: str | None
    open: str | None


@dataclass(frozen=True, slots=True)
class PlacedSlot:
    """A slot of the message: what goes there, for which part, and what was there."""

    slot: Slot
    html: bool
    codec: str
    original: bytes
    """The slot's text as submitted, in the part's charset."""


Pieces = tuple["bytes | int | Encoded", ...]
"""Octets as they go out, slots (an index into ``Plan.slots``), and runs to encode."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A run of a part's octets that goes out through a transfer encoding."""

    pieces: tuple[bytes | int, ...]
    encode: Callable[[bytes], bytes]
    original: bytes
    """The run as submitted, sent when none of its slots changed."""
    submitted: tuple[bytes, ...]
    """The run's octets before encoding as submitted: its slots' originals in place."""
    splice: QuotedPrintableSplice | None = None
    """For one hard line of quoted-printable with one slot: its encoding around the slot."""

    def render(self, values: Sequence[bytes]) -> bytes:
        """The run with ``values`` in its slots: encoded again when one changed."""
        if self.splice is not None:
            slot = self.pieces[1]
            assert isinstance(slot, int)
            value = values[slot]
            if value == self.submitted[1]:
                return self.original
            spliced = self.splice.encode(value)
            if spliced is not None:
                return spliced
        octets = tuple([values[p] if isinstance(p, int) else p for p in self.pieces])
        return self.original if octets == self.submitted else self.encode(b"".join(octets))


@dataclass(frozen=True, slots=True)
class Plan:
    """What link rewriting makes of one submission; see the module docstring."""

    body: bytes
    headers: UnsubscribeHeaders | None
    header_end: int
    pieces: Pieces
    slots: tuple[PlacedSlot, ...]

    def render(self, links: Links) -> bytes:
        """The copy of the submission that carries ``links``."""
        if self.headers is None or links == Links(None, None, None):
            return self.body
        values = self._values(links)
        out = [self.headers.render(links.unsubscribe)]
        for piece in self.pieces:
            if isinstance(piece, bytes):
                out.append(piece)
            elif isinstance(piece, int):
                out.append(values[piece])
            else:
                out.append(piece.render(values))
        return b"".join(out)

    def _values(self, links: Links) -> list[bytes]:
        """What goes into each slot for ``links``."""
        clicks: dict[str, str] = {}
        values: list[bytes] = []
        for placed in self.slots:
            slot = placed.slot
            url: str | None = None
            if slot.kind is SlotKind.CLICK and links.click is not None:
                found = slot.target
                url = clicks.get(found) or clicks.setdefault(found, links.click(found))
            elif slot.kind is SlotKind.UNSUBSCRIBE:
                url = links.unsubscribe
            elif slot.kind is SlotKind.OPEN and links.open is not None:
                url = links.open
                values.append(f"{PIXEL[0]}{html.escape(url)}{PIXEL[1]}".encode(placed.codec))
                continue
            if url is None:
                values.append(placed.original)
            else:
                values.append((_escaped(url) if placed.html else url).encode(placed.codec))
        return values


def _escaped(url: str) -> str:
    """``url`` as an attribute value (``html.escape``; our URLs seldom need it)."""
    if "&" in url or '"' in url or "'" in url or "<" in url or ">" in url:
        return html.escape(url)
    return url


PART_PLANS_SIZE: Final = 32

PartPlan = tuple[tuple["bytes | int | Encoded", ...], tuple[PlacedSlot, ...]] | None
"""A part's pieces (slot indexes from 0) and slots; None to leave the part alone."""


class PartPlans:
    """The plans of the latest ``size`` text parts, by their octets and how to read them."""

    def __init__(self, size: int = PART_PLANS_SIZE) -> None:
        self._size = size
        self._plans: OrderedDict[tuple[bytes, str, str, bool], PartPlan] = OrderedDict()
        self.made = 0
        """How many part plans were made (a miss makes one)."""

    def get(self, raw: bytes, part: TextPart) -> PartPlan:
        key = (raw, part.encoding, part.codec, part.html)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        made = self._plans[key] = _part_plan(raw, part)
        self.made += 1
        if len(self._plans) > self._size:
            self._plans.popitem(last=False)
        return made


def plan(body: bytes, parts: PartPlans | None = None) -> Plan:
    """The rewriting plan of a submission's body (its parts' plans from ``parts``)."""
    headers = UnsubscribeHeaders.of(body)
    end = len(headers.block) if headers is not None else len(body)
    pieces: list[bytes | int | Encoded] = []
    slots: list[PlacedSlot] = []
    pos = end
    for part in text_parts(body) if headers is not None else []:
        raw = body[part.start : part.end]
        planned = parts.get(raw, part) if parts is not None else _part_plan(raw, part)
        if planned is not None:
            _extend(pieces, (body[pos : part.start],))
            _extend(pieces, _shifted(planned[0], len(slots)))
            slots += planned[1]
            pos = part.end
    _extend(pieces, (body[pos:],))
    return Plan(body, headers, end, tuple(pieces), tuple(slots))


def _part_plan(raw: bytes, part: TextPart) -> PartPlan:
    """The pieces and slots of one text part, its slots numbered from 0."""
    added: list[PlacedSlot] = []
    pieces: Sequence[bytes | int | Encoded] | None
    try:
        if part.encoding == QUOTED_PRINTABLE:
            pieces = _quoted_printable(raw, part, 0, added)
        elif part.encoding == BASE64:
            pieces = _base64(raw, part, 0, added)
        else:
            pieces = _literal(raw.decode(part.codec), 0, raw, part, 0, added)
    except UnicodeError:
        return None
    if pieces is None or not added:
        return None
    return tuple(_joined(list(pieces))), tuple(added)


def _shifted(pieces: Sequence[bytes | int | Encoded], base: int) -> list[bytes | int | Encoded]:
    """``pieces`` with their slot indexes moved up by ``base``."""
    if base == 0:
        return list(pieces)
    shifted: list[bytes | int | Encoded] = []
    for piece in pieces:
        if isinstance(piece, int):
            shifted.append(piece + base)
        elif isinstance(piece, Encoded):
            inner = tuple(p + base if isinstance(p, int) else p for p in piece.pieces)
            shifted.append(dataclasses.replace(piece, pieces=inner))
        else:
            shifted.append(piece)
    return shifted


def _literal(
    text: str, offset: int, expected: bytes, part: TextPart, base: int, added: list[PlacedSlot]
) -> list[bytes | int] | None:
    """``text`` (at ``offset`` of its part's text) as encoded literals and slots; None
    unless the literals and the slots' originals give back ``expected``."""
    scan = html_slots if part.html else text_slots
    return _split(text, offset, scan(text), expected, part, base, added)


def _split(
    text: str,
    offset: int,
    found: Sequence[Slot],
    expected: bytes,
    part: TextPart,
    base: int,
    added: list[PlacedSlot],
) -> list[bytes | int] | None:
    pieces: list[bytes | int] = []
    pos = 0
    for slot in found:
        start, end = slot.start - offset, slot.end - offset
        original = text[start:end].encode(part.codec)
        pieces += [text[pos:start].encode(part.codec), base + len(added)]
        added.append(PlacedSlot(slot, part.html, part.codec, original))
        pos = end
    pieces.append(text[pos:].encode(part.codec))
    originals = (p if isinstance(p, bytes) else added[p - base].original for p in pieces)
    return pieces if b"".join(originals) == expected else None


def _base64(
    raw: bytes, part: TextPart, base: int, added: list[PlacedSlot]
) -> list[bytes | int | Encoded] | None:
    data = decode_base64(raw)
    if data is None:
        return None
    pieces = _literal(data.decode(part.codec), 0, data, part, base, added)
    if pieces is None:
        return None
    trailing = b"\r\n" if raw.endswith(b"\r\n") else b""
    run = Encoded(
        tuple(pieces),
        encode_base64,
        raw[: len(raw) - len(trailing)],
        _submitted(pieces, added, base),
    )
    return [run, trailing]


def _quoted_printable(
    raw: bytes, part: TextPart, base: int, added: list[PlacedSlot]
) -> list[bytes | int | Encoded] | None:
    """The logical lines of a quoted-printable part: as submitted where no slot is,
    encoded again where one is (a slot across hard lines takes them together)."""
    encoded = logical_lines(raw)
    decoded = [decode_quoted_printable(line) for line in encoded]
    texts = [line.decode(part.codec) for line in decoded]
    starts = [0]
    for hard in texts[:-1]:
        starts.append(starts[-1] + len(hard) + 2)
    text = "\r\n".join(texts)
    scan = html_slots if part.html else text_slots
    runs: list[tuple[int, list[int], list[Slot]]] = []
    for slot in scan(text):
        first = bisect.bisect_right(starts, slot.start) - 1
        last = bisect.bisect_right(starts, max(slot.start, slot.end - 1)) - 1
        if runs and first <= runs[-1][1][0]:
            runs[-1][1][0] = max(runs[-1][1][0], last)
            runs[-1][2].append(slot)
        else:
            runs.append((first, [last], [slot]))
    pieces: list[bytes | int | Encoded] = []
    line = 0
    for first, [last], inside in runs:
        pieces.append(b"".join(hard + b"\r\n" for hard in encoded[line:first]))
        run_text = "\r\n".join(texts[first : last + 1])
        expected = b"\r\n".join(decoded[first : last + 1])
        split = _split(run_text, starts[first], inside, expected, part, base, added)
        if split is None:
            return None
        original = b"\r\n".join(encoded[first : last + 1])
        submitted = _submitted(split, added, base)
        splice = _splice(split)
        pieces.append(Encoded(tuple(split), encode_quoted_printable, original, submitted, splice))
        line = last + 1
        if line < len(encoded):
            pieces.append(b"\r\n")
    pieces.append(b"\r\n".join(encoded[line:]))
    return pieces


def _splice(pieces: Sequence[bytes | int]) -> QuotedPrintableSplice | None:
    """The splice of a quoted-printable run that is one hard line around one slot."""
    if len(pieces) != 3 or not isinstance(pieces[0], bytes) or not isinstance(pieces[2], bytes):
        return None
    try:
        return QuotedPrintableSplice(pieces[0], pieces[2])
    except ValueError:
        return None


def _submitted(
    pieces: Sequence[bytes | int], added: Sequence[PlacedSlot], base: int
) -> tuple[bytes, ...]:
    """``pieces`` (slot ``base + i`` is ``added[i]``) with the slots' originals in place."""
    return tuple(added[p - base].original if isinstance(p, int) else p for p in pieces)


def _extend(pieces: list[bytes | int | Encoded], more: Sequence[bytes | int | Encoded]) -> None:
    """Add ``more`` (joined already, see ``_joined``) to ``pieces``, keeping them joined."""
    if more and isinstance(more[0], bytes):
        if pieces and isinstance(pieces[-1], bytes):
            pieces[-1] += more[0]
            more = more[1:]
        elif not more[0]:
            more = more[1:]
    pieces.extend(more)


def _joined(pieces: list[bytes | int | Encoded]) -> list[bytes | int | Encoded]:
    """``pieces`` with adjacent octets joined and empty ones dropped."""
    joined: list[bytes | int | Encoded] = []
    for piece in pieces:
        if isinstance(piece, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += piece
        elif not isinstance(piece, bytes) or piece:
            joined.append(piece)
    return joined
