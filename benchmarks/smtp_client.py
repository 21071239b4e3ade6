"""SMTP client benchmark: messages delivered per second over reused connections.

Compares three clients sending the same messages to the same loopback sink
(Postfix's ``smtp-sink``, which offers PIPELINING; ``--sink harness`` uses
the Python test sink):

- ``new``: ``smtp_out.client_session`` (the pure ``engine.smtp.client``
  dialogue over ``smtp_out.connection``), pipelining MAIL, RCPT and DATA;
- ``today``: the client of ``--baseline REV`` (``smtp_out.session`` over
  aiosmtplib's protocol), unpacked with ``git archive`` into a temporary
  directory that shadows this checkout in its worker;
- ``aiosmtplib``: aiosmtplib's public API (``SMTP.sendmail``), which has no
  pipelining: one command, one round trip.

Each client runs in a worker process of its own under uvloop: ``--connections``
tasks, each opening a connection, sending ``--per-connection`` messages of
``--size`` octets (one recipient each) and closing it (QUIT), until
``--messages`` messages are sent. The worker reports wall time and its own CPU
time (user + system). Runs are interleaved (each run of each client in turn)
so that load from elsewhere on the machine spreads over all of them; the
table shows medians of ``--runs``.

    python -m benchmarks.smtp_client --baseline REV [--messages 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop

CLIENTS = ("today", "new", "aiosmtplib")
SENDER = "bench@sender.test"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Spec:
    host: str
    port: int
    messages: int
    connections: int
    per_connection: int
    size: int


@dataclass(frozen=True)
class Result:
    client: str
    delivered: int
    failed: int
    seconds: float
    cpu_seconds: float
    module: str
    """Where the worker's client code came from."""

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds

    @property
    def cpu_us_per_message(self) -> float:
        return 1e6 * self.cpu_seconds / max(1, self.delivered)


def body(size: int) -> bytes:
    """A message of about ``size`` octets with CRLF lines."""
    head = b"From: bench@sender.test\r\nTo: rcpt@sink.test\r\nSubject: benchmark\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


# Workers: one function per client, each (spec, data, count) -> delivered.

Send = Callable[[], Awaitable[bool]]


async def _new_connection(spec: Spec, data: bytes) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from config.schema import DeliverySettings
    from engine.delivery.bounce_classify import BounceClassifier
    from engine.delivery.outcome import OutcomeKind
    from engine.delivery.transport import OutboundMessage
    from engine.scheduler.sources import Source
    from smtp_out.client_session import OpenFailure, Peer, open_session
    from smtp_out.connection import ConnectionGauge
    from smtp_out.settings import ClientSettings

    source = Source("default", "0.0.0.0", "client.sender.test")
    opened = await open_session(
        Peer("sink.test", spec.host, spec.port),
        source,
        ClientSettings.from_delivery(DeliverySettings()),
        BounceClassifier(),
        ConnectionGauge(),
        starttls=False,
    )
    if isinstance(opened, OpenFailure):
        raise RuntimeError(str(opened.outcome))
    session = opened
    message = OutboundMessage("m", SENDER, "rcpt@sink.test", "sink.test", source, data)

    async def send() -> bool:
        outcome = await session.send(message)
        return outcome.kind is OutcomeKind.DELIVERED

    return send, session.close


async def _today_connection(spec: Spec, data: bytes) -> tuple[Send, Callable[[], Awaitable[None]]]:
    session_module: Any = importlib.import_module("smtp_out.session")
    wire: Any = importlib.import_module("smtp_out.wire")
    from engine.delivery.bounce_classify import BounceClassifier
    from engine.delivery.outcome import OutcomeKind

    transport: Any = importlib.import_module("engine.delivery.transport")

    opened = await session_module.open_session(
        session_module.Peer("sink.test", spec.host, spec.port),
        session_module.Source("default", "0.0.0.0", "client.sender.test"),
        session_module.ClientSettings(),
        BounceClassifier(),
        wire.ConnectionGauge(),
        tls=False,
    )
    if isinstance(opened, session_module.OpenFailure):
        raise RuntimeError(str(opened.outcome))
    session = opened
    message = transport.OutboundMessage("m", SENDER, "rcpt@sink.test", "sink.test", data)

    async def send() -> bool:
        outcome = await session.send(message)
        return bool(outcome.kind is OutcomeKind.DELIVERED)

    async def close() -> None:
        await session.close()

    return send, close


async def _aiosmtplib_connection(
    spec: Spec, data: bytes
) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import aiosmtplib

    client = aiosmtplib.SMTP(
        hostname=spec.host, port=spec.port, local_hostname="client.sender.test", start_tls=False
    )
    await client.connect()

    async def send() -> bool:
        refused, _ = await client.sendmail(SENDER, ["rcpt@sink.test"], data)
        return not refused

    async def close() -> None:
        await client.quit()

    return send, close


