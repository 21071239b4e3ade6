"""End-to-end benchmark: submission → DKIM-signed delivery to a loopback sink.

For each store backend it provisions a tenant with an RSA-2048 DKIM key,
starts the engine (``--layout split``: one ``--role submission`` and one
``--role delivery`` process on the same store, so both cores work;
``--layout single``: one process with both roles), serves ``--domains``
recipient domains from a DNS server on loopback (``--sites shared``: all on
one MX host, so one site, as a provider hosts many domains; ``per-domain``:
each its own MX host and site), all resolving to 127.0.0.2, and
receives on Postfix's ``smtp-sink`` at 127.0.0.2 (the same C sink the peers'
Postfix benchmark uses; ``--sink harness`` uses the Python test sink
instead). ``benchmarks.smtp_load`` submits ``--messages`` single-recipient
messages over ``--clients`` connections, one message per connection
(smtp-source's default).

Per run it prints accepted msgs/s (until the last 250), delivered msgs/s
(N / time until the sink has the N-th message, like the peers' script) and
p50/p99 of accept → delivery, from each message's Reception and Delivery
records in the store. Medians of ``--runs`` runs go in a table.

With ``--tracking-links N`` the tenant has a default tracking domain and each
message is an HTML newsletter of ``--sizes`` octets with N links: every copy is
rewritten for its recipient (clicks, the open pixel, List-Unsubscribe) and signed on
its own.

    python -m benchmarks.throughput [--messages N] [--clients C] [--sizes 2048,20480]
        [--backends sqlite,postgres] [--domains 1000] [--runs 3] [--layout split|single]
        [--tracking-links N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import uvloop

from benchmarks.accept import (
    TENANT,
    BenchError,
    EngineProcess,
    _csv,
    _toml_string,
    cli,
    database,
    provision,
    unwind_on_sigterm,
    wait_quiet,
)
from benchmarks.smtp_load import LoadSpec, run_load
from engine.store import open_store
from tests.harness.dns_server import ThreadedDnsServer, Zones
from tests.harness.smtp_sink import ThreadedSmtpSink

SINK_HOST = "127.0.0.2"
SENDER = "bench@bench.test"
TRACKING_DOMAIN = "click.bench.test"


@dataclass(frozen=True)
class Options:
    messages: int
    clients: int
    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    domains: int
    runs: int
    layout: str
    sink: str
    sites: str
    settle_seconds: float
    keep: bool
    processes: int = 1
    warmup: int = 0
    delivery_processes: int = 0
    links: int = 0
    """Tracking on: an HTML newsletter with this many links, rewritten per recipient."""


@dataclass(frozen=True)
class Run:
    backend: str
    size: int
    run: int
    accepted_per_second: float
    delivered_per_second: float
    p50_seconds: float
    p99_seconds: float
    delivered: int
    engine_cpu_ms: float
    """CPU milliseconds per delivered message of the engine's processes."""
    harness_cpu_ms: float
    """The same of this process (load generator, DNS server) and the sink."""
    server_cpu_ms: float
    """The same of the PostgreSQL server's processes (0 on SQLite: it runs in the engine)."""
    busiest_core: float
    """The share of a core the busiest engine process used (1.0: it was the bottleneck)."""


def recipient_domains(count: int) -> tuple[str, ...]:
    return tuple(f"d{i}.rcpt.test" for i in range(count))


def zones_for(domains: tuple[str, ...], sites: str) -> Zones:
    """Each domain's MX: one shared host (``shared``: one site, as a provider hosts
    many domains), a host of its own (``per-domain``: a site per domain), or one of
    N hosts (``N``: N sites, as mail spread over N providers)."""
    zones = Zones(default_ttl=3600)
    for index, domain in enumerate(domains):
        if sites == "shared":
            host = "mx.rcpt.test"
        elif sites == "per-domain":
            host = f"mx.{domain}"
        else:
            host = f"mx{index % int(sites)}.rcpt.test"
        zones.add_mx(domain, [(10, host)])
        zones.add_a(host, [SINK_HOST])
    return zones


