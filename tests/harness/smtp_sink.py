"""A receiving SMTP server for delivery tests and benchmarks: the far end of ``smtp_out``.

Owns :class:`SmtpSink` (an asyncio server on the caller's loop),
:class:`ThreadedSmtpSink` (the same server on its own loop in a background
thread, for sync tests, engine-subprocess tests and benchmarks) and
:class:`Inbox` (the thread-safe record of what a sink accepted).

In: SMTP over TCP on a loopback address. Several sinks may listen on the same
port on different ``127.0.0.x`` addresses, which is how the DNS harness puts
several MX hosts behind the single remote port that delivery uses.

Out: one :class:`ReceivedMessage` per message answered ``250`` at the end of
DATA, in arrival order (with its arrival time, for rates, and the serial
number of its connection, for messages per connection), plus per-recipient
counters of deliveries (:meth:`Inbox.count_for`, so duplicates show) and of
RCPT attempts (:meth:`Inbox.attempts_for`, so retries show), the number of
connections, and per client address the most connections it ever had open at
once (:meth:`Inbox.peak_connections`). A connection counts as open from its
accept until the sink reads QUIT or the connection ends, whichever is first:
a client that sends QUIT and then connects again is never counted twice.
:func:`most_in_window` turns arrival times into the largest count in any
window of a given length.

Replies are chosen by the recipient's local part (case-insensitive; the name
is a prefix, so ``tempfail-7@`` behaves as ``tempfail@``), which makes every
delivery path reachable from an ordinary address; see :func:`behaviour_for`
and :class:`Behaviour`; besides the generic failures, two scripted provider
replies (Gmail's ``421 4.7.28`` unusual rate, Microsoft's ``550 5.7.1``
network block ``S3150``) let backoff rules be exercised. Whole-server modes
are constructor flags: STARTTLS (``tls``), a STARTTLS that answers 220 and
then sends garbage (``broken_tls``), a refusing greeting
(``greeting_code``), the EHLO keywords (``ehlo_extensions``) and
``max_messages_per_connection``.

The server is written on asyncio streams rather than aiosmtpd, which has no
seam for refusing at the greeting, breaking STARTTLS, or dropping the
connection part-way through DATA; it is also a second implementation of the
protocol, independent of ``engine.smtp.server``.

Invariants: nothing is recorded unless 250 was sent for it; ``stop`` closes
every connection, so no transport outlives the sink; every read has a
deadline (``idle_timeout``); an exception in the sink's own code is logged and
kept in ``SmtpSink.errors`` for the test to assert on, never swallowed.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import itertools
import logging
import re
import ssl
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypedDict, Unpack

log = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES")
DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024
MAX_RECIPIENTS = 1000
_MAX_LINE = 64 * 1024
_CHUNK = 64 * 1024
_END_OF_DATA = b"\r\n.\r\n"
_CLOSE_TIMEOUT = 2.0
_THREAD_TIMEOUT = 10.0
_MAIL_RE = re.compile(r"FROM:\s*<([^<>]*)>\s*(.*)", re.IGNORECASE)
_RCPT_RE = re.compile(r"TO:\s*<([^<>]+)>\s*(.*)", re.IGNORECASE)


class Behaviour(enum.Enum):
    """What the sink does for a recipient; the value is the local-part prefix."""

    ACCEPT = ""
    TEMPFAIL = "tempfail"
    PERMFAIL = "permfail"
    QUOTA = "quota"
    CLOSE_421 = "421-"
    DATA_TEMPFAIL = "datatempfail"
    DATA_PERMFAIL = "datapermfail"
    SLOW = "slow"
    DISCONNECT_IN_DATA = "disconnect-in-data"
    STALL = "stall"
    GARBAGE = "garbage"
    RATE_LIMITED = "unusualrate"
    """Gmail's rate deferral at RCPT, then the connection is closed."""
    NETWORK_BLOCKED = "blocked-s3150"
    """Microsoft's refusal of a blocked network (S3150) at RCPT."""


