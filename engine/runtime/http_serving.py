"""An ASGI application served by uvicorn inside the engine's event loop, as a ``Service``.

The admin listener (``admin_api``) and the tracking edge (``tracking_edge``) each build an
ASGI application; the composition root serves it here, on a socket it bound
beforehand (``listening_socket``) so that an address in use is an ``OSError``
at binding rather than uvicorn's exit. uvicorn's signal handling is off: the
engine owns SIGTERM/SIGINT (``engine.runtime.runner``). HTTP/1.1 is parsed by
httptools (never h11, several times slower), without WebSocket upgrades, access
log or Server header.

Every connection is held to ``ClientLimits``: deadlines, not per-read timeouts,
so a client that trickles bytes holds a connection no longer than one that
sends none, and a bound on a request's head, which uvicorn alone buffers
without limit (``_BoundedHttpProtocol``).

A listener may answer one route itself (``DirectRoute``: the admin API's
``POST /v1/messages``), its requests read whole and answered in one write,
in order with the application's on the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

import uvicorn
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from engine.service import Address, Health
from engine.smtp.deadline import DeadlineTimer

AsgiApp = Callable[[Any, Any, Any], Awaitable[None]]
"""An ASGI 3 application: ``await app(scope, receive, send)``."""

STARTUP_TIMEOUT_SECONDS = 10.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


@dataclass(frozen=True)
class ClientLimits:
    """What one client may hold of an HTTP listener. Each is a deadline from the start
    of a phase, however the client spaces its bytes."""

    head_bytes: int = 64 * 1024
    """A request's line and header fields; beyond, 431 and the connection closed."""
    head_seconds: float = 10.0
    """From a request's first byte to the end of its header fields; then 408."""
    request_seconds: float = 600.0
    """From a request's first byte to the end of its body; then 408 (or the connection
    closed, once the response has begun) and the application sees a disconnect."""
    idle_seconds: float = 5.0
    """A connection with no request begun or being answered (new, or kept alive)."""
    connections: int = 1000
    """Connections held at once; one more is answered 503 and closed at once, so that
    a flood of clients cannot take every file descriptor of the engine (its SMTP
    listeners, its store and its deliveries share them). Not a deadline. The engine's
    listeners take theirs from ``admin.max_connections`` and
    ``tracking.max_connections``."""


ADMIN_LIMITS = ClientLimits()
"""The admin listener's: room for uploads (recipient lists, suppression imports)."""
EDGE_LIMITS = ClientLimits(request_seconds=30.0)
"""The tracking edge's: its requests are a line, a few header fields, a form at most,
from every mail client that opens a message."""


LINGER_SECONDS = 5.0
"""How long a refused client's further bytes are read and dropped (see ``_refuse``)."""
LINGER_BYTES = 1024 * 1024
"""How many of them, at most."""