def write_config(
    directory: Path, url: str, dns: tuple[str, int], sink_port: int, options: Options
) -> Path:
    data = directory / "var"
    path = directory / "penguin.toml"
    path.write_text(
        f"""\
[engine]
data_dir = {_toml_string(str(data))}
hostname = "bench.localhost"
node_id = "bench"
processes = {options.processes}
delivery_processes = {options.delivery_processes}

[database]
url = {_toml_string(url)}

[dns]
nameservers = ["{dns[0]}:{dns[1]}"]

[delivery]
port = {sink_port}
idle_poll_seconds = 0.05

[sources.default]
address = "127.0.0.1"
ehlo_hostname = "bench.localhost"

[submission]
listen = ["127.0.0.1:0"]
allow_plaintext_auth_on_loopback = true
max_sessions = 2000
max_commands = 10000000

[admin]
listen = "127.0.0.1:0"

[bounce]
listen = ["127.0.0.1:0"]

[tracking]
listen = "127.0.0.1:0"
"""
    )
    return path


class Sink:
    """Where delivered mail lands: Postfix's smtp-sink, or the Python harness sink."""

    def __init__(self, kind: str) -> None:
        self._harness: ThreadedSmtpSink | None = None
        self._process: subprocess.Popen[bytes] | None = None
        if kind == "harness":
            self._harness = ThreadedSmtpSink(SINK_HOST, 0)
            self._harness.start()
            self.port = self._harness.address[1]
        else:
            self.port = _free_port(SINK_HOST)

    def arm(self, expect: int) -> None:
        """Ready to count ``expect`` new messages."""
        if self._harness is not None:
            self._harness.inbox.clear()
            return
        self._process = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", "-M", str(expect), f"{SINK_HOST}:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_many_open_files,
        )
        _wait_listening(SINK_HOST, self.port)

    def wait(self, expect: int, timeout: float) -> float:
        """Block until the sink has ``expect`` messages; the time it happened."""
        if self._harness is not None:
            self._harness.wait_for_count(expect, timeout)
        else:
            assert self._process is not None
            self._process.wait(timeout)
        return time.perf_counter()

    def close(self) -> None:
        if self._harness is not None:
            self._harness.stop()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def _many_open_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _wait_listening(host: str, port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"sink not listening on {host}:{port}")


async def _latencies(url: str, since_seq: int) -> list[float]:
    """Accept → delivery seconds of every message delivered after ``since_seq``."""
    store = open_store(url)
    try:
        received: dict[str, float] = {}
        delivered: dict[str, float] = {}
        seq = since_seq
        while page := await store.records_after(seq, 5000):
            seq = page[-1][0]
            for _, record in page:
                stamp = datetime.fromisoformat(record["timestamp"]).timestamp()
                if record["type"] == "Reception":
                    received[record["id"]] = stamp
                elif record["type"] == "Delivery":
                    delivered[record["id"]] = stamp
        return sorted(delivered[i] - received[i] for i in delivered if i in received)
    finally:
        await store.close()


async def _last_seq(url: str) -> int:
    store = open_store(url)
    try:
        return await store.last_record_seq()
    finally:
        await store.close()


def _harness_cpu_seconds() -> float:
    """CPU seconds of this process (load generator, DNS server) and of its reaped
    children (each run's smtp-sink is reaped when it has every message)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _cpu_by_process(engines: list[EngineProcess]) -> dict[int, float]:
    return {pid: cpu for engine in engines for pid, cpu in engine.cpu_by_process().items()}


def postgres_cpu_seconds() -> float:
    """CPU seconds of every process named ``postgres`` on the machine (the store server)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone since listed
            continue
        name_end = text.rfind(")")
        if text[text.find("(") + 1 : name_end] != "postgres":
            continue
        fields = text[name_end + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(fraction * len(values)))]


@contextmanager
def engines(
    config: Path, directory: Path, layout: str
) -> Iterator[tuple[tuple[str, int], list[EngineProcess]]]:
    """The engine processes of ``layout``; yields the submission address and them."""
    roles = ("submission", "delivery") if layout == "split" else ("all",)
    started: list[EngineProcess] = []
    try:
        address: tuple[str, int] | None = None
        for role in roles:
            workdir = directory / role
            workdir.mkdir(exist_ok=True)
            engine = EngineProcess(config, workdir, role=role)
            started.append(engine)
            found = engine.start()
            address = address or found
        assert address is not None
        yield address, started
    finally:
        for engine in started:
            engine.stop()


