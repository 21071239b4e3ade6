"""The links of an HTML part and where its open pixel goes: a tokenizer, not a regex.

In: the decoded text of a ``text/html`` part. Out: its slots
(``tracking_edge.rewriting.slots``), in text order: the exact source span of
each tracked link's ``href`` value (inside its quotes, if any) and the
position of the open pixel. Nothing else is touched, so every other
character round-trips.

The scanner follows the HTML tokenizer (WHATWG HTML §13.2.5) as far as
links need it: start tags with double-quoted, single-quoted and unquoted
attributes (names and tag names in any case), end tags, comments, bogus
comments and doctypes (``<!...>``), and the raw text of ``script``,
``style``, ``title``, ``textarea`` and the like, whose ``<a`` are not tags.
An ``href`` value is read with its character references decoded
(``&amp;`` is ``&``, ``&#38;`` too); only the first ``href`` of a tag counts.

Which links are tracked:

* ``href`` of ``<a>`` and ``<area>`` (image maps are links too), and of VML
  shapes (``<v:roundrect href=...>``, the "bulletproof buttons" of Outlook);
* only absolute ``http:``/``https:`` URLs: ``mailto:``, ``tel:``, ``#anchors``
  and relative links are left alone, with or without a ``<base href>``;
* not a link with the attribute ``data-pm-notrack`` or the class
  ``pm-notrack`` (the tenant's way to keep a link as written);
* the unsubscribe link, an ``href`` of ``{{unsubscribe_url}}`` or a link with
  ``data-pm-unsubscribe``, gets the recipient's unsubscribe URL instead.

Outlook conditional comments (``<!--[if mso]> ... <![endif]-->``) are
scanned as markup: Outlook renders what they hold, so their links are real
links (and the VML buttons live there); other clients skip them, so
rewriting them costs nothing. Plain comments are skipped.

The open pixel goes just before the last ``</body>`` end tag, or at the end
of the text when there is none.

Pure: text in, slots out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from tracking_edge.rewriting.slots import UNSUBSCRIBE_PLACEHOLDER, Slot, SlotKind

SKIP_ATTRIBUTE: Final = "data-pm-notrack"
SKIP_CLASS: Final = "pm-notrack"
UNSUBSCRIBE_ATTRIBUTE: Final = "data-pm-unsubscribe"

_SPACE: Final = "\t\n\f\r "
_SEPARATORS: Final = re.compile(r"[\t\n\f\r /]*")
_TAG_NAME: Final = re.compile(r"[a-zA-Z][^\t\n\f\r />]*")
_ATTR_NAME: Final = re.compile(r"[^\t\n\f\r />][^\t\n\f\r />=]*")
_EQUALS: Final = re.compile(r"[\t\n\f\r ]*=[\t\n\f\r ]*")
_UNQUOTED: Final = re.compile(r"[^\t\n\f\r >]*")
_CONDITIONAL: Final = re.compile(r"<!--\[if[^\]]*\]>", re.IGNORECASE)
_HTTP: Final = re.compile(r"https?://", re.IGNORECASE)
_RAW_TEXT: Final = frozenset(
    {"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes"}
)
_LINK_TAGS: Final = frozenset({"a", "area"})


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute of a start tag; ``value`` is its source text (None when absent),
    at ``[start, end)`` of the document."""

    name: str
    value: str | None
    start: int
    end: int


class _Unterminated(Exception):
    """The document ends inside a tag: what is left is no markup."""


def html_slots(text: str) -> list[Slot]:
    """The slots of an HTML document, in text order (see the module docstring)."""
    slots: list[Slot] = []
    body_end = -1
    for name, attributes, start in _tags(text):
        if name == "/body":
            body_end = start
        elif name in _LINK_TAGS or name.startswith("v:"):
            slot = _link_slot(attributes)
            if slot is not None:
                slots.append(slot)
    pixel = len(text) if body_end < 0 else body_end
    slots.append(Slot(pixel, pixel, SlotKind.OPEN))
    slots.sort(key=lambda slot: slot.start)
    return slots


