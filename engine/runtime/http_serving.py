"""An ASGI application served by uvicorn inside the engine's event loop, as a ``Service``.

The admin listener (``admin_api``) and, later, the tracking edge each build an
ASGI application; the composition root serves it here, on a socket it bound
beforehand (``listening_socket``) so that an address in use is an ``OSError``
at binding rather than uvicorn's exit. uvicorn's signal handling is off: the
engine owns SIGTERM/SIGINT (``engine.runtime.runner``). HTTP/1.1 is parsed by
httptools (never h11, several times slower), without WebSocket upgrades, access
log or Server header.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import uvicorn

from engine.service import Address, Health

AsgiApp = Callable[[Any, Any, Any], Awaitable[None]]
"""An ASGI 3 application: ``await app(scope, receive, send)``."""

STARTUP_TIMEOUT_SECONDS = 10.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


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
    (loopback proxies are trusted).
    """

    def __init__(
        self,
        name: str,
        app: AsgiApp,
        sock: socket.socket,
        *,
        ssl_context: ssl.SSLContext | None = None,
        trusted_proxies: Sequence[str] | None = None,
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
                http="httptools",
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
