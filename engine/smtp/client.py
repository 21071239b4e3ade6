"""The SMTP client's dialogue as a pure state machine: replies in, commands and events out.

Owns ``ClientDialogue``, one connection's dialogue with a receiving server
(RFC 5321 §3, §4), the EHLO ``Capabilities`` it reads, the events it hands
out and ``stuff`` (dot-stuffing). No socket, clock or task: the adapter
(``smtp_out.connection``) writes ``data_to_send()``, feeds what the server
sends to ``receive``, takes events from ``next_event`` and, while there is
none, waits for the reply to ``awaiting`` under that stage's deadline.

In: ``receive(bytes)``; ``send_mail(sender, recipient, data)`` when ``ready``;
``tls_established()`` after the handshake ``StartTls`` asked for; ``quit()``;
and the local failures ``timed_out``, ``connection_lost``, ``tls_failed``,
which return the event they end the dialogue with.

Out (``next_event``):

- ``Ready``: greeted, and secured if asked: transactions may start.
- ``StartTls``: the server said 220 to STARTTLS; do the handshake now.
- ``Refused``: the server refused the session (greeting, EHLO and HELO,
  STARTTLS); the dialogue is over.
- ``TransactionResult``: how a transaction ended: the reply to the end of
  its data, or the first refusal of MAIL, RCPT or DATA, or a refusal decided
  before anything was sent.
- ``Broken``: the dialogue broke (a reply that is not SMTP, one out of step,
  a timeout, a lost connection, a failed TLS handshake); its reply is
  synthesised and reads like a remote one (``451 4.5.0``, ``451 4.4.2``,
  ``451 4.7.5``). The dialogue is over.

The dialogue:

- Read the 220 greeting; EHLO with the given name, HELO when EHLO gets a 5xx
  other than 521 (RFC 5321 §4.1.4).
- STARTTLS (RFC 3207) when asked for and offered; everything the server sent
  after its 220 is discarded (RFC 3207 §4.2: no reply injected before the
  handshake survives it); EHLO again afterwards. A refused STARTTLS (a reply
  other than 220 or 421) goes on in clear, unless TLS is required; so does a
  server that does not offer STARTTLS.
- PIPELINING (RFC 2920) when offered: MAIL, RCPT and DATA in one write, the
  replies matched in order. When DATA gets 354 although MAIL or RCPT failed,
  an empty message ends it (RFC 2920 §3.1). Otherwise one command at a time.
- The data is dot-stuffed (``stuff``) and ends with CRLF.CRLF.
- MAIL parameters: ``BODY=8BITMIME`` for 8-bit data when offered (RFC 6152);
  ``SIZE=`` when offered (RFC 1870), and a message over the advertised limit
  fails with ``552 5.3.4`` unsent; ``SMTPUTF8`` for non-ASCII addresses when
  offered (RFC 6531 §3.4), else ``553 5.6.7`` unsent. An address with
  characters SMTP cannot carry fails with ``553 5.1.7`` (sender) or
  ``553 5.1.3`` (recipient) unsent.
- A failed transaction is followed by RSET; the connection stays ``ready``
  only if RSET gets 250.
- A 421 at any point ends the dialogue; so does a reply while idle.
- QUIT ends it politely; its reply is not awaited (Postfix
  ``smtp_skip_quit_response``).

Invariants: replies are matched to commands strictly in order; after
``Refused``, ``Broken`` or a 421 nothing more is sent or read; a transaction
ends in exactly one ``TransactionResult`` or ``Broken``, and a remote
refusal already read is its result even when the connection then fails.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from engine.smtp.reply import Reply, Stage
from engine.smtp.reply_reader import MalformedReply, ReplyReader

__all__ = [
    "Broken",
    "Capabilities",
    "ClientDialogue",
    "Event",
    "Ready",
    "Refused",
    "StartTls",
    "TransactionResult",
    "stuff",
]

_UNSAFE: Final = re.compile(r"[\x00-\x20\x7f<>]")
_GOOD: Final[Mapping[Stage, tuple[int, ...]]] = {
    Stage.MAIL: (250,),
    Stage.RCPT: (250, 251),
    Stage.DATA: (354,),
}
"""The replies that let a transaction go on, by the command they answer."""
_WAITED_FOR: Final[Mapping[Stage, str]] = {
    Stage.GREETING: "the greeting",
    Stage.MAIL: "the reply to MAIL FROM",
    Stage.RCPT: "the reply to RCPT TO",
    Stage.DOT: "the reply to the end of data",
}
"""What a timeout waited for, when it is not the reply to the command named by the stage."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the server's EHLO reply offers (RFC 5321 §4.1.1.1): keywords in lower
    case and their parameters."""

    keywords: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Capabilities:
        """The keywords of an EHLO reply; its first line is the server's name."""
        keywords: dict[str, str] = {}
        for line in reply.text.split("\n")[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                keywords[keyword.lower()] = params.strip()
        return cls(keywords)

    @property
    def pipelining(self) -> bool:
        return "pipelining" in self.keywords

    @property
    def starttls(self) -> bool:
        return "starttls" in self.keywords

    @property
    def eight_bit_mime(self) -> bool:
        return "8bitmime" in self.keywords

    @property
    def smtputf8(self) -> bool:
        return "smtputf8" in self.keywords

    @property
    def size(self) -> int | None:
        """None without SIZE; the limit in octets, 0 for none (RFC 1870 §4)."""
        value = self.keywords.get("size")
        if value is None:
            return None
        return int(value) if value.isdigit() else 0


@dataclass(frozen=True, slots=True)
class Ready:
    capabilities: Capabilities


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True)
class Refused:
    reply: Reply
    stage: Stage


