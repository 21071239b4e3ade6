"""The SMTP client's reader of replies: bytes in, ``Reply`` values out, no I/O.

Owns ``ReplyReader``, an incremental parser: bytes go in through ``feed``;
``next_reply`` hands out one complete reply at a time, or ``None`` when it
needs more bytes, or raises ``MalformedReply``. Bytes after a reply stay
buffered, so the replies to pipelined commands (RFC 2920) come out in order
however the server's segments split them.

Reply syntax (RFC 5321 §4.2): every line is a three-digit code whose first
digit is 2 to 5, then ``-`` on all lines but the last, or a space (or
nothing) on the last, then the text. All lines of a reply carry the same
code. A line ends at LF, with or without the CR before it (a receiver is
lenient in what it accepts; the line ends concern only our own framing).

The reply's enhanced status code (RFC 2034, RFC 3463) is the one that starts
its first line's text (``engine.smtp.reply.split_enhanced_code``); it is
removed from every line that repeats it. The text is the lines' texts joined
by ``"\\n"``, each stripped of surrounding blanks, so ``Reply.encode`` of a
parsed reply gives the same lines back. Text that is not UTF-8 is decoded
with replacement characters.

Limits: a line longer than ``MAX_LINE_OCTETS`` or a reply longer than
``MAX_REPLY_OCTETS`` is ``MalformedReply`` as soon as it is seen, so a
server cannot make the client buffer without bound.

Invariant: every byte fed is either part of a reply handed out, still
buffered, or the reason for ``MalformedReply``; each line is parsed once.
"""

from __future__ import annotations

from typing import Final

from engine.smtp.reply import Reply, split_enhanced_code

__all__ = ["MAX_LINE_OCTETS", "MAX_REPLY_OCTETS", "MalformedReply", "ReplyReader"]

MAX_LINE_OCTETS: Final = 8192
"""Octets in one reply line with its line end (RFC 5321 §4.5.3.1.5 says 512; servers
write longer ones)."""
MAX_REPLY_OCTETS: Final = 65536
"""Octets in one multi-line reply."""
_FIRST_DIGITS: Final = frozenset(b"2345")
_DIGITS: Final = frozenset(b"0123456789")


class MalformedReply(Exception):
    """The server sent something that is not an SMTP reply; ``str`` says what."""


class ReplyReader:
    """Incremental SMTP reply parser (see the module docstring)."""

    __slots__ = ("_buffer", "_code", "_lines", "_reply_octets", "_searched")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._searched = 0
        """Octets at the start of ``_buffer`` known to hold no LF."""
        self._code = 0
        self._lines: list[str] = []
        """The texts of the lines read so far of an incomplete multi-line reply."""
        self._reply_octets = 0

    @property
    def pending(self) -> bool:
        """Bytes are buffered that are not yet a complete reply."""
        return bool(self._buffer) or bool(self._lines)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def clear(self) -> None:
        """Forget everything buffered (after STARTTLS, RFC 3207 §4.2)."""
        self._buffer.clear()
        self._searched = 0
        self._lines.clear()
        self._reply_octets = 0

    def next_reply(self) -> Reply | None:
        """The next complete reply, or ``None`` until more bytes come.

        Raises ``MalformedReply``; the reader is then of no further use.
        """
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._searched)
            if end < 0:
                self._searched = len(buffer)
                if len(buffer) >= MAX_LINE_OCTETS:
                    raise MalformedReply(f"reply line longer than {MAX_LINE_OCTETS} octets")
                return None
            if end >= MAX_LINE_OCTETS:
                raise MalformedReply(f"reply line longer than {MAX_LINE_OCTETS} octets")
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            self._searched = 0
            self._reply_octets += end + 1
            if self._reply_octets > MAX_REPLY_OCTETS:
                raise MalformedReply(f"reply longer than {MAX_REPLY_OCTETS} octets")
            code, last, text = _split_line(line)
            if self._lines and code != self._code:
                raise MalformedReply(
                    f"line with code {code} inside a reply with code {self._code}: {_shown(line)}"
                )
            self._code = code
            self._lines.append(text)
            if last:
                lines, self._lines = self._lines, []
                self._reply_octets = 0
                return _reply(code, lines)


def _split_line(line: bytes) -> tuple[int, bool, str]:
    """A reply line (without its LF) as code, whether it is the last, and its text."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if (
        len(line) < 3
        or line[0] not in _FIRST_DIGITS
        or line[1] not in _DIGITS
        or line[2] not in _DIGITS
        or line[3:4] not in (b"", b" ", b"-")
    ):
        raise MalformedReply(_shown(line))
    text = line[4:].decode("utf-8", "replace").strip()
    return int(line[:3]), line[3:4] != b"-", text


def _reply(code: int, lines: list[str]) -> Reply:
    first, rest = split_enhanced_code(lines[0])
    if first is None:
        return Reply(code, "", "\n".join(lines))
    enhanced = str(first)
    texts = [rest.lstrip()]
    for line in lines[1:]:
        found, after = split_enhanced_code(line)
        texts.append(after.lstrip() if found == first else line)
    return Reply(code, enhanced, "\n".join(texts))


def _shown(line: bytes) -> str:
    """A bad line as it may be shown in a synthesised reply: one line, at most 200 characters."""
    return " ".join(line.decode("utf-8", "replace").split())[:200]
