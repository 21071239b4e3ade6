"""Composition: an RFC 5322 message built from structured fields. Pure.

In: a ``Draft`` (sender, recipients, subject, text and/or HTML bodies,
attachments, extra header fields, campaign, priority). Out: the raw message,
CRLF line ends, every line at most 998 octets (RFC 5322 §2.1.1), header
fields folded at 78 and non-ASCII display names and subjects as RFC 2047
encoded words (the stdlib ``email`` package with ``policy.SMTP``). The bodies
go as ``text/plain`` and ``text/html`` (``multipart/alternative`` when both);
inline attachments (with a ``content_id``) join the HTML in
``multipart/related``; other attachments make the whole ``multipart/mixed``.
Blind copies are envelope recipients only: no ``Bcc`` field is written.
``campaign`` and ``priority`` become the ``X-Campaign`` and
``X-Priority-Class`` fields acceptance reads, as over SMTP. ``Date`` and
``Message-ID`` are left to acceptance, which adds them.

Bad input raises ``CompositionError`` naming the field (``to[2]``,
``headers.From``, ``attachments[0].content_type``).
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.contentmanager import _encode_text  # type: ignore[attr-defined]
from email.header import Header
from email.message import EmailMessage, MIMEPart
from email.utils import formataddr
from typing import NamedTuple

from engine.submission.acceptance import PRIORITY_HEADER, HeaderField, parse_header_fields
from engine.submission.address_policy import recipient_problem

OWNED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version", "sender"}
)
"""Header fields the composer writes itself; ``Content-*`` and ``DKIM-*`` too."""
OWNED_PREFIXES = ("content-", "dkim-")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters but tab, which no header value may hold."""
_LOCAL_SPECIALS = re.compile(r'[ "(),:;<>\[\\\]]')
"""What a local part may not hold unquoted (RFC 5322 §3.4.1: specials and space)."""
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")
"""RFC 5322 §3.6.8 ftext, short enough to fold."""
_MIME_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}")
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,200}")
MAX_HEADER_VALUE = 900
MAX_NAME = 200
"""Longest display name: quoted, it still fits a 998-octet line with its address."""
SMTP_POLICY = policy.SMTP.clone(refold_source="none")
"""CRLF; the header fields are written as made here (``_address_field``,
``_unstructured``), not refolded: the stdlib's folding puts spaces into
non-ASCII display names and breaks a line right after a field's colon."""


