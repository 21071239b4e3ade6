"""Feedback reports (complaints): RFC 5965 ARF and Microsoft's JMRP.

In: a message's MIME tree. Out: a :class:`~bounce_in.report.FeedbackReport`
or ``None``.

An ARF report (RFC 5965 §2) is a ``multipart/report;
report-type=feedback-report`` whose second part, ``message/feedback-report``,
holds ``Feedback-Type`` (abuse, fraud, virus, other; auth-failure RFC 6591;
not-spam RFC 6430), ``User-Agent``, ``Version``, ``Original-Mail-From``,
``Original-Rcpt-To``, ``Arrival-Date`` (or the older ``Received-Date``),
``Source-IP``, ``Reported-Domain`` and ``Reporting-MTA``; the third part is
the message complained about. An unregistered feedback type is read as
``other``. Microsoft's Junk Mail Reporting Program has also sent reports
without the feedback part: a ``multipart`` whose returned message carries
``X-HmXmrOriginalRecipient`` (the complaining recipient). Pure.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

from bounce_in.parsing.mime import Part, decoded_body, normalize, read_fields
from bounce_in.parsing.original import RETURNED_TYPES
from bounce_in.parsing.status import clean_address
from bounce_in.report import FeedbackReport, OriginalMessage

FEEDBACK_TYPES: Final = frozenset({"abuse", "fraud", "virus", "auth-failure", "not-spam", "other"})
JMRP_RECIPIENT: Final = "x-hmxmroriginalrecipient"
_JMRP_AGENT: Final = "Microsoft JMRP"
_IP = re.compile(r"[0-9A-Fa-f:.]{3,45}")


def feedback_part(message: Part) -> Part | None:
    """The ``message/feedback-report`` part, if any."""
    for part in message.walk():
        if part.content_type == "message/feedback-report":
            return part
    return None


def read_feedback(part: Part) -> FeedbackReport:
    """The fields of a ``message/feedback-report`` part."""
    fields = read_fields(normalize(decoded_body(part)).strip(b"\n") + b"\n")

    def first(name: str) -> str:
        return next((value.strip() for key, value in fields if key == name), "")

    kind = first("feedback-type").lower()
    source = _IP.search(first("source-ip"))
    return FeedbackReport(
        feedback_type=kind if kind in FEEDBACK_TYPES else "other",
        user_agent=first("user-agent"),
        version=first("version"),
        original_mail_from=clean_address(first("original-mail-from")),
        original_rcpt_to=clean_address(first("original-rcpt-to")),
        arrival_date=first("arrival-date") or first("received-date"),
        source_ip=source[0] if source else "",
        reported_domain=first("reported-domain"),
        reporting_mta=_typed(first("reporting-mta")),
    )


def with_jmrp_recipient(report: FeedbackReport, original: OriginalMessage | None) -> FeedbackReport:
    """``report`` with the recipient Microsoft names in the returned message, if it lacks one."""
    if report.original_rcpt_to or original is None:
        return report
    recipient = original.header(JMRP_RECIPIENT)
    if not recipient:
        return report
    return dataclasses.replace(report, original_rcpt_to=clean_address(recipient))


def jmrp_feedback(message: Part, original: OriginalMessage | None) -> FeedbackReport | None:
    """A JMRP report without a feedback part: the returned message names the recipient."""
    if original is None or not any(p.content_type in RETURNED_TYPES for p in message.walk()):
        return None
    recipient = original.header(JMRP_RECIPIENT)
    if recipient is None:
        return None
    return FeedbackReport(
        feedback_type="abuse",
        user_agent=_JMRP_AGENT,
        original_rcpt_to=clean_address(recipient),
        original_mail_from=clean_address(original.header("X-HmXmrOriginalSender") or ""),
    )


def _typed(value: str) -> str:
    kind, semicolon, rest = value.partition(";")
    return rest.strip() if semicolon and " " not in kind.strip() else value
