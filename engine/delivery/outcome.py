"""Delivery outcomes: results as values, not exceptions.

An attempt ends in an ``Outcome`` per recipient: its kind (delivered,
transient, permanent), its scope (what the failure concerns: the session,
the whole site, the message, or just this recipient; Postfix
``smtp_trouble.c``), the reply it rests on (an ``engine.smtp.reply.Reply``
with the stage it answers) and its bounce classification.
:func:`engine.delivery.reply_outcome.outcome_for_reply` makes one from a reply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from engine.smtp.reply import Reply


class OutcomeKind(enum.StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    DELAYED = "delayed"
    """Not attempted: our own limits (a connection slot, a throttle) held it back.
    No attempt is counted and no retry backoff applies."""


class Scope(enum.StrEnum):
    """What a failure says something about."""

    SESSION = "session"
    """This connection only (e.g. dropped mid-DATA): try again, maybe another host."""
    SITE = "site"
    """The destination as a whole (e.g. 421, all MX hosts unreachable)."""
    MESSAGE = "message"
    """This message's content or sender, for every recipient."""
    RECIPIENT = "recipient"
    """This recipient only."""


CONNECTION_SCOPES: Final = frozenset({Scope.SESSION, Scope.SITE})
"""Scopes of a failure that condemn the connection it came on: it is not used again."""


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    scope: Scope
    reply: Reply
    classification: str
    """A bounce category name (``engine.delivery.bounce_classify``), e.g. InvalidRecipient."""
