"""The bounce parser's modules, one table each: MIME walking, a recipient's verdict,
RFC 3464 fields, plain-text shapes, auto-replies, ARF and the returned message."""

from __future__ import annotations

import re

import pytest

from bounce_in.parsing import parse_report, read_report
from bounce_in.parsing.autoreply import auto_reply_kind
from bounce_in.parsing.mime import decode_words, parse_message, read_fields, text_of
from bounce_in.parsing.original import from_text
from bounce_in.parsing.plaintext import SHAPES
from bounce_in.parsing.status import clean_address, recipient_status
from bounce_in.report import Action, ReportKind
from engine.delivery.bounce_classify import BounceClassifier, Rule

CLASSIFIER = BounceClassifier()


# mime


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_any_line_end_reads_the_same(end: bytes) -> None:
    raw = b"Subject: hi\n there\nContent-Type: text/plain; charset=utf-8\n\nbody\n"
    message = parse_message(raw.replace(b"\n", end))
    assert message.header("subject") == "hi there"
    assert text_of(message) == "body\n"


@pytest.mark.parametrize(
    ("headers", "body", "text"),
    [
        (b"Content-Transfer-Encoding: base64\n", b"Y2Fmw6k=\n", "café"),
        (b"Content-Transfer-Encoding: base64\n", b"Y2Fmw6k\n!!", "caf"),  # cut short
        (b"Content-Transfer-Encoding: quoted-printable\n", b"caf=C3=A9=\n!\n", "café!\n"),
    ],
)
def test_transfer_encodings(headers: bytes, body: bytes, text: str) -> None:
    raw = b"Content-Type: text/plain; charset=utf-8\n" + headers + b"\n" + body
    assert text_of(parse_message(raw)).startswith(text)


@pytest.mark.parametrize(
    ("charset", "data", "text"),
    [
        ("iso-8859-1", "é".encode("latin-1"), "é"),
        ("windows-1252", b"\x93q\x94", "\u201cq\u201d"),
        ("gb2312", "退信".encode("gb18030"), "退信"),
        ("x-no-such-charset", b"\xe9", "é"),
    ],
)
def test_charsets(charset: str, data: bytes, text: str) -> None:
    raw = f"Content-Type: text/plain; charset={charset}\n\n".encode() + data
    assert text_of(parse_message(raw)) == text


def test_a_multipart_without_its_closing_delimiter_keeps_its_last_part() -> None:
    raw = b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n\none\n--b\n\ntwo\n'
    assert [text_of(p) for p in parse_message(raw).children] == ["one", "two\n"]


def test_header_lines_without_colon_are_skipped() -> None:
    assert read_fields(b"From nobody\nSubject: x\nbroken line\nTo: y\n") == [
        ("subject", "x"),
        ("to", "y"),
    ]


def test_encoded_words() -> None:
    assert decode_words("=?UTF-8?B?0J3QtdC00L7RgdGC0LDQstC70LXQvdC90L7QtQ==?=") == "Недоставленное"
    assert decode_words("=?bogus?Q?x?=") == "x"  # an unknown charset is read as Latin-1


# status


@pytest.mark.parametrize(
    ("action", "field", "diagnostic", "status", "code"),
    [
        (Action.FAILED, "5.1.1", "550 5.1.1 no such user", "5.1.1", 550),
        (Action.FAILED, "5.0.0", "550 5.1.1 no such user", "5.1.1", 550),  # the more specific
        (Action.FAILED, "", "Sorry, no mailbox here by that name. (#5.1.1)", "5.1.1", None),
        (Action.FAILED, "", "554: delivery error: dd no account", "5.0.0", 554),
        (Action.FAILED, "", "451 4.4.1 connection timed out", "5.4.1", 451),  # it gave up
        (Action.DELAYED, "", "connection timed out", "4.0.0", None),
        (Action.FAILED, "bogus", "", "5.0.0", None),
    ],
)
def test_status_inference(
    action: Action, field: str, diagnostic: str, status: str, code: int | None
) -> None:
    verdict = recipient_status(CLASSIFIER, "a@b.example", action, field, diagnostic)
    assert (verdict.status, verdict.smtp_code) == (status, code)


def test_the_category_is_the_classifiers_including_operator_rules() -> None:
    mine = BounceClassifier([Rule("Mine", re.compile("gone fishing"))])
    verdict = recipient_status(mine, "a@b.example", Action.FAILED, "5.1.1", "550 gone fishing")
    assert verdict.category == "Mine"
    default = recipient_status(CLASSIFIER, "a@b.example", Action.FAILED, "5.1.1", "")
    assert default.category == "InvalidRecipient"


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("rfc822; Alice@Example.COM", "Alice@example.com"),
        ("rfc822;<bob@x.example>", "bob@x.example"),
        ('"Carol" <carol@y.example>.', "carol@y.example"),
        ("utf-8; δοκιμή@παράδειγμα.example", "δοκιμή@παράδειγμα.example"),
        ("rfc822; no address here", ""),
    ],
)
def test_clean_address(value: str, address: str) -> None:
    assert clean_address(value) == address


