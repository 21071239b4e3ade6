"""The HTTP load generator of ``benchmarks.api`` and the latency quantiles it reports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from benchmarks.api import HttpSpec, build_requests, run_http_load
from benchmarks.smtp_load import LoadResult


def _body(request: bytes) -> dict[str, object]:
    head, body = request.split(b"\r\n\r\n", 1)
    assert f"Content-Length: {len(body)}".encode() in head
    decoded: dict[str, object] = json.loads(body)
    return decoded


def test_requests_cover_every_message_once_with_the_asked_recipients() -> None:
    spec = HttpSpec("127.0.0.1", 8025, "pm_x_y", messages=250, recipients=100, size=300)
    requests = build_requests(spec)
    assert spec.requests == 3
    assert [count for _, count in requests] == [100, 100, 50]
    bodies = [_body(request) for request, _ in requests]
    to = [address for body in bodies for address in body["to"]]  # type: ignore[attr-defined]
    assert len(set(to)) == 250
    assert bodies[0]["from"] == spec.sender
    assert len(str(bodies[0]["text"])) == 300
    assert requests[0][0].startswith(b"POST /v1/messages HTTP/1.1\r\n")
    assert b"Authorization: Bearer pm_x_y\r\n" in requests[0][0]


def test_latency_quantiles_are_nearest_rank() -> None:
    result = LoadResult(1.0, 100, 0, 1, latencies=[n / 1000 for n in range(100, 0, -1)])
    assert result.latency(0.5) == 0.050
    assert result.latency(0.99) == 0.099
    assert result.latency(1.0) == 0.100
    assert LoadResult(1.0, 0, 0, 0).latency(0.5) == 0.0


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive: 202 with one message per recipient, 429 from ``refuse@``;
    after three requests the connection is closed (``Connection: close``)."""
    served = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = json.loads(await reader.readexactly(length))
            served += 1
            answer: dict[str, object]
            if body["from"].startswith("refuse"):
                status, answer = "429 Too Many Requests", {"error": {"code": "rate_limited"}}
            else:
                messages = [{"id": f"m{n}", "recipient": r} for n, r in enumerate(body["to"])]
                status, answer = "202 Accepted", {"messages": messages, "suppressed": []}
            encoded = json.dumps(answer).encode()
            close = served == 3
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Length: {len(encoded)}\r\n"
                f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n".encode()
                + encoded
            )
            await writer.drain()
            if close:
                break
    except asyncio.IncompleteReadError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_the_load_counts_queued_recipients_refusals_and_reconnects(http_port: int) -> None:
    spec = HttpSpec("127.0.0.1", http_port, "pm_x_y", messages=25, recipients=5, clients=1)
    result = await run_http_load(spec)
    assert (result.accepted, result.failed) == (25, 0)
    assert len(result.latencies) == 5
    assert result.connections == 2

    refused = replace(spec, messages=6, recipients=3, clients=2, sender="refuse@bench.test")
    refused_result = await run_http_load(refused)
    assert (refused_result.accepted, refused_result.failed) == (0, 6)
    assert refused_result.errors == {'HTTP 429: {"error": {"code": "rate_limited"}}': 6}
    assert refused_result.latencies == []
