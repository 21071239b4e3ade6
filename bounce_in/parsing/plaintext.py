"""Non-standard bounces: the plain-text reports of MTAs and providers without a DSN part.

In: the human-readable text of a message (what precedes the returned copy),
its subject and sender. Out: the recipients it reports and how they failed,
and which software wrote it, or ``None`` when it is not a bounce.

Each known shape is recognized by its own phrasing (:data:`SHAPES`): the
name written in ``BounceReport.notes``, a regex that only that software
writes, and where its list of failed recipients starts. Within that part of
the text every address is a recipient, except the sender's and the bounce's
own (``MAILER-DAEMON``, ``postmaster``, the envelope addresses of the
transcript); each one's diagnostic is the first SMTP reply (``550 5.1.1
...``), the first ``#5.x.x`` code or else the first line of prose that
follows it. A bounce that names no recipient (the return path's token tells the
intake whose it is) reports one with address ``""`` and the first reply in
its text. A text that matches no shape is still read when its subject or
sender says it is a bounce (:data:`BOUNCE_SUBJECT`, :data:`BOUNCE_SENDER`).
Whether the mail system gave up or will retry (action ``delayed``) is told
by :data:`DELAY_PHRASES`. Only the first :data:`MAX_TEXT` characters are
scanned. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, NamedTuple

from bounce_in.parsing.original import COPY_MARKER
from bounce_in.parsing.status import clean_address, recipient_status
from bounce_in.report import Action, RecipientStatus
from engine.delivery.bounce_classify import BounceClassifier

MAX_TEXT: Final = 32 * 1024
MAX_RECIPIENTS: Final = 100
_WINDOW: Final = 1500
"""How far after an address its diagnostic is looked for."""


class Shape(NamedTuple):
    name: str
    signature: str
    """A regex (ignoring case) only this software writes; searched in the lower-cased
    text, so it uses no upper-case escape (``\\S``, ``\\W``, ``\\D``, ``\\B``)."""
    start: str
    """A regex (ignoring case) after which it lists the recipients; ``""`` for the whole text."""


SHAPES: Final[tuple[Shape, ...]] = (
    Shape("qmail", r"This is the qmail-send program|qmail-send program at", r"following addresses"),
    Shape(
        "yahoo",
        r"Sorry, we were unable to deliver your message to the following address"
        r"|Message from yahoo\.com\.",
        r"to the following address",
    ),
    Shape(
        "exim",
        r"This message was created automatically by mail delivery software"
        r"|Mail delivery failed: returning message to sender",
        r"address(?:\(es\))? failed:|has not yet been delivered|following address"
        r"|addresses? to which",
    ),
    Shape(
        "gmail",
        r"\*\* (?:Address not found|Message not delivered|Message blocked|Delivery incomplete"
        r"|Message not delivered yet|Domain name not found|Mail delivery failed) \*\*",
        r"\*\*",
    ),
    Shape(
        "exchange",
        r"Delivery has failed to these recipients or groups|Your message to [^\s]+ couldn't be "
        r"delivered|Delivery is delayed to these recipients or groups|The following "
        r"recipient\(s\) cannot be reached|Your message did not reach some or all of the "
        r"intended recipients|Microsoft Exchange Server|couldn't be delivered to",
        r"recipients or groups:|couldn't be delivered|cannot be reached:|Your message to",
    ),
    Shape(
        "sendmail",
        r"----- The following addresses had (?:permanent fatal errors|transient non-fatal errors)"
        r"|----- Transcript of session follows -----|THIS IS A WARNING MESSAGE ONLY",
        r"----- The following addresses had|----- Transcript of session follows",
    ),
    Shape(
        "courier",
        r"running the Courier mail server|UNDELIVERABLE MAIL|DELAYED MAIL",
        r"the following recipients|DELAYED MAIL|UNDELIVERABLE MAIL",
    ),
    Shape(
        "domino",
        r"not listed in (?:Domino|public Name & Address Book)|Lotus Domino|was not delivered to:",
        r"was not delivered to:",
    ),
    Shape(
        "postfix",
        r"This is the mail system at host|This is the Postfix program at host"
        r"|I'm sorry to have to inform you that your message could not",
        r"could not be delivered|could not|delayed|^<",
    ),
    Shape(
        "barracuda",
        r"Barracuda|bounced by the Barracuda",
        r"following recipients|not delivered",
    ),
    Shape(
        "mimecast",
        r"Mimecast",
        r"recipient|not be delivered",
    ),
    Shape(
        "proofpoint",
        r"Proofpoint|pphosted",
        r"following addresses|recipient",
    ),
    Shape(
        "qq",
        r"退信|很抱歉您发送的邮件被退回|收件人",
        r"收件人|recipient",
    ),
    Shape(
        "mailru",
        r"Недоставленное сообщение|Сообщение не было доставлено|не может быть доставлено",
        r"address(?:\(es\))? failed:|адрес|recipient",
    ),
    Shape(
        "gmx",
        r"Die Nachricht konnte nicht zugestellt werden|konnte nicht zugestellt werden"
        r"|Unzustellbar|Zustellung fehlgeschlagen|web\.de|gmx\.net",
        r"Empf.nger|zugestellt werden|address",
    ),
    Shape(
        "orange",
        r"Message non remis|n'a pas pu .tre remis|n'a pas pu .tre distribu|Votre message",
        r"destinataire|remis",
    ),
    Shape(
        "libero",
        r"Mancata consegna|Il messaggio non . stato consegnato|non . stato possibile consegnare",
        r"destinatar|consegna",
    ),
)

BOUNCE_SUBJECT: Final = re.compile(
    r"undeliver|undelivered|returned mail|delivery (?:status notification|failure|failed"
    r"|report|has failed|problem)|mail delivery|failure notice|non[- ]?deliver|could not be"
    r" delivered|delivery delayed|delayed mail|warning: could not send|not delivered"
    r"|returned to sender|unzustellbar|non remis|mancata consegna|недоставлен|退信",
    re.IGNORECASE,
)
BOUNCE_SENDER: Final = re.compile(
    r"mailer-daemon|postmaster|mail delivery (?:subsystem|system)|mail ?administrator",
    re.IGNORECASE,
)
DELAY_PHRASES: Final = re.compile(
    r"has not yet been delivered|this is a warning message only|delivery is delayed"
    r"|will (?:continue to )?(?:retry|keep trying|try again)|delivery incomplete"
    r"|not delivered yet|still undelivered|transient non-fatal errors|delayed mail"
    r"|hasn't been delivered yet|delivery attempts will continue|temporarily deferred"
    r"|no action is required on your part|zustellung wird weiter versucht"
)
"""Searched in the lower-cased text (faster than ignoring case)."""

_SHAPES = tuple(
    (s, re.compile(s.signature.lower()), re.compile(s.start, re.IGNORECASE | re.MULTILINE))
    for s in SHAPES
)
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]{1,64}+@[A-Za-z0-9\-]{1,63}+(?:\.[A-Za-z0-9\-]{1,63}+){1,8}+"
)
_OCCURRENCES: Final = 4
"""Occurrences of one address read for its diagnostic."""
_SKIP_LOCAL = re.compile(r"^(?:mailer-daemon|postmaster|double-bounce|no-?reply)$", re.IGNORECASE)
_ENVELOPE = re.compile(
    r"(?:MAIL FROM:?|Sender Address:|From:|Sender:|Reply-To:|Return-Path:|Message-ID:"
    r"|References:|In-Reply-To:)[^\n]{0,40}<?\s*$",
    re.IGNORECASE,
)
_SMTP_REPLY = re.compile(r"(?<![\d.])([245]\d\d)(?:[ -]+|:\s+)(?:#?[245]\.\d{1,3}\.\d{1,3}\b)?.*")
_HASH_STATUS = re.compile(r"#[245]\.\d{1,3}\.\d{1,3}")
_REMOTE = re.compile(
    r"(?:host|while talking to|Remote host|server)\s+\[?([a-z0-9][a-z0-9.\-]*\.[a-z]{2,})\]?",
    re.IGNORECASE,
)
_PROSE_SKIP = re.compile(
    r"^(?:[-=*_ ]*$|host |SMTP error|Remote host said|Giving up|The response|Learn more"
    r"|>>>|because|Diagnostic information|Generating server|Subject|Sent|To:|\(generated from)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class PlainBounce:
    shape: str
    recipients: tuple[RecipientStatus, ...]
    reporting_mta: str


def read_plain_bounce(
    text: str,
    subject: str,
    sender: str,
    own_addresses: frozenset[str],
    classifier: BounceClassifier,
) -> PlainBounce | None:
    """The bounce a text reports, or ``None`` if it does not read as one."""
    text = _report_text(text[:MAX_TEXT])
    lowered = text.lower()
    shape, region = _shape_region(text, lowered)
    if shape == "" and not (BOUNCE_SUBJECT.search(subject) or BOUNCE_SENDER.search(sender)):
        return None
    action = Action.DELAYED if DELAY_PHRASES.search(lowered) else Action.FAILED
    recipients = _recipients(text, region, own_addresses, action, classifier)
    if not recipients:
        if shape == "" and not BOUNCE_SUBJECT.search(subject):
            return None
        recipients = (_unnamed(text[region:], action, classifier),)
    return PlainBounce(shape or "plaintext", recipients, _reporting_mta(text))


def _unnamed(text: str, action: Action, classifier: BounceClassifier) -> RecipientStatus:
    """The verdict of a bounce that names no recipient: address ``""``, its first reply."""
    window = text[:_WINDOW]
    return recipient_status(classifier, "", action, "", _reply(window), _remote(window))


def is_bounce_text(text: str) -> bool:
    """Whether ``text`` is written in the words of a known bounce shape."""
    text = _report_text(text[:MAX_TEXT])
    return _shape_region(text, text.lower())[0] != ""


def _report_text(text: str) -> str:
    """The text before the returned copy of the message."""
    marker = COPY_MARKER.search(text)
    return text if marker is None else text[: marker.start()]


def _shape_region(text: str, lowered: str) -> tuple[str, int]:
    for shape, signature, start in _SHAPES:
        if signature.search(lowered):
            found = start.search(text)
            return shape.name, 0 if found is None else found.start()
    return "", 0


def _recipients(
    text: str,
    region: int,
    own: frozenset[str],
    action: Action,
    classifier: BounceClassifier,
) -> tuple[RecipientStatus, ...]:
    occurrences: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for match in _ADDRESS.finditer(text, region):
        address = clean_address(match[0])
        if not address or _not_recipient(text, match.start(), address, own):
            continue
        if address not in seen and len(seen) >= MAX_RECIPIENTS:
            break
        seen[address] = seen.get(address, 0) + 1
        occurrences.append((match.end(), address))
    windows = _windows(text, occurrences)
    out = []
    for address in seen:
        diagnostic, remote = _diagnostic(windows.get(address, []))
        out.append(recipient_status(classifier, address, action, "", diagnostic, remote))
    return tuple(out)


def _windows(text: str, occurrences: list[tuple[int, str]]) -> dict[str, list[str]]:
    """The text after each of the first occurrences of an address, up to another address."""
    windows: dict[str, list[str]] = {}
    next_other = len(text)
    for i in range(len(occurrences) - 1, -1, -1):
        end, address = occurrences[i]
        if i + 1 < len(occurrences) and occurrences[i + 1][1] != address:
            next_other = occurrences[i + 1][0]
        windows.setdefault(address, []).insert(0, text[end : min(next_other, end + _WINDOW)])
    return {address: found[:_OCCURRENCES] for address, found in windows.items()}


def _not_recipient(text: str, start: int, address: str, own: frozenset[str]) -> bool:
    local = address.rpartition("@")[0]
    if _SKIP_LOCAL.match(local) or address.lower() in own:
        return True
    before = text[max(0, start - 60) : start]
    return bool(_ENVELOPE.search(before)) or text[start - 1 : start] in ("/", "=", "?")


def _diagnostic(windows: list[str]) -> tuple[str, str]:
    """The first reply (or #code) after an occurrence of the address, else its first prose."""
    prose = ""
    remote = ""
    for window in windows:
        remote = remote or _remote(window)
        reply = _reply(window)
        if reply:
            return reply, remote
        prose = prose or _prose(window)
    return prose, remote


def _reply(window: str) -> str:
    for line_no, line in enumerate(window.split("\n")):
        stripped = line.strip().strip("'\"()<>").lstrip("<>(: ")
        candidate = _SMTP_REPLY.search(stripped)
        if candidate is not None and (line_no > 0 or candidate.start() < 120):
            head = stripped[candidate.start() :]
            return _with_continuation(head, window, line_no)
        hashed = _HASH_STATUS.search(line)
        if hashed is not None:
            return stripped
    return ""


def _with_continuation(head: str, window: str, line_no: int) -> str:
    """A reply and the indented lines that continue it (Postfix, Exim wrap at 78)."""
    lines = window.split("\n")[line_no + 1 : line_no + 6]
    out = [head.rstrip("'\")")]
    for line in lines:
        if not line[:1].isspace() or not line.strip() or _SMTP_REPLY.match(line.strip()):
            break
        out.append(line.strip().rstrip("'\")"))
    return " ".join(out)


def _prose(window: str) -> str:
    for line in window.split("\n")[1:8]:
        stripped = line.strip().strip("():")
        if stripped and not _PROSE_SKIP.match(stripped) and not _ADDRESS.fullmatch(stripped):
            return stripped
    first = window.split("\n", 1)[0].strip(" >:)(").strip()
    return first


def _remote(window: str) -> str:
    match = _REMOTE.search(window)
    return match[1].lower().rstrip(".") if match else ""


_REPORTING = re.compile(
    r"(?:mail system at host|qmail-send program at|Postfix program at host|Reporting-MTA: dns;"
    r"|Generating server:|delivery status notification from)\s*([a-z0-9][a-z0-9.\-]*[a-z0-9])",
    re.IGNORECASE,
)


def _reporting_mta(text: str) -> str:
    match = _REPORTING.search(text)
    return match[1].lower() if match else ""