def one_run(
    options: Options,
    url: str,
    address: tuple[str, int],
    credentials: tuple[str, str],
    sink: Sink,
    size: int,
    run: int,
    backend: str,
    started_engines: list[EngineProcess],
) -> Run:
    domains = recipient_domains(options.domains)
    wait_quiet(options.settle_seconds)
    seq = asyncio.run(_last_seq(url))
    sink.arm(options.messages)
    spec = LoadSpec(
        address[0],
        address[1],
        credentials[0],
        credentials[1],
        options.messages,
        clients=options.clients,
        size=size,
        mode="conn",
        sender=SENDER,
        recipient_domains=domains,
        links=options.links,
    )
    by_process = _cpu_by_process(started_engines)
    engine_cpu = sum(by_process.values())
    harness_cpu = _harness_cpu_seconds()
    server_cpu = postgres_cpu_seconds() if backend == "postgres" else 0.0
    started = time.perf_counter()
    result = uvloop.run(run_load(spec))
    if result.failed:
        raise BenchError(f"{result.failed} submissions failed: {dict(result.errors)}")
    finished = sink.wait(options.messages, timeout=1800)
    by_process = {
        pid: seconds - by_process.get(pid, 0.0)
        for pid, seconds in _cpu_by_process(started_engines).items()
    }
    engine_cpu = sum(by_process.values())
    harness_cpu = _harness_cpu_seconds() - harness_cpu
    if backend == "postgres":
        server_cpu = postgres_cpu_seconds() - server_cpu
    latencies = asyncio.run(_latencies(url, seq))
    deadline = time.monotonic() + 5
    while len(latencies) < options.messages and time.monotonic() < deadline:
        time.sleep(0.5)
        latencies = asyncio.run(_latencies(url, seq))
    row = Run(
        backend=backend,
        size=size,
        run=run,
        accepted_per_second=result.rate,
        delivered_per_second=options.messages / (finished - started),
        p50_seconds=_percentile(latencies, 0.5),
        p99_seconds=_percentile(latencies, 0.99),
        delivered=len(latencies),
        engine_cpu_ms=1000 * engine_cpu / options.messages,
        harness_cpu_ms=1000 * harness_cpu / options.messages,
        server_cpu_ms=1000 * server_cpu / options.messages,
        busiest_core=max(by_process.values(), default=0.0) / (finished - started),
    )
    print(
        f"{backend} {size} B run {run}: accepted {row.accepted_per_second:.0f}/s, delivered "
        f"{row.delivered_per_second:.0f}/s end to end, p50 {row.p50_seconds:.3f} s, "
        f"p99 {row.p99_seconds:.3f} s ({row.delivered} Delivery records), CPU ms/msg: "
        f"engine {row.engine_cpu_ms:.2f}, PostgreSQL {row.server_cpu_ms:.2f}, "
        f"load+DNS+sink {row.harness_cpu_ms:.2f}; busiest engine process at "
        f"{100 * row.busiest_core:.0f}% of a core",
        file=sys.stderr,
        flush=True,
    )
    return row


def bench_backend(backend: str, options: Options, dns: tuple[str, int], sink: Sink) -> list[Run]:
    directory = Path(tempfile.mkdtemp(prefix=f"penguin-throughput-{backend}-"))
    rows: list[Run] = []
    try:
        with database(backend, directory) as url:
            config = write_config(directory, url, dns, sink.port, options)
            credentials = provision(config)
            if options.links:
                cli(config, "tracking-domain", "add", TENANT, TRACKING_DOMAIN, "--default")
            with engines(config, directory, options.layout) as (address, started):
                if options.warmup:
                    warm = replace(options, messages=options.warmup)
                    one_run(
                        warm, url, address, credentials, sink, options.sizes[0], 0, backend, started
                    )
                for run in range(1, options.runs + 1):
                    for size in options.sizes:
                        row = one_run(
                            options, url, address, credentials, sink, size, run, backend, started
                        )
                        rows.append(row)
    finally:
        if not options.keep:
            shutil.rmtree(directory, ignore_errors=True)
    return rows


