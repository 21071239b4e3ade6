"""What the engine understands of one inbound bounce or complaint.

Owns the parsers' result types: a :class:`BounceReport` says what kind of
mail arrived (a delivery status notification, a feedback report, an
auto-reply, or none of these) and, per recipient it names, the status,
action, category, diagnostic text and remote MTA. ``penguin bounce parse
--json`` prints :meth:`BounceReport.to_json`. Pure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class ReportKind(enum.StrEnum):
    """What an inbound message is."""

    DSN = "dsn"
    """A delivery status notification: RFC 3464 or a non-standard bounce."""
    FEEDBACK = "feedback"
    """A complaint: an RFC 5965 feedback report (ARF) or a provider's own."""
    AUTO_REPLY = "auto_reply"
    """Vacation, out-of-office or challenge-response mail: not a bounce."""
    OTHER = "other"
    """Mail that is none of the above (a person writing to the bounce address)."""


class Action(enum.StrEnum):
    """RFC 3464 §2.3.3 ``Action``."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One recipient a DSN reports on."""

    address: str
    """The final recipient, lower-cased domain; ``""`` when the DSN names none
    and no token or header of ours supplies it."""
    action: Action
    status: str
    """The enhanced status code, e.g. ``"5.1.1"``; ``""`` when none can be told."""
    category: str
    """The bounce category (``engine.delivery.bounce_classify.Category`` value)."""
    diagnostic: str = ""
    """The remote server's reply text (``Diagnostic-Code`` without its type)."""
    remote_mta: str = ""
    original_recipient: str = ""
    smtp_code: int | None = None
    """The basic reply code found in the diagnostic (``550``), if any."""


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    """The fields of an RFC 5965 feedback report (or a provider's equivalent)."""

    feedback_type: str
    """``abuse``, ``fraud``, ``virus``, ``auth-failure``, ``not-spam`` or ``other``."""
    user_agent: str = ""
    version: str = ""
    original_mail_from: str = ""
    original_rcpt_to: str = ""
    arrival_date: str = ""
    source_ip: str = ""
    reported_domain: str = ""
    reporting_mta: str = ""


@dataclass(frozen=True, slots=True)
class OriginalMessage:
    """What a report returns of the message it is about (often headers only)."""

    headers: tuple[tuple[str, str], ...] = ()
    """Header fields in order, names as written, values unfolded."""
    message_id: str = ""
    """Its ``Message-ID`` without angle brackets."""

    def header(self, name: str) -> str | None:
        """The first field called ``name`` (any case), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class BounceReport:
    """One parsed inbound message."""

    kind: ReportKind
    recipients: tuple[RecipientStatus, ...] = ()
    feedback: FeedbackReport | None = None
    original: OriginalMessage | None = None
    reporting_mta: str = ""
    subject: str = ""
    notes: tuple[str, ...] = field(default=())
    """How the parser read it, e.g. ``"rfc3464"``, ``"exim"``, ``"arf"``."""

    @property
    def failed(self) -> tuple[RecipientStatus, ...]:
        """The recipients whose delivery failed for good."""
        return tuple(r for r in self.recipients if r.action is Action.FAILED)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape ``penguin bounce parse --json`` prints (see the README)."""
        return {
            "kind": self.kind.value,
            "recipients": [
                {
                    "address": r.address,
                    "action": r.action.value,
                    "status": r.status,
                    "category": r.category,
                    "diagnostic": r.diagnostic,
                    "remote_mta": r.remote_mta,
                    "original_recipient": r.original_recipient,
                    "smtp_code": r.smtp_code,
                }
                for r in self.recipients
            ],
            "feedback": (
                None
                if self.feedback is None
                else {
                    "feedback_type": self.feedback.feedback_type,
                    "user_agent": self.feedback.user_agent,
                    "version": self.feedback.version,
                    "original_mail_from": self.feedback.original_mail_from,
                    "original_rcpt_to": self.feedback.original_rcpt_to,
                    "arrival_date": self.feedback.arrival_date,
                    "source_ip": self.feedback.source_ip,
                    "reported_domain": self.feedback.reported_domain,
                    "reporting_mta": self.feedback.reporting_mta,
                }
            ),
            "original_message_id": None if self.original is None else self.original.message_id,
            "reporting_mta": self.reporting_mta,
            "subject": self.subject,
            "notes": list(self.notes),
        }