_BY_PREFIX = sorted(
    (b for b in Behaviour if b is not Behaviour.ACCEPT), key=lambda b: -len(b.value)
)
RCPT_REPLIES = {
    Behaviour.TEMPFAIL: "451 4.3.0 Try again later",
    Behaviour.PERMFAIL: "550 5.1.1 No such user",
    Behaviour.QUOTA: "452 4.2.2 Mailbox full",
    Behaviour.CLOSE_421: "421 4.7.0 Try again later",
    Behaviour.GARBAGE: "HELLO WORLD",
    Behaviour.RATE_LIMITED: (
        "421 4.7.28 [{client}] Our system has detected an unusual rate of unsolicited mail "
        "originating from your IP address. To protect our users from spam, mail sent from "
        "your IP address has been temporarily rate limited. - gsmtp"
    ),
    Behaviour.NETWORK_BLOCKED: (
        "550 5.7.1 Unfortunately, messages from [{client}] weren't sent. Please contact your "
        "Internet service provider since part of their network is on our block list (S3150). "
        "You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors."
    ),
}
"""Refusals at RCPT; ``{client}`` is replaced by the client's address. A 421 closes the
connection after the reply (RFC 5321 3.8)."""
_CLOSING = (Behaviour.CLOSE_421, Behaviour.RATE_LIMITED)
DATA_REPLIES = {
    Behaviour.DATA_TEMPFAIL: "451 4.3.0 Try again later",
    Behaviour.DATA_PERMFAIL: "554 5.7.1 Message rejected",
}
_DATA_PRECEDENCE = (
    Behaviour.DISCONNECT_IN_DATA,
    Behaviour.STALL,
    Behaviour.DATA_PERMFAIL,
    Behaviour.DATA_TEMPFAIL,
)


def behaviour_for(rcpt: str) -> Behaviour:
    """The behaviour named by the start of the recipient's local part, else ACCEPT."""
    local = rcpt.rpartition("@")[0] if "@" in rcpt else rcpt
    local = local.casefold()
    for behaviour in _BY_PREFIX:
        if local.startswith(behaviour.value):
            return behaviour
    return Behaviour.ACCEPT


def end_of_data(behaviours: Iterable[Behaviour]) -> tuple[Behaviour, bool]:
    """For a transaction's accepted recipients: how DATA ends, and whether to answer slowly.

    The most disruptive ending wins (disconnect, stall, 554, 451); otherwise ACCEPT.
    """
    present = set(behaviours)
    ending = next((b for b in _DATA_PRECEDENCE if b in present), Behaviour.ACCEPT)
    return ending, Behaviour.SLOW in present


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the sink answered 250 to, as it came off the wire (dot-unstuffed)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: tuple[str, int]
    tls_version: str | None
    ehlo: str
    received_at: datetime.datetime
    connection: int = 0
    """Serial number (from 1) of the connection it came over, in this sink."""