class CompositionError(ValueError):
    """A draft that cannot become a message; ``field`` names the bad input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Mailbox(NamedTuple):
    """An address with an optional display name."""

    email: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None
    """Set for an inline part the HTML refers to as ``cid:...``."""


class Draft(NamedTuple):
    """What a message is made of, before composition. Named tuples, as ``Mailbox``: one
    or more are made for every message sent over HTTP and every campaign recipient."""

    sender: Mailbox
    to: tuple[Mailbox, ...] = ()
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()
    reply_to: tuple[Mailbox, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    campaign: str | None = None
    priority: str | None = None

    @property
    def recipients(self) -> list[str]:
        """The envelope recipients: to, cc and bcc, in order."""
        return [m.email for m in (*self.to, *self.cc, *self.bcc)]


def compose(draft: Draft) -> bytes:
    """The raw message of ``draft``; ``CompositionError`` naming a bad field."""
    return composed_message(draft)[0]


def composed_message(draft: Draft) -> tuple[bytes, list[HeaderField]]:
    """``compose(draft)`` and its header fields as ``parse_header_fields`` reads them
    back: known as they are written, so that acceptance need not read them again
    (``Outgoing.fields``)."""
    check_draft(draft)
    fields = _header_fields(draft)
    if draft.attachments:
        message = EmailMessage(policy=SMTP_POLICY)
        for name, value in fields:
            message.set_raw(name, value)
        _set_bodies(message, draft)
        for part in message.iter_parts() if message.is_multipart() else ():
            _drop_part_mime_version(part)
        raw = message.as_bytes(policy=SMTP_POLICY)
        return raw, parse_header_fields(raw)
    body_fields, payload = _text_bodies(draft)
    return flattened([*fields, *body_fields], payload)


def _header_fields(draft: Draft) -> list[tuple[str, str]]:
    """The header fields of ``draft`` but the MIME ones, in order, as written."""
    fields = [("From", _address_field((draft.sender,)))]
    for name, field in (("To", "to"), ("Cc", "cc"), ("Reply-To", "reply_to")):
        mailboxes = getattr(draft, field)
        if mailboxes:
            fields.append((name, _address_field(mailboxes)))
    fields.append(("Subject", _unstructured("Subject", draft.subject)))
    fields.extend((name, _unstructured(name, value)) for name, value in draft.headers)
    if draft.campaign is not None:
        fields = [f for f in fields if f[0].lower() != "x-campaign"]
        fields.append(("X-Campaign", _unstructured("X-Campaign", draft.campaign)))
    if draft.priority is not None:
        fields = [f for f in fields if f[0].lower() != PRIORITY_HEADER.lower()]
        fields.append(("X-Priority-Class", draft.priority))
    return fields


def flattened(fields: Sequence[tuple[str, str]], payload: str) -> tuple[bytes, list[HeaderField]]:
    """What ``EmailMessage.as_bytes(policy=SMTP_POLICY)`` gives for a message of the
    raw header ``fields`` (``set_raw``) and the ASCII ``payload`` (``_text_bodies``),
    without the stdlib's message and the generator's parsing of each field: fields as
    set, lines ended by CRLF, the payload's line ends made CRLF; with the header
    fields as ``parse_header_fields`` reads them back (a value written on several
    lines reads back unfolded)."""
    lines = []
    read_back = []
    start = 0
    for name, value in fields:
        if value.isprintable():  # one line: nothing that ends one is printable
            folded, unfolded = value, value.strip()
        else:
            folded = CRLF.join(value.splitlines())
            unfolded = folded.replace(CRLF, "").strip()
        line = f"{name}: {folded}{CRLF}"
        end = start + len(line)
        read_back.append(HeaderField(name, unfolded, start, end, start + len(name)))
        lines.append(line)
        start = end
    lines += (CRLF, _lf_ended(payload).replace("\n", CRLF))
    return "".join(lines).encode("ascii"), read_back


def _lf_ended(text: str) -> str:
    """``text`` with every line end made LF: CRLF, CR or LF, matched left to right as
    the generator matches them (not as ``str.splitlines``, which also ends a line at a
    form feed)."""
    if "\r" not in text:
        return text
    return text.replace(CRLF, "\n").replace("\r", "\n")


def _drop_part_mime_version(part: MIMEPart) -> None:
    """MIME-Version belongs in the top-level header only (RFC 2045 §4); the stdlib
    writes it in the parts it makes."""
    del part["MIME-Version"]
    if part.is_multipart():
        for child in part.iter_parts():
            _drop_part_mime_version(child)


def raw_message(text: str) -> bytes:
    """A message given as text (raw RFC 5322 over HTTP), UTF-8 with CRLF line ends."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def check_draft(draft: Draft) -> None:
    """Raise ``CompositionError`` for the first bad field of ``draft``."""
    _check_mailbox(draft.sender, "from")
    if not draft.recipients:
        raise CompositionError("to", "at least one recipient (to, cc or bcc) is needed")
    for field in ("to", "cc", "bcc", "reply_to"):
        for index, mailbox in enumerate(getattr(draft, field)):
            _check_mailbox(mailbox, f"{field}[{index}]")
    _check_text(draft.subject, "subject")
    if draft.text is None and draft.html is None:
        raise CompositionError("text", "text or html is needed")
    for name, value in draft.headers:
        _check_header(name, value, f"headers.{name}" if _FIELD_NAME.fullmatch(name) else "headers")
    for index, attachment in enumerate(draft.attachments):
        _check_attachment(attachment, f"attachments[{index}]")
    if any(a.content_id for a in draft.attachments) and draft.html is None:
        raise CompositionError("attachments", "inline attachments (content_id) need html")
    for optional, field in ((draft.campaign, "campaign"), (draft.priority, "priority")):
        if optional is not None:
            _check_text(optional, field)


