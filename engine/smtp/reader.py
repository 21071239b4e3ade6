"""The SMTP server's wire format: framing and command syntax, with no I/O.

Owns:

- ``SmtpReader``: an incremental reader. Bytes go in through ``feed``;
  ``next_event`` hands out one event at a time, or ``None`` when it needs more
  bytes. In command mode the events are ``CommandLine`` (a complete line,
  decoded as UTF-8, without its CRLF) or ``LineError`` (the line was refused;
  send its reply). After the server has answered DATA with 354 it calls
  ``start_data``; the reader then yields exactly one ``MessageBody`` or
  ``MessageRejected`` and goes back to command mode by itself. Bytes after
  a line or after the end of data stay buffered, so pipelined commands
  (RFC 2920) come out in order.
- ``parse_command``, ``parse_path``: the syntax of a command line and of the
  ``MAIL FROM:<path> params`` / ``RCPT TO:<path> params`` arguments
  (RFC 5321 4.1.1.2, 4.1.1.3, 4.1.2). Syntax errors raise ``CommandError``
  carrying the reply to send.

Command framing (RFC 5321 2.3.8, 4.1.1):

- Only CRLF ends a line. A line that contains a bare CR, a bare LF or a NUL
  is refused with ``500 5.5.2``; so is a line that is not UTF-8.
- A line longer than ``max_line_length`` octets including its CRLF (RFC 5321
  4.5.3.1.4 sets 512; the default here, 2048, leaves room for long AUTH
  responses and parameters) is refused with ``500 5.5.2`` as soon as the
  limit is crossed; the rest of it, up to the next CRLF, is discarded.

Data framing (RFC 5321 4.1.1.4, 4.5.2) and its policy:

- Data ends only on ``CRLF . CRLF``; the CRLF that ended the DATA command
  counts as the first one, so ``.CRLF`` right after 354 is an empty body.
  ``LF . LF``, ``CR . CR``, ``LF . CRLF`` and ``CRLF . LF`` never end data:
  no SMTP smuggling.
- Rejections are decided once the real end has been read, so the dialogue
  stays in step. In order of precedence:
  more than ``max_message_bytes`` after unstuffing gives ``552 5.3.4`` (the
  reader stops buffering at the limit and discards the rest up to the end);
  a bare CR, a bare LF or a NUL anywhere in the body gives ``550 5.6.0``
  (never normalised, never accepted; Postfix's
  ``smtpd_forbid_bare_newline = reject``); a line longer than 998 octets
  without its CRLF (RFC 5321 4.5.3.1.6) gives ``550 5.5.2``.
- Transparency (RFC 5321 4.5.2): a line that starts with a period loses that
  period, so ``..`` becomes ``.``.
- The body handed out has CRLF line ends and is unstuffed.
- The work is a few C-level scans per chunk (``find``, ``count``,
  ``replace``, ``split``); nothing walks the body line by line in Python.

Invariants: ``next_event`` never returns an event for bytes that were not fed;
the buffer never holds more than ``max_line_length`` (command mode) or about
``max_message_bytes`` (data mode) plus the last fed chunk.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from engine.smtp.reply import Reply

__all__ = [
    "CommandError",
    "CommandLine",
    "Event",
    "LineError",
    "MessageBody",
    "MessageRejected",
    "SmtpReader",
    "parse_command",
    "parse_path",
]

MAX_TEXT_LINE: Final = 998
"""Octets in a body line, CRLF excluded (RFC 5321 4.5.3.1.6)."""

REPLY_LINE_TOO_LONG: Final = Reply(500, "5.5.2", "Line too long")
REPLY_BAD_LINE: Final = Reply(500, "5.5.2", "Bare CR, LF or NUL not allowed in a command line")
REPLY_NOT_UTF8: Final = Reply(500, "5.5.2", "Command line is not valid UTF-8")
REPLY_TOO_BIG: Final = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
REPLY_BARE_NEWLINE: Final = Reply(550, "5.6.0", "Bare LF/CR/NUL not allowed, see RFC 5321 2.3.8")
REPLY_BODY_LINE_TOO_LONG: Final = Reply(
    550, "5.5.2", "Message line longer than 998 octets, see RFC 5321 4.5.3.1.6"
)


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A complete command line, CRLF removed."""

    text: str