class Inbox:
    """What one sink accepted; safe to read and wait on from any thread.

    Recipient keys are case-folded addresses.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._delivered: Counter[str] = Counter()
        self._attempts: Counter[str] = Counter()
        self._connections = 0
        self._open: dict[int, str] = {}
        self._peaks: Counter[str] = Counter()
        self._accepted_at: defaultdict[str, list[float]] = defaultdict(list)

    def add(self, message: ReceivedMessage) -> None:
        with self._cond:
            self._messages.append(message)
            self._delivered.update(r.casefold() for r in message.rcpt_tos)
            self._cond.notify_all()

    def note_attempt(self, rcpt: str) -> None:
        with self._cond:
            self._attempts[rcpt.casefold()] += 1

    def open_connection(self, client: str) -> int:
        """Count a new connection from address ``client`` as open; its serial number."""
        with self._cond:
            self._connections += 1
            self._open[self._connections] = client
            now_open = sum(1 for c in self._open.values() if c == client)
            self._peaks[client] = max(self._peaks[client], now_open)
            self._accepted_at[client].append(time.monotonic())
            return self._connections

    def close_connection(self, connection: int) -> None:
        """The connection ``connection`` is no longer open (idempotent)."""
        with self._cond:
            self._open.pop(connection, None)

    def peak_connections(self, client: str) -> int:
        """The most connections from address ``client`` ever open at once."""
        with self._cond:
            return self._peaks[client]

    def accepted_at(self, client: str) -> list[float]:
        """When each connection from address ``client`` was accepted (``time.monotonic``)."""
        with self._cond:
            return list(self._accepted_at[client])

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot, in arrival order."""
        with self._cond:
            return list(self._messages)

    @property
    def connections(self) -> int:
        with self._cond:
            return self._connections

    def __len__(self) -> int:
        with self._cond:
            return len(self._messages)

    def count_for(self, rcpt: str) -> int:
        """How many accepted messages were addressed to ``rcpt``."""
        with self._cond:
            return self._delivered[rcpt.casefold()]

    def attempts_for(self, rcpt: str) -> int:
        """How many RCPT commands named ``rcpt``, whatever the reply."""
        with self._cond:
            return self._attempts[rcpt.casefold()]

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()
            self._delivered.clear()
            self._attempts.clear()
            self._connections = 0
            self._peaks.clear()
            self._accepted_at.clear()

    def wait_for_count(self, n: int, timeout: float) -> list[ReceivedMessage]:
        """Block until at least ``n`` messages have arrived; TimeoutError after ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= n, timeout):
                raise _short(len(self._messages), n, timeout)
            return list(self._messages)


def most_in_window(times: Iterable[float], window: float) -> int:
    """The largest number of ``times`` (seconds) within any closed interval of length
    ``window``."""
    ordered = sorted(times)
    most = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most


def _short(have: int, want: int, timeout: float) -> TimeoutError:
    return TimeoutError(f"sink received {have} of {want} messages within {timeout} s")


class _Hangup(Exception):
    """End the connection: ``abort`` drops it without flushing what is unsent."""

    def __init__(self, abort: bool = False) -> None:
        super().__init__()
        self.abort = abort


_PEER_GONE = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)


class SmtpSink:
    """An SMTP server on the running loop that records and answers by recipient.

    ``max_messages_per_connection`` counts every transaction answered at the
    end of DATA; the next MAIL then gets ``421 4.7.0`` and the connection closes.
    ``greeting_code`` 421 closes at once; any other refusal answers 503 until QUIT.
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        broken_tls: bool = False,
        greeting_code: int = 220,
        ehlo_extensions: Sequence[str] | None = None,
        max_messages_per_connection: int | None = None,
        slow_seconds: float = 2.0,
        hostname: str = "sink.test",
        idle_timeout: float = 60.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        if tls is not None and broken_tls:
            raise ValueError("tls and broken_tls are exclusive")
        if not 200 <= greeting_code <= 599:
            raise ValueError(f"greeting_code must be an SMTP reply code, not {greeting_code}")
        self.tls = tls
        self.broken_tls = broken_tls
        self.greeting_code = greeting_code
        self.extensions = tuple(
            ehlo_extensions
            if ehlo_extensions is not None
            else (*DEFAULT_EXTENSIONS, f"SIZE {max_message_size}")
        )
        self.max_messages_per_connection = max_messages_per_connection
        self.slow_seconds = slow_seconds
        self.hostname = hostname
        self.idle_timeout = idle_timeout
        self.max_message_size = max_message_size
        self.inbox = Inbox()
        self.errors: list[BaseException] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._queue_ids = itertools.count(1)
        self.address: tuple[str, int] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (0 picks a free port); return the bound address."""
        self._server = await asyncio.start_server(self._on_connect, host, port)
        bound = self._server.sockets[0].getsockname()
        self.address = (bound[0], bound[1])
        return self.address

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.inbox.messages

    def count_for(self, rcpt: str) -> int:
        return self.inbox.count_for(rcpt)

    def attempts_for(self, rcpt: str) -> int:
        return self.inbox.attempts_for(rcpt)

    async def wait_for_count(self, n: int, timeout: float = 5.0) -> list[ReceivedMessage]:  # noqa: ASYNC109
        """Wait until at least ``n`` messages have arrived; TimeoutError after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: len(self.inbox) >= n)
        except TimeoutError:
            raise _short(len(self.inbox), n, timeout) from None
        return self.inbox.messages

    async def _record(self, message: ReceivedMessage) -> str:
        """Store an accepted message, wake waiters, return its queue id."""
        self.inbox.add(message)
        async with self._arrived:
            self._arrived.notify_all()
        return f"{next(self._queue_ids):08X}"

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        abort = False
        connection = 0
        try:
            if not self._closing:
                peer = writer.get_extra_info("peername") or ("", 0)
                connection = self.inbox.open_connection(peer[0])
                wire = _Wire(reader, writer, self.idle_timeout)
                await _Connection(self, wire, connection).run()
        except _Hangup as hangup:
            abort = hangup.abort
        except _PEER_GONE:
            abort = True
        except Exception as exc:
            log.exception("SMTP sink connection failed")
            self.errors.append(exc)
            abort = True
        finally:
            self.inbox.close_connection(connection)
            await _close(writer, abort or self._closing)


