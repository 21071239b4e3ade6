"""Delivery outcomes: results as values, not exceptions.

An attempt ends in an ``Outcome`` per recipient: its kind (delivered,
transient, permanent), its scope (what the failure concerns: the session,
the whole site, the message, or just this recipient; Postfix
``smtp_trouble.c``), the reply it rests on and its bounce classification.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OutcomeKind(enum.StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


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


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """A reply received from a remote server (or synthesised for a local failure)."""

    code: int
    enhanced: str | None
    text: str
    command: str | None = None

    def __str__(self) -> str:
        middle = f" {self.enhanced}" if self.enhanced else ""
        return f"{self.code}{middle} {self.text}"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    scope: Scope
    reply: SmtpReply
    classification: str
    """A bounce category name (``engine.delivery.bounce_classify``), e.g. InvalidRecipient."""
