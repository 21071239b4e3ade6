"""The SMTP listener: asyncio sockets around ``engine.smtp.server_session``'s dialogue.

Owns the listening socket, the transport glue of each connection (input
buffering, output batching, flow control, the STARTTLS switch) and one
``SmtpSession`` task per connection. The dialogue itself (RFC 5321, STARTTLS,
AUTH) and ``ServerConfig`` live in ``engine.smtp.server_session``; ``ServerConfig`` is
re-exported here.

In: a ``ServerConfig`` (validated once, immutable) and an ``SmtpHandler``
(``engine.smtp.handler``). Out: connections handed to sessions, and a ``421``
without ``handler.on_rejection`` to connections refused while the process is
over ``max_sessions`` or stopping.

Invariants:

- Every session task belongs to the server; ``stop`` stops accepting at once,
  sends ``421 4.3.2`` to sessions idle between transactions, lets the others
  finish until the deadline, then cancels them.
- Unread input above ``_READ_HIGH_WATER`` pauses reading (backpressure); a
  paused writer makes ``flush`` wait.
- The listening socket's backlog is ``LISTEN_BACKLOG``, also on a socket bound
  by the caller (asyncio would listen on it again with its default of 100).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Final, cast

from engine.smtp.handler import SmtpHandler
from engine.smtp.reply import Reply
from engine.smtp.server_session import SHUTTING_DOWN, ServerConfig, SmtpSession

__all__ = ["LISTEN_BACKLOG", "ServerConfig", "SmtpServer"]

logger = logging.getLogger(__name__)

LISTEN_BACKLOG: Final = 1024
"""Connections the kernel queues before they are accepted (capped by somaxconn)."""
_READ_HIGH_WATER: Final = 256 * 1024
"""Unread input above which the socket stops being read (backpressure)."""
_CLOSE_WAIT_SECONDS: Final = 5.0

_TOO_BUSY: Final = Reply(421, "4.3.2", "Too many connections, try again later")


class SmtpServer:
    """An SMTP listener serving ``handler`` under ``config``."""

    def __init__(self, config: ServerConfig, handler: SmtpHandler) -> None:
        self.config = config
        self.handler = handler
        self.stopping = False
        self._listener: asyncio.Server | None = None
        self._sessions: dict[asyncio.Task[None], SmtpSession] = {}

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def start(
        self, host: str = "", port: int = 0, *, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (0 = any free port), or accept on the bound ``sock``
        (shared by several engine processes); returns the bound address."""
        if self._listener is not None:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._listener = await loop.create_server(
                lambda: _Connection(self), sock=sock, backlog=LISTEN_BACKLOG
            )
        else:
            self._listener = await loop.create_server(
                lambda: _Connection(self), host, port, reuse_address=True, backlog=LISTEN_BACKLOG
            )
        bound = self._listener.sockets[0].getsockname()
        logger.info("SMTP listening on %s:%d", bound[0], bound[1])
        return str(bound[0]), int(bound[1])

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting; drain sessions until the deadline, then close them."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self.stopping = True
        listener.close()
        for session in self._sessions.values():
            session.conn.wake()
        tasks = set(self._sessions)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await listener.wait_closed()
        self.stopping = False

    def _admit(self, conn: _Connection) -> None:
        if self.stopping or len(self._sessions) >= self.config.max_sessions:
            logger.warning("SMTP connection refused: %d sessions", len(self._sessions))
            conn.transport.write((SHUTTING_DOWN if self.stopping else _TOO_BUSY).encode())
            conn.transport.close()
            return
        session = SmtpSession(self, conn)
        task = asyncio.get_running_loop().create_task(session.run())
        self._sessions[task] = session
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._sessions.pop(task, None)


class _Connection(asyncio.Protocol):
    """Transport glue: buffers input, batches output, tracks flow control."""

    transport: asyncio.Transport

    def __init__(self, server: SmtpServer) -> None:
        self._server = server
        self._inbox: list[bytes] = []
        self._inbox_size = 0
        self._out: list[bytes] = []
        self._reading_paused = False
        self._writing_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self.eof = False
        self.tls = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server._admit(self)

    def data_received(self, data: bytes) -> None:
        self._inbox.append(data)
        self._inbox_size += len(data)
        if self._inbox_size > _READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self.wake()

    def eof_received(self) -> bool:
        self.eof = True
        self.wake()
        return not self.tls  # keep the socket open to answer what was sent

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.lost.done():
            self.lost.set_result(None)
        self.wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def wake(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def take_input(self) -> bytes:
        data = b"".join(self._inbox)
        self.discard_input()
        return data

    def discard_input(self) -> int:
        dropped = self._inbox_size
        self._inbox.clear()
        self._inbox_size = 0
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        return dropped

    def write(self, data: bytes) -> None:
        self._out.append(data)

    def _send_now(self) -> None:
        if self._out and not self.lost.done():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    async def flush(self) -> None:
        self._send_now()
        if self._writing_paused and not self.lost.done():
            self._writable = self._loop.create_future()
            await self._writable

    async def wait_for_input(self, deadline: float) -> None:
        # One timer per connection, re-armed only when it fires early or must fire
        # sooner: a timer handle per read costs more than the read itself.
        loop = self._loop
        if loop.time() >= deadline:
            raise TimeoutError
        self._deadline = deadline
        if self._timer is None or self._timer_due > deadline:
            self._arm(deadline)
        try:
            await self.flush()
            if self._inbox or self.eof:
                return
            self._readable = loop.create_future()
            await self._readable
        finally:
            self._deadline = None

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(due, self._on_timer)
        self._timer_due = due

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:  # not waiting: the next wait arms a new timer
            return
        if deadline > self._timer_due:  # the wait began after the timer was armed
            self._arm(deadline)
            return
        for waiter in (self._writable, self._readable):
            if waiter is not None and not waiter.done():
                waiter.set_exception(TimeoutError())

    async def start_tls(self, context: ssl.SSLContext, handshake_seconds: float) -> None:
        self._send_now()
        self.discard_input()
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self.transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=handshake_seconds,
            )
        except BaseException:
            self.connection_lost(None)
            raise
        if transport is None:
            self.connection_lost(None)
            raise ConnectionResetError("connection closed during TLS handshake")
        self.transport = transport
        self.tls = True

    async def close(self) -> None:
        if self.lost.done():
            return
        self._send_now()
        self.transport.close()
        try:
            async with asyncio.timeout(_CLOSE_WAIT_SECONDS):
                await asyncio.shield(self.lost)
        except TimeoutError:
            self.transport.abort()
            await asyncio.wait({self.lost}, timeout=_CLOSE_WAIT_SECONDS)