async def _close(writer: asyncio.StreamWriter, abort: bool) -> None:
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


class _Wire:
    """A connection's bytes: buffered reads with a deadline on each, and replies.

    The sink keeps its own buffer so that DATA is read in bulk up to CRLF.CRLF
    rather than line by line, and so that plaintext pipelined behind STARTTLS
    can be thrown away.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.buffer = bytearray()

    async def fill(self) -> None:
        async with asyncio.timeout(self.timeout):
            chunk = await self.reader.read(_CHUNK)
        if not chunk:
            raise _Hangup()
        self.buffer += chunk

    async def readline(self) -> bytes:
        scanned = 0
        while (end := self.buffer.find(b"\n", scanned)) < 0:
            if len(self.buffer) > _MAX_LINE:
                await self.reply("500 5.5.2 Line too long")
                raise _Hangup()
            scanned = len(self.buffer)
            await self.fill()
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    async def read_data(self, limit: int) -> bytes | None:
        """The body after 354, unstuffed (RFC 5321 4.5.2); None if over ``limit`` octets.

        The CRLF that ended the DATA command counts as the terminator's first CRLF.
        """
        body = bytearray(b"\r\n")
        overflow = False
        scanned = 0
        while (end := body.find(_END_OF_DATA, scanned)) < 0:
            if len(body) > limit + len(_END_OF_DATA):
                overflow = True
                del body[: 1 - len(_END_OF_DATA)]
            scanned = max(0, len(body) + 1 - len(_END_OF_DATA))
            if not self.buffer:
                await self.fill()
            body += self.buffer
            self.buffer.clear()
        self.buffer += body[end + len(_END_OF_DATA) :]
        data = bytes(body[:end]).replace(b"\r\n.", b"\r\n")[2:]
        if overflow or len(data) > limit:
            return None
        return data + b"\r\n" if end > 0 else b""

    async def discard_until_eof(self) -> None:
        self.buffer.clear()
        while True:
            await self.fill()
            self.buffer.clear()

    async def reply(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()

    async def start_tls(self, context: ssl.SSLContext) -> str:
        """Upgrade in place; return the negotiated protocol version."""
        self.buffer.clear()
        async with asyncio.timeout(self.timeout):
            await self.writer.start_tls(context)
        ssl_object = self.writer.get_extra_info("ssl_object")
        return str(ssl_object.version()) if ssl_object is not None else "unknown"


class _Connection:
    """One client's dialogue: session state (EHLO, TLS) and the current transaction."""

    def __init__(self, sink: SmtpSink, wire: _Wire, connection: int = 0) -> None:
        self.sink = sink
        self.wire = wire
        self.connection = connection
        self.reply = wire.reply
        self.readline = wire.readline
        peer = wire.writer.get_extra_info("peername") or ("", 0)
        self.peer: tuple[str, int] = (peer[0], peer[1])
        self.ehlo: str | None = None
        self.tls_version: str | None = None
        self.transactions = 0
        self.mail_from: str | None = None
        self.rcpts: list[str] = []

    async def run(self) -> None:
        sink = self.sink
        if sink.greeting_code == 220:
            await self.reply(f"220 {sink.hostname} ESMTP sink ready")
        elif sink.greeting_code == 421:
            await self.reply(f"421 4.7.0 {sink.hostname} Service not available")
            raise _Hangup()
        else:
            await self.reply(f"{sink.greeting_code} {sink.hostname} No SMTP service here")
            await self.refuse_all()
        handlers = {
            "EHLO": self.on_ehlo,
            "HELO": self.on_helo,
            "STARTTLS": self.on_starttls,
            "MAIL": self.on_mail,
            "RCPT": self.on_rcpt,
            "DATA": self.on_data,
            "RSET": self.on_rset,
            "NOOP": self.on_noop,
            "QUIT": self.on_quit,
        }
        while True:
            text = (await self.readline()).decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = text.partition(" ")
            handler = handlers.get(verb.upper())
            if handler is None:
                await self.reply("500 5.5.2 Command unrecognized")
            else:
                await handler(arg.strip())

    async def refuse_all(self) -> None:
        """After a refusing greeting: 503 to everything until QUIT (RFC 5321 3.1)."""
        while True:
            if (await self.readline()).strip().upper() == b"QUIT":
                await self.on_quit("")
            await self.reply("503 5.5.1 No SMTP service here")

    def reset(self) -> None:
        self.mail_from = None
        self.rcpts = []

    async def on_ehlo(self, arg: str) -> None:
        if not arg:
            await self.reply("501 5.5.4 Syntax: EHLO hostname")
            return
        self.ehlo = arg
        self.reset()
        keywords = list(self.sink.extensions)
        if (self.sink.tls or self.sink.broken_tls) and self.tls_version is None:
            keywords.append("STARTTLS")
        lines = [f"{self.sink.hostname} greets {arg}", *keywords]
        last = len(lines) - 1
        await self.reply(
            "\r\n".join(f"250{' ' if i == last else '-'}{line}" for i, line in enumerate(lines))
        )

    async def on_helo(self, arg: str) -> None:
        if not arg:
            await self.reply("501 5.5.4 Syntax: HELO hostname")
            return
        self.ehlo = arg
        self.reset()
        await self.reply(f"250 {self.sink.hostname}")

    async def on_starttls(self, arg: str) -> None:
        sink = self.sink
        if self.tls_version is not None:
            await self.reply("503 5.5.1 TLS already active")
            return
        if sink.tls is None and not sink.broken_tls:
            await self.reply("502 5.5.1 STARTTLS not offered")
            return
        if arg:
            await self.reply("501 5.5.4 Syntax: STARTTLS")
            return
        await self.reply("220 2.0.0 Ready to start TLS")
        if sink.tls is None:
            await self.reply("this is not a TLS handshake")
            raise _Hangup()
        self.tls_version = await self.wire.start_tls(sink.tls)
        self.ehlo = None
        self.reset()

    async def on_mail(self, arg: str) -> None:
        limit = self.sink.max_messages_per_connection
        if self.ehlo is None:
            await self.reply("503 5.5.1 Send EHLO first")
        elif self.mail_from is not None:
            await self.reply("503 5.5.1 Nested MAIL command")
        elif limit is not None and self.transactions >= limit:
            await self.reply("421 4.7.0 Too many messages on this connection")
            raise _Hangup()
        elif (match := _MAIL_RE.fullmatch(arg)) is None:
            await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
        else:
            self.mail_from = match.group(1)
            await self.reply("250 2.1.0 Sender ok")

    async def on_rcpt(self, arg: str) -> None:
        if self.mail_from is None:
            await self.reply("503 5.5.1 Need MAIL first")
            return
        if (match := _RCPT_RE.fullmatch(arg)) is None:
            await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        if len(self.rcpts) >= MAX_RECIPIENTS:
            await self.reply("452 4.5.3 Too many recipients")
            return
        rcpt = match.group(1)
        self.sink.inbox.note_attempt(rcpt)
        behaviour = behaviour_for(rcpt)
        refusal = RCPT_REPLIES.get(behaviour)
        if refusal is not None:
            await self.reply(refusal.replace("{client}", self.peer[0]))
            if behaviour in _CLOSING:
                raise _Hangup()
            return
        self.rcpts.append(rcpt)
        await self.reply("250 2.1.5 Recipient ok")

    async def on_data(self, arg: str) -> None:
        if self.mail_from is None:
            await self.reply("503 5.5.1 Need MAIL first")
            return
        if not self.rcpts:
            await self.reply("554 5.5.1 No valid recipients")
            return
        if arg:
            await self.reply("501 5.5.4 Syntax: DATA")
            return
        ending, slow = end_of_data(behaviour_for(r) for r in self.rcpts)
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        if ending is Behaviour.DISCONNECT_IN_DATA:
            if not self.wire.buffer:
                await self.wire.fill()
            raise _Hangup(abort=True)
        data = await self.wire.read_data(self.sink.max_message_size)
        if ending is Behaviour.STALL:
            await self.wire.discard_until_eof()
        if slow:
            await asyncio.sleep(self.sink.slow_seconds)
        await self.reply(await self.finish(ending, data))
        self.transactions += 1
        self.reset()

    async def finish(self, ending: Behaviour, data: bytes | None) -> str:
        if data is None:
            return "552 5.3.4 Message too big"
        if ending in DATA_REPLIES:
            return DATA_REPLIES[ending]
        assert self.mail_from is not None and self.ehlo is not None
        queue_id = await self.sink._record(
            ReceivedMessage(
                mail_from=self.mail_from,
                rcpt_tos=tuple(self.rcpts),
                data=data,
                peer=self.peer,
                tls_version=self.tls_version,
                ehlo=self.ehlo,
                received_at=datetime.datetime.now(datetime.UTC),
                connection=self.connection,
            )
        )
        return f"250 2.0.0 Ok: queued as {queue_id}"

    async def on_rset(self, arg: str) -> None:
        self.reset()
        await self.reply("250 2.0.0 Ok")

    async def on_noop(self, arg: str) -> None:
        await self.reply("250 2.0.0 Ok")

    async def on_quit(self, arg: str) -> None:
        self.sink.inbox.close_connection(self.connection)
        await self.reply("221 2.0.0 Bye")
        raise _Hangup()


