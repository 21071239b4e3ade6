"""Inbound mail as receivers send it back: DSNs, ARF and JMRP complaints, auto-replies.

Owns small builders of the raw bytes (CRLF line endings) that a receiving
MTA or a feedback loop sends to a return path or a feedback address, in the
shapes of RFC 3464 (``dsn``), RFC 5965 (``arf``), Microsoft JMRP (``jmrp``),
a plain-text bounce naming no recipient (``plain_bounce``), an
out-of-office reply (``auto_reply``) and a person writing (``personal``).
The returned original message is given as its header lines, or whole
(``original``), so a test puts our ``X-Penguin-Ref`` header where a real
report carries it. No I/O.
"""

from __future__ import annotations

CRLF = "\r\n"
REPORTING_MTA = "mx.example.org"


def _lines(*lines: str) -> bytes:
    return CRLF.join(lines).encode()


def original_headers(reference: str = "", sender: str = "hello@acme.test", *extra: str) -> str:
    """The header section of a returned original message (no trailing empty line)."""
    fields = [f"From: {sender}", "To: someone@example.org", "Subject: Our news"]
    fields += [f"X-Penguin-Ref: {reference}"] if reference else []
    return CRLF.join([*extra, *fields])


def dsn(
    recipient: str | None,
    action: str,
    status: str,
    diagnostic: str,
    *,
    to: str = "",
    original: str = "",
) -> bytes:
    """An RFC 3464 ``multipart/report`` for one recipient; ``recipient=None`` leaves out
    ``Final-Recipient`` (a receiver that names no recipient); ``original`` is the
    returned header section (``text/rfc822-headers``)."""
    final = [] if recipient is None else [f"Final-Recipient: rfc822; {recipient}"]
    return _lines(
        f"From: Mail Delivery System <MAILER-DAEMON@{REPORTING_MTA}>",
        f"To: {to or 'postmaster@example.org'}",
        "Subject: Undelivered Mail Returned to Sender",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-1"',
        "",
        "--dsn-1",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Your message could not be delivered to one or more recipients.",
        "",
        "--dsn-1",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {REPORTING_MTA}",
        "",
        *final,
        f"Action: {action}",
        f"Status: {status}",
        f"Remote-MTA: dns; {REPORTING_MTA}",
        f"Diagnostic-Code: smtp; {diagnostic}",
        "",
        "--dsn-1",
        "Content-Type: text/rfc822-headers",
        "",
        original or original_headers(),
        "",
        "--dsn-1--",
        "",
    )


def plain_bounce(reason: str, *, to: str = "", original: str = "") -> bytes:
    """A mail filter's plain-text bounce that names no recipient, only ``reason``."""
    return _lines(
        "From: postmaster@filter.example.org",
        f"To: {to or 'postmaster@example.org'}",
        "Subject: Undeliverable message",
        "",
        "Your message was rejected by the recipient's mail server and has been",
        "returned to you.",
        "",
        f"Reason: {reason}",
        "",
        "------ Original message follows ------",
        "",
        original or original_headers(),
        "",
        "Hello.",
        "",
    )


def arf(
    original: str,
    *,
    feedback_type: str = "abuse",
    rcpt_to: str = "",
    to: str = "fbl@example.org",
) -> bytes:
    """An RFC 5965 feedback report with the original message ``original`` (whole, as
    received) attached; ``rcpt_to`` empty means a redacted recipient."""
    rcpt = [f"Original-Rcpt-To: <{rcpt_to}>"] if rcpt_to else []
    return _lines(
        "From: Feedback Loop <feedback@feedback.example.net>",
        f"To: {to}",
        "Subject: FW: Our news",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=feedback-report; boundary="arf-1"',
        "",
        "--arf-1",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is an email abuse report for an email message received from IP 192.0.2.1.",
        "",
        "--arf-1",
        "Content-Type: message/feedback-report",
        "",
        f"Feedback-Type: {feedback_type}",
        "User-Agent: ExampleFBL/1.0",
        "Version: 1",
        *rcpt,
        "Source-IP: 192.0.2.1",
        "Reporting-MTA: dns; feedback.example.net",
        "",
        "--arf-1",
        "Content-Type: message/rfc822",
        "Content-Disposition: inline",
        "",
        original.replace("\r\n", "\n").replace("\n", CRLF).rstrip(CRLF),
        "",
        "--arf-1--",
        "",
    )


def jmrp(recipient: str, reference: str, *, to: str = "fbl@example.org") -> bytes:
    """A Microsoft JMRP complaint: the recipient only in ``X-HmXmrOriginalRecipient``."""
    headers = original_headers(
        reference, "hello@acme.test", f"X-HmXmrOriginalRecipient: <{recipient}>"
    )
    return _lines(
        "From: staff@hotmail.com",
        f"To: {to}",
        "Subject: complaint about message from 192.0.2.1",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="jmrp-1"',
        "",
        "--jmrp-1",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is an email abuse report for an email message received from IP 192.0.2.1.",
        "",
        "--jmrp-1",
        "Content-Type: message/rfc822",
        "Content-Disposition: inline",
        "",
        headers,
        "",
        "Hello.",
        "--jmrp-1--",
        "",
    )


def auto_reply(sender: str, *, to: str = "") -> bytes:
    """An out-of-office reply from ``sender``."""
    return _lines(
        f"From: {sender}",
        f"To: {to or 'postmaster@example.org'}",
        "Subject: Out of office",
        "Auto-Submitted: auto-replied",
        "",
        "I am away until Monday and will read your message when I am back.",
        "",
    )


def personal(sender: str, *, to: str = "", subject: str = "failure") -> bytes:
    """A person writing to a bounce address: neither a bounce nor a complaint."""
    return _lines(
        f"From: {sender}",
        f"To: {to or 'postmaster@example.org'}",
        f"Subject: {subject}",
        "",
        "Why do you write to me?",
        "",
    )
