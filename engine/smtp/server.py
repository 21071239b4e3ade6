"""The SMTP listener: asyncio sockets around ``engine.smtp.server_dialogue``.

Owns the listening socket, the transport glue of each connection (input
buffering, output batching, flow control, deadlines, the STARTTLS switch) and
one task per connection that performs what the pure ``ServerDialogue``
asks for: it writes replies, feeds input, awaits the ``SmtpHandler``
(``engine.smtp.handler``), runs the TLS handshake and closes. The dialogue
itself (RFC 5321, STARTTLS, AUTH) lives in ``engine.smtp.server_dialogue`` and
``ServerConfig`` in ``engine.smtp.server_config``; ``ServerConfig`` is
re-exported here.

In: a ``ServerConfig`` (validated once, immutable) and an ``SmtpHandler``.
Out: connections served, and a ``421`` without ``handler.on_rejection`` to
connections refused while the process is over ``max_sessions`` or stopping.

Invariants:

- Waiting for the client is bounded by deadlines, not by timeouts per read:
  each wait the dialogue starts (``NeedInput.starts``) gets one deadline,
  however the input trickles in; one timer per connection serves them all.
- Replies are written to a batch that is sent when the task waits for input,
  starts TLS or closes, so a pipelined group gets its replies in one write.
- Input is taken only when the dialogue needs it, and unread input above
  ``_READ_HIGH_WATER`` pauses reading (backpressure); a paused writer makes
  ``flush`` wait. ``start_tls`` drops unread input (RFC 3207 4.2).
- Every session task belongs to the server; ``stop`` stops accepting at once,
  sends ``421 4.3.2`` to sessions idle between transactions, lets the others
  finish until the deadline, then cancels them: one cancelled while waiting
  for a command gets the same 421, unreported.
- The listening socket's backlog is ``LISTEN_BACKLOG``, also on a socket bound
  by the caller (asyncio would listen on it again with its default of 100).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
from typing import Final, cast

from engine.smtp.deadline import DeadlineTimer
from engine.smtp.handler import Session, SmtpHandler
from engine.smtp.reply import Reply
from engine.smtp.server_config import ServerConfig
from engine.smtp.server_dialogue import (
    SHUTTING_DOWN,
    Ask,
    Awaiting,
    NeedInput,
    Report,
    ServerDialogue,
    StartTls,
)

__all__ = ["LISTEN_BACKLOG", "ServerConfig", "SmtpServer"]

logger = logging.getLogger(__name__)

LISTEN_BACKLOG: Final = 1024
"""Connections the kernel queues before they are accepted (capped by somaxconn)."""
_READ_HIGH_WATER: Final = 256 * 1024
"""Unread input above which the socket stops being read (backpressure)."""
_CLOSE_WAIT_SECONDS: Final = 5.0

_TOO_BUSY: Final = Reply(421, "4.3.2", "Too many connections, try again later")
_INTERNAL_ERROR: Final = Reply(421, "4.3.0", "Local error, closing connection")


class SmtpServer:
    """An SMTP listener serving ``handler`` under ``config``."""

    def __init__(self, config: ServerConfig, handler: SmtpHandler) -> None:
        self.config = config
        self.handler = handler
        self.stopping = False
        self._listener: asyncio.Server | None = None
        self._sessions: dict[asyncio.Task[None], _Connection] = {}

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
        for conn in self._sessions.values():
            conn.wake()
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
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._sessions[task] = conn
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._sessions.pop(task, None)

    async def _serve(self, conn: _Connection) -> None:
        """Perform the dialogue's actions on ``conn`` until it closes."""
        dialogue = ServerDialogue(self.config, _new_session(conn.transport))
        session = dialogue.session
        logger.debug("session %s: connect from %s", session.id, session.peer_host)
        try:
            await self._converse(dialogue, conn)
        except OSError as exc:
            logger.debug("session %s: connection error: %s", session.id, exc)
        except asyncio.CancelledError:
            if dialogue.awaiting_command:
                conn.write(SHUTTING_DOWN.encode())
            raise
        except Exception:
            logger.exception("session %s: unexpected error", session.id)
            conn.write(_INTERNAL_ERROR.encode())
            try:
                await self.handler.on_rejection(session, "", _INTERNAL_ERROR)
            except Exception:
                logger.exception("session %s: on_rejection failed", session.id)
        finally:
            await conn.close()
            logger.debug("session %s: closed", session.id)

    async def _converse(self, dialogue: ServerDialogue, conn: _Connection) -> None:
        config, handler = self.config, self.handler
        time = conn.loop.time
        deadline = 0.0
        while True:
            action = dialogue.next_action()
            if type(action) is Reply:
                conn.write(action.encode())
            elif type(action) is NeedInput:
                if action.starts:
                    wait = (
                        config.data_timeout_seconds
                        if action.awaiting is Awaiting.BODY
                        else config.idle_timeout_seconds
                    )
                    deadline = time() + wait
                data = conn.take_input()
                if data:
                    dialogue.receive(data)
                elif conn.eof:
                    await conn.flush()
                    dialogue.receive_eof()
                elif not (self.stopping and dialogue.shutdown()):
                    try:
                        await conn.wait_for_input(deadline)
                    except TimeoutError:
                        dialogue.timed_out()
            elif isinstance(action, Ask):
                try:
                    answer = await action.call(handler)
                except Exception:
                    failed = "on_rejection" if type(action) is Report else "handler"
                    logger.exception("session %s: %s failed", dialogue.session.id, failed)
                    dialogue.handler_failed()
                else:
                    dialogue.answer(answer)
            elif isinstance(action, StartTls):
                await self._start_tls(dialogue, conn, action.dropped)
            else:
                return  # Close

    async def _start_tls(self, dialogue: ServerDialogue, conn: _Connection, dropped: int) -> None:
        sid = dialogue.session.id
        if dropped:
            logger.warning("session %s: dropped %d octets sent after STARTTLS", sid, dropped)
        context = self.config.tls_context
        assert context is not None  # STARTTLS is offered only with a context
        try:
            await conn.start_tls(context, self.config.idle_timeout_seconds)
        except OSError as exc:
            logger.info("session %s: TLS handshake failed: %s", sid, exc)
            dialogue.tls_failed()
            return
        cipher = version = None
        ssl_object = conn.transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            described = ssl_object.cipher()
            cipher = described[0] if described else None
            version = ssl_object.version()
        dialogue.tls_started(cipher, version)


