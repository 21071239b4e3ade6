"""An ASGI application served by ``HttpService`` on loopback, as the admin listener and the
tracking edge are."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from config.schema import Settings
from engine.runtime.http_serving import (
    ADMIN_LIMITS,
    EDGE_LIMITS,
    ClientLimits,
    HttpService,
    listening_socket,
)
from tests.harness.conditions import wait_for

LIMITS = ClientLimits(head_bytes=4096, head_seconds=0.5, request_seconds=1.0, idle_seconds=0.4)
"""Short limits, so that each test sees them pass."""
GIVE_UP = 10.0
"""How long a test waits for the server to act on a limit before failing."""


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
    assert issubclass(config.http_protocol_class, HttpToolsProtocol)
    assert config.ws_protocol_class is None
    await service.stop(5)
    await asyncio.wait_for(running, 10)


def test_the_edge_holds_a_request_shorter_than_the_admin_listener() -> None:
    assert EDGE_LIMITS.request_seconds < ADMIN_LIMITS.request_seconds
    assert EDGE_LIMITS.head_bytes == ADMIN_LIMITS.head_bytes == 64 * 1024


class Recorder:
    """An ASGI application that reads the whole body, remembers what ``receive`` gave,
    and answers with the body's length after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.events: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        size = 0
        while True:
            event = await receive()
            self.events.append(event["type"])
            if event["type"] == "http.disconnect":
                return
            size += len(event.get("body", b""))
            if not event.get("more_body", False):
                break
        await asyncio.sleep(self.delay)
        body = str(size).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.events.append("answered")


@contextlib.asynccontextmanager
async def serving(
    app: Any, limits: ClientLimits = LIMITS, direct: Any = None
) -> AsyncIterator[tuple[str, int]]:
    """``app`` served with ``limits`` (and the ``direct`` route, if any) on a loopback
    port, until the block ends."""
    service = HttpService(
        "edge", app, listening_socket("127.0.0.1", 0), limits=limits, direct=direct
    )
    [(host, port)] = await service.start()
    running = asyncio.create_task(service.run())
    try:
        yield host, port
    finally:
        await service.stop(5)
        await asyncio.wait_for(running, 10)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Recorder, str, int]]:
    app = Recorder()
    async with serving(app) as (host, port):
        yield app, host, port


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), GIVE_UP)


async def answer_to(host: str, port: int, sent: bytes) -> bytes:
    """What the server sends a client that sends ``sent`` at once, until it closes."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(sent)
    try:
        return await until_closed(reader)
    finally:
        writer.close()


async def trickle(writer: asyncio.StreamWriter, pieces: list[bytes], gap: float) -> None:
    """Sends ``pieces`` ``gap`` seconds apart, each read by the server at once."""
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(gap)
    except ConnectionError:
        return


async def answer_to_trickle(
    host: str, port: int, pieces: list[bytes], gap: float
) -> tuple[bytes, float]:
    """What the server sends a client trickling ``pieces`` (``trickle``) until it closes,
    and after how many seconds; the client stops sending then, the server having
    half-closed while it still sent."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    sending = asyncio.create_task(trickle(writer, pieces, gap))
    answer = await until_closed(reader)
    waited = time.monotonic() - started
    sending.cancel()
    writer.close()
    return answer, waited


async def test_a_connection_that_sends_nothing_is_closed_when_idle(
    served: tuple[Recorder, str, int],
) -> None:
    _, host, port = served
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    assert await until_closed(reader) == b""
    assert time.monotonic() - started >= LIMITS.idle_seconds * 0.9
    writer.close()


async def test_a_head_sent_a_line_at_a_time_meets_its_deadline_not_a_read_timeout(
    served: tuple[Recorder, str, int],
) -> None:
    app, host, port = served
    lines = [b"GET / HTTP/1.1\r\nHost: x\r\n", *(b"X-Slow: %d\r\n" % n for n in range(100))]
    answer, waited = await answer_to_trickle(host, port, lines, LIMITS.head_seconds / 10)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert waited < LIMITS.head_seconds + 2
    assert app.events == []


async def test_a_head_larger_than_the_bound_is_refused_with_431(
    served: tuple[Recorder, str, int],
) -> None:
    app, host, port = served
    answer = await answer_to(
        host, port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * LIMITS.head_bytes
    )
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert app.events == []


@pytest.mark.parametrize(
    "times",
    [8, 100],  # whole within one read of the server; over many, most still unread at the 431
)
async def test_a_client_sending_its_whole_oversized_head_at_once_reads_the_431(
    served: tuple[Recorder, str, int], times: int
) -> None:
    _, host, port = served
    head = (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (LIMITS.head_bytes * times) + b"\r\n\r\n"
    )
    for _ in range(5):  # closing with its bytes unread would reset the connection
        assert (await answer_to(host, port, head)).startswith(b"HTTP/1.1 431 ")


