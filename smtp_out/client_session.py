"""One SMTP client session with a remote MX host, and its mail transactions.

Owns ``open_session`` (connect, greeting, EHLO, STARTTLS) and
``ClientSession`` (one mail transaction per ``send``, QUIT on ``close``): the
thin driver of ``engine.smtp.client.ClientDialogue`` (the protocol: what to
send, what each reply means) over a ``smtp_out.connection.Connection`` (the
socket).

In: a ``Peer`` (MX host name, address, port), a ``Source`` (address to bind,
EHLO name), ``ClientSettings``, the TLS wanted, and one ``OutboundMessage``
per ``send``. Out: an ``Outcome`` for every attempt, made by
``engine.delivery.reply_outcome.outcome_for_reply`` from the reply and the
stage that it answers. Local failures (timeouts, drops, replies that are not
SMTP or out of step, a failed TLS handshake) come from the dialogue as
synthesised replies; they concern this connection, so their scope is at
least ``SESSION``. Results are values, never exceptions.

Deadlines, not timers per read (RFC 5321 §4.5.3.2): each reply must be
complete within its stage's time after the client starts waiting for it:
the connection ``connect_timeout_seconds``, the greeting
``greeting_timeout_seconds``, EHLO/HELO, STARTTLS and the TLS handshake
``ehlo_timeout_seconds``, MAIL, RCPT, DATA and RSET
``command_timeout_seconds``, and the final dot's reply
``data_timeout_seconds``, which also bounds sending the data.

Invariant: a session out of step (any local failure, a 421, any session- or
site-scope outcome, a failed RSET, a reply while idle, a closed connection)
is not ``usable`` and is never reused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from engine.delivery.bounce_classify import BounceClassifier
from engine.delivery.outcome import CONNECTION_SCOPES, Outcome, Scope
from engine.delivery.reply_outcome import outcome_for_reply
from engine.delivery.transport import OutboundMessage
from engine.scheduler.sources import Source
from engine.smtp.client import (
    Broken,
    ClientDialogue,
    Event,
    Ready,
    Refused,
    StartTls,
    TransactionResult,
)
from engine.smtp.reply import Reply, Stage
from smtp_out.connection import OPPORTUNISTIC_TLS, Connection, ConnectionGauge
from smtp_out.settings import ClientSettings


@dataclass(frozen=True, slots=True)
class Peer:
    host: str
    """The MX host name (SNI, records)."""
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class OpenFailure:
    """A session that could not be opened, and why."""

    outcome: Outcome
    tls_broken: bool = False
    """The failure happened between STARTTLS and the EHLO after the handshake."""


def reply_outcome(reply: Reply, stage: Stage, classifier: BounceClassifier) -> Outcome:
    """The outcome of ``reply`` to ``stage``; a multi-line text is joined into one line."""
    text = " ".join(line for line in reply.text.split("\n") if line)
    return outcome_for_reply(dataclasses.replace(reply, text=text, stage=stage), classifier)


class ClientSession:
    """An open, greeted connection ready for mail transactions."""

    def __init__(
        self,
        connection: Connection,
        dialogue: ClientDialogue,
        peer: Peer,
        source: Source,
        settings: ClientSettings,
        classifier: BounceClassifier,
    ) -> None:
        self._connection = connection
        self._dialogue = dialogue
        self.peer = peer
        self.source = source
        self._settings = settings
        self._classifier = classifier
        self._timeouts: Mapping[Stage, float] = {
            Stage.GREETING: settings.greeting_timeout_seconds,
            Stage.EHLO: settings.ehlo_timeout_seconds,
            Stage.HELO: settings.ehlo_timeout_seconds,
            Stage.STARTTLS: settings.ehlo_timeout_seconds,
            Stage.DOT: settings.data_timeout_seconds,
        }
        self._awaited: tuple[int, Stage] | None = None
        self._deadline = 0.0
        self.tls_cipher: str | None = None
        self.tls_version: str | None = None
        self.deliveries = 0
        self._broken = False

    @property
    def usable(self) -> bool:
        """In step with the server and still connected: may carry another message."""
        connection = self._connection
        return (
            not self._broken
            and self._dialogue.ready
            and connection.open
            and not connection.has_input
        )

    def outcome(self, reply: Reply, stage: Stage) -> Outcome:
        """The outcome of a remote reply; a 421 or a connection-scope one breaks the session."""
        outcome = reply_outcome(reply, stage, self._classifier)
        if reply.code == 421 or outcome.scope in CONNECTION_SCOPES:
            self._broken = True
        return outcome

    def local_outcome(self, reply: Reply, stage: Stage) -> Outcome:
        """The outcome of a local failure: it concerns this connection at least."""
        self._broken = True
        outcome = reply_outcome(reply, stage, self._classifier)
        if outcome.scope not in CONNECTION_SCOPES:
            outcome = dataclasses.replace(outcome, scope=Scope.SESSION)
        return outcome

    async def send(self, message: OutboundMessage) -> Outcome:
        """One mail transaction for ``message``: its outcome, never an exception."""
        self.deliveries += 1
        dialogue = self._dialogue
        received = self._connection.take_input()
        if received:
            dialogue.receive(received)
        dialogue.send_mail(message.sender, message.recipient, message.data)
        event = await self._next_event()
        if isinstance(event, TransactionResult):
            return self.outcome(event.reply, event.stage)
        if isinstance(event, Broken):
            return self.local_outcome(event.reply, event.stage)
        raise RuntimeError(f"unexpected event in a transaction: {event}")

    async def close(self, *, polite: bool = True) -> None:
        """Close the connection: QUIT first if in step and ``polite``.

        The reply to QUIT is not awaited (Postfix ``smtp_skip_quit_response``);
        the transport flushes it before closing.
        """
        if polite and self.usable and self._dialogue.quit():
            self._connection.write(self._dialogue.data_to_send())
        else:
            self._dialogue.quit()
        self._broken = True
        await self._connection.close(abort=not polite)

    async def _open(self) -> OpenFailure | None:
        """Greeting, EHLO and STARTTLS: None once ready, else why the session failed."""
        dialogue = self._dialogue
        while True:
            event = await self._next_event()
            if isinstance(event, StartTls):
                failed = await self._start_tls()
                if failed is None:
                    continue
                event = failed
            if isinstance(event, Ready):
                return None
            if isinstance(event, Refused):
                outcome = self.outcome(event.reply, event.stage)
                await self.close(polite=True)
                return OpenFailure(outcome)
            if isinstance(event, Broken):
                outcome = self.local_outcome(event.reply, event.stage)
                await self._connection.close(abort=True)
                return OpenFailure(outcome, tls_broken=dialogue.securing)
            raise RuntimeError(f"unexpected event while opening a session: {event}")

    async def _start_tls(self) -> Event | None:
        """The handshake: None once encrypted, else the event that ends the dialogue."""
        seconds = self._settings.ehlo_timeout_seconds
        try:
            await self._connection.start_tls(OPPORTUNISTIC_TLS, _sni(self.peer.host), seconds)
        except (OSError, TimeoutError) as exc:
            return self._dialogue.tls_failed(str(exc) or type(exc).__name__)
        ssl_object = self._connection.ssl_object()
        if ssl_object is not None:
            cipher = ssl_object.cipher()
            self.tls_cipher = cipher[0] if cipher else None
            self.tls_version = ssl_object.version()
        self._dialogue.tls_established()
        return None

    async def _next_event(self) -> Event:
        """Write what the dialogue has to send and read until it has an event."""
        dialogue = self._dialogue
        connection = self._connection
        while (event := dialogue.next_event()) is None:
            chunks = dialogue.data_to_send()
            if chunks:
                connection.write(chunks)
            stage = dialogue.awaiting
            if stage is None:
                raise RuntimeError("the dialogue waits for nothing and has no event")
            awaited = (dialogue.replies, stage)
            seconds = self._timeouts.get(stage, self._settings.command_timeout_seconds)
            if awaited != self._awaited:
                self._awaited = awaited
                self._deadline = asyncio.get_running_loop().time() + seconds
            try:
                await connection.wait_for_input(self._deadline)
            except TimeoutError:
                return dialogue.timed_out(seconds)
            received = connection.take_input()
            if received:
                dialogue.receive(received)
            elif connection.eof:
                error = connection.error
                return dialogue.connection_lost(str(error) if error is not None else "")
        chunks = dialogue.data_to_send()
        if chunks:
            connection.write(chunks)
        return event


async def open_session(
    peer: Peer,
    source: Source,
    settings: ClientSettings,
    classifier: BounceClassifier,
    gauge: ConnectionGauge,
    *,
    starttls: bool,
    require_tls: bool = False,
) -> ClientSession | OpenFailure:
    """Connect from the source's address, read the greeting, EHLO, and STARTTLS when
    ``starttls`` (or ``require_tls``) and offered."""
    connection = Connection(gauge)
    try:
        refused = await connection.connect(
            peer.address, peer.port, source.bind_address, settings.connect_timeout_seconds
        )
    except BaseException:
        await connection.close(abort=True)
        raise
    if refused is not None:
        await connection.close(abort=True)
        return OpenFailure(reply_outcome(refused, Stage.CONNECT, classifier))
    dialogue = ClientDialogue(source.ehlo_hostname, starttls=starttls, require_tls=require_tls)
    session = ClientSession(connection, dialogue, peer, source, settings, classifier)
    try:
        failure = await session._open()
    except BaseException:
        await connection.close(abort=True)
        raise
    return session if failure is None else failure


def _sni(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None