def _check_mailbox(mailbox: Mailbox, field: str) -> None:
    if not mailbox.email.isascii():
        raise CompositionError(field, "non-ASCII addresses are not supported")
    problem = recipient_problem(mailbox.email)
    if problem is not None or mailbox.email.count("@") != 1 or "<" in mailbox.email:
        reason = problem.text if problem is not None else "not an address"
        raise CompositionError(field, f"{mailbox.email!r}: {reason}")
    local = mailbox.email.partition("@")[0]
    if (
        local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or _LOCAL_SPECIALS.search(local)
    ):
        raise CompositionError(field, f"{mailbox.email!r}: not an address")
    if not mailbox.name:
        return
    _check_text(mailbox.name, f"{field}.name")
    if len(mailbox.name) > MAX_NAME:
        raise CompositionError(f"{field}.name", f"longer than {MAX_NAME} characters")


def display_name(name: str) -> str:
    """A display name as it reads back: runs of white space are one space, as
    folding white space in a phrase means (RFC 5322 §3.2.2)."""
    return " ".join(name.split())


def _check_text(value: str, field: str) -> None:
    """A header value: one line, of a length a header can fold."""
    if "\r" in value or "\n" in value:
        raise CompositionError(field, "line breaks are not allowed")
    if _CONTROL.search(value):
        raise CompositionError(field, "control characters are not allowed")
    if len(value) > MAX_HEADER_VALUE:
        raise CompositionError(field, f"longer than {MAX_HEADER_VALUE} characters")


def _check_header(name: str, value: str, field: str) -> None:
    if not _FIELD_NAME.fullmatch(name):
        raise CompositionError(field, f"{name!r} is not a header field name")
    lowered = name.lower()
    if lowered in OWNED_HEADERS or lowered.startswith(OWNED_PREFIXES):
        raise CompositionError(field, f"{name} is set by the message's own fields")
    _check_text(value, field)


def _check_attachment(attachment: Attachment, field: str) -> None:
    if not attachment.filename.strip():
        raise CompositionError(f"{field}.filename", "a file name is needed")
    _check_text(attachment.filename, f"{field}.filename")
    if not _MIME_TYPE.fullmatch(attachment.content_type):
        raise CompositionError(f"{field}.content_type", "not a MIME type (type/subtype)")
    if attachment.content_type.lower().startswith("multipart/"):
        raise CompositionError(f"{field}.content_type", "a multipart type cannot be attached")
    if attachment.content_id is not None and not _CONTENT_ID.fullmatch(attachment.content_id):
        raise CompositionError(f"{field}.content_id", "not a content id")


def _unstructured(name: str, value: str) -> str:
    """An unstructured field's value, surrounding white space dropped, folded at white
    space within 78 characters where it has some; as RFC 2047 encoded words when it
    is not plain ASCII text (or holds what would read as one, ``=?``)."""
    value = value.strip()
    charset = "us-ascii" if value.isascii() and "=?" not in value else "utf-8"
    if charset == "us-ascii" and len(name) + 2 + len(value) <= 78:
        return value  # what Header gives for a value that fits the first line
    header = Header(value, charset, maxlinelen=78, header_name=name)
    # A first word too long for the first line is put on the next one, leaving the
    # value to start with white space: keep it on the first line instead.
    return header.encode(splitchars=" ", linesep="\r\n").removeprefix("\r\n ")