async def test_a_client_sending_an_endless_head_is_cut_off_near_the_bound(
    served: tuple[Recorder, str, int],
) -> None:
    app, host, port = served
    _, writer = await asyncio.open_connection(host, port)
    piece = b"a" * 1024
    endless = 20_000  # pieces: 20 MB, far past the bound and what is dropped after it
    sent = 0
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    with pytest.raises(ConnectionError):
        while sent < endless:
            writer.write(piece)
            await asyncio.wait_for(writer.drain(), GIVE_UP)
            sent += 1
    # What the kernels buffer on both ends of loopback, not what the server held.
    assert sent < endless / 2
    assert app.events == []
    writer.close()


async def test_a_body_sent_slowly_meets_the_request_deadline_and_the_app_sees_a_disconnect(
    served: tuple[Recorder, str, int],
) -> None:
    app, host, port = served
    head = b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    answer, waited = await answer_to_trickle(host, port, [head, *[b"x" * 10] * 99], 0.05)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert waited < LIMITS.request_seconds + 2

    async def disconnected() -> bool:
        return "http.disconnect" in app.events

    await wait_for(disconnected, "the application to see the client go")


async def test_a_kept_connection_serves_requests_then_closes_when_idle(
    served: tuple[Recorder, str, int],
) -> None:
    _, host, port = served
    reader, writer = await asyncio.open_connection(host, port)
    for _ in range(3):
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
        assert status.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(reader.readexactly(1), GIVE_UP) == b"3"
        await asyncio.sleep(LIMITS.idle_seconds / 2)  # within the idle deadline each time
    assert await until_closed(reader) == b""
    writer.close()