class DirectAnswer(Protocol):
    """A whole answer to a request of a ``DirectRoute``."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def bug(self) -> Exception | None:
        """The exception behind a 500, logged once the answer is written."""


class DirectRoute(Protocol):
    """A route the listener answers itself, around the ASGI application: its hot
    route, whose requests then cost no ASGI scope round trip, no middleware and one
    write. It takes a request to ``method`` ``path`` (no query) with a declared
    ``Content-Length`` of at most ``max_body`` and no ``Expect``, ``Transfer-Encoding``
    or forwarding header fields; every other request, and every one it answers None
    to, goes to the application, its body given again."""

    @property
    def method(self) -> bytes: ...
    @property
    def path(self) -> bytes: ...
    @property
    def max_body(self) -> int: ...
    async def answer(self, scope: Any, body: bytes) -> DirectAnswer | None:
        """The answer to the request of ``scope`` (uvicorn's ASGI scope) with ``body``."""


class _Phase(enum.Enum):
    IDLE = "idle"
    HEAD = "head"
    BODY = "body"
    ANSWERING = "answering"
    LINGERING = "lingering"


class _BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with ``limits``: one deadline per phase of the
    connection (idle, a request's head, its body; none while the application answers)
    and a bound on the bytes of a head. One timer serves every phase
    (``engine.smtp.deadline``)."""

    limits: ClassVar[ClientLimits] = ClientLimits()
    direct: ClassVar[DirectRoute | None] = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase = _Phase.IDLE
        self._head_bytes = 0
        self._request_deadline = 0.0
        self._direct_cycle: RequestResponseCycle | None = None
        """The request last read whose route is ``direct``, until it is answered."""
        self._direct_waiting = False
        """Whether its answer waits for the end of its body."""
        self._deadline = DeadlineTimer(self.loop, self._expired)
        if len(self.connections) > self.limits.connections:
            self._phase = _Phase.LINGERING  # what it sends is dropped until it is gone
            transport.write(_plain_answer(503, "Service Unavailable"))
            transport.close()
            return
        self._deadline.start(self.loop.time() + self.limits.idle_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase is _Phase.LINGERING:
            self._head_bytes += len(data)
            if self._head_bytes > LINGER_BYTES:
                self.transport.close()
            return
        if self._phase is not _Phase.BODY:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._phase is not _Phase.BODY and self._head_bytes > self.limits.head_bytes:
            self._refuse(431, "Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _Phase.HEAD
        now = self.loop.time()
        self._request_deadline = now + self.limits.request_seconds
        self._deadline.stop()
        self._deadline.start(now + self.limits.head_seconds)

    def on_headers_complete(self) -> None:
        head_size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if head_size > self.limits.head_bytes:  # whole, within the bytes of one read
            self._headers_complete_for(_head_too_large)
        elif self._is_direct():
            self._headers_complete_for(_answered_directly)
            self._direct_cycle = self.cycle
        else:
            super().on_headers_complete()
        self._phase = _Phase.BODY
        self._head_bytes = 0
        self._deadline.stop()
        self._deadline.start(self._request_deadline)

    def _headers_complete_for(self, app: AsgiApp) -> None:
        """uvicorn's end of a head, with ``app`` as the request's application."""
        own, self.app = self.app, app
        try:
            super().on_headers_complete()
        finally:
            self.app = own

    def _is_direct(self) -> bool:
        """Whether the request whose head was just read is the direct route's."""
        direct = self.direct
        if direct is None or self.url != direct.path:
            return False
        if self.parser.get_method() != direct.method or self.parser.should_upgrade():
            return False
        length = -1
        for name, value in self.headers:
            if name == b"content-length":
                if length >= 0 or not value.isdigit():
                    return False
                length = int(value)
            elif name in _NOT_DIRECT:
                return False
        return 0 <= length <= direct.max_body

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: AsgiApp) -> None:
        if app is not _answered_directly:
            super()._start_asgi_task(cycle, app)
        elif cycle.more_body:  # its body still coming: ``on_message_complete`` starts it
            self._direct_waiting = True
        else:
            self._answer_directly(cycle)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle is not self._direct_cycle or cycle.response_complete:
            super().on_body(body)
        else:  # read whole, as the route does, within ``max_body``: no pause for a reader
            cycle.body += body

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _Phase.ANSWERING
        self._deadline.stop()
        if self._direct_waiting and self.cycle is self._direct_cycle:
            self._direct_waiting = False
            self._answer_directly(self.cycle)
        self._idle_if_answered()

    def _answer_directly(self, cycle: RequestResponseCycle) -> None:
        task = self.loop.create_task(self._direct_answer(cycle))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _direct_answer(self, cycle: RequestResponseCycle) -> None:
        """The direct route's answer written whole, as uvicorn's ``send`` ends a
        response; a request it does not answer goes to the application."""
        assert self.direct is not None
        try:
            answer = await self.direct.answer(cycle.scope, bytes(cycle.body))
        except BaseException as exc:  # as uvicorn's ``run_asgi`` answers the application's
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not cycle.disconnected:
                await cycle.send_500_response()
            return
        if answer is None:
            await cycle.run_asgi(self.app)  # the body read already is what it receives
            return
        if cycle.disconnected:
            return
        head = [STATUS_LINE[answer.status]]
        for name, value in (*self.server_state.default_headers, *answer.headers):
            head += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", answer.body)
        self.transport.write(b"".join(head))
        cycle.response_started = cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()
        if answer.bug is not None:
            self.logger.error("Exception in ASGI application\n", exc_info=answer.bug)

    def on_response_complete(self) -> None:
        """uvicorn's, without its keep-alive timer (a timer made and cancelled per
        request): the idle deadline is that timer here."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        self._idle_if_answered()

    def _idle_if_answered(self) -> None:
        """Idle from now if the request received last is answered (an application may
        answer before it has read the body) and none waits in the pipeline."""
        answered = self.cycle is None or self.cycle.response_complete
        if self._phase is _Phase.ANSWERING and answered and not self.pipeline:
            self._phase = _Phase.IDLE
            self._deadline.start(self.loop.time() + self.limits.idle_seconds)

    def _expired(self) -> None:
        if self._phase in (_Phase.IDLE, _Phase.LINGERING):
            self.transport.close()
        elif self._phase is not _Phase.ANSWERING:
            self._refuse(408, "Request Timeout")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status``, then close; a response under way is cut short instead, and
        the request's application, if it runs, sees a disconnect. Closing a socket with
        unread bytes resets the connection, and the client would lose the answer with
        them, so the connection is half-closed first and what the client still sends is
        read and dropped until it closes, for ``LINGER_SECONDS`` and ``LINGER_BYTES`` at
        most (nginx's lingering close); over TLS, which cannot half-close, it closes at
        once."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        in_head = self._phase is not _Phase.BODY
        if in_head:  # ``cycle`` is an earlier request's, perhaps still being answered
            under_way = cycle is not None and not cycle.response_complete
        else:
            under_way = cycle.response_started
        if cycle is not None and (under_way or not in_head):
            cycle.disconnected = True  # its application's further sends are dropped
            cycle.message_event.set()
        if not under_way:
            self.transport.write(_plain_answer(status, reason))
        if under_way or not self.transport.can_write_eof():  # nothing to linger for
            self._phase = _Phase.IDLE
            self.transport.close()
            return
        self.transport.write_eof()
        self._phase = _Phase.LINGERING
        self._head_bytes = 0
        self.flow.resume_reading()
        self._deadline.stop()
        self._deadline.start(self.loop.time() + LINGER_SECONDS)


_NOT_DIRECT: Final = frozenset(
    {b"transfer-encoding", b"expect", b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"}
)
"""Header fields that send a request of the direct route to the application: a body
sent in chunks, and what uvicorn's proxy headers middleware reads."""


async def _answered_directly(scope: Any, receive: Any, send: Any) -> None:
    """Marks a request for ``_BoundedHttpProtocol._direct_answer``; never called."""
    raise AssertionError("a direct request is answered by the listener")


def _plain_answer(status: int, reason: str) -> bytes:
    """A response to a client refused outside any application: ``reason`` as its text,
    and the connection closing."""
    text = reason.encode("ascii")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, text, len(text), text)
    )


