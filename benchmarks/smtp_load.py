"""A lean SMTP submission load generator (asyncio streams, no smtplib).

Owns ``LoadSpec`` (what to send), ``LoadResult`` (what came back) and
``run_load``, which drives ``clients`` concurrent connections until exactly
``messages`` messages have been attempted, then stops.

Each connection: banner, EHLO, optionally STARTTLS and EHLO again, then
``AUTH PLAIN`` with an initial response. Each message: ``MAIL``, ``RCPT`` and
``DATA`` in one write (RFC 2920 pipelining; ``DATA`` ends the group), then
the body once ``354`` has come back. Mode ``conn`` opens a connection per
message and ends it with ``QUIT`` (smtp-source's default); mode ``reuse``
keeps each connection for as many messages as it gets (smtp-source ``-d``).

Every reply code is checked: a reply outside 2xx/3xx, or one that is not the
expected next step, fails that message and is counted by its text in
``LoadResult.errors``. A broken connection fails the message in flight and the
client reconnects. Each message index is attempted once, so a run is bounded
by ``messages`` and by ``deadline_seconds``.

Everything sent is built before the clock starts: the body (``size`` octets,
CRLF lines, dot-stuffed, ending ``CRLF.CRLF``) is one shared ``bytes``; each
message's envelope group is pre-encoded.

Run alone: ``python -m benchmarks.smtp_load --port P --username U --password W``
prints the result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Literal

import uvloop

Mode = Literal["conn", "reuse"]
MODES: tuple[Mode, ...] = ("conn", "reuse")
DEFAULT_DOMAINS = ("example.com", "example.net", "example.org", "example.edu")
_FILLER_LINE_LENGTH = 76


class LoadError(Exception):
    """The server cannot be benchmarked as asked (e.g. no PIPELINING)."""


class _Refused(Exception):
    """A reply outside what the dialogue expects; carries the error key."""


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    username: str
    password: str
    messages: int
    clients: int = 20
    size: int = 2048
    mode: Mode = "conn"
    tls: bool = False
    sender: str = "bench@bench.test"
    recipient_domains: tuple[str, ...] = DEFAULT_DOMAINS
    ehlo_name: str = "loadgen.bench.test"
    deadline_seconds: float = 600.0
    links: int = 0
    """When above 0, an HTML newsletter of ``size`` octets with this many links."""


@dataclass
class LoadResult:
    elapsed_seconds: float
    accepted: int
    failed: int
    connections: int
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    """Seconds from sending each accepted transaction (or request) to its final reply."""

    @property
    def rate(self) -> float:
        """Accepted messages per second."""
        return self.accepted / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def latency(self, quantile: float) -> float:
        """The ``quantile`` (0..1) of ``latencies`` in seconds, nearest rank; 0 without any."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))]

    def as_dict(self) -> dict[str, object]:
        return {
            "elapsed_seconds": round(self.elapsed_seconds, 4),
            "accepted": self.accepted,
            "failed": self.failed,
            "connections": self.connections,
            "accepted_per_second": round(self.rate, 1),
            "p50_ms": round(1000 * self.latency(0.5), 2),
            "p99_ms": round(1000 * self.latency(0.99), 2),
            "errors": dict(self.errors.most_common()),
        }