async def test_pipelined_requests_and_a_large_body_are_served_whole(
    served: tuple[Recorder, str, int],
) -> None:
    _, host, port = served
    large = b"y" * (LIMITS.head_bytes * 64)
    answer = await answer_to(
        host,
        port,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(large)
        + large
        + b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert answer.count(b"HTTP/1.1 200 ") == 3
    assert answer.endswith(b"0")
    assert str(len(large)).encode() in answer


async def test_an_application_slower_than_every_limit_still_answers() -> None:
    app = Recorder(delay=LIMITS.request_seconds * 1.5)
    async with serving(app) as (host, port):
        answer = await answer_to(
            host, port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"
        )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\n2")


async def answers_before_the_body(scope: Any, receive: Any, send: Any) -> None:
    """Refuses every request without reading its body, as a size check does."""
    assert scope["type"] == "http"
    headers = [(b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def test_a_request_answered_before_its_body_ends_leaves_the_connection_idle() -> None:
    limits = ClientLimits(request_seconds=60.0, idle_seconds=0.4)
    async with serving(answers_before_the_body, limits) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
        assert status.startswith(b"HTTP/1.1 413 ")
        started = time.monotonic()
        writer.write(b"0123456789")
        assert await until_closed(reader) == b""  # idle, and nothing more said
        assert time.monotonic() - started < limits.request_seconds / 10
        writer.close()


async def test_a_late_head_behind_a_slow_answer_closes_without_breaking_the_application(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Recorder(delay=LIMITS.head_seconds * 3)

    def failed() -> bool:
        return any("Exception in ASGI application" in r.getMessage() for r in caplog.records)

    async def ended() -> bool:
        return "answered" in app.events or failed()

    async with serving(app) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n")  # 2nd: no end
        assert await until_closed(reader) == b""  # cut short: no 408 inside the first answer
        await wait_for(ended, "the first request's application to end")
        writer.close()
    assert not failed()


async def test_a_connection_over_the_bound_is_answered_503_and_closed_at_once() -> None:
    limits = dataclasses.replace(LIMITS, idle_seconds=GIVE_UP * 2, connections=2)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"

    async def served(streams: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> bool:
        """Whether a request on ``streams`` is answered by the application (``3``)."""
        reader, writer = streams
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
        if not head.startswith(b"HTTP/1.1 200 "):
            return False
        return await asyncio.wait_for(reader.readexactly(1), GIVE_UP) == b"3"

    async with serving(Recorder(), limits) as (host, port):
        held = [await asyncio.open_connection(host, port) for _ in range(limits.connections)]
        try:
            for streams in held:  # answered, so counted by the server, and kept
                assert await served(streams)
            started = time.monotonic()
            over = await answer_to(host, port, b"")  # answered before it sends a byte
            assert over.startswith(b"HTTP/1.1 503 ") and over.endswith(b"Service Unavailable")
            assert time.monotonic() - started < limits.idle_seconds / 2
            for streams in held:  # the kept ones are still served
                assert await served(streams)

            held[0][1].close()  # room for one more once the server has seen it go

            async def a_new_client_is_served() -> bool:
                streams = await asyncio.open_connection(host, port)
                try:
                    return await served(streams)
                except (ConnectionError, asyncio.IncompleteReadError):
                    return False
                finally:
                    streams[1].close()

            await wait_for(a_new_client_is_served, "a new client served after one left")
        finally:
            for _, writer in held:
                writer.close()


def test_the_edge_holds_more_connections_than_the_admin_listener() -> None:
    settings = Settings()
    assert settings.tracking.max_connections > settings.admin.max_connections >= 1000
    assert ADMIN_LIMITS.connections == settings.admin.max_connections


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    bug: Exception | None = None


class Direct:
    """A ``DirectRoute`` for ``POST /direct``: answers ``direct:<body length>``, passes a
    body of ``pass`` on to the application, raises for ``raise``, and answers 500 with
    its bug for ``bug``; remembers the bodies it saw."""

    method = b"POST"
    path = b"/direct"
    max_body = 200_000

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def answer(self, scope: Any, body: bytes) -> Answer | None:
        self.bodies.append(body)
        if body == b"pass":
            return None
        if body == b"raise":
            raise RuntimeError("a bug in the route")
        if body == b"bug":
            return Answer(500, [(b"content-length", b"3")], b"bug", RuntimeError("logged"))
        text = b"direct:%d" % len(body)
        return Answer(201, [(b"content-length", b"%d" % len(text))], text)


def post(path: bytes, body: bytes, *fields: bytes, version: bytes = b"1.1") -> bytes:
    head = b"POST %s HTTP/%s\r\nHost: x\r\nContent-Length: %d\r\n" % (path, version, len(body))
    return head + b"".join(field + b"\r\n" for field in fields) + b"\r\n" + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response's head and body (by its Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length is not None, head
    return head, await asyncio.wait_for(reader.readexactly(int(length[1])), GIVE_UP)


async def test_the_direct_route_is_answered_by_the_listener_in_order_with_the_rest() -> None:
    app, route = Recorder(), Direct()
    async with serving(app, direct=route) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        big = b"b" * 150_000  # over uvicorn's high water mark for a body read by an app
        writer.write(post(b"/direct", b"one") + post(b"/other", b"four") + post(b"/direct", big))
        answers = [await read_answer(reader) for _ in range(3)]
        assert [a[0].split(b"\r\n")[0] for a in answers] == [
            b"HTTP/1.1 201 Created",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 201 Created",
        ]
        assert [a[1] for a in answers] == [b"direct:3", b"4", b"direct:150000"]
        assert b"date: " in answers[0][0]  # the server's own fields, as on every answer
        assert route.bodies == [b"one", big] and app.events == ["http.request", "answered"]
        writer.write(post(b"/direct", b"again"))  # the connection is kept
        assert (await read_answer(reader))[1] == b"direct:5"
        writer.close()


CHUNKED = b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "length"),
    [
        (post(b"/direct", b"pass"), 4),  # the route passes it on
        (post(b"/direct?x=1", b"abcd"), 4),
        (post(b"/direct", b"abcd", b"X-Forwarded-For: 10.0.0.1"), 4),
        (post(b"/direct", b"abcd", b"Forwarded: for=10.0.0.1"), 4),
        (b"POST /direct HTTP/1.1\r\nHost: x\r\n" + CHUNKED, 4),
        (b"PUT /direct HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd", 4),
        (b"POST /direct HTTP/1.1\r\nHost: x\r\n\r\n", 0),  # no declared length
    ],
)
async def test_other_requests_to_the_route_reach_the_application_with_their_body(
    request_bytes: bytes, length: int
) -> None:
    app, route = Recorder(), Direct()
    async with serving(app, direct=route) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request_bytes)
        head, body = await read_answer(reader)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 ") and body == str(length).encode()
    assert route.bodies in ([], [b"pass"])


async def test_a_body_over_the_routes_bound_reaches_the_application() -> None:
    app, route = Recorder(), Direct()
    async with serving(app, direct=route) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(post(b"/direct", b"o" * (Direct.max_body + 1)))
        assert (await read_answer(reader))[1] == str(Direct.max_body + 1).encode()
        writer.close()
    assert route.bodies == []


async def test_a_failing_route_answers_500_and_is_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, route = Recorder(), Direct()
    async with serving(app, direct=route) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(post(b"/direct", b"bug"))
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 500 ") and body == b"bug"
        writer.write(post(b"/direct", b"raise"))
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 500 ") and body == b"Internal Server Error"
        writer.close()
    logged = capsys.readouterr().err  # uvicorn's error log
    assert "RuntimeError: logged" in logged and "RuntimeError: a bug in the route" in logged
    assert app.events == []


async def test_an_http_1_0_request_is_answered_then_closed() -> None:
    async with serving(Recorder(), direct=Direct()) as (host, port):
        answer = await answer_to(host, port, post(b"/direct", b"abc", version=b"1.0"))
    assert answer.startswith(b"HTTP/1.1 201 ") and b"connection: close\r\n" in answer
    assert answer.endswith(b"direct:3")


async def test_a_slow_body_to_the_route_meets_the_request_deadline() -> None:
    app, route = Recorder(), Direct()
    async with serving(app, direct=route) as (host, port):
        pieces = [post(b"/direct", b"x" * 100)[:-100], *([b"x"] * 100)]
        answer, waited = await answer_to_trickle(host, port, pieces, LIMITS.request_seconds / 20)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert waited < LIMITS.request_seconds + 2
    assert route.bodies == [] and app.events == []
