"""One webhook POST over asyncio streams: HTTP/1.1, TLS through ``ssl``, one deadline.

The client resolves the endpoint's host (``loop.getaddrinfo``), keeps only
the addresses the address rule allows (``endpoints.allowed_addresses``),
connects to them in turn (TLS with the URL's host as server name, the
certificate verified by the context given), sends the request with
``Content-Length`` and ``Connection: close``, reads the status line and
closes without waiting for the peer's close. Everything, from the lookup to
the status line, runs under one deadline. The outcome is a value
(``PostResult``): a status, or the error that left none. Nothing is
retried here (``retries`` decides).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from engine.webhooks.endpoints import Endpoint, InvalidEndpoint, allowed_addresses, ip_literal
from engine.webhooks.retries import PostResult

USER_AGENT: Final = "PenguinMails-Webhooks/1"
STATUS_LINE_MAX: Final = 8192
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: [^\r\n]*)?\r?\n")

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""Host and port to the addresses to connect to."""


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the system resolver, in its order, each once."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HttpPoster:
    """Posts bodies to endpoints; ``post`` never raises for the network's or the peer's
    failures."""

    def __init__(
        self,
        *,
        timeout: float,
        allow_private: bool,
        ssl_context: ssl.SSLContext | None = None,
        resolve: Resolve = system_resolve,
    ) -> None:
        self._timeout = timeout
        self._allow_private = allow_private
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._resolve = resolve

    async def post(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> PostResult:
        """POST ``body`` (JSON) to ``endpoint`` with ``headers`` besides the client's own."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._post(endpoint, body, headers)
        except TimeoutError:
            return PostResult(None, f"no status within {self._timeout:g} s")
        except InvalidEndpoint as exc:
            return PostResult(None, f"refused: {exc}")
        except (
            OSError,
            ssl.SSLError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            return PostResult(None, _describe(exc))

    async def _post(
        self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str]
    ) -> PostResult:
        if ip_literal(endpoint.host) is not None:
            addresses = [endpoint.host]
        else:
            addresses = await self._resolve(endpoint.host, endpoint.port)
        addresses = allowed_addresses(addresses, allow_private=self._allow_private)
        reader, writer = await self._connect(endpoint, addresses)
        try:
            writer.write(request(endpoint, body, headers))
            await writer.drain()
            line = await reader.readuntil(b"\n")
        finally:
            writer.close()  # not waited for: the status is what was wanted
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            return PostResult(None, f"not an HTTP/1.1 status line: {line[:80]!r}")
        return PostResult(int(match.group(1)))

    async def _connect(
        self, endpoint: Endpoint, addresses: list[str]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        failure: OSError | None = None
        for address in addresses:
            try:
                return await asyncio.open_connection(
                    address,
                    endpoint.port,
                    ssl=self._ssl if endpoint.tls else None,
                    server_hostname=endpoint.host if endpoint.tls else None,
                    limit=STATUS_LINE_MAX,
                )
            except ssl.SSLError:
                raise
            except OSError as exc:
                failure = exc
        assert failure is not None
        raise failure


def request(endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The request's bytes: the head, then ``body``."""
    lines = [
        f"POST {endpoint.target} HTTP/1.1",
        f"Host: {endpoint.host_header}",
        f"User-Agent: {USER_AGENT}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    head = "\r\n".join(lines) + "\r\n\r\n"
    if any(c in head[:-4].replace("\r\n", "") for c in "\r\n"):
        raise ValueError("a header holds a line break")
    return head.encode("ascii") + body


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed before a status line"
    if isinstance(exc, asyncio.LimitOverrunError):
        return f"a status line longer than {STATUS_LINE_MAX} bytes"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