def _address_field(mailboxes: Sequence[Mailbox]) -> str:
    """An address list, one mailbox a line; a non-ASCII display name as RFC 2047
    encoded words of at most 76 characters a line (RFC 2047 §2)."""
    pieces = []
    for mailbox in mailboxes:
        name = display_name(mailbox.name)
        if not name:
            pieces.append(mailbox.email)
        elif name.isascii():
            pieces.append(formataddr((name, mailbox.email)))
        else:
            encoded = Header(name, "utf-8", maxlinelen=76).encode(linesep="\r\n")
            pieces.append(f"{encoded}\r\n <{mailbox.email}>")
    return ",\r\n ".join(pieces)


def _set_bodies(message: EmailMessage, draft: Draft) -> None:
    if draft.text is not None:
        message.set_content(draft.text, cte=_text_cte(draft.text))
        if draft.html is not None:
            message.add_alternative(draft.html, subtype="html", cte=_text_cte(draft.html))
    elif draft.html is not None:
        message.set_content(draft.html, subtype="html", cte=_text_cte(draft.html))
    inline = [a for a in draft.attachments if a.content_id]
    if inline:
        html = message.get_body(("html",))
        assert isinstance(html, EmailMessage)
        for attachment in inline:
            maintype, subtype = attachment.content_type.split("/", 1)
            html.add_related(
                attachment.content,
                maintype,
                subtype,
                cid=f"<{attachment.content_id}>",
                filename=attachment.filename.strip(),
                disposition="inline",
            )
    for attachment in draft.attachments:
        if not attachment.content_id:
            maintype, subtype = attachment.content_type.split("/", 1)
            message.add_attachment(
                attachment.content, maintype, subtype, filename=attachment.filename.strip()
            )


def _text_bodies(draft: Draft) -> tuple[list[tuple[str, str]], str]:
    """The MIME header fields and the payload of a draft with text and/or HTML and no
    attachments, as ``_set_bodies`` writes them (the stdlib's own body encoder, the
    same header fields) without its per-part header parsing: a campaign composes a
    message per recipient."""
    parts = [
        (subtype, _encoded_text(body))
        for subtype, body in (("plain", draft.text), ("html", draft.html))
        if body is not None
    ]
    if len(parts) == 1:
        [(subtype, (cte, data))] = parts
        return [
            ("MIME-Version", "1.0"),
            ("Content-Type", f'text/{subtype}; charset="utf-8"'),
            ("Content-Transfer-Encoding", cte),
        ], data
    boundary = _boundary([data for _, (_, data) in parts])
    body = "".join(
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n\r\n{data.replace(chr(10), CRLF)}\r\n"
        for subtype, (cte, data) in parts
    )
    fields = [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    return fields, f"{body}--{boundary}--\r\n"


CRLF = "\r\n"


def _boundary(bodies: Sequence[str]) -> str:
    """A multipart boundary in the stdlib's style that no body line starts with."""
    while True:
        boundary = f"{'=' * 15}{random.randrange(sys.maxsize):019d}=="
        if not any(f"--{boundary}" in body for body in bodies):
            return boundary


def _encoded_text(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, the encoded body) of a text part, as the stdlib's body
    encoder writes it for ``_text_cte``'s choice; a 7bit one without its round trip
    through bytes: its lines, LF-ended, and a line end after the last."""
    cte = _text_cte(text)
    if cte != "7bit":
        encoded: tuple[str, str] = _encode_text(text, "utf-8", cte, SMTP_POLICY)
        return encoded
    lines = _lf_ended(text)
    return cte, lines if lines.endswith("\n") else lines + "\n"


def _text_cte(text: str) -> str:
    """Quoted-printable unless the text is short-lined ASCII: every line of the
    message stays within 998 octets, and 8-bit data needs no 8BITMIME."""
    if text.isascii() and max(map(len, _lf_ended(text).split("\n")), default=0) <= 76:
        return "7bit"
    return "quoted-printable"
