"""The socket of one outgoing SMTP connection: asyncio glue, and nothing of SMTP.

Owns ``Connection`` (an ``asyncio.Protocol``: connect from a source
address, bytes in and out, a wait bounded by a deadline, the switch to TLS,
closing) and ``ConnectionGauge``, the count of open connections behind
``penguin_smtp_connections_open``. The dialogue is
``engine.smtp.client.ClientDialogue``; ``smtp_out.client_session`` drives it
over a ``Connection``.

In: an address to connect to (and one to bind), bytes to write, deadlines on
the loop's clock. Out: the bytes received, ``eof`` once the peer closed or
the connection broke (``error`` says why), ``TimeoutError`` when a deadline
passes, and a ``Reply`` for a connection that could not be made
(``451 4.4.1``).

Invariants:

- The gauge goes up once when a connection is made and down once when it is
  gone, including after a failed TLS handshake, where asyncio does not tell
  the protocol that the connection is gone.
- A wait is bounded by the caller's deadline however the bytes trickle in;
  more unread input than ``READ_HIGH_WATER`` pauses reading.
- Nothing is written to a connection that is closing or gone.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Final, cast

from prometheus_client import Gauge

from engine.records.metrics import OPEN_CONNECTIONS
from engine.smtp.deadline import DeadlineTimer
from engine.smtp.reply import Reply

CLOSE_TIMEOUT_SECONDS: Final = 5.0
READ_HIGH_WATER: Final = 256 * 1024
"""Unread input above which the socket stops being read."""


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


def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


OPPORTUNISTIC_TLS: Final = _opportunistic_context()
"""Encryption without authentication of the server (RFC 7435): no certificate checks."""


class Connection(asyncio.Protocol):
    """One outgoing connection's transport glue (see the module docstring)."""

    def __init__(self, gauge: ConnectionGauge) -> None:
        self._loop = asyncio.get_running_loop()
        self._gauge = gauge
        self._transport: asyncio.Transport | None = None
        self._inbox: list[bytes] = []
        self._inbox_size = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = DeadlineTimer(self._loop, self._time_out)
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self.eof = False
        """The peer closed, or the connection broke or was closed."""
        self.error: Exception | None = None
        """Why the connection broke, if it did."""

    @property
    def open(self) -> bool:
        """Connected, and neither closing nor closed."""
        transport = self._transport
        return transport is not None and not self.eof and not transport.is_closing()

    @property
    def has_input(self) -> bool:
        return bool(self._inbox)

    def ssl_object(self) -> ssl.SSLObject | None:
        if self._transport is None:
            return None
        found = self._transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    async def connect(
        self, host: str, port: int, local_addr: tuple[str, int] | None, seconds: float
    ) -> Reply | None:
        """Connect within ``seconds``: None once connected, else the reply that says why not."""
        try:
            async with asyncio.timeout(seconds):
                await self._loop.create_connection(lambda: self, host, port, local_addr=local_addr)
        except TimeoutError:
            return Reply(451, "4.4.1", f"connection timed out after {seconds:g} s")
        except ConnectionRefusedError:
            return Reply(451, "4.4.1", "connection refused")
        except OSError as exc:
            return Reply(451, "4.4.1", f"cannot connect: {exc.strerror or exc}")
        return None

    def write(self, chunks: list[bytes]) -> None:
        """Hand ``chunks`` to the socket together (one ``writev``), if it is still open."""
        if self._transport is not None and self.open:
            self._transport.writelines(chunks)

    def take_input(self) -> bytes:
        """Everything received and not yet taken."""
        data = b"".join(self._inbox)
        self._inbox.clear()
        self._inbox_size = 0
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return data

    async def wait_for_input(self, deadline: float) -> None:
        """Until there is input or ``eof``; ``TimeoutError`` at ``deadline`` (loop time)."""
        if self._inbox or self.eof:
            return
        if self._loop.time() >= deadline:
            raise TimeoutError
        self._deadline.start(deadline)
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._deadline.stop()

    def _time_out(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None, seconds: float
    ) -> None:
        """The TLS handshake within ``seconds``; input received before it is dropped.

        On failure (``OSError``, ``TimeoutError``) the connection is gone.
        """
        transport = self._transport
        if transport is None or not self.open:
            raise ConnectionResetError("connection closed before the TLS handshake")
        self.take_input()
        try:
            async with asyncio.timeout(seconds):
                secured = await self._loop.start_tls(
                    transport,
                    self,
                    context,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=seconds,
                )
        except BaseException:
            transport.abort()
            self._gone(None)
            raise
        if secured is None:
            self._gone(None)
            raise ConnectionResetError("connection closed during the TLS handshake")
        self._transport = secured

    async def close(self, *, abort: bool = False) -> None:
        """Close (or abort) the connection and wait until its transport is gone."""
        transport = self._transport
        if transport is None:
            return
        if abort:
            transport.abort()
        else:
            transport.close()
        if self._lost.done():
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await asyncio.shield(self._lost)
        except TimeoutError:
            transport.abort()
            self._gone(None)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._gauge.opened()

    def data_received(self, data: bytes) -> None:
        self._inbox.append(data)
        self._inbox_size += len(data)
        if self._inbox_size > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            cast(asyncio.Transport, self._transport).pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone(exc)

    def _gone(self, exc: Exception | None) -> None:
        self.eof = True
        self._deadline.cancel()
        if exc is not None and self.error is None:
            self.error = exc
        if self._transport is not None and not self._lost.done():
            self._lost.set_result(None)
            self._gauge.closed()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