async def _head_too_large(scope: Any, receive: Any, send: Any) -> None:
    """The answer to a request whose head came whole but over the bound (as uvicorn
    answers a request over its concurrency limit: by the application it runs)."""
    text = b"Request Header Fields Too Large"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(text)).encode("ascii")),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 431, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def _bounded_by(limits: ClientLimits, direct: DirectRoute | None) -> type[_BoundedHttpProtocol]:
    attributes = {"limits": limits, "direct": direct}
    return type("BoundedHttpProtocol", (_BoundedHttpProtocol,), attributes)


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpService:
    """``Service``: ``app`` served on the listening ``sock``.

    With ``ssl_context``, over TLS (the context may pick a certificate per
    connection by SNI). ``trusted_proxies`` (addresses or networks): the
    client of a request from one of them is the one its ``X-Forwarded-For``
    names; an empty list trusts no proxy; None keeps uvicorn's default
    (loopback proxies are trusted). ``limits``: what one client may hold. ``direct``: a
    route the listener answers itself (``DirectRoute``).
    """

    def __init__(
        self,
        name: str,
        app: AsgiApp,
        sock: socket.socket,
        *,
        ssl_context: ssl.SSLContext | None = None,
        trusted_proxies: Sequence[str] | None = None,
        limits: ClientLimits = ADMIN_LIMITS,
        direct: DirectRoute | None = None,
    ) -> None:
        self._name = name
        self._sock = sock
        options: dict[str, Any] = {}
        if ssl_context is not None:
            options["ssl_context_factory"] = lambda config, default: ssl_context
        if trusted_proxies is not None:
            options["proxy_headers"] = bool(trusted_proxies)
            options["forwarded_allow_ips"] = list(trusted_proxies)
        self._server = _EmbeddedServer(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                loop="none",
                http=_bounded_by(limits, direct),
                ws="none",
                server_header=False,
                **options,
            )
        )
        self._serving: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> list[Address]:
        self._serving = asyncio.create_task(
            self._server.serve(sockets=[self._sock]), name=f"{self._name} http"
        )
        async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
            while not self._server.started:
                if self._serving.done():
                    await self._serving
                    raise OSError(f"{self._name}: the HTTP server did not start")
                await asyncio.sleep(0.01)
        host, port = self._sock.getsockname()[:2]
        return [(str(host), int(port))]

    async def run(self) -> None:
        assert self._serving is not None, "started"
        await self._serving

    async def stop(self, grace_seconds: float) -> None:
        self._server.should_exit = True

    def health(self) -> Health:
        serving = self._serving is not None and not self._serving.done()
        if not serving or self._server.should_exit:
            return Health(False, "not serving")
        return Health(True)