def layout_label(options: Options) -> str:
    """The layout as run: two commands, or one with its worker counts."""
    if options.layout == "split":
        return "split"
    if options.delivery_processes:
        return f"single, {options.processes} + {options.delivery_processes} delivery processes"
    return f"single, {options.processes} process{'es' if options.processes > 1 else ''}"


def table(rows: list[Run], options: Options) -> str:
    groups: dict[tuple[str, int], list[Run]] = {}
    for row in rows:
        groups.setdefault((row.backend, row.size), []).append(row)
    lines = [
        "| backend | size | layout | domains | runs | accepted msgs/s | delivered msgs/s "
        "| p50 accept→delivery | p99 accept→delivery | engine CPU ms/msg "
        "| PostgreSQL CPU ms/msg | load+DNS+sink CPU ms/msg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backend, size), group in groups.items():
        lines.append(
            f"| {backend} | {size} | {layout_label(options)} | {options.domains} | {len(group)} "
            f"| {statistics.median(r.accepted_per_second for r in group):.0f} "
            f"| **{statistics.median(r.delivered_per_second for r in group):.0f}** "
            f"| {statistics.median(r.p50_seconds for r in group):.3f} s "
            f"| {statistics.median(r.p99_seconds for r in group):.3f} s "
            f"| {statistics.median(r.engine_cpu_ms for r in group):.2f} "
            f"| {statistics.median(r.server_cpu_ms for r in group):.2f} "
            f"| {statistics.median(r.harness_cpu_ms for r in group):.2f} |"
        )
    return "\n".join(lines)


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description="end-to-end delivered msgs/s with DKIM and durability on",
    )
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--sizes", default="2048,20480")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layout", choices=("split", "single"), default="split")
    parser.add_argument(
        "--sink",
        choices=("smtp-sink", "harness"),
        default="smtp-sink" if shutil.which("smtp-sink") else "harness",
    )
    parser.add_argument(
        "--sites",
        type=_sites,
        default="shared",
        help="all domains on one MX host (shared: one site), each its own (per-domain), "
        "or spread over N MX hosts (a number: N sites)",
    )
    parser.add_argument("--settle", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--delivery-processes",
        type=int,
        default=0,
        help="engine.delivery_processes (with --layout single: the split layout in one command)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1000,
        help="messages sent first and not measured (DNS, credential and connection caches)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="processes per engine role (engine.processes)"
    )
    parser.add_argument(
        "--tracking-links",
        type=int,
        default=0,
        help="tracking on: an HTML newsletter of --sizes octets with this many links, each "
        "recipient's rewritten on the tenant's tracking domain (default 0: a plain message)",
    )
    args = parser.parse_args(argv)
    return Options(
        messages=args.messages,
        clients=args.clients,
        sizes=tuple(int(s) for s in _csv(args.sizes)),
        backends=_csv(args.backends),
        domains=args.domains,
        runs=args.runs,
        layout=args.layout,
        sink=args.sink,
        sites=args.sites,
        settle_seconds=args.settle,
        keep=args.keep,
        processes=args.processes,
        warmup=args.warmup,
        delivery_processes=args.delivery_processes,
        links=args.tracking_links,
    )


def _sites(text: str) -> str:
    if text in ("shared", "per-domain") or (text.isdigit() and int(text) > 0):
        return text
    raise argparse.ArgumentTypeError(f"expected shared, per-domain or a number, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    unwind_on_sigterm()
    rows: list[Run] = []
    sink = Sink(options.sink)
    try:
        with ThreadedDnsServer(zones_for(recipient_domains(options.domains), options.sites)) as dns:
            for backend in options.backends:
                rows += bench_backend(backend, options, dns.address, sink)
    except BenchError as exc:
        print(f"throughput: {exc}", file=sys.stderr)
        return 1
    finally:
        sink.close()
        if rows:
            print(table(rows, options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