class SinkOptions(TypedDict, total=False):
    """The keyword arguments of :class:`SmtpSink`, for :class:`ThreadedSmtpSink`."""

    tls: ssl.SSLContext | None
    broken_tls: bool
    greeting_code: int
    ehlo_extensions: Sequence[str] | None
    max_messages_per_connection: int | None
    slow_seconds: float
    hostname: str
    idle_timeout: float
    max_message_size: int


class ThreadedSmtpSink:
    """An :class:`SmtpSink` on its own event loop in a background thread.

    ``with ThreadedSmtpSink(...) as sink:`` starts it; ``sink.address`` is the
    bound ``(host, port)``. Reading and waiting are safe from any thread.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, **options: Unpack[SinkOptions]
    ) -> None:
        self.sink = SmtpSink(**options)
        self._host, self._port = host, port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the sink is not running")
        return self._address

    @property
    def inbox(self) -> Inbox:
        return self.sink.inbox

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.sink.inbox.messages

    def count_for(self, rcpt: str) -> int:
        return self.sink.inbox.count_for(rcpt)

    def attempts_for(self, rcpt: str) -> int:
        return self.sink.inbox.attempts_for(rcpt)

    def wait_for_count(self, n: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``n`` messages have arrived; TimeoutError after ``timeout`` s."""
        return self.sink.inbox.wait_for_count(n, timeout)

    def start(self) -> tuple[str, int]:
        if self._thread is not None:
            raise RuntimeError("the sink is already running")
        started: Future[tuple[str, int]] = Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="smtp-sink")
        self._thread.start()
        try:
            self._address = started.result(timeout=_THREAD_TIMEOUT)
        except BaseException:
            self._thread.join(_THREAD_TIMEOUT)
            self._thread = None
            raise
        return self._address

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(_THREAD_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("the SMTP sink thread did not stop")
        self._thread = self._loop = self._stopping = None
        self._address = None

    def __enter__(self) -> ThreadedSmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, started: Future[tuple[str, int]]) -> None:
        with asyncio.Runner() as runner:
            runner.run(self._serve(started))

    async def _serve(self, started: Future[tuple[str, int]]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            address = await self.sink.start(self._host, self._port)
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(address)
        try:
            await self._stopping.wait()
        finally:
            await self.sink.stop()
