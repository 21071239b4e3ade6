"""A webhook endpoint for tests: uvicorn on a loopback port, answering by path.

``/ok`` (or any other path) answers 200, ``/fail`` 500, ``/status/NNN`` NNN,
``/slow`` only after ``SLOW_SECONDS`` (longer than any test's request
deadline). Every request is kept (path, headers, body, arrival on the test's
clock) in ``requests``, in the order they arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.runtime.http_serving import HttpService, listening_socket

SLOW_SECONDS = 60.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class WebhookReceiver:
    base: str
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


def _status(path: str) -> int:
    if path == "/fail":
        return 500
    if path.startswith("/status/"):
        return int(path.removeprefix("/status/"))
    return 200


@contextlib.asynccontextmanager
async def webhook_receiver(
    now: Callable[[], float], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[WebhookReceiver]:
    """A receiver on 127.0.0.1 (over TLS with ``ssl_context``), stopped on exit."""
    receiver: WebhookReceiver

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        receiver.requests.append(Received(scope["path"], headers, body, now()))
        receiver.arrived.set()
        if scope["path"] == "/slow":
            await asyncio.sleep(SLOW_SECONDS)
        await send({"type": "http.response.start", "status": _status(scope["path"])})
        await send({"type": "http.response.body", "body": b"thanks"})

    sock = listening_socket("127.0.0.1", 0)
    service = HttpService("receiver", app, sock, ssl_context=ssl_context)
    [(host, port)] = await service.start()
    scheme = "https" if ssl_context is not None else "http"
    receiver = WebhookReceiver(f"{scheme}://{'localhost' if ssl_context else host}:{port}")
    running = asyncio.create_task(service.run())
    try:
        yield receiver
    finally:
        await service.stop(0)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        sock.close()
