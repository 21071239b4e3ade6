"""The SMTP vocabulary both sides speak: replies, enhanced status codes, stages.

One reply type for the server (what it sends), the client (what it receives),
the bounce classifier, log records and DSN parsing: :class:`Reply`. Its
enhanced status code (RFC 3463, ``class.subject.detail``) is read by one
parser, :func:`parse_enhanced_code`. :class:`Stage` names the command a reply
answers (or the moment of the session, for the greeting and a connection
that failed). Replies that bounces quote inside their prose are found by
:func:`find_reply_code`, :func:`find_enhanced_code` and
:func:`unfold_quoted_reply`.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final, NamedTuple


class Stage(enum.StrEnum):
    """What a reply answers: a command, or a moment of the session."""

    DNS = "dns"
    """Finding the destination's hosts (no reply: a failure to resolve)."""
    CONNECT = "connect"
    """Opening the connection (no reply: a failure to connect)."""
    GREETING = "greeting"
    EHLO = "ehlo"
    HELO = "helo"
    LHLO = "lhlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    """The reply to ``DATA`` itself (354 or a refusal)."""
    DOT = "dot"
    """The reply to the end of the message (``<CRLF>.<CRLF>``)."""
    BDAT = "bdat"
    RSET = "rset"
    NOOP = "noop"
    QUIT = "quit"

    @property
    def command(self) -> str:
        """The command as log records name it: ``MAIL FROM``, ``RCPT TO``,
        ``DATA`` (for the final dot too), or ``connect`` and ``DNS`` for the
        moments before any command."""
        return _COMMANDS[self]


_COMMANDS: Final[dict[Stage, str]] = {stage: stage.value.upper() for stage in Stage} | {
    Stage.DNS: "DNS",
    Stage.CONNECT: "connect",
    Stage.GREETING: "connect",
    Stage.MAIL: "MAIL FROM",
    Stage.RCPT: "RCPT TO",
    Stage.DOT: "DATA",
}


class EnhancedCode(NamedTuple):
    """An enhanced status code (RFC 3463): ``5.7.1`` is ``(5, 7, 1)``."""

    klass: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|\Z)")
"""An enhanced status code and the whitespace after it (RFC 3463 §2: class 2, 4
or 5, subject and detail of one to three digits)."""


def parse_enhanced_code(text: str) -> EnhancedCode | None:
    """``"5.7.1"`` as ``EnhancedCode(5, 7, 1)``; None when ``text`` (stripped)
    is not one."""
    text = text.strip()
    match = _ENHANCED.match(text)
    if match is None or match.end() != len(text):
        return None
    return EnhancedCode(int(match[1]), int(match[2]), int(match[3]))


def split_enhanced_code(line: str) -> tuple[EnhancedCode | None, str]:
    """A reply line's leading enhanced code, if any, and the rest of the line
    after the code and the whitespace that follows it."""
    match = _ENHANCED.match(line)
    if match is None:
        return None, line
    return EnhancedCode(int(match[1]), int(match[2]), int(match[3])), line[match.end() :]


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: ``code``, enhanced status code ``"x.y.z"`` (``""`` when
    none), text, and the ``stage`` it answers where that matters (the client's
    replies; the server's go without one)."""

    code: int
    enhanced: str
    text: str
    stage: Stage | None = None
    """Not part of the wire bytes."""
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    """``encode``'s result, kept: most replies are constants sent again and again."""

    def encode(self) -> bytes:
        """The reply as wire bytes; multi-line when ``text`` has newlines."""
        wire = self._wire
        if wire is None:
            lines = self.text.split("\n")
            out = []
            for i, line in enumerate(lines):
                sep = " " if i == len(lines) - 1 else "-"
                prefix = (
                    f"{self.code}{sep}{self.enhanced} " if self.enhanced else f"{self.code}{sep}"
                )
                out.append(f"{prefix}{line}\r\n")
            wire = "".join(out).encode("utf-8")
            object.__setattr__(self, "_wire", wire)  # a cache on a frozen reply
        return wire

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def enhanced_code(self) -> EnhancedCode | None:
        return parse_enhanced_code(self.enhanced)

    def __str__(self) -> str:
        """One line, e.g. ``550 5.1.1 no such user``."""
        middle = f" {self.enhanced}" if self.enhanced else ""
        return f"{self.code}{middle} {self.text}"


# Replies quoted in prose: bounces write the remote server's reply inside their own
# text ("host mx.example.com said: 550 5.1.1 ...", "(#5.1.1)", "smtp;550-5.1.1 ...").

_QUOTED_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?=-|:?\s|\Z)")
_QUOTED_ENHANCED = re.compile(r"(?<![\d.])#?([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]\d)")
_CONTINUATION_CODE = re.compile(r"\s[245]\d\d[- ](?:#?[245]\.\d{1,3}\.\d{1,3}\s+)?(?=\S)")


def find_reply_code(text: str) -> tuple[int, int] | None:
    """The first basic reply code quoted in ``text`` and its offset: three digits
    2xx, 4xx or 5xx that are no part of a longer number or a dotted address,
    followed by ``-``, white space, ``: `` or the end (``"said: 550 5.1.1 x"``
    gives ``(550, 6)``)."""
    match = _QUOTED_CODE.search(text)
    return None if match is None else (int(match[1]), match.start())


def find_enhanced_code(text: str) -> EnhancedCode | None:
    """The first enhanced status code quoted anywhere in ``text``, with or without
    the ``#`` that qmail and Exchange put before it (``"... (#5.1.1)"``)."""
    match = _QUOTED_ENHANCED.search(text)
    if match is None:
        return None
    return EnhancedCode(int(match[1]), int(match[2]), int(match[3]))


def unfold_quoted_reply(text: str) -> str:
    """A multi-line reply quoted on one line, read as one reply: the codes that
    begin its continuation lines dropped (``"550-5.1.1 a 550-5.1.1 b 550 5.1.1 c"``
    reads ``"550 5.1.1 a b c"``). Other text is returned as it is."""
    if text[3:4] != "-" or find_reply_code(text) != (int(text[:3]), 0):
        return text
    return f"{text[:3]} {_CONTINUATION_CODE.sub(' ', text[4:])}"
