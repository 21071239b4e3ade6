"""The List-Unsubscribe fields of a tracked message (RFC 2369 §3.2, RFC 8058).

In: the header section of a submission. Out: a :class:`UnsubscribeHeaders`
that gives each recipient's header section: with unsubscribe tracking on,
``List-Unsubscribe: <https://.../u/TOKEN>`` (followed by the tenant's own
``mailto:`` URI when its List-Unsubscribe had one: one field, both URIs)
and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, first in the
section, in place of the tenant's fields of those names; with it off, the
header section as it was (a tenant's own List-Unsubscribe is kept).

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from engine.header_section import MalformedHeader, header_end, parse_header_section

LIST_UNSUBSCRIBE: Final = b"list-unsubscribe"
LIST_UNSUBSCRIBE_POST: Final = b"list-unsubscribe-post"
ONE_CLICK: Final = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
_MAILTO: Final = re.compile(rb"<\s*(mailto:[^>\s]+)\s*>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UnsubscribeHeaders:
    """The header section of a submission, and what one-click unsubscribe makes of it."""

    block: bytes
    """The header section as submitted (up to the empty line, not including it)."""
    kept: bytes
    """The header section without its List-Unsubscribe and List-Unsubscribe-Post fields."""
    mailto: bytes | None
    """The tenant's ``mailto:`` URI from its List-Unsubscribe, if any."""

    @classmethod
    def of(cls, message: bytes) -> UnsubscribeHeaders | None:
        """The header section of ``message``; None when it is malformed."""
        try:
            section = parse_header_section(message)
        except MalformedHeader:
            return None
        block = message[: header_end(message)[0]]
        kept: list[bytes] = []
        mailto: bytes | None = None
        for field in section.fields():
            name = field.name.lower()
            if name == LIST_UNSUBSCRIBE and mailto is None:
                found = _MAILTO.search(field.value)
                mailto = found.group(1) if found else None
            if name not in (LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST):
                kept.append(block[field.start : field.end])
        return cls(block, b"".join(kept), mailto)

    def render(self, unsubscribe_url: str | None) -> bytes:
        """The header section of one copy: with ``unsubscribe_url`` in List-Unsubscribe,
        or as submitted when it is None (unsubscribe tracking off)."""
        if unsubscribe_url is None:
            return self.block
        field = b"List-Unsubscribe: <" + unsubscribe_url.encode("ascii") + b">"
        if self.mailto is not None:
            field += b",\r\n <" + self.mailto + b">"
        return field + b"\r\n" + ONE_CLICK + self.kept
