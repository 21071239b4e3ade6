"""The SMTP server's dialogue with one client, as a pure state machine.

Owns one connection's command sequencing (RFC 5321), limits, the STARTTLS
switch (RFC 3207) and the AUTH PLAIN / LOGIN exchanges (RFC 4954, RFC 4616),
on top of ``engine.smtp.reader``'s framing. It does no I/O and never waits:
what happens goes in as calls (``receive`` bytes, ``receive_eof``, ``answer``
a question, ``tls_started``, ``timed_out``, ``shutdown``) and what to do comes
out of ``next_action``, one action at a time:

- A ``Reply``: write it to the client. Replies may be batched until the next
  ``NeedInput``, ``StartTls`` or ``Close``.
- ``NeedInput``: nothing complete is buffered; ``receive`` more bytes or
  ``receive_eof``. ``starts`` marks the start of a wait, where its deadline
  is set: ``idle_timeout_seconds`` for a command line or AUTH response,
  ``data_timeout_seconds`` for a DATA body (RFC 5321 4.5.3.2.7, 4.5.3.2.5);
  past it, call ``timed_out``.
- A question for the ``SmtpHandler`` (``AskConnect``, ``AskAuth``,
  ``AskMail``, ``AskRcpt``, ``AskData``, ``Report``): ``call`` it and feed
  the result to ``answer``, or call ``handler_failed`` if it raised; nothing
  else happens until then. A handler's failure becomes a fallback reply
  (``451 4.3.0``; ``454 4.7.0`` for AUTH), never a lost message.
- ``StartTls``: the ``220`` has been sent; drop every octet not yet given to
  ``receive``, run the handshake, then ``tls_started`` or ``tls_failed``.
- ``Close``: the dialogue is over; send what was sent, then close.

The adapter, ``engine.smtp.server``, performs the actions. It gives bytes
only after a ``NeedInput``, so the reader holds at most one command line
(``max_line_length``) or one body (about ``max_message_bytes``) plus the
last chunk.

Invariants:

- Commands are handled strictly in arrival order from one buffer, so
  pipelining (RFC 2920) needs nothing special: the replies of a group come
  out before the one ``NeedInput`` that follows it.
- Every reply carries an enhanced status code (RFC 3463, RFC 2034) except
  where RFC 2034 3 exempts it: the 220 greeting, the EHLO/HELO reply, and the
  354 and 334 continuations.
- Each 4xx/5xx reply is followed by a ``Report`` (``on_rejection``), except
  the ``503 Need MAIL`` replies after a refused MAIL (a refused transaction
  is reported once, by its MAIL). Neither AUTH payloads nor message bodies
  are reported.
- STARTTLS drops every octet received after the command before the handshake
  (RFC 3207 4.2, the CVE-2011-0411 class); after it the dialogue forgets
  EHLO, the transaction and any AUTH (RFC 3207 4.2).
- ``shutdown`` ends a dialogue only while it waits for a command between
  transactions (``421 4.3.2``); in a transaction it runs on.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from engine.smtp.handler import Envelope, Session, SmtpHandler
from engine.smtp.reader import (
    CommandError,
    CommandLine,
    Event,
    LineError,
    MessageBody,
    MessageRejected,
    SmtpReader,
    parse_command,
    parse_path,
)
from engine.smtp.reply import Reply
from engine.smtp.server_config import ServerConfig

__all__ = [
    "SHUTTING_DOWN",
    "Action",
    "Ask",
    "AskAuth",
    "AskConnect",
    "AskData",
    "AskMail",
    "AskRcpt",
    "Awaiting",
    "Close",
    "NeedInput",
    "Phase",
    "Report",
    "ServerDialogue",
    "StartTls",
]

_OK: Final = Reply(250, "2.0.0", "OK")
_BAD_SEQUENCE_EHLO: Final = Reply(503, "5.5.1", "Send HELO/EHLO first")
_NESTED_MAIL: Final = Reply(503, "5.5.1", "Nested MAIL command")
_NEED_MAIL: Final = Reply(503, "5.5.1", "Need MAIL command first")
_LOCAL_ERROR: Final = Reply(451, "4.3.0", "Local error in processing")
_AUTH_UNAVAILABLE: Final = Reply(454, "4.7.0", "Temporary authentication failure")
SHUTTING_DOWN: Final = Reply(421, "4.3.2", "Service shutting down, closing connection")
_TIMEOUT: Final = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
_TOO_MANY_COMMANDS: Final = Reply(421, "4.7.0", "Too many commands, closing connection")
_READY_FOR_TLS: Final = Reply(220, "2.0.0", "Ready to start TLS")
_START_DATA: Final = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
_PROMPT_USERNAME: Final = Reply(334, "", "VXNlcm5hbWU6")
_PROMPT_PASSWORD: Final = Reply(334, "", "UGFzc3dvcmQ6")
_PROMPT_EMPTY: Final = Reply(334, "", "")


class Phase(enum.Enum):
    """What the dialogue is doing."""

    CONNECTING = "connecting"
    """The handler decides whether to greet the client."""
    COMMAND = "command"
    AUTH_RESPONSE = "auth response"
    """Between a 334 and the client's answer to it."""
    BODY = "body"
    """Between the 354 and the end of the DATA body."""
    TLS = "tls"
    """Between ``StartTls`` and ``tls_started``/``tls_failed``."""
    CLOSED = "closed"


