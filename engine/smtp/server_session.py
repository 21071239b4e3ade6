"""The per-connection SMTP dialogue (RFC 5321), STARTTLS (RFC 3207) and AUTH.

Owns one connection's command sequencing, limits and timeouts, the STARTTLS
switch and the AUTH PLAIN / LOGIN exchanges (RFC 4954, RFC 4616), driven by
``engine.smtp.reader``'s pure reader (bytes in, events out). What to accept is
asked of an ``SmtpHandler`` (``engine.smtp.handler``); this module never decides
policy. It owns no socket: ``engine.smtp.server`` gives it a ``Connection``
(buffered input, batched output) and runs ``SmtpSession.run`` as a task.

In: a ``ServerConfig`` (validated once, immutable), the handler and the
connection, via the ``Listener`` that owns the session. Out: replies on the
wire, handler calls, and ``handler.on_rejection`` for every 4xx/5xx reply
except the 421s sent while the process is tearing down connections (at the end
of ``SmtpServer.stop``'s grace period) and the ``503 Need MAIL`` replies that
follow a refused MAIL: a refused transaction is reported once, by its MAIL.

Invariants:

- Commands are handled strictly in arrival order from one buffer, so
  pipelining (RFC 2920) needs nothing special; replies are batched and
  flushed whenever the session would wait for input.
- Every reply carries an enhanced status code (RFC 3463, RFC 2034) except
  where RFC 2034 3 exempts it: the 220 greeting, the EHLO/HELO reply, and the
  354 and 334 continuations.
- STARTTLS drops every octet received after the command before the handshake
  (RFC 3207 4.2, the CVE-2011-0411 class); after it the session forgets EHLO,
  the transaction and any AUTH (RFC 3207 4.2).
- Waiting for the client is bounded by deadlines, not by timeouts per read: a
  command line (or AUTH response) must be complete ``idle_timeout_seconds``
  after the session starts waiting for it, a DATA body
  ``data_timeout_seconds`` after the 354 (RFC 5321 4.5.3.2.7, 4.5.3.2.5), so
  a client trickling octets cannot hold a session; on expiry the client gets
  ``421 4.4.2``.
- While the listener is stopping, a session idle between transactions gets
  ``421 4.3.2`` and ends; one cancelled while waiting for a command gets the
  same 421 unreported.
- Neither AUTH payloads nor message bodies are logged or passed to
  ``on_rejection``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

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

__all__ = ["SHUTTING_DOWN", "Connection", "Listener", "ServerConfig", "SmtpSession"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_OK: Final = Reply(250, "2.0.0", "OK")
_BAD_SEQUENCE_EHLO: Final = Reply(503, "5.5.1", "Send HELO/EHLO first")
_NEED_MAIL: Final = Reply(503, "5.5.1", "Need MAIL command first")
_LOCAL_ERROR: Final = Reply(451, "4.3.0", "Local error in processing")
SHUTTING_DOWN: Final = Reply(421, "4.3.2", "Service shutting down, closing connection")
_TIMEOUT: Final = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
_TOO_MANY_COMMANDS: Final = Reply(421, "4.7.0", "Too many commands, closing connection")
_PROMPT_USERNAME: Final = Reply(334, "", "VXNlcm5hbWU6")
_PROMPT_PASSWORD: Final = Reply(334, "", "UGFzc3dvcmQ6")
_PROMPT_EMPTY: Final = Reply(334, "", "")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of one SMTP listener; checked once, at construction."""

    hostname: str
    """Name in the greeting and the EHLO reply."""
    max_message_bytes: int = 26_214_400
    """Advertised as SIZE (RFC 1870); larger bodies get 552 5.3.4."""
    max_recipients: int = 1000
    """RCPTs per transaction (RFC 5321 4.5.3.1.8 asks for at least 100)."""
    max_commands: int = 10_000
    """Command lines per connection before 421 4.7.0."""
    idle_timeout_seconds: float = 300.0
    """Deadline for a whole command line, from when the session waits for it."""
    data_timeout_seconds: float = 180.0
    """Deadline for a whole DATA body, from the 354."""
    tls_context: ssl.SSLContext | None = None
    """Server-side context; STARTTLS is offered only when set."""
    require_tls_for_auth: bool = True
    allow_plaintext_auth_on_loopback: bool = False
    auth_enabled: bool = False
    """Offer AUTH PLAIN LOGIN, and require it before MAIL."""
    max_sessions: int = 1000
    """Concurrent connections; beyond it new ones get 421 4.3.2."""
    max_line_length: int = 2048
    """Command line octets including CRLF (RFC 5321 4.5.3.1.4 asks for 512)."""

    def __post_init__(self) -> None:
        name = self.hostname
        if not name or not name.isascii() or any(c.isspace() for c in name):
            raise ValueError(f"hostname: expected an ASCII host name, got {name!r}")
        for key in ("max_message_bytes", "max_recipients", "max_commands", "max_sessions"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: expected a positive integer")
        for key in ("idle_timeout_seconds", "data_timeout_seconds"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: expected a positive number of seconds")
        if not 512 <= self.max_line_length <= 65536:
            raise ValueError("max_line_length: expected 512..65536 octets")
        if (
            self.auth_enabled
            and self.require_tls_for_auth
            and self.tls_context is None
            and not self.allow_plaintext_auth_on_loopback
        ):
            raise ValueError("auth_enabled: AUTH needs TLS but no tls_context is configured")


class Connection(Protocol):
    """The transport glue a session talks through (``engine.smtp.server``)."""

    @property
    def transport(self) -> asyncio.Transport: ...
    @property
    def eof(self) -> bool: ...
    @property
    def tls(self) -> bool: ...
    def wake(self) -> None:
        """End a pending ``wait_for_input`` (the listener calls it when stopping)."""

    def take_input(self) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    async def flush(self) -> None: ...
    async def wait_for_input(self, deadline: float) -> None:
        """Send what is written, then wait for input or its end; ``TimeoutError``
        when neither sending nor input completes by ``deadline`` (event loop time)."""

    async def start_tls(self, context: ssl.SSLContext, handshake_seconds: float) -> None: ...
    async def close(self) -> None: ...


class Listener(Protocol):
    """The server that owns a session: its settings, handler and stop flag."""

    @property
    def config(self) -> ServerConfig: ...
    @property
    def handler(self) -> SmtpHandler: ...
    @property
    def stopping(self) -> bool: ...


class _Shutdown(Exception):
    """The server is stopping and the session is between transactions."""


class SmtpSession:
    """One connection's dialogue, run as a task owned by the server."""

    def __init__(self, server: Listener, conn: Connection) -> None:
        self._server = server
        self._config = server.config
        self._handler = server.handler
        self.conn = conn
        peer = conn.transport.get_extra_info("peername") or ("", 0)
        local = conn.transport.get_extra_info("sockname") or ("", 0)
        self._session = Session(
            id=secrets.token_hex(5),
            peer_host=str(peer[0]),
            peer_port=int(peer[1]),
            local_host=str(local[0]),
            local_port=int(local[1]),
        )
        self._reader = SmtpReader(
            max_line_length=self._config.max_line_length,
            max_message_bytes=self._config.max_message_bytes,
        )
        self._envelope = Envelope()
        self._esmtp = False
        self._mail_refused = False
        self._commands = 0
        self._awaiting_command = False
        self._verbs: dict[str, Callable[[str], Awaitable[bool]]] = {
            "EHLO": self._ehlo,
            "HELO": self._helo,
            "STARTTLS": self._starttls,
            "AUTH": self._auth,
            "MAIL": self._mail,
            "RCPT": self._rcpt,
            "DATA": self._data,
            "RSET": self._rset,
            "NOOP": self._noop,
            "QUIT": self._quit,
            "VRFY": self._vrfy,
            "HELP": self._help,
        }

    async def run(self) -> None:
        sid = self._session.id
        logger.debug("session %s: connect from %s", sid, self._session.peer_host)
        try:
            await self._serve()
        except TimeoutError:
            await self._reply(_TIMEOUT, "")
        except _Shutdown:
            await self._reply(SHUTTING_DOWN, "")
        except OSError as exc:
            logger.debug("session %s: connection error: %s", sid, exc)
        except asyncio.CancelledError:
            if self._awaiting_command:
                self.conn.write(SHUTTING_DOWN.encode())
            raise
        except Exception:
            logger.exception("session %s: unexpected error", sid)
            await self._reply(Reply(421, "4.3.0", "Local error, closing connection"), "")
        finally:
            await self.conn.close()
            logger.debug("session %s: closed", sid)

    async def _serve(self) -> None:
        refusal = await self._ask(self._handler.on_connect(self._session), None)
        if refusal is not None:
            await self._reply(refusal, "")
            return
        self.conn.write(f"220 {self._config.hostname} ESMTP\r\n".encode())
        while True:
            event = await self._next_command()
            if event is None:
                return
            self._commands += 1
            if self._commands > self._config.max_commands:
                await self._reply(_TOO_MANY_COMMANDS, "")
                return
            if isinstance(event, LineError):
                await self._reply(event.reply, "")
                continue
            verb, arg = parse_command(event.text)
            action = self._verbs.get(verb)
            if action is None:
                await self._unknown(verb)
            elif await action(arg):
                return

    async def _next_command(self) -> LineError | CommandLine | None:
        self._awaiting_command = True  # left set if the wait is cancelled
        event = await self._next_event(
            self._config.idle_timeout_seconds, idle=self._envelope.mail_from is None
        )
        self._awaiting_command = False
        assert not isinstance(event, MessageBody | MessageRejected)
        return event

    async def _next_event(self, wait_seconds: float, *, idle: bool = False) -> Event | None:
        """The reader's next event, read within ``wait_seconds`` from now however the
        input trickles in; ``None`` at end of input."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            event = self._reader.next_event()
            if event is not None:
                return event
            data = self.conn.take_input()
            if data:
                self._reader.feed(data)
                continue
            if self.conn.eof:
                await self.conn.flush()
                return None
            if idle and self._server.stopping:
                raise _Shutdown
            await self.conn.wait_for_input(deadline)

    async def _reply(
        self,
        reply: Reply,
        command: str,
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        self.conn.write(reply.encode())
        if reply.code >= 400:
            try:
                await self._handler.on_rejection(
                    self._session, command, reply, sender=sender, recipient=recipient
                )
            except Exception:
                logger.exception("session %s: on_rejection failed", self._session.id)

    async def _ask(self, call: Awaitable[_T], fallback: _T) -> _T:
        """Await a handler call; a handler bug becomes ``fallback``, never a lost message."""
        try:
            return await call
        except Exception:
            logger.exception("session %s: handler failed", self._session.id)
            return fallback

    def _auth_allowed(self) -> bool:
        cfg = self._config
        return cfg.auth_enabled and (
            self.conn.tls
            or (cfg.allow_plaintext_auth_on_loopback and self._session.is_loopback)
            or not cfg.require_tls_for_auth
        )

    async def _unknown(self, verb: str) -> None:
        shown = verb if verb.isalpha() and len(verb) <= 16 else ""
        await self._reply(Reply(502, "5.5.1", "Command not recognized"), shown)

    async def _ehlo(self, arg: str) -> bool:
        return await self._greet(arg, esmtp=True)

    async def _helo(self, arg: str) -> bool:
        return await self._greet(arg, esmtp=False)

    async def _greet(self, arg: str, *, esmtp: bool) -> bool:
        verb = "EHLO" if esmtp else "HELO"
        if not arg:
            await self._reply(Reply(501, "5.5.4", f"Syntax: {verb} hostname"), verb)
            return False
        self._session.ehlo_name = arg
        self._esmtp = esmtp
        self._envelope = Envelope()
        self._mail_refused = False
        starttls = esmtp and self._config.tls_context is not None and not self.conn.tls
        auth = esmtp and self._auth_allowed()
        await self._reply(_ehlo_reply(self._config, esmtp, starttls, auth), verb)
        return False

    async def _starttls(self, arg: str) -> bool:
        context = self._config.tls_context
        if context is None:
            await self._reply(Reply(454, "4.7.0", "TLS not available"), "STARTTLS")
            return False
        if self.conn.tls:
            await self._reply(Reply(503, "5.5.1", "TLS already active"), "STARTTLS")
            return False
        if arg:
            await self._reply(Reply(501, "5.5.4", "Syntax: STARTTLS"), "STARTTLS")
            return False
        self.conn.write(Reply(220, "2.0.0", "Ready to start TLS").encode())
        dropped = self._reader.discard_pending()
        if dropped:
            logger.warning(
                "session %s: dropped %d octets sent after STARTTLS", self._session.id, dropped
            )
        try:
            await self.conn.start_tls(context, self._config.idle_timeout_seconds)
        except OSError as exc:
            logger.info("session %s: TLS handshake failed: %s", self._session.id, exc)
            return True
        session = self._session
        session.ehlo_name = session.authenticated_as = session.auth_context = None
        self._esmtp = False
        self._envelope = Envelope()
        self._mail_refused = False
        ssl_object = self.conn.transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            cipher = ssl_object.cipher()
            session.tls_cipher = cipher[0] if cipher else None
            session.tls_version = ssl_object.version()
        return False

    async def _auth(self, arg: str) -> bool:
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        command = f"AUTH {mechanism}"
        refusal = self._auth_refusal(mechanism)
        if refusal is not None:
            await self._reply(refusal, command)
            return False
        try:
            if mechanism == "PLAIN":
                credentials = await self._auth_plain(initial or None)
            else:
                credentials = await self._auth_login(initial or None)
        except CommandError as exc:
            await self._reply(exc.reply, command)
            return False
        if credentials is None:
            return True
        username, password = credentials
        fallback = Reply(454, "4.7.0", "Temporary authentication failure")
        reply = await self._ask(self._handler.on_auth(self._session, username, password), fallback)
        if reply.is_positive and self._session.authenticated_as is None:
            self._session.authenticated_as = username
        logger.debug("session %s: AUTH %s -> %d", self._session.id, mechanism, reply.code)
        await self._reply(reply, command)
        return False

    def _auth_refusal(self, mechanism: str) -> Reply | None:
        if not self._config.auth_enabled:
            return Reply(502, "5.5.1", "AUTH not available")
        if self._session.ehlo_name is None or not self._esmtp:
            return Reply(503, "5.5.1", "Send EHLO first")
        if self._session.authenticated_as is not None:
            return Reply(503, "5.5.1", "Already authenticated")
        if self._envelope.mail_from is not None:
            return Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
        if not self._auth_allowed():
            return Reply(538, "5.7.11", "Encryption required for requested authentication")
        if mechanism not in ("PLAIN", "LOGIN"):
            return Reply(504, "5.5.4", "Unrecognized authentication type")
        return None

    async def _auth_plain(self, initial: str | None) -> tuple[str, str] | None:
        """RFC 4616: ``authzid NUL authcid NUL passwd``."""
        response = await self._auth_response(_PROMPT_EMPTY, initial)
        if response is None:
            return None
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise CommandError(Reply(501, "5.5.2", "Malformed PLAIN response"))
        authzid, username, password = (_utf8(part) for part in parts)
        if authzid and authzid != username:
            raise CommandError(Reply(535, "5.7.8", "Authorization identity not allowed"))
        return username, password

    async def _auth_login(self, initial: str | None) -> tuple[str, str] | None:
        username = await self._auth_response(_PROMPT_USERNAME, initial)
        if username is None:
            return None
        password = await self._auth_response(_PROMPT_PASSWORD, None)
        if password is None:
            return None
        return _utf8(username), _utf8(password)

    async def _auth_response(self, prompt: Reply, initial: str | None) -> bytes | None:
        """One decoded client response (RFC 4954 4); ``None`` if the client left."""
        if initial is None:
            self.conn.write(prompt.encode())
            event = await self._next_event(self._config.idle_timeout_seconds)
            if event is None:
                return None
            if isinstance(event, LineError):
                raise CommandError(event.reply)
            assert isinstance(event, CommandLine)
            initial = event.text.strip(" ")
        if initial == "*":
            raise CommandError(Reply(501, "5.0.0", "Authentication cancelled"))
        if initial == "=":
            return b""
        try:
            return base64.b64decode(initial, validate=True)
        except (binascii.Error, ValueError):
            raise CommandError(Reply(501, "5.5.2", "Invalid base64 data")) from None

    async def _mail(self, arg: str) -> bool:
        reply, sender = await self._mail_reply(arg)
        self._mail_refused = self._envelope.mail_from is None
        await self._reply(reply, f"MAIL {arg}", sender=sender)
        return False

    async def _mail_reply(self, arg: str) -> tuple[Reply, str | None]:
        """The reply to MAIL and the sender it names (None when unreadable); a
        positive reply begins the transaction."""
        if self._session.ehlo_name is None:
            return _BAD_SEQUENCE_EHLO, None
        if self._envelope.mail_from is not None:
            return Reply(503, "5.5.1", "Nested MAIL command"), None
        try:
            address, params = parse_path(arg, "FROM")
        except CommandError as exc:
            return exc.reply, None
        if self._config.auth_enabled and self._session.authenticated_as is None:
            return Reply(530, "5.7.0", "Authentication required"), address
        if params and not self._esmtp:
            return Reply(555, "5.5.4", "Parameters need EHLO"), address
        if int(params.get("SIZE", "0")) > self._config.max_message_bytes:
            return Reply(552, "5.3.4", "Message size exceeds fixed maximum message size"), address
        envelope = Envelope(mail_params=params, smtputf8="SMTPUTF8" in params)
        reply = await self._ask(
            self._handler.on_mail(self._session, envelope, address), _LOCAL_ERROR
        )
        if reply.is_positive:
            envelope.mail_from = address
            self._envelope = envelope
        return reply, address

    async def _need_mail(self, command: str) -> None:
        """503: no transaction; unreported after a refused MAIL, which was."""
        if self._mail_refused:
            self.conn.write(_NEED_MAIL.encode())
        else:
            await self._reply(_NEED_MAIL, command)

    async def _rcpt(self, arg: str) -> bool:
        line = f"RCPT {arg}"
        envelope = self._envelope
        sender = envelope.mail_from
        if sender is None:
            await self._need_mail(line)
            return False
        try:
            address, _ = parse_path(arg, "TO", smtputf8=envelope.smtputf8)
        except CommandError as exc:
            await self._reply(exc.reply, line, sender=sender)
            return False
        if len(envelope.rcpt_tos) >= self._config.max_recipients:
            reply = Reply(452, "4.5.3", "Too many recipients")
            await self._reply(reply, line, sender=sender, recipient=address)
            return False
        reply = await self._ask(
            self._handler.on_rcpt(self._session, envelope, address), _LOCAL_ERROR
        )
        if reply.is_positive:
            envelope.rcpt_tos.append(address)
        await self._reply(reply, line, sender=sender, recipient=address)
        return False

    async def _data(self, arg: str) -> bool:
        envelope = self._envelope
        sender = envelope.mail_from
        if arg:
            await self._reply(Reply(501, "5.5.4", "Syntax: DATA"), "DATA", sender=sender)
            return False
        if sender is None:
            await self._need_mail("DATA")
            return False
        if not envelope.rcpt_tos:
            reply = Reply(554, "5.5.1", "No valid recipients")
            await self._reply(reply, "DATA", sender=sender)
            return False
        self.conn.write(Reply(354, "", "End data with <CR><LF>.<CR><LF>").encode())
        self._reader.start_data()
        event = await self._next_event(self._config.data_timeout_seconds)
        if event is None:
            return True
        self._envelope = Envelope()
        if isinstance(event, MessageRejected):
            await self._reply(event.reply, "DATA", sender=sender)
            return False
        assert isinstance(event, MessageBody)
        reply = await self._ask(
            self._handler.on_data(self._session, envelope, event.body), _LOCAL_ERROR
        )
        logger.debug("session %s: DATA -> %d", self._session.id, reply.code)
        await self._reply(reply, "DATA", sender=sender)
        return False

    async def _rset(self, arg: str) -> bool:
        if arg:
            await self._reply(Reply(501, "5.5.4", "Syntax: RSET"), "RSET")
            return False
        self._envelope = Envelope()
        self._mail_refused = False
        await self._reply(_OK, "RSET")
        return False

    async def _noop(self, arg: str) -> bool:
        await self._reply(_OK, "NOOP")
        return False

    async def _quit(self, arg: str) -> bool:
        await self._reply(_closing(self._config.hostname), "")
        return True

    async def _vrfy(self, arg: str) -> bool:
        if not arg:
            await self._reply(Reply(501, "5.5.4", "Syntax: VRFY address"), "VRFY")
            return False
        text = "Cannot VRFY user, but will accept message and attempt delivery"
        await self._reply(Reply(252, "2.5.2", text), "VRFY")
        return False

    async def _help(self, arg: str) -> bool:
        await self._reply(Reply(214, "2.0.0", "See RFC 5321"), "HELP")
        return False


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
def _closing(hostname: str) -> Reply:
    return Reply(221, "2.0.0", f"{hostname} closing connection")
