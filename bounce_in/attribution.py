"""Which of our messages, and which recipient, an inbound report is about.

The intake finds the candidate messages (the one a return-path token names,
or every message of the submission our ``X-Penguin-Ref`` header names); this
module pairs them with what the report says. A DSN's recipient statuses
match a candidate by final or original recipient; a single candidate takes
the report's status even when the DSN names no recipient or another form of
it (a forwarded address). A complaint names its recipient in
``Original-Rcpt-To`` or Microsoft JMRP's ``X-HmXmrOriginalRecipient``;
redacted, it is resolved only when one candidate remains. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bounce_in.report import Action, BounceReport, RecipientStatus, ReportKind
from engine.model import QueuedMessage
from engine.return_path import REFERENCE_HEADER

JMRP_RECIPIENT = "X-HmXmrOriginalRecipient"


@dataclass(frozen=True, slots=True)
class Match:
    """One candidate message and the status the report gives it (None: no status)."""

    message: QueuedMessage
    status: RecipientStatus | None


def local_part(address: str) -> str:
    """The local part of ``address`` (``""`` for the null address)."""
    return address.rpartition("@")[0] if "@" in address else ""


def reference(report: BounceReport) -> str | None:
    """The value of our ``X-Penguin-Ref`` header in the returned original, if any."""
    if report.original is None:
        return None
    value = report.original.header(REFERENCE_HEADER)
    return value.strip() if value else None


def returned_path(report: BounceReport) -> str | None:
    """The local part of the returned original's ``Return-Path`` (the receiver wrote our
    return path there on delivery: complaints carry it), if any."""
    if report.original is None:
        return None
    value = report.original.header("Return-Path")
    if not value:
        return None
    return local_part(value.strip().strip("<>").strip()) or None


def match(report: BounceReport, candidates: Sequence[QueuedMessage]) -> list[Match]:
    """The candidates the report is about, each with its status; empty when none can be
    told apart (a redacted complaint about a submission of several recipients)."""
    if not candidates:
        return []
    if report.kind is ReportKind.DSN:
        return _dsn(report.recipients, candidates)
    if report.kind is ReportKind.FEEDBACK:
        named = complaint_recipient(report)
        found = [m for m in candidates if named and m.recipient.lower() == named]
        if found:
            return [Match(found[0], None)]
    return [Match(candidates[0], None)] if len(candidates) == 1 else []


def complaint_recipient(report: BounceReport) -> str:
    """The complained-about recipient a feedback report names, lower-cased; ``""``."""
    named = report.feedback.original_rcpt_to if report.feedback else ""
    if not named and report.original is not None:
        named = report.original.header(JMRP_RECIPIENT) or ""
    return named.strip().strip("<>").lower()


def _dsn(statuses: Sequence[RecipientStatus], candidates: Sequence[QueuedMessage]) -> list[Match]:
    matches: dict[str, Match] = {}
    by_address = {m.recipient.lower(): m for m in candidates}
    for status in statuses:
        for address in (status.address, status.original_recipient):
            message = by_address.get(address.strip("<>").lower()) if address else None
            if message is not None and message.id not in matches:
                matches[message.id] = Match(message, status)
                break
    if not matches and len(candidates) == 1:
        matches[candidates[0].id] = Match(candidates[0], _most_telling(statuses))
    return list(matches.values())


def _most_telling(statuses: Sequence[RecipientStatus]) -> RecipientStatus | None:
    """A failed status before a delayed one before any other."""
    order = {Action.FAILED: 0, Action.DELAYED: 1}
    ranked = sorted(statuses, key=lambda s: order.get(s.action, 2))
    return ranked[0] if ranked else None