# dsn

DSN = b"""From: MAILER-DAEMON@mx.example
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B

The mail system
--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example
X-Postfix-Sender: rfc822; b-x@bounces.acme.example

Final-Recipient: rfc822; a@one.example
Original-Recipient: rfc822; A@One.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.one.example
Diagnostic-Code: smtp; 550 5.1.1 <a@one.example>: Recipient address
    rejected: User unknown
Final-Recipient: rfc822; b@two.example
Action: delayed
Status: 4.2.2
Final-Recipient: rfc822; c@three.example
Action: delivered
Status: 2.0.0
--B--
"""


def test_rfc3464_fields() -> None:
    report = read_report(DSN, CLASSIFIER)
    assert report.kind is ReportKind.DSN and report.notes == ("rfc3464",)
    assert report.reporting_mta == "mx.example"
    a, b, c = report.recipients
    assert (a.address, a.action, a.status, a.category) == (
        "a@one.example",
        Action.FAILED,
        "5.1.1",
        "InvalidRecipient",
    )
    assert a.remote_mta == "mx.one.example" and a.original_recipient == "A@one.example"
    assert a.diagnostic == "550 5.1.1 <a@one.example>: Recipient address rejected: User unknown"
    assert (b.action, b.status, b.category) == (Action.DELAYED, "4.2.2", "QuotaIssues")
    assert c.action is Action.DELIVERED
    assert report.failed == (a,)


def test_a_recipient_group_without_final_recipient_keeps_its_status() -> None:
    group = (
        b"Action: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.one.example\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"
    )
    head, tail = DSN.split(b"Final-Recipient: rfc822; a@one.example\n", 1)
    report = read_report(head + group + b"--B--" + tail.rsplit(b"--B--", 1)[1], CLASSIFIER)
    assert report.notes == ("rfc3464",)
    [only] = report.recipients
    assert (only.address, only.action, only.status, only.category) == (
        "",
        Action.FAILED,
        "5.1.1",
        "InvalidRecipient",
    )
    assert only.remote_mta == "mx.one.example"


# plaintext and auto-replies


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        (
            "Hi. This is the qmail-send program at x.example.\n<a@b.example>:\nno mailbox (#5.1.1)",
            "qmail",
        ),
        (
            "This message was created automatically by mail delivery software.\n\n"
            "The following address(es) failed:\n\n  a@b.example\n    550 5.1.1 unknown",
            "exim",
        ),
        (
            "This is the mail system at host x.example.\n\n<a@b.example>: host y said: 550 5.1.1",
            "postfix",
        ),
    ],
)
def test_plain_shapes(text: str, shape: str) -> None:
    raw = b"From: MAILER-DAEMON@x.example\nSubject: failure\n\n" + text.encode()
    report = read_report(raw, CLASSIFIER)
    assert report.notes == (shape,)
    assert [(r.address, r.status) for r in report.recipients] == [("a@b.example", "5.1.1")]


def test_shape_signatures_read_lower_cased_text() -> None:
    for shape in SHAPES:
        assert not re.search(r"\\[SWDBAZ]", shape.signature), shape.name


def test_the_transcripts_envelope_sender_is_no_recipient() -> None:
    raw = (
        b"From: MAILER-DAEMON@x.example\nSubject: Returned mail\n\n"
        b"   ----- The following addresses had permanent fatal errors -----\n<a@b.example>\n"
        b"    (reason: 550 5.1.1 User unknown)\n\n   ----- Transcript of session follows -----\n"
        b">>> MAIL From:<b-tok@bounces.acme.example>\n>>> RCPT To:<a@b.example>\n"
    )
    assert [r.address for r in read_report(raw, CLASSIFIER).recipients] == ["a@b.example"]


@pytest.mark.parametrize(
    ("fields", "subject", "text", "kind"),
    [
        ([("auto-submitted", "auto-replied")], "Re: offers", "Away.", "auto-reply"),
        ([], "Automatic reply: offers", "", "auto-reply"),
        ([("precedence", "auto_reply")], "Hi", "", "auto-reply"),
        ([], "Please confirm", "I'm protected by Spam Arrest.", "challenge-response"),
        ([("auto-submitted", "no")], "Re: offers", "Thanks!", None),
        ([("auto-submitted", "auto-generated")], "Report", "", None),
    ],
)
def test_auto_replies(
    fields: list[tuple[str, str]], subject: str, text: str, kind: str | None
) -> None:
    assert auto_reply_kind(fields, subject, text) == kind


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (
            b"From: ann@gmx.net\nSubject: Automatic reply: offers\n\nAway until Monday. "
            b"Votre message sera lu plus tard.\n--\nProtected by Mimecast and Proofpoint\n",
            ReportKind.AUTO_REPLY,
        ),
        (
            b"From: ann@web.de\nSubject: Re: offers\n\nPlease remove me. Your message was "
            b"not delivered to: my colleague, she left.\n--\nScanned by Barracuda\n",
            ReportKind.OTHER,
        ),
    ],
)
def test_a_providers_name_alone_makes_no_bounce(raw: bytes, kind: ReportKind) -> None:
    report = read_report(raw, CLASSIFIER)
    assert (report.kind, report.recipients) == (kind, ())


