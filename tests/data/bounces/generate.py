"""Writes the bounce corpus: variations of real bounce and complaint formats.

Each template follows a documented format (RFC 3464, RFC 5965, RFC 3834, and
the text that Postfix, Exim, qmail, Sendmail, Courier, Exchange, Gmail,
Yahoo, Lotus Domino and the others write) and states what it means: the
expected ``.json`` beside each ``.eml`` is written from the template's
parameters, never from the parser. Variations: recipients, remote replies,
line endings (LF, CRLF, CR), charsets and transfer encodings.

Run from the repository root: ``python -m tests.data.bounces.generate``.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tests.data.bounces.diagnostics import HARD, SOFT, Diag

HERE = Path(__file__).parent
OUR_IP = "203.0.113.25"
SENDER = "news@acme.example"
RETURN_PATH = "b-3kq9x2m7d1z8f4t6@bounces.acme.example"
RCPTS = (
    "alice@example.com",
    "bob.smith@example.org",
    "carol+news@mail.example.net",
    "Dave.Jones@Example.co.uk",
    "erin@gmail.com",
    "frank_99@yahoo.com",
    "grace@outlook.com",
    "heidi@icloud.com",
    "ivan@mail.ru",
    "judy@gmx.de",
    "mallory@web.de",
    "niaj@qq.com",
    "olivia@orange.fr",
    "peggy@libero.it",
    "rupert@hotmail.com",
    "sybil@comcast.net",
    "trent@aol.com",
    "victor@corp.example",
    "walter@sub.domain.example",
    "x.y.z@example.io",
)


@dataclass
class Bounce:
    """A message and what it means."""

    headers: list[tuple[str, str]]
    body: bytes
    kind: str
    recipients: list[dict[str, str]] = field(default_factory=list)
    feedback_type: str | None = None
    original_rcpt_to: str = ""
    message_id: str | None = None


def expect(address: str, status: str, action: str, category: str) -> dict[str, str]:
    local, _, domain = address.rpartition("@")
    return {
        "address": f"{local}@{domain.lower()}",
        "status": status,
        "action": action,
        "category": category,
    }


def render(d: Diag, rcpt: str) -> str:
    return d.text.format(rcpt=rcpt, ip=OUR_IP)


def encode_text(text: str, charset: str, cte: str) -> tuple[list[tuple[str, str]], bytes]:
    data = text.encode(charset)
    if cte == "base64":
        body = base64.encodebytes(data)
    elif cte == "quoted-printable":
        body = binascii.b2a_qp(data)
    else:
        body = data
    return [
        ("Content-Type", f'text/plain; charset="{charset}"'),
        ("Content-Transfer-Encoding", cte),
    ], body


def part(headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{k}: {v}\n" for k, v in headers).encode()
    return head + b"\n" + body


def multipart(
    subtype: str, parts: list[bytes], boundary: str, extra: str = ""
) -> tuple[list[tuple[str, str]], bytes]:
    b = boundary.encode()
    out = b"This is a MIME-encapsulated message.\n\n"
    for p in parts:
        out += b"--" + b + b"\n" + p.rstrip(b"\n") + b"\n\n"
    out += b"--" + b + b"--\n"
    return [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/{subtype};{extra} boundary="{boundary}"'),
    ], out


def original_headers(rcpt: str, n: int) -> tuple[str, str]:
    mid = f"{n:05d}.{n * 7919 % 100000:05d}@acme.example"
    text = (
        f"Return-Path: <{RETURN_PATH}>\nMessage-ID: <{mid}>\nDate: Mon, 30 Nov 2026 "
        f"10:{n % 60:02d}:00 +0000\nFrom: Acme News <{SENDER}>\nTo: <{rcpt}>\n"
        f"Subject: Our November offers\nX-Penguin-Ref: r-{n:06d}\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
    )
    return text, mid


def original_part(rcpt: str, n: int, headers_only: bool) -> tuple[bytes, str]:
    text, mid = original_headers(rcpt, n)
    if headers_only:
        return part([("Content-Type", "text/rfc822-headers")], text.encode()), mid
    return part(
        [("Content-Type", "message/rfc822")], text.encode() + b"\nHello, here are our offers.\n"
    ), mid


def top(
    subject: str, sender: str, extra: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    return [
        ("Return-Path", "<>"),
        ("Date", "Mon, 30 Nov 2026 11:02:03 +0000"),
        ("From", sender),
        ("To", RETURN_PATH),
        ("Subject", subject),
        ("Message-ID", "<bounce.1@mx.example>"),
        *(extra or []),
    ]


# RFC 3464 reports -----------------------------------------------------------------

DSN_TEXT = {
    "postfix": (
        "This is the mail system at host {mta}.\n\nI'm sorry to have to inform you "
        "that your message could not\nbe delivered to one or more recipients. It's "
        "attached below.\n\nFor further assistance, please send mail to postmaster.\n\n"
        "                   The mail system\n\n{lines}\n"
    ),
    "gmail": (
        "** Address not found **\n\nYour message wasn't delivered to {first} because the "
        "address couldn't be found, or is unable to receive mail.\n\nThe response from "
        "the remote server was:\n{lines}\n"
    ),
    "exchange": (
        "Delivery has failed to these recipients or groups:\n\n{first}\nThe email "
        "address you entered couldn't be found. Please check the recipient's email "
        "address and try to resend the message.\n\nDiagnostic information for "
        "administrators:\n\nGenerating server: {mta}\n\n{lines}\n"
    ),
    "sendmail": (
        "The original message was received at Mon, 30 Nov 2026 11:00:00 GMT\nfrom "
        "out.acme.example [{ip}]\n\n   ----- The following addresses had permanent "
        "fatal errors -----\n{lines}\n"
    ),
    "courier": (
        "This is a delivery status notification from {mta},\nrunning the Courier mail "
        "server, version 1.1.\n\n{lines}\n"
    ),
    "icloud": (
        "This is the mail system at host {mta}.\n\nI'm sorry to have to inform you that "
        "your message could not\nbe delivered to one or more recipients.\n\n{lines}\n"
    ),
}
DSN_MTA = {
    "postfix": "mx1.example.net",
    "gmail": "mx.google.com",
    "exchange": "BN8PR12MB3361.namprd12.prod.outlook.com",
    "sendmail": "mail.example.org",
    "courier": "courier.example.com",
    "icloud": "mr85p00im-ztdg06011201.me.com",
}


def dsn(n: int, rng: random.Random, flavour: str, delayed: bool, count: int) -> Bounce:
    rcpts = rng.sample(RCPTS, count)
    pool = SOFT if delayed else HARD
    mta = DSN_MTA[flavour]
    action = "delayed" if delayed else "failed"
    groups, lines, expected = [], [], []
    for rcpt in rcpts:
        d = rng.choice(pool)
        text = render(d, rcpt)
        remote = f"mx{rng.randint(1, 9)}.{rcpt.rpartition('@')[2].lower()}"
        status = d.status if rng.random() < 0.85 else f"{d.status[0]}.0.0"
        diagnostic = f"smtp; {d.code} {d.status} {text}"
        if flavour == "gmail":  # Gmail quotes multi-line replies with their codes
            words = text.split(" ")
            half = len(words) // 2
            diagnostic = (
                f"smtp; {d.code}-{d.status} {' '.join(words[:half])}\n    "
                f"{d.code}-{d.status} {' '.join(words[half:])}\n    "
                f"{d.code} {d.status}  a1si4321ejb.199 - gsmtp"
            )
        group = [
            f"Final-Recipient: rfc822; {rcpt}",
            f"Original-Recipient: rfc822;{rcpt}",
            f"Action: {action}",
            f"Status: {status}",
            f"Remote-MTA: dns; {remote}",
            f"Diagnostic-Code: {diagnostic}",
        ]
        if delayed:
            group.append("Will-Retry-Until: Mon, 7 Dec 2026 11:00:00 +0000")
        if rng.random() < 0.3:
            group.remove(f"Original-Recipient: rfc822;{rcpt}")
        groups.append("\n".join(_fold(g) for g in group))
        lines.append(
            f"<{rcpt}>: host {remote}[198.51.100.{rng.randint(1, 254)}] said: "
            f"{d.code} {d.status}\n    {text} (in reply to RCPT TO command)"
        )
        expected.append(expect(rcpt, d.status, action, d.category))
    per_message = (
        f"Reporting-MTA: dns; {mta}\nX-Postfix-Queue-ID: 4Fq{n:05d}\n"
        f"X-Postfix-Sender: rfc822; {RETURN_PATH}\nArrival-Date: Mon, 30 Nov 2026 "
        "11:00:00 +0000"
    )
    between = "\n" if rng.random() < 0.3 else "\n\n"  # some MTAs leave out the empty line
    status_body = (per_message + "\n\n" + between.join(groups) + "\n").encode()
    intro = DSN_TEXT[flavour].format(mta=mta, first=rcpts[0], lines="\n\n".join(lines), ip=OUR_IP)
    charset, cte = rng.choice(ENCODINGS)
    h, b = encode_text(intro, charset, cte)
    orig, mid = original_part(rcpts[0], n, headers_only=rng.random() < 0.5)
    global_type = flavour == "postfix" and rng.random() < 0.15
    status_type = "message/global-delivery-status" if global_type else "message/delivery-status"
    ph, pb = multipart(
        "report",
        [part(h, b), part([("Content-Type", status_type)], status_body), orig],
        f"=_{n}_boundary",
        " report-type=delivery-status;",
    )
    if rng.random() < 0.15:  # a report cut short: no closing delimiter
        pb = pb[: pb.rindex(b"--=_")]
    subject = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    if flavour == "gmail":
        subject = (
            "Delivery Status Notification (Delay)"
            if delayed
            else ("Delivery Status Notification (Failure)")
        )
    if flavour == "exchange":
        subject = (
            "Delivery delayed: Our November offers"
            if delayed
            else ("Undeliverable: Our November offers")
        )
    sender = {
        "gmail": "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        "exchange": "Microsoft Outlook <postmaster@outlook.com>",
    }.get(flavour, f"MAILER-DAEMON@{mta} (Mail Delivery System)")
    return Bounce(top(subject, sender, ph), pb, "dsn", expected, message_id=mid)


def _fold(line: str) -> str:
    if len(line) <= 78 or "\n" in line:
        return line
    cut = line.rfind(" ", 0, 76)
    return line if cut < 20 else line[:cut] + "\n    " + line[cut + 1 :]


ENCODINGS = (
    ("us-ascii", "7bit"),
    ("utf-8", "quoted-printable"),
    ("utf-8", "base64"),
    ("iso-8859-1", "quoted-printable"),
    ("windows-1252", "8bit"),
)


# Plain-text bounces ------------------------------------------------------------------

Plain = Callable[[str, Diag, bool], tuple[str, str, str, str, str]]
"""(recipient, reply, delayed) -> (subject, sender, text, expected status, charset hint)."""


def exim(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    reply = f"{d.code} {d.status} {render(d, rcpt)}"
    if delayed:
        text = (
            "This message was created automatically by mail delivery software.\nA message "
            "that you sent has not yet been delivered to one or more of its\nrecipients "
            "after more than 24 hours on the queue on smtp.example.net.\n\nThe message "
            "identifier is:     1kZ4Jm-0003Pq-7A\nThe subject of the message is: Our "
            "November offers\n\nThe address to which the message has not yet been "
            f"delivered is:\n\n  {rcpt}\n    host mx.example.net [198.51.100.7]: {reply}\n\n"
            "No action is required on your part. Delivery attempts will continue for\nsome "
            "time, and this warning may be repeated at intervals if the message\nremains "
            "undelivered. Eventually the mail delivery software will give up,\nand when "
            "that happens, the message will be returned to you.\n"
        )
        return (
            "Warning: message 1kZ4Jm-0003Pq-7A delayed 24 hours",
            "Mail Delivery System <Mailer-Daemon@smtp.example.net>",
            text,
            d.status,
            "",
        )
    text = (
        "This message was created automatically by mail delivery software.\n\nA message "
        "that you sent could not be delivered to one or more of its\nrecipients. This is a "
        f"permanent error. The following address(es) failed:\n\n  {rcpt}\n    host "
        "mx.example.net [198.51.100.7]\n    SMTP error from remote mail server after RCPT "
        f"TO:<{rcpt}>:\n    {reply}\n"
    )
    return (
        "Mail delivery failed: returning message to sender",
        "Mail Delivery System <Mailer-Daemon@smtp.example.net>",
        text,
        d.status,
        "",
    )


def qmail(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Hi. This is the qmail-send program at mail.example.org.\nI'm afraid I wasn't able "
        "to deliver your message to the following addresses.\nThis is a permanent error; "
        f"I've given up. Sorry it didn't work out.\n\n<{rcpt}>:\n198.51.100.14 does not "
        f"like recipient.\nRemote host said: {d.code} {d.status} {render(d, rcpt)}\n"
        "Giving up on 198.51.100.14.\n\n"
    )
    return "failure notice", "MAILER-DAEMON@mail.example.org", text, d.status, ""


def qmail_local(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Hi. This is the qmail-send program at mail.example.org.\nI'm afraid I wasn't able "
        "to deliver your message to the following addresses.\nThis is a permanent error; "
        f"I've given up. Sorry it didn't work out.\n\n<{rcpt}>:\nSorry, no mailbox here by "
        "that name. (#5.1.1)\n\n"
    )
    return "failure notice", "MAILER-DAEMON@mail.example.org", text, "5.1.1", ""


def yahoo(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Sorry, we were unable to deliver your message to the following address.\n\n"
        f"<{rcpt}>:\n554: delivery error: dd This user doesn't have a yahoo.com account "
        f"({rcpt}) [0] - mta4012.mail.gq1.yahoo.com\n\n"
    )
    return "Failure Notice", "MAILER-DAEMON@yahoo.com", text, "5.0.0", ""


def postfix_plain(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "This is the mail system at host mail.example.com.\n\nI'm sorry to have to inform "
        "you that your message could not\nbe delivered to one or more recipients. It's "
        "attached below.\n\n                   The mail system\n\n"
        f"<{rcpt}>: host mx.example.net[198.51.100.3] said: {d.code} {d.status}\n    "
        f"{render(d, rcpt)} (in reply to RCPT TO command)\n"
    )
    return (
        "Undelivered Mail Returned to Sender",
        "MAILER-DAEMON@mail.example.com (Mail Delivery System)",
        text,
        d.status,
        "",
    )


def sendmail(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    if delayed:
        text = (
            "**********************************************\n**      THIS IS A WARNING "
            "MESSAGE ONLY      **\n**  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n*****"
            "*****************************************\n\nThe original message was "
            "received at Mon, 30 Nov 2026 07:00:00 GMT\nfrom out.acme.example "
            f"[{OUR_IP}]\n\n   ----- Transcript of session follows -----\n<{rcpt}>... "
            f"Deferred: {d.code} {d.status} {render(d, rcpt)}\nWarning: message still "
            "undelivered after 4 hours\nWill keep trying until message is 5 days old\n"
        )
        return (
            "Warning: could not send message for past 4 hours",
            "Mail Delivery Subsystem <MAILER-DAEMON@mail.example.org>",
            text,
            d.status,
            "",
        )
    text = (
        "The original message was received at Mon, 30 Nov 2026 11:00:00 GMT\nfrom "
        f"out.acme.example [{OUR_IP}]\n\n   ----- The following addresses had permanent "
        f"fatal errors -----\n<{rcpt}>\n    (reason: {d.code} {d.status} {render(d, rcpt)})"
        "\n\n   ----- Transcript of session follows -----\n... while talking to "
        f"mx.example.org.:\n>>> MAIL From:<{RETURN_PATH}> SIZE=2310\n>>> RCPT To:<{rcpt}>\n"
        f"<<< {d.code} {d.status} {render(d, rcpt)}\n"
    )
    return (
        "Returned mail: see transcript for details",
        "Mail Delivery Subsystem <MAILER-DAEMON@mail.example.org>",
        text,
        d.status,
        "",
    )


def proofpoint(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    subject, _sender, text, status, _ = sendmail(rcpt, d, delayed)
    text = text.replace("mx.example.org", "mx0a-00123401.pphosted.com")
    return (
        subject,
        "Mail Delivery Subsystem <MAILER-DAEMON@mx0a-00123401.pphosted.com>",
        text,
        status,
        "",
    )


def exchange(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    if delayed:
        text = (
            f"Delivery is delayed to these recipients or groups:\n\n{rcpt}\n\nSubject: Our "
            "November offers\n\nThis message hasn't been delivered yet. Delivery will "
            "continue to be attempted.\n\nThe server will keep trying to deliver this "
            "message for the next 1 days, 19 hours and 57 minutes. You'll be notified if "
            "the message can't be delivered by that time.\n\nDiagnostic information for "
            "administrators:\n\nGenerating server: DM6PR11MB4657.namprd11.prod.outlook.com"
            f"\nReceiving server: mx.example.net\n\n{rcpt}\nRemote Server returned "
            f"'{d.code} {d.status} {render(d, rcpt)}'\n\nOriginal message headers:\n\n"
        )
        return (
            "Delivery delayed: Our November offers",
            "Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@outlook.com>",
            text,
            d.status,
            "",
        )
    text = (
        "Your message to "
        + rcpt
        + " couldn't be delivered.\n\n"
        + rcpt.partition("@")[0]
        + " wasn't found at "
        + rcpt.partition("@")[2]
        + ".\n\nnews  Office 365  "
        + rcpt.partition("@")[0]
        + "\nAction Required  Recipient\n\nUnknown To address\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: "
        f"DM6PR11MB4657.namprd11.prod.outlook.com\n\n{rcpt}\nRemote Server returned "
        f"'{d.code} {d.status} {render(d, rcpt)}'\n\nOriginal message headers:\n\n"
    )
    return (
        "Undeliverable: Our November offers",
        "Microsoft Outlook <postmaster@outlook.com>",
        text,
        d.status,
        "",
    )


def exchange2003(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Your message did not reach some or all of the intended recipients.\n\n      "
        "Subject:\tOur November offers\n      Sent:\t30/11/2026 11:00\n\nThe following "
        f"recipient(s) cannot be reached:\n\n      {rcpt} on 30/11/2026 11:01\n            "
        "The e-mail account does not exist at the organization this message was sent to.  "
        "Check the e-mail address, or contact the recipient directly to find out the "
        f"correct address.\n            <mail.example.com #{d.status} smtp;{d.code} "
        f"{d.status} {render(d, rcpt)}>\n"
    )
    return (
        "Undeliverable: Our November offers",
        "System Administrator <postmaster@example.com>",
        text,
        d.status,
        "",
    )


def gmail_plain(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    reply = f"{d.code} {d.status} {render(d, rcpt)}"
    if delayed:
        text = (
            "** Delivery incomplete **\n\nThere was a temporary problem delivering your "
            f"message to {rcpt}. Gmail will retry for 47 more hours. You'll be notified if "
            f"the delivery fails permanently.\n\nThe response was:\n{reply}\n"
        )
        return (
            "Delivery Status Notification (Delay)",
            "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
            text,
            d.status,
            "",
        )
    text = (
        f"** Address not found **\n\nYour message wasn't delivered to {rcpt} because the "
        "address couldn't be found, or is unable to receive mail.\n\nLearn more here: "
        "https://support.google.com/mail/?p=NoSuchUser\n\nThe response from the remote "
        f"server was:\n{reply}\n"
    )
    return (
        "Delivery Status Notification (Failure)",
        "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        text,
        d.status,
        "",
    )


def courier(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "This is a delivery status notification from courier.example.com,\nrunning the "
        "Courier mail server, version 1.1.\n\nThe original message was received on Mon, 30 "
        "Nov 2026 11:00:00 +0000\nfrom out.acme.example ["
        + OUR_IP
        + "]\n\n"
        + "-" * 75
        + "\n\n                           UNDELIVERABLE MAIL\n\nYour message to the "
        f"following recipients cannot be delivered:\n\n<{rcpt}>:\n    mx.example.com "
        f"[198.51.100.9]:\n>>> RCPT TO:<{rcpt}>\n<<< {d.code} {d.status} "
        f"{render(d, rcpt)}\n\n" + "-" * 75 + "\n"
    )
    return "DELIVERY FAILURE", "Courier mail server at courier.example.com <@>", text, d.status, ""


def domino(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    user = rcpt.partition("@")[0]
    text = (
        "Your message\n\n  Subject: Our November offers\n\nwas not delivered to:\n\n  "
        f"{rcpt}\n\nbecause:\n\n  User {user} ({rcpt}) not listed in Domino Directory\n"
    )
    return (
        f"DELIVERY FAILURE: User {user} ({rcpt}) not listed in Domino Directory",
        "Postmaster <Postmaster@notes.example.com>",
        text,
        "5.0.0",
        "",
    )


def icloud(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    subject, _, text, status, _ = postfix_plain(rcpt, d, delayed)
    text = text.replace("mail.example.com", "ms11p00im-qufo17281601.me.com")
    return subject, "MAILER-DAEMON@icloud.com (Mail Delivery System)", text, status, ""


def barracuda(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Your message could not be delivered to the following recipients. This message was "
        "bounced by the Barracuda Email Security Service.\n\n"
        f"{rcpt}: {d.code} {d.status} {render(d, rcpt)}\n"
    )
    return "Undelivered Message", "Barracuda <noreply@barracuda.email>", text, d.status, ""


def mimecast(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Your message couldn't be delivered to the recipient(s) listed below.\n\n"
        f"Recipient: {rcpt}\nReason: {d.code} {d.status} {render(d, rcpt)}\n\nThis "
        "notification was generated by Mimecast.\n"
    )
    return (
        "Mimecast Delivery Failure Notification",
        "postmaster@mimecast.example",
        text,
        d.status,
        "",
    )


def gmx(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Die Nachricht konnte nicht zugestellt werden an die folgenden Empfänger:\n\n"
        f"{rcpt}\n    host mx00.emig.gmx.net: {d.code} {d.status} {render(d, rcpt)}\n\n"
        "Diese Nachricht wurde automatisch erstellt. Bitte antworten Sie nicht.\n"
    )
    return (
        "Unzustellbar: Our November offers",
        "Mail Delivery System <mailer-daemon@gmx.net>",
        text,
        d.status,
        "iso-8859-1",
    )


def mailru(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Сообщение не было доставлено.\n\nThis message was created automatically by mail "
        "delivery software.\n\nA message that you sent could not be delivered to one or "
        "more of its\nrecipients. This is a permanent error. The following address(es) "
        f"failed:\n\n  {rcpt}\n    SMTP error from remote mail server after RCPT "
        f"TO:<{rcpt}>:\n    host mx.example.ru [198.51.100.30]: {d.code} {d.status} "
        f"{render(d, rcpt)}\n"
    )
    return (
        "=?UTF-8?B?" + base64.b64encode("Недоставленное сообщение".encode()).decode() + "?=",
        "Mail Delivery System <mailer-daemon@corp.mail.ru>",
        text,
        d.status,
        "utf-8",
    )


def qq(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "很抱歉您发送的邮件被退回\uff0c以下是该邮件的相关信息\uff1a\n\n    收件人\uff1a"
        + rcpt
        + f"\n    退信原因\uff1a{d.code} {d.status} {render(d, rcpt)}\n"
    )
    return (
        "=?gb18030?B?" + base64.b64encode("退信".encode("gb18030")).decode() + "?=",
        "QQ Mail <PostMaster@qq.com>",
        text,
        d.status,
        "gb18030",
    )


def orange(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Votre message n'a pas pu être remis aux destinataires suivants :\n\n"
        f"{rcpt}\n    Raison : {d.code} {d.status} {render(d, rcpt)}\n"
    )
    return (
        "Message non remis",
        "Mail Delivery System <MAILER-DAEMON@orange.fr>",
        text,
        d.status,
        "iso-8859-1",
    )


def libero(rcpt: str, d: Diag, delayed: bool) -> tuple[str, str, str, str, str]:
    text = (
        "Il messaggio non è stato consegnato ai seguenti destinatari:\n\n"
        f"{rcpt}\n    Motivo: {d.code} {d.status} {render(d, rcpt)}\n"
    )
    return (
        "Mancata consegna: Our November offers",
        "MAILER-DAEMON@libero.it",
        text,
        d.status,
        "windows-1252",
    )


PLAIN: dict[str, tuple[Plain, bool, Diag | None]] = {
    # name: (template, can be delayed, a fixed reply for shapes that write their own)
    "exim": (exim, True, None),
    "qmail": (qmail, False, None),
    "qmail_local": (qmail_local, False, Diag(550, "5.1.1", "", "InvalidRecipient")),
    "yahoo": (yahoo, False, Diag(554, "5.0.0", "", "InvalidRecipient")),
    "postfix": (postfix_plain, False, None),
    "sendmail": (sendmail, True, None),
    "proofpoint": (proofpoint, False, None),
    "exchange": (exchange, True, None),
    "exchange2003": (exchange2003, False, None),
    "gmail": (gmail_plain, True, None),
    "courier": (courier, False, None),
    "domino": (domino, False, Diag(550, "5.0.0", "", "InvalidRecipient")),
    "icloud": (icloud, False, None),
    "barracuda": (barracuda, False, None),
    "mimecast": (mimecast, False, None),
    "gmx": (gmx, False, None),
    "mailru": (mailru, False, None),
    "qq": (qq, False, None),
    "orange": (orange, False, None),
    "libero": (libero, False, None),
}


def plain(n: int, rng: random.Random, name: str, delayed: bool) -> Bounce:
    template, _, fixed = PLAIN[name]
    rcpt = rng.choice(RCPTS)
    d = fixed or rng.choice(SOFT if delayed else HARD)
    subject, sender, text, status, charset = template(rcpt, d, delayed)
    orig, mid = original_headers(rcpt, n)
    cte = rng.choice(("7bit", "quoted-printable", "base64", "8bit"))
    if not charset:
        charset = rng.choice(("us-ascii", "utf-8", "iso-8859-1", "windows-1252"))
    if charset == "us-ascii" and cte == "8bit":
        cte = "7bit"
    marker = {
        "exim": "------ This is a copy of the message, including all the headers. ------",
        "qmail": "--- Below this line is a copy of the message.",
        "exchange": "",
        "sendmail": "   ----- Original message follows -----",
    }.get(name.split("_")[0], "------ Original message follows ------")
    if name in ("exchange", "yahoo"):
        marker = "" if name == "exchange" else "--- Below this line is a copy of the message."
    full = text + ("\n" + marker + "\n\n" if marker else "") + orig + "\nHello.\n"
    h, b = encode_text(full, charset, cte)
    headers = top(subject, sender, [("MIME-Version", "1.0"), *h])
    if name == "exim" or name == "mailru":
        headers.append(("Auto-Submitted", "auto-replied"))
    action = "delayed" if delayed else "failed"
    return Bounce(headers, b, "dsn", [expect(rcpt, status, action, d.category)], message_id=mid)


# Auto-replies and other mail ------------------------------------------------------

AUTO = (
    (
        "Automatic reply: Our November offers",
        [("Auto-Submitted", "auto-replied"), ("X-MS-Exchange-Inbox-Rules-Loop", "x@example.com")],
        "I am out of the office until December 7th with limited access to email.\n",
        "utf-8",
    ),
    (
        "Out of Office: Our November offers",
        [("X-Auto-Response-Suppress", "All")],
        "Thank you for your message. I am on annual leave and will reply on my return.\n",
        "us-ascii",
    ),
    (
        "Abwesenheitsnotiz: Our November offers",
        [("Auto-Submitted", "auto-replied")],
        "Ich bin bis zum 7. Dezember nicht im Büro. In dringenden Fällen wenden Sie sich an "
        "Frau Müller.\n",
        "iso-8859-1",
    ),
    (
        "Réponse automatique : Our November offers",
        [("Auto-Submitted", "auto-replied")],
        "Je suis absent du bureau jusqu'au 7 décembre.\n",
        "windows-1252",
    ),
    (
        "Re: Our November offers",
        [("Auto-Submitted", "auto-replied"), ("X-Autoreply", "yes")],
        "I'm travelling this week; I'll get back to you next Monday.\n",
        "utf-8",
    ),
    (
        "On vacation",
        [("Precedence", "auto_reply")],
        "I'm on vacation and will read your mail when I'm back.\n",
        "utf-8",
    ),
    (
        "Risposta automatica: Our November offers",
        [("Auto-Submitted", "auto-replied")],
        "Sono fuori ufficio fino al 7 dicembre.\n",
        "iso-8859-1",
    ),
)
CHALLENGES = (
    (
        "Please confirm your message",
        "Spam Arrest <noreply@spamarrest.com>",
        "I'm protected by Spam Arrest. Please click the link below to verify that you are a "
        "human and your message will be delivered: https://www.spamarrest.com/a/123\n",
    ),
    (
        "Boxbe: Please verify your email",
        "Boxbe <notification@boxbe.com>",
        "Hello, your message is waiting for verification. Please verify your email address so "
        "that your message can be delivered: https://www.boxbe.com/anno?tc=1\n",
    ),
    (
        "[Mailinblack] Your message is awaiting your verification",
        "Mailinblack <noreply@mailinblack.com>",
        "Your message to the recipient is awaiting your verification. Please confirm that you "
        "are a human.\n",
    ),
)
OTHERS = (
    (
        "Re: Our November offers",
        "Bob <bob@example.org>",
        "Please stop sending me these, and tell me who gave you my address.\n",
    ),
    (
        "Question about my order",
        "carol@example.net",
        "Hello, I ordered the blue one last week; when will it ship?\n",
    ),
    (
        "Newsletter December",
        "Shop <shop@store.example>",
        "Our December deals are here. Unsubscribe: https://store.example/u\n",
    ),
)


def auto(n: int, rng: random.Random) -> Bounce:
    subject, extra, text, charset = AUTO[n % len(AUTO)]
    rcpt = rng.choice(RCPTS)
    h, b = encode_text(
        text,
        charset,
        rng.choice(("quoted-printable", "base64", "8bit")) if charset != "us-ascii" else "7bit",
    )
    return Bounce(top(subject, rcpt, [("MIME-Version", "1.0"), *extra, *h]), b, "auto_reply")


def challenge(n: int, rng: random.Random) -> Bounce:
    subject, sender, text = CHALLENGES[n % len(CHALLENGES)]
    h, b = encode_text(text, "utf-8", rng.choice(("7bit", "quoted-printable", "base64")))
    return Bounce(top(subject, sender, [("MIME-Version", "1.0"), *h]), b, "auto_reply")


def other(n: int, rng: random.Random) -> Bounce:
    subject, sender, text = OTHERS[n % len(OTHERS)]
    h, b = encode_text(text, "utf-8", "7bit")
    return Bounce(top(subject, sender, [("MIME-Version", "1.0"), *h]), b, "other")


# Feedback reports -------------------------------------------------------------------

ARF_AGENTS = {
    "yahoo": ("Yahoo!-Mail-Feedback/2.0", "feedback@arf.mail.yahoo.com", "Yahoo! - Abuse"),
    "aol": ("AOL SComp", "scomp@aol.net", "AOL - Abuse"),
    "comcast": ("Comcast FBL", "feedback@comcast.net", "Comcast Feedback Loop"),
    "mailru": ("Mail.Ru Feedback Loop 1.0", "fbl@corp.mail.ru", "Mail.Ru FBL"),
    "generic": ("SomeGenerator/1.0", "abuse@isp.example", "Abuse Desk"),
}
FEEDBACK_TYPES = ("abuse", "abuse", "abuse", "fraud", "virus", "auth-failure", "not-spam", "other")


def arf(n: int, rng: random.Random, agent: str) -> Bounce:
    user_agent, sender, name = ARF_AGENTS[agent]
    ftype = FEEDBACK_TYPES[n % len(FEEDBACK_TYPES)] if agent == "generic" else "abuse"
    rcpt = rng.choice(RCPTS)
    fields = [
        f"Feedback-Type: {ftype}",
        f"User-Agent: {user_agent}",
        "Version: 1",
        f"Original-Mail-From: <{RETURN_PATH}>",
        f"Original-Rcpt-To: <{rcpt}>",
        "Arrival-Date: Mon, 30 Nov 2026 10:00:00 +0000",
        f"Source-IP: {OUR_IP}",
        "Reported-Domain: acme.example",
        "Reporting-MTA: dns; fbl.isp.example",
    ]
    if ftype == "auth-failure":
        fields += ["Auth-Failure: dkim", "DKIM-Domain: acme.example"]
    rng.shuffle(fields)
    intro = (
        f"This is an email abuse report for an email message received from IP {OUR_IP} "
        "on Mon, 30 Nov 2026 10:00:00 +0000.\nFor more information about this format "
        "please see http://www.mipassoc.org/arf/.\n"
    )
    h, b = encode_text(intro, "us-ascii", "7bit")
    orig, mid = original_part(rcpt, n, headers_only=rng.random() < 0.4)
    ph, pb = multipart(
        "report",
        [
            part(h, b),
            part(
                [("Content-Type", "message/feedback-report")], ("\n".join(fields) + "\n").encode()
            ),
            orig,
        ],
        f"----=_arf_{n}",
        " report-type=feedback-report;",
    )
    return Bounce(
        top("FW: Our November offers", f"{name} <{sender}>", ph),
        pb,
        "feedback",
        feedback_type=ftype,
        original_rcpt_to=expect(rcpt, "", "", "")["address"],
        message_id=mid,
    )


def jmrp(n: int, rng: random.Random) -> Bounce:
    rcpt = rng.choice(RCPTS[-6:])
    text, mid = original_headers("redacted@hotmail.com", n)
    text = f"X-HmXmrOriginalRecipient: <{rcpt}>\n" + text
    intro = (
        "This is an email abuse report for an email message received from IP "
        f"{OUR_IP} on Mon, 30 Nov 2026 10:00:00 -0800.\nFor more information about "
        "this format please see http://support.msn.com/.\n"
    )
    h, b = encode_text(intro, "us-ascii", "7bit")
    ph, pb = multipart(
        "mixed",
        [
            part(h, b),
            part(
                [("Content-Type", "message/rfc822"), ("Content-Disposition", "inline")],
                text.encode() + b"\nHello.\n",
            ),
        ],
        f"----=_jmrp_{n}",
    )
    return Bounce(
        top(f"complaint about message from {OUR_IP}", "staff@hotmail.com", ph),
        pb,
        "feedback",
        feedback_type="abuse",
        original_rcpt_to=expect(rcpt, "", "", "")["address"],
        message_id=mid,
    )


# Writing -------------------------------------------------------------------------

Maker = Callable[[int, random.Random], Bounce]


def plan() -> list[tuple[str, Maker]]:
    jobs: list[tuple[str, Maker]] = []
    for flavour in DSN_TEXT:
        for i in range(10):
            count = 1 if i < 7 else 2 + i % 2
            jobs.append(
                (f"dsn-{flavour}", partial(dsn, flavour=flavour, delayed=False, count=count))
            )
        delayed = partial(dsn, flavour=flavour, delayed=True, count=1)
        jobs += [(f"dsn-{flavour}-delayed", delayed)] * 3
    for name, (_, delays, _) in PLAIN.items():
        jobs += [(f"plain-{name}", partial(plain, name=name, delayed=False))] * 8
        if delays:
            jobs += [(f"plain-{name}-delayed", partial(plain, name=name, delayed=True))] * 4
    jobs += [("autoreply", auto)] * 14 + [("challenge", challenge)] * 6 + [("other", other)] * 6
    for agent in ARF_AGENTS:
        jobs += [(f"arf-{agent}", partial(arf, agent=agent))] * (16 if agent == "generic" else 5)
    jobs += [("arf-jmrp", jmrp)] * 6
    return jobs


LINE_ENDS = ("\n", "\r\n", "\r")


def write(bounce: Bounce, path: Path, line_end: str) -> None:
    head = "".join(f"{k}: {v}\n" for k, v in bounce.headers).encode()
    data = head + b"\n" + bounce.body
    if line_end != "\n":
        data = data.replace(b"\n", line_end.encode())
    path.with_suffix(".eml").write_bytes(data)
    expected: dict[str, Any] = {"kind": bounce.kind, "recipients": bounce.recipients}
    if bounce.feedback_type is not None:
        expected["feedback_type"] = bounce.feedback_type
        expected["original_rcpt_to"] = bounce.original_rcpt_to
    if bounce.message_id is not None:
        expected["original_message_id"] = bounce.message_id
    path.with_suffix(".json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    rng = random.Random(11)
    for old in list(HERE.glob("[0-9][0-9][0-9]-*.eml")) + list(HERE.glob("[0-9][0-9][0-9]-*.json")):
        old.unlink()
    for n, (name, make) in enumerate(plan()):
        write(make(n, rng), HERE / f"{n:03d}-{name}", rng.choice(LINE_ENDS))


if __name__ == "__main__":
    main()
