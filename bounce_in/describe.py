"""A parsed bounce or complaint as text for people: what ``penguin bounce parse`` prints.

In: a :class:`~bounce_in.report.BounceReport`. Out: a few lines saying what
kind of mail it is and, per recipient, the address, action, status,
category, diagnostic and remote MTA; for a complaint its feedback type and
complainant; for an auto-reply or other mail, that no recipient failed. Pure.
"""

from __future__ import annotations

from typing import Final

from bounce_in.report import BounceReport, FeedbackReport, RecipientStatus, ReportKind

_KINDS: Final = {
    ReportKind.DSN: "delivery status notification",
    ReportKind.FEEDBACK: "complaint (feedback report)",
    ReportKind.AUTO_REPLY: "auto-reply, not a bounce: no failed recipients",
    ReportKind.OTHER: "not a bounce or complaint: no failed recipients",
}


def describe_report(report: BounceReport) -> str:
    """The report in a few lines (see the module docstring)."""
    head = _KINDS[report.kind]
    if report.notes:
        head += f" [{', '.join(report.notes)}]"
    if report.reporting_mta:
        head += f", reported by {report.reporting_mta}"
    lines = [head]
    if report.subject:
        lines.append(f"subject: {report.subject}")
    if report.kind is ReportKind.DSN and not report.recipients:
        lines.append("no recipient named")
    lines += [line for r in report.recipients for line in _recipient(r)]
    if report.feedback is not None:
        lines += _feedback(report.feedback)
    if report.original is not None and report.original.message_id:
        lines.append(f"original message: <{report.original.message_id}>")
    return "\n".join(lines)


def _recipient(r: RecipientStatus) -> list[str]:
    lines = [f"  {r.address or '(none)'}  {r.action.value}  {r.status or '-'}  {r.category}"]
    if r.diagnostic:
        lines.append(f"    diagnostic: {r.diagnostic}")
    if r.remote_mta:
        lines.append(f"    remote MTA: {r.remote_mta}")
    return lines


def _feedback(f: FeedbackReport) -> list[str]:
    shown = [
        ("feedback type", f.feedback_type),
        ("recipient", f.original_rcpt_to),
        ("mail from", f.original_mail_from),
        ("user agent", f.user_agent),
        ("arrival date", f.arrival_date),
        ("source IP", f.source_ip),
        ("reported domain", f.reported_domain),
    ]
    return [f"  {name}: {value}" for name, value in shown if value]