@dataclass(frozen=True, slots=True)
class LineError:
    """A command line the reader refused; the server sends ``reply``."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class MessageBody:
    """The finished DATA body: CRLF line ends, dot-unstuffed."""

    body: bytes


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """The DATA body was read to its end and refused; the server sends ``reply``."""

    reply: Reply


Event = CommandLine | LineError | MessageBody | MessageRejected

_CRLF: Final = b"\r\n"
_DATA_END: Final = b"\r\n.\r\n"
_STUFFED: Final = b"\r\n."


class SmtpReader:
    """Incremental SMTP reader: ``feed`` bytes, take events from ``next_event``."""

    def __init__(self, *, max_line_length: int = 2048, max_message_bytes: int) -> None:
        self._max_line = max_line_length
        self._max_bytes = max_message_bytes
        self._buf = bytearray()
        self._in_data = False
        self._skipping_line = False
        self._scan = 0
        self._dot_scan = 0
        self._dots = 0
        self._overflow = False

    @property
    def in_data(self) -> bool:
        return self._in_data

    @property
    def buffered(self) -> int:
        """Octets fed but not yet handed out or discarded."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def discard_pending(self) -> int:
        """Drop everything buffered (STARTTLS, RFC 3207 4.2); returns the count."""
        dropped = len(self._buf)
        self._buf.clear()
        self._scan = 0
        return dropped

    def start_data(self) -> None:
        """Switch to data mode; the DATA command's CRLF opens the body."""
        if self._in_data:
            raise RuntimeError("start_data called twice")
        self._in_data = True
        # The CRLF that ended DATA belongs to the end sequence and to dot-stuffing.
        self._buf[0:0] = _CRLF
        self._scan = 0
        self._dot_scan = 0
        self._dots = 0
        self._overflow = False

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more bytes are needed."""
        if self._in_data:
            return self._next_data_event()
        return self._next_command_event()

    def _next_command_event(self) -> Event | None:
        buf = self._buf
        if self._skipping_line:
            end = buf.find(_CRLF)
            if end < 0:
                del buf[: -1 if buf.endswith(b"\r") else len(buf)]
                return None
            del buf[: end + 2]
            self._skipping_line = False
        end = buf.find(_CRLF, self._scan)
        if end < 0:
            if len(buf) > self._max_line:
                self._skipping_line = True
                del buf[: -1 if buf.endswith(b"\r") else len(buf)]
                self._scan = 0
                return LineError(REPLY_LINE_TOO_LONG)
            self._scan = max(len(buf) - 1, 0)
            return None
        self._scan = 0
        line = bytes(buf[:end])
        del buf[: end + 2]
        if end + 2 > self._max_line:
            return LineError(REPLY_LINE_TOO_LONG)
        # find, not ``in``: ``bytes in bytes`` first tries the needle as an int, at a cost
        if line.find(b"\n") >= 0 or line.find(b"\r") >= 0 or line.find(b"\0") >= 0:
            return LineError(REPLY_BAD_LINE)
        try:
            return CommandLine(line.decode("utf-8"))
        except UnicodeDecodeError:
            return LineError(REPLY_NOT_UTF8)

    def _next_data_event(self) -> Event | None:
        buf = self._buf
        end = buf.find(_DATA_END, self._scan)
        if end < 0:
            self._scan = max(len(buf) - 4, 0)
            if self._overflow:
                self._drop_head()
            else:
                self._count_dots()
            return None
        with memoryview(buf) as view:
            raw = bytes(view[2 : end + 2])
        del buf[: end + 5]
        self._in_data = False
        self._scan = 0
        if self._overflow:
            return MessageRejected(REPLY_TOO_BIG)
        return _finish_body(raw, self._max_bytes)

    def _count_dots(self) -> None:
        """Track the unstuffed size; past the limit, stop buffering the body."""
        buf = self._buf
        self._dots += buf.count(_STUFFED, self._dot_scan)
        self._dot_scan = max(len(buf) - 2, 0)
        # Up to 4 octets of a partly received end sequence may be counted.
        if len(buf) - 2 - self._dots > self._max_bytes + 4:
            self._overflow = True
            self._drop_head()

    def _drop_head(self) -> None:
        """Keep only the tail that may start the end sequence."""
        if len(self._buf) > 4:
            del self._buf[:-4]
        self._scan = 0


def _finish_body(raw: bytes, max_bytes: int) -> MessageBody | MessageRejected:
    """Check and unstuff ``raw`` (the body as sent, ending with its CRLF)."""
    lines = raw.split(_CRLF)
    rest = b"".join(lines)  # any CR or LF left in here was bare
    clean = rest.find(b"\r") < 0 and rest.find(b"\n") < 0 and rest.find(b"\0") < 0
    body = raw.replace(_STUFFED, _CRLF)
    if body.startswith(b"."):
        body = body[1:]
    if len(body) > max_bytes:
        return MessageRejected(REPLY_TOO_BIG)
    if not clean:
        return MessageRejected(REPLY_BARE_NEWLINE)
    if max(map(len, lines)) > MAX_TEXT_LINE:
        return MessageRejected(REPLY_BODY_LINE_TOO_LONG)
    return MessageBody(body)


class CommandError(ValueError):
    """A command argument with bad syntax; ``reply`` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"{reply.code} {reply.enhanced} {reply.text}")
        self.reply = reply


