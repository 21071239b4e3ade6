"""The HTTP acceptance benchmark: ``POST /v1/messages`` against SMTP submission.

For each store backend (SQLite; PostgreSQL in a fresh database dropped
afterwards), durability on, it sets up an engine exactly as
``benchmarks.accept`` does (temporary config, tenant, sending domain, SMTP
credentials, ``engine.cli run --role submission``, which also serves the admin
API) and makes an API key with scope ``send``. Then, in the same sitting,
interleaved run by run, it measures:

- ``smtp``: SMTP submission, one recipient per message, connections kept
  (``benchmarks.smtp_load``, mode ``reuse``);
- ``http xR`` for every ``--recipients`` R: ``POST /v1/messages`` with R ``to``
  recipients and a ``--size`` octet text body, over ``--clients`` keep-alive
  HTTP/1.1 connections (raw asyncio streams, requests pre-encoded before the
  clock starts, like the SMTP generator).

Every case queues ``--messages`` messages (one per recipient) a run; a case's
rate is messages queued per second, its latencies are per transaction (SMTP:
envelope to the 250 after the body; HTTP: request to response). Runs, quiet
waits, disturbed runs and the durability check (the store holds exactly as many
more messages as were answered queued) are ``benchmarks.accept``'s.

Prints one line per run and a table: backend | case | clients | runs | median
messages/s | min | max | p50 | p99 | engine and loadgen cores | HTTP/SMTP, the
ratio of the case's median to the SMTP median on the same backend (goal: at
least 1). Writes nothing else.

    python -m benchmarks.api [--messages N] [--clients C] [--recipients 1,100]
        [--size 2048] [--backends sqlite,postgres] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.accept import (
    BACKENDS,
    SENDER,
    TENANT,
    EngineProcess,
    Options,
    RunRow,
    _csv,
    add_run_arguments,
    attempts,
    cli,
    database,
    measure,
    provision,
    run_backends,
    write_config,
)
from benchmarks.smtp_load import DEFAULT_DOMAINS, LoadResult, LoadSpec

SMTP_CASE = "smtp"
_CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_CONNECTION_CLOSE = re.compile(rb"^connection:\s*close\s*$", re.IGNORECASE | re.MULTILINE)
_QUEUED = b'"recipient":'


@dataclass(frozen=True)
class HttpSpec:
    """``messages`` recipients queued through ``POST /v1/messages``, ``recipients`` a request."""

    host: str
    port: int
    token: str
    messages: int
    recipients: int = 1
    clients: int = 20
    size: int = 2048
    sender: str = SENDER
    recipient_domains: tuple[str, ...] = DEFAULT_DOMAINS
    deadline_seconds: float = 600.0

    @property
    def mode(self) -> str:
        return f"http x{self.recipients}"

    @property
    def requests(self) -> int:
        return math.ceil(self.messages / self.recipients)


def build_requests(spec: HttpSpec) -> list[tuple[bytes, int]]:
    """Every request of a run, encoded, with its number of recipients."""
    line = "Acceptance benchmark over HTTP, a line of filler text for the body.\n"
    text = (line * (spec.size // len(line) + 1))[: spec.size]
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
        f"Authorization: Bearer {spec.token}\r\nContent-Type: application/json\r\n"
    )
    domains = spec.recipient_domains
    requests = []
    for first in range(0, spec.messages, spec.recipients):
        count = min(spec.recipients, spec.messages - first)
        to = [f"rcpt{n}@{domains[n % len(domains)]}" for n in range(first, first + count)]
        body = json.dumps(
            {"from": spec.sender, "to": to, "subject": "acceptance benchmark", "text": text}
        ).encode()
        requests.append(((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body, count))
    return requests


class _Refused(Exception):
    """An answer other than 202; carries the error key."""


_BROKEN = (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _HttpRun:
    """Shared state of one run: the next request and the tallies."""

    def __init__(self, spec: HttpSpec) -> None:
        self.spec = spec
        self.requests = build_requests(spec)
        self.next_index = 0
        self.queued = 0
        self.failed = 0
        self.connections = 0
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []

    def take(self) -> int | None:
        if self.next_index >= len(self.requests):
            return None
        self.next_index += 1
        return self.next_index - 1

    async def connect(self) -> Streams:
        self.connections += 1
        return await asyncio.open_connection(self.spec.host, self.spec.port)

    async def send(self, streams: Streams, index: int) -> bool:
        """One request; True when the server keeps the connection open."""
        reader, writer = streams
        request, recipients = self.requests[index]
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(head)
        if length is None:
            raise ValueError("a response without Content-Length")
        body = await reader.readexactly(int(length.group(1)))
        status = int(head[9:12])
        if status != 202:
            self.failed += recipients
            self.errors[f"HTTP {status}: {body[:120].decode('utf-8', 'replace')}"] += recipients
        else:
            self.latencies.append(time.perf_counter() - started)
            queued = body.count(_QUEUED)
            self.queued += queued
            if queued < recipients:
                self.failed += recipients - queued
                self.errors["suppressed"] += recipients - queued
        return _CONNECTION_CLOSE.search(head) is None


async def _http_client(run: _HttpRun) -> None:
    streams: Streams | None = None
    try:
        while (index := run.take()) is not None:
            try:
                if streams is None:
                    streams = await run.connect()
                if not await run.send(streams, index):
                    streams[1].close()
                    streams = None
            except _BROKEN as exc:
                _, recipients = run.requests[index]
                run.failed += recipients
                run.errors[f"connection: {type(exc).__name__}: {exc}"[:160]] += recipients
                if streams is not None:
                    streams[1].close()
                streams = None
    finally:
        if streams is not None:
            streams[1].close()


async def run_http_load(spec: HttpSpec) -> LoadResult:
    """Queue ``spec.messages`` messages over ``spec.clients`` connections; bounded.

    ``accepted`` counts messages queued (recipients), ``latencies`` requests.
    """
    if spec.messages < 1 or spec.clients < 1 or spec.recipients < 1:
        raise ValueError("messages, clients and recipients must be at least 1")
    run = _HttpRun(spec)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(spec.deadline_seconds), asyncio.TaskGroup() as group:
            for _ in range(min(spec.clients, len(run.requests))):
                group.create_task(_http_client(run))
    except TimeoutError:
        unresolved = spec.messages - run.queued - run.failed
        run.failed += unresolved
        run.errors[f"deadline of {spec.deadline_seconds:g}s exceeded"] += unresolved
    elapsed = time.perf_counter() - started
    return LoadResult(elapsed, run.queued, run.failed, run.connections, run.errors, run.latencies)


@dataclass(frozen=True)
class ApiOptions:
    base: Options
    """``benchmarks.accept``'s options: messages, clients, runs, quiet waits, attempts."""
    recipients: tuple[int, ...]