class Awaiting(enum.Enum):
    """What a ``NeedInput`` waits for; it sets which deadline applies."""

    COMMAND = "command"
    AUTH_RESPONSE = "auth response"
    BODY = "body"


@dataclass(frozen=True, slots=True)
class NeedInput:
    """More bytes are needed; ``starts`` when a new wait (and its deadline) begins."""

    awaiting: Awaiting
    starts: bool


@dataclass(frozen=True, slots=True)
class StartTls:
    """Run the server side of the TLS handshake; ``dropped`` octets of plaintext
    sent after STARTTLS were discarded (RFC 3207 4.2)."""

    dropped: int


@dataclass(frozen=True, slots=True)
class Close:
    """The dialogue is over."""


class Ask:
    """A question for the handler; ``call`` it and ``answer`` with its result.

    Questions are values, never changed once made; they are not frozen
    dataclasses only because one is made per command and those cost twice
    as much to make."""

    __slots__ = ()

    def call(self, handler: SmtpHandler) -> Awaitable[Reply | None]:
        raise NotImplementedError


@dataclass(slots=True)
class AskConnect(Ask):
    """Greet the client (answer ``None``) or refuse it (a 421/554 reply)?"""

    session: Session

    def call(self, handler: SmtpHandler) -> Awaitable[Reply | None]:
        return handler.on_connect(self.session)


@dataclass(slots=True)
class AskAuth(Ask):
    """Check credentials; 235 authenticates ``username``."""

    session: Session
    username: str
    password: str = field(repr=False)

    def call(self, handler: SmtpHandler) -> Awaitable[Reply]:
        return handler.on_auth(self.session, self.username, self.password)


@dataclass(slots=True)
class AskMail(Ask):
    """Accept ``address`` as the sender of the transaction ``envelope`` begins?"""

    session: Session
    envelope: Envelope
    address: str

    def call(self, handler: SmtpHandler) -> Awaitable[Reply]:
        return handler.on_mail(self.session, self.envelope, self.address)


@dataclass(slots=True)
class AskRcpt(Ask):
    """Accept ``address`` as a recipient of ``envelope``?"""

    session: Session
    envelope: Envelope
    address: str

    def call(self, handler: SmtpHandler) -> Awaitable[Reply]:
        return handler.on_rcpt(self.session, self.envelope, self.address)


@dataclass(slots=True)
class AskData(Ask):
    """Take the message; 250 only once it is durable."""

    session: Session
    envelope: Envelope
    body: bytes = field(repr=False)

    def call(self, handler: SmtpHandler) -> Awaitable[Reply]:
        return handler.on_data(self.session, self.envelope, self.body)