def parse_command(line: str) -> tuple[str, str]:
    """``"mail FROM:<a@b>"`` -> ``("MAIL", "FROM:<a@b>")``; the argument is stripped."""
    verb, _, arg = line.partition(" ")
    return verb.upper(), arg.strip(" ")


_ATEXT: Final = r"\-A-Za-z0-9!#$%&'*+/=?^_`{|}~"
_UTF8_NON_ASCII: Final = "\u0080-\U0010ffff"
_DOT_STRING: Final = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_DOT_STRING_UTF8: Final = re.compile(
    rf"[{_ATEXT}{_UTF8_NON_ASCII}]+(?:\.[{_ATEXT}{_UTF8_NON_ASCII}]+)*"
)
# RFC 5321 4.1.2 qtextSMTP and quoted-pairSMTP; RFC 6531 3.3 adds UTF-8.
_QUOTED: Final = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_QUOTED_UTF8: Final = re.compile(
    rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8_NON_ASCII}]|\\[\x20-\x7e])*"'
)
_LDH: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LDH_LABEL: Final = re.compile(_LDH)
_LDH_DOMAIN: Final = re.compile(rf"{_LDH}(?:\.{_LDH})*")
_ESMTP_KEYWORD: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ESMTP_VALUE: Final = re.compile(r"[\x21-\x3c\x3e-\x7e]+")

_MAX_LOCAL_PART: Final = 64  # RFC 5321 4.5.3.1.1
_MAX_DOMAIN: Final = 255  # RFC 5321 4.5.3.1.2
_MAX_PATH: Final = 256  # RFC 5321 4.5.3.1.3, angle brackets included
_MAIL_PARAMS: Final = frozenset({"SIZE", "BODY", "SMTPUTF8"})
_BODY_TYPES: Final = frozenset({"7BIT", "8BITMIME"})  # RFC 6152