CONNECTORS = {
    "new": _new_connection,
    "today": _today_connection,
    "aiosmtplib": _aiosmtplib_connection,
}


async def run_worker(client: str, spec: Spec) -> Result:
    connect = CONNECTORS[client]
    data = body(spec.size)
    remaining = spec.messages
    delivered = failed = 0

    async def connection_loop() -> None:
        nonlocal remaining, delivered, failed
        while remaining > 0:
            batch = min(remaining, spec.per_connection)
            remaining -= batch
            send, close = await connect(spec, data)
            for _ in range(batch):
                if await send():
                    delivered += 1
                else:
                    failed += 1
            await close()

    send, close = await connect(spec, data)  # imports and a first message, outside the clock
    await send()
    await close()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(spec.connections):
            group.create_task(connection_loop())
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    module = "aiosmtplib" if client == "aiosmtplib" else _client_module(client)
    return Result(client, delivered, failed, seconds, cpu, module)


def _client_module(client: str) -> str:
    name = "smtp_out.client_session" if client == "new" else "smtp_out.session"
    return str(Path(str(importlib.import_module(name).__file__)).parent)


# The sitting: a sink, a snapshot of the baseline, interleaved worker processes.


@contextmanager
def baseline(rev: str | None) -> Iterator[Path | None]:
    """``engine``, ``config`` and ``smtp_out`` of ``rev``, unpacked in a temporary directory."""
    if rev is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="smtp-client-baseline-") as directory:
        archive = subprocess.run(
            ["git", "archive", rev, "engine", "config", "smtp_out"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
        yield Path(directory)


def spawn(client: str, spec: Spec, snapshot: Path | None) -> Result:
    """One worker process; ``today`` runs with the snapshot first on its path."""
    env = dict(os.environ)
    cwd = ROOT
    if client == "today":
        if snapshot is None:
            raise ValueError("the today client needs --baseline")
        cwd = snapshot  # sys.path[0]: the snapshot's packages shadow this checkout's
        env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "benchmarks.smtp_client", "--worker", client]
    command += ["--spec", json.dumps(asdict(spec))]
    done = subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    result = Result(**json.loads(done.stdout))
    expected = snapshot if client == "today" else ROOT
    if client != "aiosmtplib" and not result.module.startswith(str(expected)):
        raise RuntimeError(f"{client} ran {result.module}, not the code under {expected}")
    return result


def table(results: list[Result], clients: list[str], spec: Spec, runs: int) -> str:
    by_client = {c: [r for r in results if r.client == c] for c in clients}
    rates = {c: statistics.median(r.rate for r in rs) for c, rs in by_client.items()}
    reference = rates.get("today")
    lines = [
        f"{spec.messages} messages of {spec.size} octets, {spec.connections} connections, "
        f"{spec.per_connection} messages per connection; medians of {runs} runs",
        "",
        "| client | msgs/s | runs (msgs/s) | client CPU per message | vs today |",
        "|---|---:|---|---:|---:|",
    ]
    for client, group in by_client.items():
        cpu = statistics.median(r.cpu_us_per_message for r in group)
        each = ", ".join(f"{r.rate:,.0f}" for r in group)
        ratio = f"{rates[client] / reference:.2f}x" if reference else "-"
        failed = sum(r.failed for r in group)
        note = f" ({failed} failed)" if failed else ""
        lines.append(
            f"| {client}{note} | {rates[client]:,.0f} | {each} | {cpu:,.0f} µs | {ratio} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.smtp_client",
        description="SMTP client msgs/s over reused connections to a loopback sink",
    )
    parser.add_argument("--baseline", help="git revision of the client called 'today'")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--per-connection", type=int, default=100)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sink",
        choices=("smtp-sink", "harness"),
        default="smtp-sink" if shutil.which("smtp-sink") else "harness",
    )
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = uvloop.run(run_worker(args.worker, Spec(**json.loads(args.spec))))
        print(json.dumps(asdict(result)))
        return 0
    clients = [c for c in args.clients.split(",") if c]
    if "today" in clients and args.baseline is None:
        clients.remove("today")
    from benchmarks.throughput import SINK_HOST, Sink

    sink = Sink(args.sink)
    sink.arm(10**9)
    spec = Spec(
        SINK_HOST, sink.port, args.messages, args.connections, args.per_connection, args.size
    )
    results: list[Result] = []
    load_before = os.getloadavg()[0]
    try:
        with baseline(args.baseline) as snapshot:
            for run in range(args.runs):
                for client in clients:
                    result = spawn(client, spec, snapshot)
                    results.append(result)
                    print(
                        f"run {run + 1} {client}: {result.rate:,.0f} msgs/s, "
                        f"{result.cpu_us_per_message:,.0f} µs CPU per message",
                        file=sys.stderr,
                    )
    finally:
        sink.close()
    print(table(results, clients, spec, args.runs))
    print(f"\nload average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