@dataclass(slots=True)
class Report(Ask):
    """Tell the handler of a 4xx/5xx reply just sent; answer ``None``."""

    session: Session
    command: str
    reply: Reply
    sender: str | None = None
    recipient: str | None = None

    def call(self, handler: SmtpHandler) -> Awaitable[None]:
        return handler.on_rejection(
            self.session, self.command, self.reply, sender=self.sender, recipient=self.recipient
        )


Action = Reply | NeedInput | StartTls | Close | Ask

CLOSE: Final = Close()
_NEED_COMMAND: Final = (NeedInput(Awaiting.COMMAND, False), NeedInput(Awaiting.COMMAND, True))
_NEED_AUTH_RESPONSE: Final = (
    NeedInput(Awaiting.AUTH_RESPONSE, False),
    NeedInput(Awaiting.AUTH_RESPONSE, True),
)
_NEED_BODY: Final = (NeedInput(Awaiting.BODY, False), NeedInput(Awaiting.BODY, True))


class ServerDialogue:
    """One connection's dialogue: calls in, ``next_action`` out (see the module)."""

    __slots__ = (
        "_actions",
        "_asked",
        "_auth_mechanism",
        "_auth_username",
        "_blocked",
        "_command",
        "_commands",
        "_envelope",
        "_eof",
        "_esmtp",
        "_fallback",
        "_mail_refused",
        "_phase",
        "_reader",
        "_resume",
        "_subject",
        "_tls",
        "_transaction",
        "_waiting",
        "config",
        "session",
    )

    def __init__(self, config: ServerConfig, session: Session) -> None:
        self.config = config
        self.session = session
        self._reader = SmtpReader(
            max_line_length=config.max_line_length, max_message_bytes=config.max_message_bytes
        )
        self._phase = Phase.CONNECTING
        self._envelope = Envelope()
        self._esmtp = False
        self._tls = False
        self._mail_refused = False
        self._commands = 0
        self._eof = False
        self._waiting = False
        """A wait for the next event has begun (its deadline is running)."""
        self._blocked = False
        """The last action was ``NeedInput`` and nothing has come since."""
        self._actions: deque[Action] = deque()
        self._asked: Ask | None = None
        self._resume: Callable[[Reply], None] = _unset
        self._fallback = _LOCAL_ERROR
        # What a pending question is about, for its answer.
        self._command = ""
        self._subject = ""
        self._transaction = self._envelope
        self._auth_mechanism = ""
        self._auth_username: bytes | None = None
        self._actions.append(AskConnect(session))

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def envelope(self) -> Envelope:
        """The current transaction (empty between transactions)."""
        return self._envelope

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def buffered(self) -> int:
        """Octets received and not yet handled."""
        return self._reader.buffered

    @property
    def awaiting_command(self) -> bool:
        """Waiting for a command line: the last action was ``NeedInput`` for one."""
        return self._blocked and self._phase is Phase.COMMAND

    # Calls in

    def next_action(self) -> Action:
        """What to do next. Raises ``RuntimeError`` while a question is unanswered
        or the TLS handshake runs."""
        if self._asked is not None:
            raise RuntimeError(f"{type(self._asked).__name__} is not answered")
        self._blocked = False
        actions = self._actions
        while not actions:  # handle buffered input until there is something to do
            phase = self._phase
            if phase is Phase.CLOSED:
                return CLOSE
            if phase is Phase.TLS:
                raise RuntimeError("the TLS handshake is running")
            event = self._reader.next_event()
            if event is None:
                if self._eof:
                    self._close()
                    break
                starts = not self._waiting
                self._waiting = self._blocked = True
                if phase is Phase.COMMAND:
                    return _NEED_COMMAND[starts]
                return _NEED_BODY[starts] if phase is Phase.BODY else _NEED_AUTH_RESPONSE[starts]
            self._waiting = False
            if phase is Phase.COMMAND:
                self._on_command(event)
            elif phase is Phase.BODY:
                self._on_body(event)
            else:
                self._on_auth_response(event)
        action = actions.popleft()
        if type(action) is not Reply and isinstance(action, Ask):
            self._asked = action
        return action

    def receive(self, data: bytes) -> None:
        """Bytes from the client. Those arriving during the TLS handshake, or after
        the end, are dropped."""
        self._blocked = False
        if self._phase is not Phase.TLS and self._phase is not Phase.CLOSED:
            self._reader.feed(data)

    def receive_eof(self) -> None:
        """The client sent its last byte (or the connection broke)."""
        self._blocked = False
        self._eof = True

    def answer(self, reply: Reply | None) -> None:
        """The handler's answer to the question ``next_action`` returned last.
        ``None`` to anything but ``AskConnect`` and ``Report`` counts as a failure."""
        asked = self._take_asked()
        kind = type(asked)
        if kind is Report:
            return
        if kind is AskConnect:
            self._connected(reply)
        else:
            self._resume(self._fallback if reply is None else reply)

    def handler_failed(self) -> None:
        """The handler raised instead of answering: its fallback reply is used."""
        asked = self._take_asked()
        if type(asked) is Report:
            return
        if type(asked) is AskConnect:
            self._connected(None)
        else:
            self._resume(self._fallback)

    def tls_started(self, cipher: str | None, version: str | None) -> None:
        """The handshake after ``StartTls`` succeeded; the dialogue starts afresh."""
        if self._phase is not Phase.TLS:
            raise RuntimeError("no TLS handshake was started")
        session = self.session
        session.ehlo_name = session.authenticated_as = session.auth_context = None
        session.tls_cipher = cipher
        session.tls_version = version
        self._tls = True
        self._esmtp = False
        self._envelope = Envelope()
        self._mail_refused = False
        self._phase = Phase.COMMAND

    def tls_failed(self) -> None:
        """The handshake after ``StartTls`` failed; the dialogue ends."""
        if self._phase is not Phase.TLS:
            raise RuntimeError("no TLS handshake was started")
        self._close()

    def timed_out(self) -> None:
        """A deadline passed: ``421 4.4.2``, then the end."""
        if self._phase is Phase.CLOSED:
            return
        self._asked = None
        self._reply(_TIMEOUT, "")
        self._close()

    def shutdown(self) -> bool:
        """The server is stopping: ``421 4.3.2`` and the end, if the dialogue waits
        for a command between transactions (returns whether it does)."""
        if not self.awaiting_command or self._envelope.mail_from is not None:
            return False
        self._blocked = False
        self._reply(SHUTTING_DOWN, "")
        self._close()
        return True

    # Inside

    def _take_asked(self) -> Ask:
        asked = self._asked
        if asked is None:
            raise RuntimeError("nothing was asked")
        self._asked = None
        return asked

    def _ask(self, question: Ask, resume: Callable[[Reply], None], fallback: Reply) -> None:
        self._actions.append(question)
        self._resume = resume
        self._fallback = fallback

    def _reply(
        self,
        reply: Reply,
        command: str,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        self._actions.append(reply)
        if reply.code >= 400:
            self._actions.append(Report(self.session, command, reply, sender, recipient))

    def _close(self) -> None:
        self._phase = Phase.CLOSED
        self._actions.append(CLOSE)

    def _connected(self, refusal: Reply | None) -> None:
        if refusal is not None:
            self._reply(refusal, "")
            self._close()
            return
        self._phase = Phase.COMMAND
        self._actions.append(_greeting(self.config.hostname))

    def _on_command(self, event: Event) -> None:
        self._commands += 1
        if self._commands > self.config.max_commands:
            self._reply(_TOO_MANY_COMMANDS, "")
            self._close()
            return
        if type(event) is not CommandLine:
            assert isinstance(event, LineError)
            self._reply(event.reply, "")
            return
        verb, arg = parse_command(event.text)
        handle = _VERBS.get(verb)
        if handle is None:
            shown = verb if verb.isalpha() and len(verb) <= 16 else ""
            self._reply(Reply(502, "5.5.1", "Command not recognized"), shown)
        else:
            handle(self, arg)

    def _auth_allowed(self) -> bool:
        cfg = self.config
        return cfg.auth_enabled and (
            self._tls
            or (cfg.allow_plaintext_auth_on_loopback and self.session.is_loopback)
            or not cfg.require_tls_for_auth
        )

    # Commands

    def _ehlo(self, arg: str) -> None:
        self._greet(arg, esmtp=True)

    def _helo(self, arg: str) -> None:
        self._greet(arg, esmtp=False)

    def _greet(self, arg: str, *, esmtp: bool) -> None:
        verb = "EHLO" if esmtp else "HELO"
        if not arg:
            self._reply(Reply(501, "5.5.4", f"Syntax: {verb} hostname"), verb)
            return
        self.session.ehlo_name = arg
        self._esmtp = esmtp
        self._envelope = Envelope()
        self._mail_refused = False
        starttls = esmtp and self.config.tls_context is not None and not self._tls
        auth = esmtp and self._auth_allowed()
        self._reply(_ehlo_reply(self.config, esmtp, starttls, auth), verb)

    def _starttls(self, arg: str) -> None:
        if self.config.tls_context is None:
            self._reply(Reply(454, "4.7.0", "TLS not available"), "STARTTLS")
        elif self._tls:
            self._reply(Reply(503, "5.5.1", "TLS already active"), "STARTTLS")
        elif arg:
            self._reply(Reply(501, "5.5.4", "Syntax: STARTTLS"), "STARTTLS")
        else:
            self._actions.append(_READY_FOR_TLS)
            self._actions.append(StartTls(self._reader.discard_pending()))
            self._phase = Phase.TLS

    def _auth(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        command = f"AUTH {mechanism}"
        refusal = self._auth_refusal(mechanism)
        if refusal is not None:
            self._reply(refusal, command)
            return
        self._command = command
        self._auth_mechanism = mechanism
        self._auth_username = None
        if initial:
            self._auth_step(initial)
        else:
            self._prompt(_PROMPT_EMPTY if mechanism == "PLAIN" else _PROMPT_USERNAME)

    def _auth_refusal(self, mechanism: str) -> Reply | None:
        if not self.config.auth_enabled:
            return Reply(502, "5.5.1", "AUTH not available")
        if self.session.ehlo_name is None or not self._esmtp:
            return Reply(503, "5.5.1", "Send EHLO first")
        if self.session.authenticated_as is not None:
            return Reply(503, "5.5.1", "Already authenticated")
        if self._envelope.mail_from is not None:
            return Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
        if not self._auth_allowed():
            return Reply(538, "5.7.11", "Encryption required for requested authentication")
        if mechanism not in ("PLAIN", "LOGIN"):
            return Reply(504, "5.5.4", "Unrecognized authentication type")
        return None

    def _prompt(self, prompt: Reply) -> None:
        self._actions.append(prompt)
        self._phase = Phase.AUTH_RESPONSE

    def _on_auth_response(self, event: Event) -> None:
        self._phase = Phase.COMMAND
        if not isinstance(event, CommandLine):
            assert isinstance(event, LineError)
            self._reply(event.reply, self._command)
            return
        self._auth_step(event.text.strip(" "))

    def _auth_step(self, response: str) -> None:
        """One client response (RFC 4954 4): the initial one or after a 334."""
        try:
            decoded = _decode_response(response)
            if self._auth_mechanism == "PLAIN":
                username, password = _plain_credentials(decoded)
            elif self._auth_username is None:
                self._auth_username = decoded
                self._prompt(_PROMPT_PASSWORD)
                return
            else:
                username, password = _utf8(self._auth_username), _utf8(decoded)
        except CommandError as exc:
            self._reply(exc.reply, self._command)
            return
        self._subject = username
        question = AskAuth(self.session, username, password)
        self._ask(question, self._authenticated, _AUTH_UNAVAILABLE)

    def _authenticated(self, reply: Reply) -> None:
        if reply.is_positive and self.session.authenticated_as is None:
            self.session.authenticated_as = self._subject
        self._reply(reply, self._command)

    def _mail(self, arg: str) -> None:
        command = f"MAIL {arg}"
        sender: str | None = None
        if self.session.ehlo_name is None:
            reply = _BAD_SEQUENCE_EHLO
        elif self._envelope.mail_from is not None:
            reply = _NESTED_MAIL
        else:
            try:
                sender, params = parse_path(arg, "FROM")
            except CommandError as exc:
                reply = exc.reply
            else:
                refusal = self._mail_refusal(params)
                if refusal is None:
                    self._command, self._subject = command, sender
                    self._transaction = Envelope(mail_params=params, smtputf8="SMTPUTF8" in params)
                    question = AskMail(self.session, self._transaction, sender)
                    self._ask(question, self._mail_answered, _LOCAL_ERROR)
                    return
                reply = refusal
        self._mail_replied(reply, command, sender)

    def _mail_refusal(self, params: dict[str, str]) -> Reply | None:
        if self.config.auth_enabled and self.session.authenticated_as is None:
            return Reply(530, "5.7.0", "Authentication required")
        if params and not self._esmtp:
            return Reply(555, "5.5.4", "Parameters need EHLO")
        if int(params.get("SIZE", "0")) > self.config.max_message_bytes:
            return Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
        return None

    def _mail_answered(self, reply: Reply) -> None:
        if reply.code < 400:
            self._transaction.mail_from = self._subject
            self._envelope = self._transaction
        self._mail_replied(reply, self._command, self._subject)

    def _mail_replied(self, reply: Reply, command: str, sender: str | None) -> None:
        self._mail_refused = self._envelope.mail_from is None
        self._reply(reply, command, sender)

    def _need_mail(self, command: str) -> None:
        """503: no transaction; unreported after a refused MAIL, which was."""
        if self._mail_refused:
            self._actions.append(_NEED_MAIL)
        else:
            self._reply(_NEED_MAIL, command)

    def _rcpt(self, arg: str) -> None:
        command = f"RCPT {arg}"
        envelope = self._envelope
        sender = envelope.mail_from
        if sender is None:
            self._need_mail(command)
            return
        try:
            address, _ = parse_path(arg, "TO", smtputf8=envelope.smtputf8)
        except CommandError as exc:
            self._reply(exc.reply, command, sender)
            return
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            reply = Reply(452, "4.5.3", "Too many recipients")
            self._reply(reply, command, sender, address)
            return
        self._command, self._subject = command, address
        self._ask(AskRcpt(self.session, envelope, address), self._rcpt_answered, _LOCAL_ERROR)

    def _rcpt_answered(self, reply: Reply) -> None:
        envelope = self._envelope
        if reply.code < 400:
            envelope.rcpt_tos.append(self._subject)
        self._reply(reply, self._command, envelope.mail_from, self._subject)

    def _data(self, arg: str) -> None:
        envelope = self._envelope
        sender = envelope.mail_from
        if arg:
            self._reply(Reply(501, "5.5.4", "Syntax: DATA"), "DATA", sender)
        elif sender is None:
            self._need_mail("DATA")
        elif not envelope.rcpt_tos:
            self._reply(Reply(554, "5.5.1", "No valid recipients"), "DATA", sender)
        else:
            self._actions.append(_START_DATA)
            self._reader.start_data()
            self._phase = Phase.BODY

    def _on_body(self, event: Event) -> None:
        envelope = self._transaction = self._envelope
        self._envelope = Envelope()
        self._phase = Phase.COMMAND
        if type(event) is not MessageBody:
            assert isinstance(event, MessageRejected)
            self._reply(event.reply, "DATA", envelope.mail_from)
            return
        self._ask(AskData(self.session, envelope, event.body), self._data_answered, _LOCAL_ERROR)

    def _data_answered(self, reply: Reply) -> None:
        self._reply(reply, "DATA", self._transaction.mail_from)

    def _rset(self, arg: str) -> None:
        if arg:
            self._reply(Reply(501, "5.5.4", "Syntax: RSET"), "RSET")
            return
        self._envelope = Envelope()
        self._mail_refused = False
        self._actions.append(_OK)

    def _noop(self, arg: str) -> None:
        self._actions.append(_OK)

    def _quit(self, arg: str) -> None:
        self._actions.append(_closing(self.config.hostname))
        self._close()

    def _vrfy(self, arg: str) -> None:
        if not arg:
            self._reply(Reply(501, "5.5.4", "Syntax: VRFY address"), "VRFY")
            return
        text = "Cannot VRFY user, but will accept message and attempt delivery"
        self._actions.append(Reply(252, "2.5.2", text))

    def _help(self, arg: str) -> None:
        self._actions.append(Reply(214, "2.0.0", "See RFC 5321"))


_VERBS: Final[dict[str, Callable[[ServerDialogue, str], None]]] = {
    "EHLO": ServerDialogue._ehlo,
    "HELO": ServerDialogue._helo,
    "STARTTLS": ServerDialogue._starttls,
    "AUTH": ServerDialogue._auth,
    "MAIL": ServerDialogue._mail,
    "RCPT": ServerDialogue._rcpt,
    "DATA": ServerDialogue._data,
    "RSET": ServerDialogue._rset,
    "NOOP": ServerDialogue._noop,
    "QUIT": ServerDialogue._quit,
    "VRFY": ServerDialogue._vrfy,
    "HELP": ServerDialogue._help,
}


def _unset(reply: Reply) -> None:
    raise RuntimeError("no question is pending")


def _decode_response(response: str) -> bytes:
    """A client's AUTH response (RFC 4954 4): base64, ``=`` for empty, ``*`` to cancel."""
    if response == "*":
        raise CommandError(Reply(501, "5.0.0", "Authentication cancelled"))
    if response == "=":
        return b""
    try:
        return base64.b64decode(response, validate=True)
    except (binascii.Error, ValueError):
        raise CommandError(Reply(501, "5.5.2", "Invalid base64 data")) from None


def _plain_credentials(response: bytes) -> tuple[str, str]:
    """RFC 4616: ``authzid NUL authcid NUL passwd``; the username and password."""
    parts = response.split(b"\0")
    if len(parts) != 3:
        raise CommandError(Reply(501, "5.5.2", "Malformed PLAIN response"))
    authzid, username, password = (_utf8(part) for part in parts)
    if authzid and authzid != username:
        raise CommandError(Reply(535, "5.7.8", "Authorization identity not allowed"))
    return username, password


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(Reply(501, "5.5.2", "Credentials are not UTF-8")) from None


@functools.lru_cache(maxsize=64)
def _ehlo_reply(config: ServerConfig, esmtp: bool, starttls: bool, auth: bool) -> Reply:
    """The EHLO/HELO reply: one of a few, built once (``Reply`` keeps its encoding)."""
    lines = [config.hostname]
    if esmtp:
        lines += [
            "PIPELINING",
            f"SIZE {config.max_message_bytes}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
        ]
        if starttls:
            lines.append("STARTTLS")
        if auth:
            lines.append("AUTH PLAIN LOGIN")
        lines.append("SMTPUTF8")
    return Reply(250, "", "\n".join(lines))


@functools.lru_cache(maxsize=16)
def _greeting(hostname: str) -> Reply:
    return Reply(220, "", f"{hostname} ESMTP")


@functools.lru_cache(maxsize=16)
def _closing(hostname: str) -> Reply:
    return Reply(221, "2.0.0", f"{hostname} closing connection")