def bench_backend(backend: str, options: ApiOptions) -> list[RunRow]:
    """SMTP and every HTTP case on one backend, in a fresh store and engine."""
    base = options.base
    directory = Path(tempfile.mkdtemp(prefix=f"penguin-bench-api-{backend}-"))
    try:
        with database(backend, directory) as url:
            config = write_config(directory, url, base)
            username, password = provision(config)
            token = str(cli(config, "api-key", "create", TENANT, "--scope", "send")["token"])
            engine = EngineProcess(config, directory)
            try:
                engine.start()
                host, port = engine.listening("submission")
                admin_host, admin_port = engine.listening("admin")
                print(
                    f"{backend}: engine pid {engine.pid}, SMTP on {host}:{port}, "
                    f"HTTP on {admin_host}:{admin_port}",
                    file=sys.stderr,
                )
                size = base.sizes[0]
                smtp = LoadSpec(
                    host, port, username, password, base.messages, base.clients, size, "reuse"
                )
                https = [
                    HttpSpec(admin_host, admin_port, token, base.messages, r, base.clients, size)
                    for r in options.recipients
                ]
                return _cases(engine, config, backend, smtp, https, base)
            finally:
                engine.stop()
    finally:
        if base.keep:
            print(f"{backend}: kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _cases(
    engine: EngineProcess,
    config: Path,
    backend: str,
    smtp: LoadSpec,
    https: list[HttpSpec],
    options: Options,
) -> list[RunRow]:
    if options.warmup:
        warm = measure(engine, config, replace(smtp, messages=options.warmup), backend, 0)
        print(f"warm-up: {warm.line()}", file=sys.stderr, flush=True)
        for spec in https:
            warm_spec = replace(spec, messages=options.warmup)
            warm = measure(engine, config, warm_spec, backend, 0, load=run_http_load)
            print(f"warm-up: {warm.line()}", file=sys.stderr, flush=True)
    rows = []
    for run in range(1, options.runs + 1):
        rows.append(attempts(engine, config, smtp, backend, run, options))
        for spec in https:
            rows.append(attempts(engine, config, spec, backend, run, options, run_http_load))
    return rows