def parse_path(arg: str, keyword: str, *, smtputf8: bool = False) -> tuple[str, dict[str, str]]:
    """Parse ``FROM:<path> params`` (keyword ``"FROM"``) or ``TO:<path> params``.

    Returns the address as written (``""`` for the null sender) and the
    parameters with upper-cased keywords (a parameter without value maps to
    ``""``). MAIL accepts SIZE, BODY and SMTPUTF8; RCPT accepts none.
    Non-ASCII is allowed only with SMTPUTF8 (from MAIL's own parameter, or
    ``smtputf8`` for RCPT). Raises ``CommandError``.
    """
    kind = keyword.upper()
    head, colon, rest = arg.partition(":")
    if not colon or head.strip(" ").upper() != kind:
        verb = "MAIL FROM" if kind == "FROM" else "RCPT TO"
        raise CommandError(Reply(501, "5.5.4", f"Syntax: {verb}:<address>"))
    rest = rest.lstrip(" ")
    close = _path_end(rest)
    if not rest.startswith("<") or close < 0:
        raise _bad_path(kind, "Address must be enclosed in angle brackets")
    tail = rest[close + 1 :]
    if tail and not tail.startswith(" "):
        raise CommandError(Reply(501, "5.5.4", "Syntax error after the address"))
    params = _parse_params(tail, kind)
    utf8 = smtputf8 or (kind == "FROM" and "SMTPUTF8" in params)
    inner = rest[1:close]
    if not utf8 and not inner.isascii():
        raise CommandError(Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
    return _check_address(inner, kind, utf8), params


def _bad_path(kind: str, text: str) -> CommandError:
    return CommandError(Reply(501, "5.1.7" if kind == "FROM" else "5.1.3", text))


def _path_end(text: str) -> int:
    """Index of the ``>`` closing the path, skipping quoted strings; -1 if none."""
    if '"' not in text:
        return text.find(">")
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    return -1


def _parse_params(text: str, kind: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(key) or (eq and not _ESMTP_VALUE.fullmatch(value)):
            raise CommandError(Reply(501, "5.5.4", "Malformed parameter"))
        key = key.upper()
        if key in params:
            raise CommandError(Reply(501, "5.5.4", f"Duplicate parameter {key}"))
        if kind != "FROM" or key not in _MAIL_PARAMS:
            raise CommandError(Reply(555, "5.5.4", f"Unsupported parameter {key}"))
        params[key] = _check_param(key, value, bool(eq))
    return params


def _check_param(key: str, value: str, has_value: bool) -> str:
    if key == "SIZE" and not (value.isdigit() and len(value) <= 20):
        raise CommandError(Reply(501, "5.5.4", "SIZE needs a number"))
    if key == "BODY" and value.upper() not in _BODY_TYPES:
        raise CommandError(Reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME"))
    if key == "SMTPUTF8" and has_value:
        raise CommandError(Reply(501, "5.5.4", "SMTPUTF8 takes no value"))
    return value.upper() if key == "BODY" else value


def _check_address(inner: str, kind: str, utf8: bool) -> str:
    if not inner:
        if kind == "FROM":
            return ""
        raise _bad_path(kind, "Null recipient not allowed")
    if inner.startswith("@"):
        raise _bad_path(kind, "Source routes are not accepted")
    if kind == "TO" and inner.lower() == "postmaster":
        return inner  # RFC 5321 4.1.1.3: <Postmaster> without a domain
    if len(inner.encode("utf-8")) + 2 > _MAX_PATH:
        raise _bad_path(kind, "Address too long")
    local, domain = _split_mailbox(inner, kind)
    quoted = _QUOTED_UTF8 if utf8 else _QUOTED
    dot_string = _DOT_STRING_UTF8 if utf8 else _DOT_STRING
    if not (dot_string.fullmatch(local) or quoted.fullmatch(local)):
        raise _bad_path(kind, "Bad local part syntax")
    if len(local.encode("utf-8")) > _MAX_LOCAL_PART:
        raise _bad_path(kind, "Local part too long")
    if not _domain_ok(domain):
        raise _bad_path(kind, "Bad domain syntax")
    return inner


def _split_mailbox(inner: str, kind: str) -> tuple[str, str]:
    if inner.startswith('"'):
        match = _QUOTED_UTF8.match(inner)
        if match is None or inner[match.end() : match.end() + 1] != "@":
            raise _bad_path(kind, "Bad quoted local part")
        return inner[: match.end()], inner[match.end() + 1 :]
    local, at, domain = inner.partition("@")
    if not at:
        raise _bad_path(kind, "Address needs a domain")
    return local, domain


def _domain_ok(domain: str) -> bool:
    """RFC 5321 4.1.2 Domain or address-literal; U-labels need IDNA (RFC 5890)."""
    if domain.startswith("[") and domain.endswith("]"):
        return _literal_ok(domain[1:-1])
    if not domain or len(domain) > _MAX_DOMAIN:
        return False
    if domain.isascii():
        return _LDH_DOMAIN.fullmatch(domain) is not None
    return all(_label_ok(label) for label in domain.split("."))


def _label_ok(label: str) -> bool:
    if label.isascii():
        return _LDH_LABEL.fullmatch(label) is not None
    try:
        ascii_label = label.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return _LDH_LABEL.fullmatch(ascii_label) is not None


def _literal_ok(literal: str) -> bool:
    try:
        if literal[:5].upper() == "IPV6:":
            ipaddress.IPv6Address(literal[5:])
        else:
            ipaddress.IPv4Address(literal)
    except ValueError:
        return False
    return True
