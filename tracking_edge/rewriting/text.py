"""The links of a plain-text part: its bare http(s) URLs, and the unsubscribe placeholder.

In: the decoded text of a ``text/plain`` part. Out: its slots, in text order.

A URL starts at ``http://`` or ``https://`` (any case) and runs to the first
white space, ``<``, ``>`` or ``"``; then trailing punctuation that ends a
sentence rather than the URL is given back: ``.,;:!?'`` and a closing
``)`` or ``]`` that has no opening one inside the URL ("see
(https://x.test/a)."). A URL written as ``<https://...>`` ends at its ``>``.
``{{unsubscribe_url}}`` is where the recipient's unsubscribe URL goes. Plain
text has no pixel. Everything else is left exactly as it is.

Pure: text in, slots out.
"""

from __future__ import annotations

import re
from typing import Final

from tracking_edge.rewriting.slots import UNSUBSCRIBE_PLACEHOLDER, Slot, SlotKind

_URL: Final = re.compile(r"https?://[^\s<>\"]+|" + re.escape(UNSUBSCRIBE_PLACEHOLDER), re.I)
_TRAILING: Final = ".,;:!?'"
_PAIRS: Final = {")": "(", "]": "["}


def text_slots(text: str) -> list[Slot]:
    """The slots of a plain-text part, in text order (see the module docstring)."""
    slots: list[Slot] = []
    for match in _URL.finditer(text):
        url = match.group()
        if url == UNSUBSCRIBE_PLACEHOLDER:
            slots.append(Slot(match.start(), match.end(), SlotKind.UNSUBSCRIBE))
            continue
        url = _trimmed(url)
        if len(url) > url.index("//") + 2:
            slots.append(Slot(match.start(), match.start() + len(url), SlotKind.CLICK, url))
    return slots


def _trimmed(url: str) -> str:
    """``url`` without the punctuation that ends the sentence around it."""
    while url:
        last = url[-1]
        if last in _TRAILING or (last in _PAIRS and url.count(last) > url.count(_PAIRS[last])):
            url = url[:-1]
        else:
            break
    return url