def build_message(size: int, sender: str) -> bytes:
    """A message of ``size`` octets (at least its headers), dot-stuffed, ending CRLF.CRLF."""
    headers = (
        f"From: Bench <{sender}>\r\n"
        "To: undisclosed-recipients:;\r\n"
        f"Subject: acceptance benchmark, {size} octets\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode("ascii")
    lines: list[bytes] = []
    left = size - len(headers)
    pattern = b"".join(bytes([33 + (i % 94)]) for i in range(_FILLER_LINE_LENGTH))
    row = 0
    while left > 2:
        width = min(_FILLER_LINE_LENGTH, left - 2)
        shift = row % _FILLER_LINE_LENGTH
        text = (pattern[shift:] + pattern[:shift])[:width]
        lines.append(text + b"\r\n")
        left -= width + 2
        row += 1
    content = headers + b"".join(lines)
    return dot_stuff(content) + b".\r\n"


def build_newsletter(size: int, sender: str, links: int) -> bytes:
    """An HTML newsletter of about ``size`` octets (quoted-printable, ``links`` links with
    ``&amp;`` in their queries, a pixel's place before ``</body>``), dot-stuffed."""
    headers = (
        f"From: Bench <{sender}>\r\n"
        "To: undisclosed-recipients:;\r\n"
        f"Subject: newsletter benchmark, {links} links\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
    ).encode("ascii")
    anchors = [
        f'<p><a href=3D"https://shop.bench.test/item/{n}?utm_source=3Dnews&amp;utm_campa=\r\n'
        f'ign=3Dspring">Item {n}</a></p>\r\n'
        for n in range(links)
    ]
    html = "<html><body>\r\n" + "".join(anchors)
    filler = "<p>" + "Spring news for our readers. " * 2 + "</p>\r\n"
    while len(headers) + len(html) + len(filler) + 40 < size:
        html += filler
    html += '<p><a href=3D"{{unsubscribe_url}}">Unsubscribe</a></p></body></html>\r\n'
    return dot_stuff(headers + html.encode("ascii")) + b".\r\n"


def dot_stuff(content: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency; ``content`` ends with CRLF (or is empty)."""
    stuffed = content.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


@dataclass(frozen=True)
class _Wire:
    """Everything a client sends, encoded once."""

    ehlo: bytes
    auth: bytes
    envelopes: list[bytes]
    body: bytes
    tls_context: ssl.SSLContext | None


def _wire(spec: LoadSpec) -> _Wire:
    token = base64.b64encode(f"\0{spec.username}\0{spec.password}".encode()).decode("ascii")
    domains = spec.recipient_domains
    mail = f"MAIL FROM:<{spec.sender}>\r\n".encode()
    envelopes = [
        mail + f"RCPT TO:<rcpt{n}@{domains[n % len(domains)]}>\r\nDATA\r\n".encode()
        for n in range(spec.messages)
    ]
    context = None
    if spec.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return _Wire(
        ehlo=f"EHLO {spec.ehlo_name}\r\n".encode(),
        auth=f"AUTH PLAIN {token}\r\n".encode(),
        envelopes=envelopes,
        body=(
            build_newsletter(spec.size, spec.sender, spec.links)
            if spec.links
            else build_message(spec.size, spec.sender)
        ),
        tls_context=context,
    )


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (possibly multiline) reply: its code and all its lines."""
    line = await reader.readuntil(b"\r\n")
    if line[3:4] != b"-":
        return int(line[:3]), line
    lines = [line]
    while line[3:4] == b"-":
        line = await reader.readuntil(b"\r\n")
        lines.append(line)
    return int(line[:3]), b"".join(lines)


async def _expect(reader: asyncio.StreamReader, code: int, stage: str) -> bytes:
    got, text = await _reply(reader)
    if got != code:
        raise _Refused(_error_key(stage, text))
    return text


def _error_key(stage: str, text: bytes) -> str:
    last = text.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
    return f"{stage}: {last[:120].decode('utf-8', 'replace')}"


_BROKEN = (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Run:
    """Shared state of one run: the next message index and the tallies."""

    def __init__(self, spec: LoadSpec, wire: _Wire) -> None:
        self.spec = spec
        self.wire = wire
        self.next_index = 0
        self.accepted = 0
        self.failed = 0
        self.connections = 0
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []

    def take(self) -> int | None:
        if self.next_index >= self.spec.messages:
            return None
        index = self.next_index
        self.next_index += 1
        return index

    def fail(self, key: str) -> None:
        self.failed += 1
        self.errors[key] += 1

    async def connect(self) -> Streams:
        spec, wire = self.spec, self.wire
        self.connections += 1
        reader, writer = await asyncio.open_connection(spec.host, spec.port)
        try:
            await _expect(reader, 220, "banner")
            writer.write(wire.ehlo)
            features = await _expect(reader, 250, "EHLO")
            if wire.tls_context is not None:
                if b"STARTTLS" not in features:
                    raise LoadError("the server does not advertise STARTTLS")
                writer.write(b"STARTTLS\r\n")
                await _expect(reader, 220, "STARTTLS")
                await writer.start_tls(wire.tls_context, server_hostname=spec.host)
                writer.write(wire.ehlo)
                features = await _expect(reader, 250, "EHLO after STARTTLS")
            if b"PIPELINING" not in features:
                raise LoadError("the server does not advertise PIPELINING")
            writer.write(wire.auth)
            await _expect(reader, 235, "AUTH")
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def send(self, streams: Streams, index: int) -> bool:
        """One transaction; True if the message was accepted (250 after the body)."""
        reader, writer = streams
        started = time.perf_counter()
        writer.write(self.wire.envelopes[index])
        mail, mail_text = await _reply(reader)
        rcpt, rcpt_text = await _reply(reader)
        data, data_text = await _reply(reader)
        if data != 354:
            for stage, code, text in (("MAIL", mail, mail_text), ("RCPT", rcpt, rcpt_text)):
                if code != 250:
                    self.fail(_error_key(stage, text))
                    break
            else:
                self.fail(_error_key("DATA", data_text))
            writer.write(b"RSET\r\n")
            await _reply(reader)
            return False
        writer.write(self.wire.body)
        code, text = await _reply(reader)
        if code != 250:
            self.fail(_error_key("end of data", text))
            return False
        self.latencies.append(time.perf_counter() - started)
        self.accepted += 1
        return True


async def _quit(streams: Streams) -> None:
    reader, writer = streams
    try:
        writer.write(b"QUIT\r\n")
        await _reply(reader)
    except _BROKEN:
        pass
    finally:
        writer.close()


async def _client(run: _Run) -> None:
    streams: Streams | None = None
    reuse = run.spec.mode == "reuse"
    try:
        while (index := run.take()) is not None:
            try:
                if streams is None:
                    streams = await run.connect()
                await run.send(streams, index)
            except _Refused as exc:
                run.fail(str(exc))
                if streams is not None:
                    streams[1].close()
                streams = None
                continue
            except _BROKEN as exc:
                run.fail(f"connection: {type(exc).__name__}: {exc}"[:160])
                if streams is not None:
                    streams[1].close()
                streams = None
                continue
            if not reuse:
                await _quit(streams)
                streams = None
    finally:
        if streams is not None:
            await _quit(streams)


async def _clients(run: _Run) -> None:
    """All clients in one task group; a ``LoadError`` in any of them ends the run."""
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(run.spec.clients, run.spec.messages)):
                group.create_task(_client(run))
    except* LoadError as problems:
        raise problems.exceptions[0] from None


async def run_load(spec: LoadSpec) -> LoadResult:
    """Send ``spec.messages`` messages over ``spec.clients`` connections; bounded."""
    if spec.messages < 1 or spec.clients < 1:
        raise ValueError("messages and clients must be at least 1")
    run = _Run(spec, _wire(spec))
    started = time.perf_counter()
    try:
        async with asyncio.timeout(spec.deadline_seconds):
            await _clients(run)
    except TimeoutError:
        unresolved = spec.messages - run.accepted - run.failed
        run.failed += unresolved
        run.errors[f"deadline of {spec.deadline_seconds:g}s exceeded"] += unresolved
    elapsed = time.perf_counter() - started
    return LoadResult(elapsed, run.accepted, run.failed, run.connections, run.errors, run.latencies)


def _arguments(argv: list[str] | None) -> LoadSpec:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.smtp_load", description="SMTP submission load generator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048, help="message size in octets")
    parser.add_argument("--mode", choices=MODES, default="conn")
    parser.add_argument("--tls", action="store_true", help="STARTTLS before AUTH")
    parser.add_argument("--sender", default="bench@bench.test")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds")
    args = parser.parse_args(argv)
    return LoadSpec(
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        messages=args.messages,
        clients=args.clients,
        size=args.size,
        mode=args.mode,
        tls=args.tls,
        sender=args.sender,
        deadline_seconds=args.deadline,
    )


def main(argv: list[str] | None = None) -> int:
    spec = _arguments(argv)
    result: LoadResult = uvloop.run(run_load(spec))
    print(json.dumps(result.as_dict(), indent=2))
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