@dataclass(frozen=True, slots=True)
class TransactionResult:
    reply: Reply
    stage: Stage


@dataclass(frozen=True, slots=True)
class Broken:
    reply: Reply
    stage: Stage


Event = Ready | StartTls | Refused | TransactionResult | Broken


class _State(enum.Enum):
    GREETING = enum.auto()
    HELLO = enum.auto()
    """EHLO or HELO sent."""
    STARTTLS = enum.auto()
    HANDSHAKE = enum.auto()
    READY = enum.auto()
    ENVELOPE = enum.auto()
    """MAIL, RCPT, DATA under way."""
    DOT = enum.auto()
    """The data sent; its reply awaited."""
    EMPTY_DOT = enum.auto()
    """An empty message ends a refused transaction whose DATA got 354."""
    RSET = enum.auto()
    CLOSED = enum.auto()


class ClientDialogue:
    """One connection's SMTP client dialogue (see the module docstring)."""

    def __init__(self, hello_name: str, *, starttls: bool, require_tls: bool = False) -> None:
        self._hello_name = hello_name
        self._starttls = starttls or require_tls
        self._require_tls = require_tls
        self._reader = ReplyReader()
        self._state = _State.GREETING
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._pending: deque[Stage] = deque([Stage.GREETING])
        """The stages whose replies are awaited, in order."""
        self._held: deque[tuple[Stage, bytes]] = deque()
        """Commands sent one at a time, after the previous one succeeded."""
        self._last = Stage.GREETING
        self._failed: tuple[Reply, Stage] | None = None
        self._data = b""
        self.capabilities = Capabilities()
        self.tls = False
        """The handshake is done."""
        self.securing = False
        """Between STARTTLS and the reply to the EHLO after the handshake."""
        self.replies = 0
        """Replies read so far: a new one is awaited whenever this changes."""

    @property
    def awaiting(self) -> Stage | None:
        """The stage whose reply the dialogue waits for, if any."""
        return self._pending[0] if self._pending else None

    @property
    def ready(self) -> bool:
        """Idle and in step: ``send_mail`` may start a transaction."""
        return self._state is _State.READY and not self._reader.pending and not self._events

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def receive(self, data: bytes) -> None:
        """Bytes from the server; discarded between STARTTLS's 220 and the handshake."""
        if self._state is not _State.HANDSHAKE and self._state is not _State.CLOSED:
            self._reader.feed(data)

    def data_to_send(self) -> list[bytes]:
        """The bytes to write now, in order, in one write."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes are received."""
        while not self._events and self._pending and self._state is not _State.CLOSED:
            try:
                reply = self._reader.next_reply()
            except MalformedReply as exc:
                text = f"malformed reply ({exc})"
                stage = self._pending[0]
                self._events.append(self._broken(Reply(451, "4.5.0", text), stage))
                break
            if reply is None:
                break
            self.replies += 1
            self._on_reply(reply, self._pending.popleft())
        if not self._events and self._state is _State.READY and self._reader.pending:
            self._events.append(self._out_of_turn())
        return self._events.popleft() if self._events else None

    def send_mail(self, sender: str, recipient: str, data: bytes) -> None:
        """Start a transaction for ``data`` (CRLF line ends, not dot-stuffed)."""
        if self._state is not _State.READY:
            raise RuntimeError(f"no transaction can start in state {self._state.name}")
        if self._reader.pending:
            self._events.append(self._out_of_turn())
            return
        refusal = self._refusal(sender, recipient, len(data))
        if refusal is not None:
            self._events.append(refusal)
            return
        self._state = _State.ENVELOPE
        self._data = data
        mail = self._mail_line(sender, recipient, data)
        rcpt = f"RCPT TO:<{recipient}>\r\n".encode()
        if self.capabilities.pipelining:
            self._out.append(b"".join((mail, rcpt, b"DATA\r\n")))
            self._pending.extend((Stage.MAIL, Stage.RCPT, Stage.DATA))
            self._last = Stage.DATA
        else:
            self._send(Stage.MAIL, mail)
            self._held.extend(((Stage.RCPT, rcpt), (Stage.DATA, b"DATA\r\n")))

    def tls_established(self) -> None:
        """The handshake that ``StartTls`` asked for is done: EHLO again."""
        if self._state is not _State.HANDSHAKE:
            raise RuntimeError(f"no TLS handshake is due in state {self._state.name}")
        self.tls = True
        self.capabilities = Capabilities()
        self._hello(Stage.EHLO)

    def quit(self) -> bool:
        """End the dialogue; True when QUIT is to be sent (only from ``ready``)."""
        polite = self.ready
        if polite:
            self._out.append(b"QUIT\r\n")
        self._close()
        return polite

    def timed_out(self, seconds: float) -> Event:
        """No reply came in time: the event that ends the dialogue."""
        stage = self.awaiting or self._last
        what = _WAITED_FOR.get(stage) or f"the reply to {stage.upper()}"
        text = f"timed out waiting for {what} after {seconds:g} s"
        return self._interrupted(Reply(451, "4.4.2", text))

    def connection_lost(self, detail: str = "") -> Event:
        """The connection closed or broke: the event that ends the dialogue."""
        text = f"connection dropped: {detail}" if detail else "connection dropped"
        return self._interrupted(Reply(451, "4.4.2", text))

    def tls_failed(self, detail: str) -> Event:
        """The handshake failed; the connection is gone."""
        return self._interrupted(Reply(451, "4.7.5", f"TLS handshake failed: {detail}"))

    def _on_reply(self, reply: Reply, stage: Stage) -> None:
        state = self._state
        if state is _State.GREETING:
            if reply.code == 220:
                self._hello(Stage.EHLO)
            else:
                self._refuse(reply, stage)
        elif state is _State.HELLO:
            self._on_hello(reply, stage)
        elif state is _State.STARTTLS:
            self._on_starttls(reply, stage)
        elif state is _State.ENVELOPE:
            self._on_envelope(reply, stage)
        elif state is _State.DOT:
            self._on_dot(reply, stage)
        elif state is _State.EMPTY_DOT:
            if reply.code == 421:
                self._finish(_State.CLOSED, self._refused())
            else:
                self._send(Stage.RSET, b"RSET\r\n")
                self._state = _State.RSET
        elif state is _State.RSET:
            self._finish(_State.READY if reply.code == 250 else _State.CLOSED, self._refused())

    def _on_hello(self, reply: Reply, stage: Stage) -> None:
        if reply.code == 250:
            self.capabilities = (
                Capabilities.from_ehlo(reply) if stage is Stage.EHLO else Capabilities()
            )
            self._after_hello()
        elif stage is Stage.EHLO and 500 <= reply.code < 600 and reply.code != 521:
            self._hello(Stage.HELO)
        else:
            self._refuse(reply, stage)

    def _after_hello(self) -> None:
        if self._starttls and not self.tls and self.capabilities.starttls:
            self.securing = True
            self._send(Stage.STARTTLS, b"STARTTLS\r\n")
            self._state = _State.STARTTLS
        elif self._require_tls and not self.tls:
            text = "TLS is required and the server does not offer STARTTLS"
            self._refuse(Reply(451, "4.7.10", text), Stage.STARTTLS)
        else:
            self._become_ready()

    def _on_starttls(self, reply: Reply, stage: Stage) -> None:
        if reply.code == 220:
            self._reader.clear()
            self._state = _State.HANDSHAKE
            self._events.append(StartTls())
        elif reply.code == 421 or self._require_tls:
            self._refuse(reply, stage)
        else:
            self._become_ready()

    def _on_envelope(self, reply: Reply, stage: Stage) -> None:
        if reply.code == 421:
            self._finish(_State.CLOSED, self._failed or (reply, stage))
            return
        good = _GOOD[stage]
        if self._failed is None and reply.code not in good:
            if reply.code < 400:
                text = f"unexpected reply {reply.code} where {good[0]} was due: {reply.text}"
                self._events.append(self._broken(Reply(451, "4.5.0", text), stage))
                return
            self._failed = (reply, stage)
            self._held.clear()
        if self._pending:
            return
        if self._failed is None:
            if self._held:
                self._send(*self._held.popleft())
            else:
                self._out.extend(chunk for chunk in stuff(self._data) if chunk)
                self._pending.append(Stage.DOT)
                self._last = Stage.DOT
                self._state = _State.DOT
        elif reply.code == 354:
            self._send(Stage.DOT, b".\r\n")
            self._state = _State.EMPTY_DOT
        else:
            self._send(Stage.RSET, b"RSET\r\n")
            self._state = _State.RSET

    def _on_dot(self, reply: Reply, stage: Stage) -> None:
        if 300 <= reply.code < 400:
            text = f"unexpected reply {reply.code} to the end of data: {reply.text}"
            self._events.append(self._broken(Reply(451, "4.5.0", text), stage))
            return
        self._finish(_State.CLOSED if reply.code == 421 else _State.READY, (reply, stage))

    def _refusal(self, sender: str, recipient: str, size: int) -> TransactionResult | None:
        """A transaction that fails before anything is sent, if any."""
        for address, stage, bad_syntax in (
            (sender, Stage.MAIL, "5.1.7"),
            (recipient, Stage.RCPT, "5.1.3"),
        ):
            if _UNSAFE.search(address):
                text = "address cannot be sent in an SMTP command"
                return TransactionResult(Reply(553, bad_syntax, text), stage)
            if not address.isascii() and not self.capabilities.smtputf8:
                text = "non-ASCII address not permitted: the server does not offer SMTPUTF8"
                return TransactionResult(Reply(553, "5.6.7", text), stage)
        limit = self.capabilities.size
        if limit and size > limit:
            text = f"message size exceeds fixed maximum message size of {limit} octets"
            return TransactionResult(Reply(552, "5.3.4", text), Stage.MAIL)
        return None

    def _mail_line(self, sender: str, recipient: str, data: bytes) -> bytes:
        params = [f"MAIL FROM:<{sender}>"]
        if self.capabilities.eight_bit_mime and not data.isascii():
            params.append("BODY=8BITMIME")
        if self.capabilities.size is not None:
            params.append(f"SIZE={len(data)}")
        if not (sender.isascii() and recipient.isascii()):
            params.append("SMTPUTF8")
        return (" ".join(params) + "\r\n").encode()

    def _hello(self, stage: Stage) -> None:
        self._send(stage, f"{stage.upper()} {self._hello_name}\r\n".encode())
        self._state = _State.HELLO

    def _send(self, stage: Stage, line: bytes) -> None:
        self._out.append(line)
        self._pending.append(stage)
        self._last = stage

    def _become_ready(self) -> None:
        self.securing = False
        self._state = _State.READY
        self._events.append(Ready(self.capabilities))

    def _refuse(self, reply: Reply, stage: Stage) -> None:
        self._close()
        self._events.append(Refused(reply, stage))

    def _refused(self) -> tuple[Reply, Stage]:
        """The refusal that failed the transaction under way."""
        if self._failed is None:
            raise RuntimeError("no refusal recorded for the transaction")
        return self._failed

    def _finish(self, state: _State, result: tuple[Reply, Stage]) -> None:
        """The transaction is over: its result, and the state it leaves."""
        reply, stage = result
        self._failed = None
        self._data = b""
        if state is _State.CLOSED:
            self._close()
        self._state = state
        self._events.append(TransactionResult(reply, stage))

    def _out_of_turn(self) -> Broken:
        text = "the server spoke while the connection was idle"
        return self._broken(Reply(451, "4.4.2", text), Stage.MAIL)

    def _broken(self, reply: Reply, stage: Stage) -> Broken:
        self._close()
        return Broken(reply, stage)

    def _interrupted(self, reply: Reply) -> Event:
        """A local failure: a remote refusal already read stays the transaction's result."""
        self._events.clear()
        stage = self.awaiting or self._last
        if self._failed is not None:
            self._finish(_State.CLOSED, self._failed)
            return self._events.popleft()
        return self._broken(reply, stage)

    def _close(self) -> None:
        self._state = _State.CLOSED
        self._pending.clear()
        self._held.clear()
        self._reader.clear()


def stuff(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Data made transparent (RFC 5321 §4.5.2): (prefix, body, end) to write in this order.

    One ``bytes.replace`` doubles every period that starts a line after the
    first; ``prefix`` doubles one on the first line; ``end`` terminates with
    CRLF.CRLF, adding the CRLF the data may lack.
    """
    body = data.replace(b"\r\n.", b"\r\n..")
    prefix = b"." if body.startswith(b".") else b""
    end = b".\r\n" if not body or body.endswith(b"\r\n") else b"\r\n.\r\n"
    return prefix, body, end