def table(rows: list[RunRow]) -> str:
    """Medians per backend and case, with the HTTP/SMTP ratio, as a Markdown table."""
    groups: dict[tuple[str, str, int], list[RunRow]] = {}
    for row in rows:
        mode = SMTP_CASE if row.mode == "reuse" else row.mode
        groups.setdefault((row.backend, mode, row.clients), []).append(row)
    smtp_median = {
        backend: statistics.median(r.result.rate for r in group)
        for (backend, mode, _), group in groups.items()
        if mode == SMTP_CASE
    }
    lines = [
        "| backend | case | clients | runs | median msgs/s | min | max | p50 ms | p99 ms "
        "| engine cores | loadgen cores | HTTP/SMTP | disturbed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backend, mode, clients), group in groups.items():
        rates = [r.result.rate for r in group]
        median = statistics.median(rates)
        smtp = smtp_median.get(backend, 0.0)
        ratio = "" if mode == SMTP_CASE or not smtp else f"{median / smtp:.2f}"
        p50 = statistics.median(r.result.latency(0.5) for r in group) * 1000
        p99 = statistics.median(r.result.latency(0.99) for r in group) * 1000
        engine = statistics.median(r.engine_cores for r in group)
        loadgen = statistics.median(r.loadgen_cores for r in group)
        lines.append(
            f"| {backend} | {mode} | {clients} | {len(group)} | **{median:.0f}** "
            f"| {min(rates):.0f} | {max(rates):.0f} | {p50:.1f} | {p99:.1f} "
            f"| {engine:.2f} | {loadgen:.2f} | {ratio} | {sum(r.disturbed for r in group)} |"
        )
    return "\n".join(lines)


def parse_options(argv: list[str] | None) -> ApiOptions:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.api",
        description="messages queued/s over POST /v1/messages against SMTP submission",
    )
    parser.add_argument("--messages", type=int, default=10000, help="messages per run and case")
    parser.add_argument("--clients", type=int, default=20, help="concurrent connections")
    parser.add_argument(
        "--recipients", default="1,100", help="recipients per HTTP request, one case each"
    )
    parser.add_argument("--size", type=int, default=2048, help="body size in octets")
    parser.add_argument("--backends", default="sqlite,postgres")
    add_run_arguments(parser, warmup_help="messages per case first")
    args = parser.parse_args(argv)
    backends = _csv(args.backends)
    if not backends or set(backends) - set(BACKENDS):
        parser.error(f"backends: expected some of {', '.join(BACKENDS)}")
    try:
        recipients = tuple(int(r) for r in _csv(args.recipients))
    except ValueError:
        recipients = ()
    if not recipients or min(recipients) < 1 or max(recipients) > 1000:
        parser.error("recipients: expected numbers from 1 to 1000, e.g. 1,100")
    if args.messages < 1 or args.clients < 1:
        parser.error("messages and clients: expected at least 1")
    base = Options(
        messages=args.messages,
        clients=args.clients,
        sizes=(args.size,),
        backends=backends,
        modes=("reuse",),
        runs=args.runs,
        tls=False,
        warmup=args.warmup,
        settle_seconds=args.settle,
        max_foreign_seconds=args.max_foreign,
        attempts=max(1, args.attempts),
        keep=args.keep,
    )
    return ApiOptions(base, recipients)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    return run_backends(
        "api", options.base.backends, lambda backend: bench_backend(backend, options), table
    )


if __name__ == "__main__":
    sys.exit(main())
