"""One SMTP client session with a remote MX host, and its mail transactions.

Owns ``open_session`` (connect, greeting, EHLO, STARTTLS) and ``SmtpSession``
(one mail transaction per ``send``, RSET after a failed one, QUIT on close),
over the wire of ``smtp_out.wire``; and ``ClientSettings``, the outgoing
SMTP settings not yet in ``config``.

In: a ``Peer`` (MX host name, address, port), a ``Source`` (address to bind,
EHLO name), ``ClientSettings``, and one ``OutboundMessage`` per ``send``.
Out: an ``Outcome`` for every attempt, made by
``engine.delivery.bounce_classify.outcome_for_reply`` from the reply and the stage
that it answers. Local failures arrive as synthesised replies
(``smtp_out.wire``); those after the greeting concern this connection, so
their scope is at least ``SESSION``. Results are values, never exceptions.

The dialogue (RFC 5321 §3, §4):

- Connect from the source address (``(ip, 0)``; ``0.0.0.0``/``::`` binds
  nothing), read the 220 greeting, EHLO with the source's name, HELO when
  EHLO gets a 5xx (§4.1.4).
- STARTTLS (RFC 3207) when offered and wanted, opportunistic (RFC 7435): no
  certificate check; cipher and version are recorded; EHLO again after the
  handshake. A refused STARTTLS (a reply other than 220 or 421) goes on in
  clear. A failed handshake ends the session with ``tls_broken`` set, for
  the pool to remember. With ``TlsMode.REQUIRED`` neither is accepted.
- PIPELINING (RFC 2920) when offered: MAIL, RCPT and DATA in one write, the
  three replies read in order; if DATA got 354 although MAIL or RCPT
  failed, an empty message ends it (RFC 2920 §3.1); a 421 or a lost
  connection stops the reading. Otherwise one command at a time.
- The data is dot-stuffed (``smtp_out.wire.stuff``) and ends with CRLF.CRLF.
- MAIL parameters: ``BODY=8BITMIME`` for 8-bit data when offered (RFC 6152);
  ``SIZE=`` when offered (RFC 1870), and a message over the advertised limit
  fails with ``552 5.3.4`` unsent; ``SMTPUTF8`` for non-ASCII addresses when
  offered (RFC 6531 §3.4), else ``553 5.6.7`` unsent.
- Per-stage timeouts (§4.5.3.2): connect, greeting, EHLO/STARTTLS, each
  command, and the final dot's reply (which also bounds sending the data).

Invariant: a session out of step (any local failure, a 421, any session- or
site-scope outcome, a failed RSET) is not ``usable`` and is never reused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import ipaddress
import re
from dataclasses import dataclass

from engine.delivery.bounce_classify import BounceClassifier, outcome_for_reply
from engine.delivery.outcome import Outcome, Scope, SmtpReply
from engine.delivery.transport import OutboundMessage
from smtp_out.wire import (
    ConnectionGauge,
    ReplyProtocol,
    WireFailure,
    close_protocol,
    read_reply,
    read_response,
    reply_from_response,
    send_bytes,
    start_tls,
    stuff,
)

UNBOUND_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
_UNSAFE = re.compile(r"[\x00-\x20\x7f<>]")
_CONNECTION_SCOPES = (Scope.SESSION, Scope.SITE)
_STEPS = (("mail", "MAIL FROM", (250,)), ("rcpt", "RCPT TO", (250, 251)), ("data", "DATA", (354,)))
"""Stage, command name and the good reply codes of the commands before the data."""


class TlsMode(enum.StrEnum):
    """``enable_tls`` of a lane, as in KumoMTA
    (https://docs.kumomta.com/reference/kumo/make_egress_path/enable_tls/)."""

    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Outgoing SMTP settings beyond ``config.DeliverySettings``; all have defaults."""

    connect_timeout_seconds: float = 30.0
    greeting_timeout_seconds: float = 300.0
    ehlo_timeout_seconds: float = 300.0
    """EHLO/HELO, STARTTLS and the TLS handshake."""
    command_timeout_seconds: float = 300.0
    """MAIL, RCPT, DATA, RSET."""
    data_timeout_seconds: float = 600.0
    """Sending the data and the reply to its final dot (RFC 5321 §4.5.3.2.6)."""
    connection_limit: int = 10
    """Connections per lane (source x site) open at once."""
    idle_timeout_seconds: float = 60.0
    """An idle connection kept for reuse is closed after this long."""
    max_waiters: int = 1000
    """Deliveries waiting for a connection slot of one lane; more are deferred at once."""
    wait_timeout_seconds: float = 60.0
    """How long a delivery waits for a connection slot before it is deferred."""
    tls: TlsMode = TlsMode.OPPORTUNISTIC
    broken_tls_memory_seconds: float = 3600.0
    """After a failed TLS handshake with a host, how long connections to it go in clear."""
    max_addresses_per_attempt: int = 5
    """MX addresses tried in one attempt (Postfix ``smtp_mx_address_limit``)."""


@dataclass(frozen=True, slots=True)
class Peer:
    host: str
    """The MX host name (SNI, records)."""
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    address: str
    ehlo_hostname: str

    @property
    def bind_address(self) -> tuple[str, int] | None:
        return None if self.address in UNBOUND_ADDRESSES else (self.address, 0)


@dataclass(frozen=True, slots=True)
class OpenFailure:
    """A session that could not be opened, and why."""

    outcome: Outcome
    tls_broken: bool = False


class _Refused(Exception):
    """The server answered the greeting or EHLO, but refuses the session."""

    def __init__(self, reply: SmtpReply, stage: str) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.stage = stage


class SmtpSession:
    """An open, greeted connection ready for mail transactions."""

    def __init__(
        self,
        protocol: ReplyProtocol,
        peer: Peer,
        source: Source,
        settings: ClientSettings,
        classifier: BounceClassifier,
    ) -> None:
        self._protocol = protocol
        self.peer = peer
        self.source = source
        self._settings = settings
        self._classifier = classifier
        self.extensions: dict[str, str] = {}
        self.tls_cipher: str | None = None
        self.tls_version: str | None = None
        self.deliveries = 0
        self._broken = False

    @property
    def usable(self) -> bool:
        """In step with the server and still connected: may carry another message."""
        return not self._broken and self._protocol.is_connected

    def outcome(self, reply: SmtpReply, stage: str) -> Outcome:
        """The outcome of a remote reply; a 421 or a connection-scope one breaks the session."""
        outcome = outcome_for_reply(reply, self._classifier, stage)
        if reply.code == 421 or outcome.scope in _CONNECTION_SCOPES:
            self._broken = True
        return outcome

    def local_outcome(self, failure: WireFailure) -> Outcome:
        """The outcome of a local failure: it concerns this connection at least."""
        self._broken = True
        outcome = outcome_for_reply(failure.reply, self._classifier, failure.stage)
        if outcome.scope not in _CONNECTION_SCOPES:
            outcome = dataclasses.replace(outcome, scope=Scope.SESSION)
        return outcome

    async def send(self, message: OutboundMessage) -> Outcome:
        """One mail transaction for ``message``: its outcome, never an exception."""
        self.deliveries += 1
        try:
            return await self._transaction(message)
        except WireFailure as failure:
            return self.local_outcome(failure)

    async def close(self, *, polite: bool = True) -> None:
        """Close the connection: QUIT first if in step and ``polite``.

        The reply to QUIT is not awaited (Postfix ``smtp_skip_quit_response``);
        the transport flushes it before closing.
        """
        if polite and self.usable:
            try:
                send_bytes(self._protocol, b"QUIT\r\n", "quit", "QUIT")
            except WireFailure:
                polite = False
        self._broken = True
        await close_protocol(self._protocol, abort=not polite)

    async def _transaction(self, message: OutboundMessage) -> Outcome:
        refused = self._refusal(message)
        if refused is not None:
            return refused
        mail_line = self._mail_line(message)
        rcpt_line = f"RCPT TO:<{message.recipient}>".encode()
        if "pipelining" in self.extensions:
            failed = await self._pipelined(mail_line, rcpt_line)
        else:
            failed = await self._one_by_one(mail_line, rcpt_line)
        if failed is not None:
            return await self._reset_after(*failed)
        return await self._send_data(message.data)

    async def _pipelined(self, mail_line: bytes, rcpt_line: bytes) -> tuple[SmtpReply, str] | None:
        """MAIL, RCPT, DATA in one write (RFC 2920); the first failed reply, if any.

        A 421 or a lost connection ends the reading: what was refused before
        it is the outcome, the session is over.
        """
        commands = b"\r\n".join((mail_line, rcpt_line, b"DATA\r\n"))
        send_bytes(self._protocol, commands, "mail", "MAIL FROM")
        timeout = self._settings.command_timeout_seconds
        failed: tuple[SmtpReply, str] | None = None
        for stage, command, good in _STEPS:
            try:
                reply = await read_reply(self._protocol, stage, command, timeout)
            except WireFailure:
                if failed is None:
                    raise
                self._broken = True
                return failed
            if reply.code == 421:
                self._broken = True
                return failed or (reply, stage)
            if failed is None and reply.code not in good:
                failed = self._unexpected(reply, stage, expected=good[0])
        if failed is not None and reply.code == 354:
            try:
                send_bytes(self._protocol, b".\r\n", "dot", "DATA")
                await read_reply(self._protocol, "dot", "DATA", timeout)
            except WireFailure:
                self._broken = True
        return failed

    async def _one_by_one(self, mail_line: bytes, rcpt_line: bytes) -> tuple[SmtpReply, str] | None:
        timeout = self._settings.command_timeout_seconds
        for line, (stage, command, good) in zip(
            (mail_line, rcpt_line, b"DATA"), _STEPS, strict=True
        ):
            reply = await self._command(line, stage, command, timeout)
            if reply.code not in good:
                return self._unexpected(reply, stage, expected=good[0])
        return None

    @staticmethod
    def _unexpected(reply: SmtpReply, stage: str, *, expected: int) -> tuple[SmtpReply, str]:
        """A failure reply as is; a success code where another was due is out of step."""
        if 200 <= reply.code < 400:
            text = f"unexpected reply {reply.code} where {expected} was due: {reply.text}"
            raise WireFailure(stage, SmtpReply(451, "4.5.0", text, reply.command))
        return reply, stage

    def _refusal(self, message: OutboundMessage) -> Outcome | None:
        """A permanent failure decided before anything is sent, if any."""
        for address, stage, bad_syntax in (
            (message.sender, "mail", "5.1.7"),
            (message.recipient, "rcpt", "5.1.3"),
        ):
            command = "MAIL FROM" if stage == "mail" else "RCPT TO"
            if _UNSAFE.search(address):
                text = "address cannot be sent in an SMTP command"
                return self.outcome(SmtpReply(553, bad_syntax, text, command), stage)
            if not address.isascii() and "smtputf8" not in self.extensions:
                text = "non-ASCII address not permitted: the server does not offer SMTPUTF8"
                return self.outcome(SmtpReply(553, "5.6.7", text, command), stage)
        limit = self._size_limit()
        if limit is not None and len(message.data) > limit:
            text = f"message size exceeds fixed maximum message size of {limit} octets"
            return self.outcome(SmtpReply(552, "5.3.4", text, "MAIL FROM"), "mail")
        return None

    def _size_limit(self) -> int | None:
        value = self.extensions.get("size", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    def _mail_line(self, message: OutboundMessage) -> bytes:
        params = [f"MAIL FROM:<{message.sender}>"]
        if not message.data.isascii() and "8bitmime" in self.extensions:
            params.append("BODY=8BITMIME")
        if "size" in self.extensions:
            params.append(f"SIZE={len(message.data)}")
        if not (message.sender.isascii() and message.recipient.isascii()):
            params.append("SMTPUTF8")
        return " ".join(params).encode()

    async def _reset_after(self, reply: SmtpReply, stage: str) -> Outcome:
        """The outcome of a transaction that failed before its data; RSET if it goes on."""
        outcome = self.outcome(reply, stage)
        if not self._broken:
            timeout = self._settings.command_timeout_seconds
            try:
                reset = await self._command(b"RSET", "rset", "RSET", timeout)
            except WireFailure:
                self._broken = True
            else:
                self._broken = reset.code != 250
        return outcome

    async def _send_data(self, data: bytes) -> Outcome:
        send_bytes(self._protocol, [chunk for chunk in stuff(data) if chunk], "dot", "DATA")
        timeout = self._settings.data_timeout_seconds
        reply = await read_reply(self._protocol, "dot", "DATA", timeout)
        if 300 <= reply.code < 400:
            raise WireFailure("dot", SmtpReply(451, "4.5.0", f"unexpected reply {reply}", "DATA"))
        return self.outcome(reply, "dot")

    async def _command(self, line: bytes, stage: str, command: str, seconds: float) -> SmtpReply:
        send_bytes(self._protocol, line + b"\r\n", stage, command)
        return await read_reply(self._protocol, stage, command, seconds)


async def open_session(
    peer: Peer,
    source: Source,
    settings: ClientSettings,
    classifier: BounceClassifier,
    gauge: ConnectionGauge,
    *,
    tls: bool,
) -> SmtpSession | OpenFailure:
    """Connect, read the greeting, EHLO, and STARTTLS when ``tls`` and offered."""
    loop = asyncio.get_running_loop()
    protocol = ReplyProtocol(loop, gauge)
    try:
        refused = await _connect(loop, protocol, peer, source, settings)
    except BaseException:
        await close_protocol(protocol, abort=True)
        raise
    if refused is not None:
        await close_protocol(protocol, abort=True)
        return OpenFailure(outcome_for_reply(refused, classifier, "connect"))
    session = SmtpSession(protocol, peer, source, settings, classifier)
    in_tls = False
    try:
        await _greet(session, protocol, settings)
        if tls:
            in_tls = True
            await _start_tls(session, protocol, settings)
            in_tls = False
        if settings.tls is TlsMode.REQUIRED and session.tls_version is None:
            text = "TLS is required and the server does not offer STARTTLS"
            raise _Refused(SmtpReply(451, "4.7.10", text, "STARTTLS"), "starttls")
    except WireFailure as failure:
        await close_protocol(protocol, abort=True)
        return OpenFailure(session.local_outcome(failure), tls_broken=in_tls)
    except _Refused as refusal:
        outcome = session.outcome(refusal.reply, refusal.stage)
        await session.close(polite=True)
        return OpenFailure(outcome)
    except BaseException:
        await close_protocol(protocol, abort=True)
        raise
    return session


async def _connect(
    loop: asyncio.AbstractEventLoop,
    protocol: ReplyProtocol,
    peer: Peer,
    source: Source,
    settings: ClientSettings,
) -> SmtpReply | None:
    """The synthesised reply of a failed connection, or None once connected."""
    timeout = settings.connect_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: protocol, peer.address, peer.port, local_addr=source.bind_address
            )
    except TimeoutError:
        return SmtpReply(451, "4.4.1", f"connection timed out after {timeout:g} s", "connect")
    except ConnectionRefusedError:
        return SmtpReply(451, "4.4.1", "connection refused", "connect")
    except OSError as exc:
        return SmtpReply(451, "4.4.1", f"cannot connect: {exc.strerror or exc}", "connect")
    return None


async def _greet(session: SmtpSession, protocol: ReplyProtocol, settings: ClientSettings) -> None:
    timeout = settings.greeting_timeout_seconds
    greeting = await read_reply(protocol, "greeting", "connect", timeout)
    if greeting.code != 220:
        raise _Refused(greeting, "greeting")
    await _hello(session, protocol, settings)


async def _hello(session: SmtpSession, protocol: ReplyProtocol, settings: ClientSettings) -> None:
    """EHLO, or HELO when EHLO gets a 5xx (RFC 5321 §4.1.4)."""
    name = session.source.ehlo_hostname
    timeout = settings.ehlo_timeout_seconds
    send_bytes(protocol, f"EHLO {name}\r\n".encode(), "ehlo", "EHLO")
    response = await read_response(protocol, "ehlo", "EHLO", timeout)
    if response.code == 250:
        session.extensions = _keywords(response.message)
        return
    reply = reply_from_response(response, "EHLO")
    if 500 <= reply.code < 600 and reply.code != 521:
        send_bytes(protocol, f"HELO {name}\r\n".encode(), "helo", "HELO")
        reply = await read_reply(protocol, "helo", "HELO", timeout)
        if reply.code == 250:
            session.extensions = {}
            return
        raise _Refused(reply, "helo")
    raise _Refused(reply, "ehlo")


def _keywords(ehlo_text: str) -> dict[str, str]:
    """EHLO keywords (lower-case) and their parameters, the first line being the greeting."""
    keywords: dict[str, str] = {}
    for line in ehlo_text.split("\n")[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            keywords[keyword.lower()] = params.strip()
    return keywords


async def _start_tls(
    session: SmtpSession, protocol: ReplyProtocol, settings: ClientSettings
) -> None:
    """STARTTLS when offered (RFC 3207), then EHLO again; a refusal goes on in clear."""
    if "starttls" not in session.extensions:
        return
    timeout = settings.ehlo_timeout_seconds
    refusal = await start_tls(protocol, _sni(session.peer.host), timeout)
    if refusal is not None:
        if refusal.code == 421 or settings.tls is TlsMode.REQUIRED:
            raise _Refused(refusal, "starttls")
        return
    ssl_object = protocol.ssl_object()
    if ssl_object is not None:
        cipher = ssl_object.cipher()
        session.tls_cipher = cipher[0] if cipher else None
        session.tls_version = ssl_object.version()
    session.extensions = {}
    await _hello(session, protocol, settings)


def _sni(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None
