"""Reading inbound bounces and complaints: bytes in, a :class:`~bounce_in.report.BounceReport` out.

:func:`parse_report` tries, in order: an RFC 5965 feedback report
(``arf``), an RFC 3464 delivery-status part (``dsn``), a Microsoft JMRP
complaint, a plain-text bounce in a known shape (``plaintext``), an
auto-reply (``autoreply``); anything else is kind ``other``. Each
recipient's category is the engine's bounce classifier's, the same rules as
for in-session replies. Recipients are reported as the mail names them:
telling which message and recipient of ours a report is about (the return
path's token, our ``X-Penguin-Ref`` header in ``report.original``) is the
intake's work.

The modules: ``mime`` (walking the message), ``status`` (one recipient's
verdict), ``dsn``, ``plaintext``, ``autoreply``, ``arf``, ``original`` (the
returned message). Pure; the work is bounded on any input.
"""

from __future__ import annotations

import html
import re
from typing import Final

from bounce_in.parsing.arf import feedback_part, jmrp_feedback, read_feedback, with_jmrp_recipient
from bounce_in.parsing.autoreply import auto_reply_kind
from bounce_in.parsing.dsn import read_delivery_status, status_part
from bounce_in.parsing.mime import Part, decode_words, parse_message, text_of
from bounce_in.parsing.original import RETURNED_TYPES, from_text, original_of
from bounce_in.parsing.plaintext import MAX_TEXT, is_bounce_text, read_plain_bounce
from bounce_in.parsing.status import clean_address
from bounce_in.report import BounceReport, OriginalMessage, ReportKind
from engine.delivery.bounce_classify import BounceClassifier

__all__ = ["parse_report", "read_report"]

_TAG = re.compile(r"<[^<>]{0,2000}>")
_BREAK = re.compile(r"<(?:br|/p|/div|/tr|/li|/h\d)\b[^<>]{0,200}>", re.IGNORECASE)
_HIDDEN = re.compile(r"<(style|script|head)\b", re.IGNORECASE)
_OWN_FIELDS: Final = ("from", "to", "sender", "return-path", "reply-to")
_SENDER_FIELDS: Final = ("From", "Sender", "Return-Path", "Reply-To")


def parse_report(raw: bytes, classifier: BounceClassifier) -> BounceReport:
    """What ``raw`` reports; never raises (a defect gives kind ``other``, note ``unreadable``)."""
    try:
        return read_report(raw, classifier)
    except Exception:  # a defect of ours must not stop the intake: report it as unreadable
        return BounceReport(kind=ReportKind.OTHER, notes=("unreadable",))


def read_report(raw: bytes, classifier: BounceClassifier) -> BounceReport:
    """What :func:`parse_report` returns, but a defect of ours raises."""
    message = parse_message(raw)
    subject = decode_words(message.header("subject"))
    original = original_of(message)
    feedback = feedback_part(message)
    if feedback is not None:
        report = with_jmrp_recipient(read_feedback(feedback), original)
        return BounceReport(
            ReportKind.FEEDBACK, (), report, original, report.reporting_mta, subject, ("arf",)
        )
    status = status_part(message)
    if status is not None:
        dsn = read_delivery_status(status, classifier)
        if dsn.recipients:
            return BounceReport(
                ReportKind.DSN,
                dsn.recipients,
                None,
                original,
                dsn.reporting_mta,
                subject,
                ("rfc3464",),
            )
    jmrp = jmrp_feedback(message, original)
    if jmrp is not None:
        return BounceReport(ReportKind.FEEDBACK, (), jmrp, original, "", subject, ("jmrp",))
    return _not_standard(message, subject, original, classifier)


def _not_standard(
    message: Part, subject: str, original: OriginalMessage | None, classifier: BounceClassifier
) -> BounceReport:
    text = human_text(message)
    original = original or from_text(text)
    auto = auto_reply_kind(message.fields, subject, text)
    if auto is not None and not is_bounce_text(text):
        return BounceReport(
            ReportKind.AUTO_REPLY, original=original, subject=subject, notes=(auto,)
        )
    sender = decode_words(message.header("from"))
    bounce = read_plain_bounce(text, subject, sender, _own(message, original), classifier)
    if bounce is not None:
        return BounceReport(
            ReportKind.DSN,
            bounce.recipients,
            None,
            original,
            bounce.reporting_mta,
            subject,
            (bounce.shape,),
        )
    if auto is not None:
        return BounceReport(
            ReportKind.AUTO_REPLY, original=original, subject=subject, notes=(auto,)
        )
    return BounceReport(ReportKind.OTHER, original=original, subject=subject)


def human_text(message: Part) -> str:
    """The readable text of a message outside any returned copy: its plain parts, else its HTML."""
    plain: list[str] = []
    markup: list[str] = []
    stack = [message]
    while stack:
        part = stack.pop()
        if part.content_type in RETURNED_TYPES:
            continue
        stack.extend(reversed(part.children))
        if part.content_type == "text/plain":
            plain.append(text_of(part)[:MAX_TEXT])
        elif part.content_type == "text/html":
            markup.append(text_of(part)[: MAX_TEXT * 2])
    if plain:
        return "\n".join(plain)[:MAX_TEXT]
    return "\n".join(_strip_html(m) for m in markup)[:MAX_TEXT]


def _strip_html(markup: str) -> str:
    markup = _without_hidden(markup)
    markup = _BREAK.sub("\n", markup)
    return html.unescape(_TAG.sub(" ", markup))


def _without_hidden(markup: str) -> str:
    """``markup`` without the content of its style, script and head elements."""
    lower = markup.lower()
    kept: list[str] = []
    pos = 0
    while (opening := _HIDDEN.search(markup, pos)) is not None:
        kept.append(markup[pos : opening.start()])
        closing = lower.find("</" + opening[1].lower(), opening.end())
        pos = len(markup) if closing < 0 else closing
    kept.append(markup[pos:])
    return " ".join(kept)


def _own(message: Part, original: OriginalMessage | None) -> frozenset[str]:
    """The bounce's own addresses and the returned message's sender: never a failed recipient."""
    values = [v for n, v in message.fields if n in _OWN_FIELDS]
    if original is not None:
        values += [original.header(name) or "" for name in _SENDER_FIELDS]
    return frozenset(clean_address(v).lower() for v in values if "@" in v) - {""}