def test_an_exim_bounce_marked_auto_submitted_is_still_a_bounce() -> None:
    raw = (
        b"From: Mailer-Daemon@x.example\nAuto-Submitted: auto-replied\n"
        b"Subject: Mail delivery failed: returning message to sender\n\n"
        b"This message was created automatically by mail delivery software.\n\n"
        b"The following address(es) failed:\n\n  a@b.example\n    550 5.1.1 unknown\n"
    )
    report = read_report(raw, CLASSIFIER)
    assert report.kind is ReportKind.DSN and len(report.failed) == 1


# arf and the original message

ARF = b"""From: feedback@arf.mail.yahoo.com
Subject: FW: offers
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report.
--F
Content-Type: message/feedback-report

Feedback-Type: Abuse
User-Agent: Yahoo!-Mail-Feedback/2.0
Version: 1
Original-Mail-From: <b-tok@bounces.acme.example>
Original-Rcpt-To: <Someone@Yahoo.com>
Received-Date: Mon, 30 Nov 2026 10:00:00 +0000
Source-IP: 203.0.113.25
Reported-Domain: acme.example
--F
Content-Type: text/rfc822-headers

Message-ID: <m1@acme.example>
X-Penguin-Ref: r-000001
Subject: offers
--F--
"""


def test_arf_fields_and_original() -> None:
    report = read_report(ARF, CLASSIFIER)
    assert report.kind is ReportKind.FEEDBACK and report.recipients == ()
    feedback = report.feedback
    assert feedback is not None
    assert (feedback.feedback_type, feedback.user_agent, feedback.version) == (
        "abuse",
        "Yahoo!-Mail-Feedback/2.0",
        "1",
    )
    assert feedback.original_rcpt_to == "Someone@yahoo.com"
    assert feedback.original_mail_from == "b-tok@bounces.acme.example"
    assert (feedback.arrival_date, feedback.source_ip) == (
        "Mon, 30 Nov 2026 10:00:00 +0000",
        "203.0.113.25",
    )
    assert feedback.reported_domain == "acme.example"
    assert report.original is not None
    assert report.original.message_id == "m1@acme.example"
    assert report.original.header("x-penguin-ref") == "r-000001"


def test_an_unregistered_feedback_type_is_other() -> None:
    report = read_report(
        ARF.replace(b"Feedback-Type: Abuse", b"Feedback-Type: opt-out"), CLASSIFIER
    )
    assert report.feedback is not None and report.feedback.feedback_type == "other"


def test_jmrp_recipient_comes_from_the_returned_message() -> None:
    raw = (
        b'From: staff@hotmail.com\nContent-Type: multipart/mixed; boundary="J"\n\n--J\n\n'
        b"This is an email abuse report\n--J\nContent-Type: message/rfc822\n\n"
        b"X-HmXmrOriginalRecipient: <Victim@Hotmail.com>\nMessage-ID: <m2@acme.example>\n"
        b"To: redacted@hotmail.com\n\nHello\n--J--\n"
    )
    report = read_report(raw, CLASSIFIER)
    assert report.kind is ReportKind.FEEDBACK and report.notes == ("jmrp",)
    assert report.feedback is not None
    assert report.feedback.original_rcpt_to == "Victim@hotmail.com"
    assert report.original is not None and report.original.message_id == "m2@acme.example"


def test_the_original_quoted_after_a_plain_text_marker() -> None:
    text = (
        "failed.\n------ This is a copy of the message, including all the headers. ------\n\n"
        "Message-ID: <m3@acme.example>\nX-Penguin-Ref: r-3\n  continued\n\nbody\n"
    )
    original = from_text(text)
    assert original is not None
    assert original.message_id == "m3@acme.example"
    assert original.header("X-Penguin-Ref") == "r-3 continued"


def test_a_person_writing_is_other() -> None:
    report = parse_report(b"From: bob@example.org\nSubject: hello\n\nHi there.\n", CLASSIFIER)
    assert (report.kind, report.recipients) == (ReportKind.OTHER, ())


def test_a_defect_gives_an_unreadable_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: bytes) -> None:
        raise IndexError("a defect")

    monkeypatch.setattr("bounce_in.parsing.parse_message", broken)
    report = parse_report(b"Subject: x\n\ny\n", CLASSIFIER)
    assert (report.kind, report.notes) == (ReportKind.OTHER, ("unreadable",))
    with pytest.raises(IndexError):
        read_report(b"Subject: x\n\ny\n", CLASSIFIER)
