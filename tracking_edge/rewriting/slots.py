"""The places in a part's text where tracking puts its URLs: the slots.

A slot is a span of the decoded text of one text part: the value of a link's
``href`` (a click, or the unsubscribe link), a bare URL in plain text, or an
empty span where the open pixel goes. The HTML and plain-text scanners find
them once per submission; each recipient's copy replaces them with that
recipient's URLs.

Pure: values only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

UNSUBSCRIBE_PLACEHOLDER: Final = "{{unsubscribe_url}}"
"""What a tenant writes where the recipient's unsubscribe URL goes (an ``href`` value
or plain text)."""


class SlotKind(enum.Enum):
    """What goes into a slot."""

    CLICK = "click"
    """A tracked link: the click URL that redirects to ``Slot.target``."""
    UNSUBSCRIBE = "unsubscribe"
    """The recipient's unsubscribe URL."""
    OPEN = "open"
    """The open pixel, inserted (the slot's span is empty)."""


@dataclass(frozen=True, slots=True)
class Slot:
    """The span ``[start, end)`` of a part's text that one URL replaces."""

    start: int
    end: int
    kind: SlotKind
    target: str = ""
    """The link's target (for a click); empty otherwise."""