def _new_session(transport: asyncio.Transport) -> Session:
    peer = transport.get_extra_info("peername") or ("", 0)
    local = transport.get_extra_info("sockname") or ("", 0)
    return Session(
        id=secrets.token_hex(5),
        peer_host=str(peer[0]),
        peer_port=int(peer[1]),
        local_host=str(local[0]),
        local_port=int(local[1]),
    )


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
        self.loop = asyncio.get_running_loop()
        self._deadline = DeadlineTimer(self.loop, self._time_out)
        self.lost: asyncio.Future[None] = self.loop.create_future()
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
        self._deadline.cancel()
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
            self._writable = self.loop.create_future()
            await self._writable

    async def wait_for_input(self, deadline: float) -> None:
        loop = self.loop
        if loop.time() >= deadline:
            raise TimeoutError
        self._deadline.start(deadline)
        try:
            await self.flush()
            if self._inbox or self.eof:
                return
            self._readable = loop.create_future()
            await self._readable
        finally:
            self._deadline.stop()

    def _time_out(self) -> None:
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
        await asyncio.sleep(0)  # a transport with nothing left to send is gone by now
        if self.lost.done():
            return
        try:
            async with asyncio.timeout(_CLOSE_WAIT_SECONDS):
                await asyncio.shield(self.lost)
        except TimeoutError:
            self.transport.abort()
            await asyncio.wait({self.lost}, timeout=_CLOSE_WAIT_SECONDS)
