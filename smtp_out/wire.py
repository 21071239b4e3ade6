"""The SMTP client's wire: bytes out, replies in, local failures as replies.

Owns ``ReplyProtocol`` (aiosmtplib's low-level ``SMTPProtocol``, adapted for
pipelining), the helpers ``send_bytes``/``read_response``/``read_reply`` that
turn every local or network failure into a ``WireFailure`` carrying a
synthesised reply, the conversion of aiosmtplib responses into
``engine.smtp.reply.Reply`` (enhanced status codes split off, RFC 3463), and
``stuff`` (dot-stuffing, RFC 5321 §4.5.2).

In: bytes to send, the ``Stage`` they belong to and a timeout per read. Out:
``Reply`` values stamped with their stage, or ``WireFailure`` whose reply reads
like a remote one:

- no reply in time: ``451 4.4.2 timed out waiting for the reply to CMD``;
- connection closed, reset or unwritable: ``451 4.4.2 connection dropped``;
- a line that is not an SMTP reply: ``451 4.5.0 malformed reply (...)``.

Pipelining (RFC 2920) needs every byte the server sends kept in order. The
base protocol drops bytes that arrive while no reply is being awaited, and
parses its buffer only when new bytes arrive, so a second reply that came in
the same segment as the first would wait forever. ``ReplyProtocol`` buffers
everything and reads a reply already complete in the buffer first.

Invariant: ``ReplyProtocol.closed`` resolves exactly once per connection,
and the connection gauge goes up once when it opens and down once when it
closes, including after a failed TLS handshake, where asyncio does not tell
the protocol that the connection is gone.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import cast

from aiosmtplib.errors import SMTPResponseException, SMTPServerDisconnected, SMTPTimeoutError
from aiosmtplib.protocol import MAX_RESPONSE_LENGTH, SMTPProtocol
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus
from prometheus_client import Gauge

from engine.records.metrics import OPEN_CONNECTIONS
from engine.smtp.reply import Reply, Stage, split_enhanced_code

CLOSE_TIMEOUT_SECONDS = 5.0


class ConnectionGauge:
    """How many connections are open right now (transports made and not yet lost).

    ``metric`` follows ``value`` up and down; by default it is the process's
    ``penguin_smtp_connections_open``, so it sums every gauge of the process.
    """

    def __init__(self, metric: Gauge = OPEN_CONNECTIONS) -> None:
        self.value = 0
        self._metric = metric

    def opened(self) -> None:
        self.value += 1
        self._metric.inc()

    def closed(self) -> None:
        self.value -= 1
        self._metric.dec()


class WireFailure(Exception):
    """The dialogue broke locally (timeout, drop, garbage); ``reply`` says how, and at
    which stage."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class ReplyProtocol(SMTPProtocol):
    """aiosmtplib's protocol, keeping every byte the server sends (see module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gauge: ConnectionGauge) -> None:
        super().__init__(loop=loop)
        self._gauge = gauge
        self.closed: asyncio.Future[None] = loop.create_future()
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.made = True
        self._gauge.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.mark_closed()

    def write_chunks(self, chunks: Sequence[bytes]) -> None:
        """``write`` for several buffers, handed to the socket together (one ``writev``)."""
        if self.transport is None or self.transport.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        cast(asyncio.WriteTransport, self.transport).writelines(chunks)

    def mark_closed(self) -> None:
        """Record the end of the connection (idempotent)."""
        if self.made and not self.closed.done():
            self.closed.set_result(None)
            self._gauge.closed()

    def mark_tls_failed(self) -> None:
        """After a failed handshake asyncio closes the transport without telling us."""
        if self.transport is not None:
            _abort(self.transport)
        self.mark_closed()

    def ssl_object(self) -> ssl.SSLObject | None:
        if self.transport is None:
            return None
        found = self.transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    def data_received(self, data: bytes) -> None:
        if self._response_waiter is None:
            return
        self._buffer.extend(data)
        if len(self._buffer) > 2 * MAX_RESPONSE_LENGTH and self.transport is not None:
            _abort(self.transport)
            return
        waiter = self._response_waiter
        if self._response_pending and not waiter.done():
            try:
                response = self._read_response_from_buffer()
            except Exception as exc:
                self._set_response_exception(waiter, exc)
            else:
                if response is not None:
                    waiter.set_result(response)

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:  # noqa: ASYNC109
        waiter = self._response_waiter
        if (waiter is None or not waiter.done()) and self._buffer:
            buffered = self._read_response_from_buffer()
            if buffered is not None:
                return buffered
        return await super().read_response(timeout)


async def close_protocol(protocol: ReplyProtocol, *, abort: bool = False) -> None:
    """Close the connection and wait until its transport is gone."""
    if not protocol.made:
        return
    transport = protocol.transport
    if transport is not None:
        if abort:
            _abort(transport)
        else:
            transport.close()
    if protocol.closed.done():
        return
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await asyncio.shield(protocol.closed)
    except TimeoutError:
        if protocol.transport is not None:
            _abort(protocol.transport)
        protocol.mark_closed()


def _abort(transport: asyncio.BaseTransport) -> None:
    cast(asyncio.WriteTransport, transport).abort()


def reply_from_response(response: SMTPResponse, stage: Stage) -> Reply:
    """An aiosmtplib response as a ``Reply`` to ``stage``, the enhanced code split off
    each line."""
    lines = response.message.split("\n")
    enhanced, _ = split_enhanced_code(lines[0])
    texts = []
    for line in lines:
        found, rest = split_enhanced_code(line)
        texts.append(rest if found is not None and found == enhanced else line)
    text = " ".join(t for t in texts if t)
    return Reply(response.code, "" if enhanced is None else str(enhanced), text, stage)


def dropped(stage: Stage, exc: BaseException | None = None) -> WireFailure:
    detail = f": {exc}" if exc is not None and str(exc) else ""
    return WireFailure(Reply(451, "4.4.2", f"connection dropped{detail}", stage))


def malformed(stage: Stage, exc: SMTPResponseException) -> WireFailure:
    detail = " ".join(exc.message.split())[:200]
    return WireFailure(Reply(451, "4.5.0", f"malformed reply ({detail})", stage))


def send_bytes(protocol: ReplyProtocol, data: bytes | Sequence[bytes], stage: Stage) -> None:
    """Queue ``data`` (or its chunks, in one write) on the connection, or ``WireFailure``
    if it is gone."""
    try:
        if isinstance(data, bytes):
            protocol.write(data)
        else:
            protocol.write_chunks(data)
    except (SMTPServerDisconnected, OSError) as exc:
        raise dropped(stage, exc) from exc


async def read_response(protocol: ReplyProtocol, stage: Stage, seconds: float) -> SMTPResponse:
    """The next reply as aiosmtplib parsed it, or ``WireFailure``."""
    try:
        return await protocol.read_response(timeout=seconds)
    except SMTPTimeoutError as exc:
        text = f"timed out waiting for the reply to {stage.command} after {seconds:g} s"
        raise WireFailure(Reply(451, "4.4.2", text, stage)) from exc
    except SMTPResponseException as exc:
        raise malformed(stage, exc) from exc
    except (SMTPServerDisconnected, OSError) as exc:
        raise dropped(stage, exc) from exc


async def read_reply(protocol: ReplyProtocol, stage: Stage, seconds: float) -> Reply:
    """The next reply, or ``WireFailure``."""
    return reply_from_response(await read_response(protocol, stage, seconds), stage)


def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


OPPORTUNISTIC_TLS = _opportunistic_context()
"""Encryption without authentication of the server (RFC 7435): no certificate checks."""


async def start_tls(
    protocol: ReplyProtocol, server_hostname: str | None, seconds: float
) -> Reply | None:
    """STARTTLS and the handshake: None once encrypted, the reply if the server refused.

    A failed handshake is a ``WireFailure`` (``451 4.7.5``), and the
    connection is gone.
    """
    try:
        await protocol.start_tls(OPPORTUNISTIC_TLS, server_hostname, timeout=seconds)
    except SMTPResponseException as exc:
        if exc.code == SMTPStatus.invalid_response:
            raise malformed(Stage.STARTTLS, exc) from exc
        return reply_from_response(SMTPResponse(exc.code, exc.message), Stage.STARTTLS)
    except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
        protocol.mark_tls_failed()
        text = f"TLS handshake failed: {exc}"
        raise WireFailure(Reply(451, "4.7.5", text, Stage.STARTTLS)) from exc
    return None


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
