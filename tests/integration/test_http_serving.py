"""An ASGI application served by ``HttpService`` on loopback, as the admin listener and the
tracking edge are."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from engine.runtime.http_serving import HttpService, listening_socket


async def hello(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI application, no framework: answers every request with its path."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


async def test_an_app_is_served_until_stopped() -> None:
    service = HttpService("edge", hello, listening_socket("127.0.0.1", 0))
    assert not service.health().ok
    [(host, port)] = await service.start()
    running = asyncio.create_task(service.run())
    assert service.health().ok
    assert await asyncio.to_thread(fetch, f"http://{host}:{port}/o/token") == b"/o/token"

    await service.stop(5)
    await asyncio.wait_for(running, 10)
    assert not service.health().ok
    with pytest.raises(OSError):
        await asyncio.to_thread(fetch, f"http://{host}:{port}/")


async def test_an_address_in_use_is_refused_at_binding() -> None:
    taken = listening_socket("127.0.0.1", 0)
    with taken, pytest.raises(OSError):
        listening_socket("127.0.0.1", taken.getsockname()[1])


async def test_requests_are_parsed_by_httptools_without_websockets() -> None:
    service = HttpService("edge", hello, listening_socket("127.0.0.1", 0))
    [(host, port)] = await service.start()
    running = asyncio.create_task(service.run())
    assert await asyncio.to_thread(fetch, f"http://{host}:{port}/c/x") == b"/c/x"
    config = service._server.config
    assert config.http_protocol_class is HttpToolsProtocol
    assert config.ws_protocol_class is None
    await service.stop(5)
    await asyncio.wait_for(running, 10)