def _link_slot(attributes: list[Attribute]) -> Slot | None:
    names = {attribute.name for attribute in attributes}
    href = next((a for a in attributes if a.name == "href" and a.value is not None), None)
    if href is None or href.value is None:
        return None
    url = html.unescape(href.value).strip(_SPACE)
    if UNSUBSCRIBE_ATTRIBUTE in names or url == UNSUBSCRIBE_PLACEHOLDER:
        return Slot(href.start, href.end, SlotKind.UNSUBSCRIBE)
    classes = next((a.value for a in attributes if a.name == "class"), None) or ""
    if SKIP_ATTRIBUTE in names or SKIP_CLASS in html.unescape(classes).split():
        return None
    if not _HTTP.match(url):
        return None
    return Slot(href.start, href.end, SlotKind.CLICK, url)


def _tags(text: str) -> Iterator[tuple[str, list[Attribute], int]]:
    """(lower-case name, attributes, offset of ``<``) of each tag; end tags are
    named ``/name`` with no attributes."""
    pos = 0
    try:
        while (pos := text.find("<", pos)) >= 0:
            if text.startswith("<!", pos):
                pos = _skip_declaration(text, pos)
            elif text.startswith("</", pos) and (match := _TAG_NAME.match(text, pos + 2)):
                end = text.find(">", match.end())
                if end < 0:
                    return
                yield "/" + match.group().lower(), [], pos
                pos = end + 1
            elif match := _TAG_NAME.match(text, pos + 1):
                name = match.group().lower()
                attributes, pos = _attributes(text, match.end())
                yield name, attributes, match.start() - 1
                if name in _RAW_TEXT:
                    pos = _skip_raw_text(text, pos, name)
            else:
                pos += 1
    except _Unterminated:
        return


def _attributes(text: str, pos: int) -> tuple[list[Attribute], int]:
    """The attributes of a start tag from ``pos`` (after its name), and the offset past
    its ``>``."""
    attributes: list[Attribute] = []
    while True:
        pos = _SEPARATORS.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= len(text):
            raise _Unterminated
        if text[pos] == ">":
            return attributes, pos + 1
        name = _ATTR_NAME.match(text, pos)
        assert name is not None  # any character but a separator or ">" starts a name
        pos = name.end()
        equals = _EQUALS.match(text, pos)
        if equals is None:
            attributes.append(Attribute(name.group().lower(), None, pos, pos))
            continue
        start, end, pos = _value(text, equals.end())
        attributes.append(Attribute(name.group().lower(), text[start:end], start, end))


def _value(text: str, pos: int) -> tuple[int, int, int]:
    """(start, end) of an attribute value at ``pos``, and the offset past it."""
    quote = text[pos : pos + 1]
    if quote in ('"', "'"):
        end = text.find(quote, pos + 1)
        if end < 0:
            raise _Unterminated
        return pos + 1, end, end + 1
    end = _UNQUOTED.match(text, pos).end()  # type: ignore[union-attr]
    return pos, end, end


def _skip_declaration(text: str, pos: int) -> int:
    """The offset past a comment, doctype or bogus comment at ``pos``; past only the
    opener of an Outlook conditional comment, whose content is markup."""
    if conditional := _CONDITIONAL.match(text, pos):
        return conditional.end()
    if text.startswith("<!--", pos):
        for empty in ("<!-->", "<!--->"):
            if text.startswith(empty, pos):
                return pos + len(empty)
        end = text.find("-->", pos + 4)
        if end < 0:
            raise _Unterminated
        return end + 3
    end = text.find(">", pos + 2)
    if end < 0:
        raise _Unterminated
    return end + 1


def _skip_raw_text(text: str, pos: int, name: str) -> int:
    """The offset of the end tag that closes the raw text element ``name``."""
    closing = re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE).search(text, pos)
    if closing is None:
        raise _Unterminated
    return closing.start()
