"""The lane scheduler at scale: pick cost, fairness and an idle engine's footprint.

For each store backend and queue size it fills a fresh store through
``store.accept`` (submissions of ``FILL_CHUNK`` messages, so the ``queues``
rows and their bumps are written as in production) with messages for
``--domains`` destination domains: ``--throttled-share`` of them (90%) for
the ``--throttled-domains`` domains whose MX is ``mx.throttled.test``, a
site a shaping file throttles to ``--throttled-rate`` (10/min); the rest
spread evenly over the other domains, ten domains per MX host (site). No
network is used for the scheduler: a resolver in this process maps each
domain to its site; the idle engine gets a DNS server on loopback.

Two measurements per size, on the same store:

1. Idle engine: every message deferred (due in a day), ``penguin run --role
   delivery`` as a subprocess; once its start-up pass over the queues has
   settled (CPU under 10% of a core over 5 s, at most ``--settle`` s) its
   CPU (``/proc/PID/stat`` utime+stime) over ``--idle-seconds`` and its
   RSS (``VmRSS``; ``VmHWM`` is the peak).
2. Picks: the messages made due now (one ``UPDATE``), a ``LaneScheduler``
   (``engine.runtime.app.lane_scheduler``, in-process limiter, real clock)
   asked for batches of ``--limit`` as the delivery loop asks (after an
   empty batch it waits until ``next_wakeup``, at most ``idle_poll_seconds``);
   each batch is settled in the store as delivered and reported ``finished``.
   It times every ``next_batch``: the first (it loads the catalogue), then
   p50/p99 of the next ``--picks`` that returned mail; it counts the picks and
   seconds until every message of the other sites was picked (the least
   possible is their count / ``--limit`` picks) and how many of the throttled
   site's were picked meanwhile (its throttle allows ``burst + rate x time``).

Prints one line per phase and a table. Writes nothing else; results go into
``benchmarks/RESULTS.md`` by hand.

    python -m benchmarks.scheduler [--sizes 10000,100000,1000000]
        [--backends sqlite,postgres] [--picks 200] [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.accept import (
    POSTGRES_SERVER,
    BenchError,
    EngineProcess,
    _csv,
    _toml_string,
    database,
    unwind_on_sigterm,
)
from config.loader import parse_settings
from engine.clock import SystemClock
from engine.limits.local import LocalLimiter
from engine.limits.throttle import ThrottleSpec
from engine.model import MessageState, QueuedMessage, Settlement, Submission
from engine.records.record import Record, RecordType
from engine.runtime.app import lane_scheduler
from engine.scheduler.lanes import LaneScheduler
from engine.scheduler.shaping import Shaping
from engine.smtp.reply import Reply, Stage
from engine.store import Store, open_store
from smtp_out.dns import MxHost, MxRoute, Route
from tests.harness.dns_server import ThreadedDnsServer, Zones

TENANT = "bench"
SENDER = "bench@bench.test"
THROTTLED_SITE = "mx.throttled.test"
DOMAINS_PER_SITE = 10
SINK_ADDRESS = "127.0.0.2"
FILL_CHUNK = 20_000
DEFERRED_SECONDS = 86_400.0
BODY = b"From: bench@bench.test\r\nSubject: scheduler bench\r\n\r\nx\r\n"
DELIVERED = Reply(250, "2.0.0", "ok", Stage.DOT)
OWNER = "bench:1"
LEASE_SECONDS = 300.0
IDLE_POLL_SECONDS = 0.25
"""The delivery loop's ``delivery.idle_poll_seconds`` default: its longest wait."""


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    domains: int
    throttled_domains: int
    throttled_share: float
    throttled_rate: str
    limit: int
    picks: int
    idle_seconds: float
    settle_seconds: float
    max_drain_seconds: float
    skip_idle: bool
    keep: bool


@dataclass(frozen=True)
class Workload:
    """Which domain each message goes to, and each domain's site."""

    throttled: tuple[str, ...]
    others: tuple[str, ...]

    @classmethod
    def build(cls, domains: int, throttled_domains: int) -> Workload:
        return cls(
            tuple(f"t{i}.throttled.test" for i in range(throttled_domains)),
            tuple(f"d{i}.other.test" for i in range(domains - throttled_domains)),
        )

    def site(self, domain: str) -> str:
        if domain.endswith(".throttled.test"):
            return THROTTLED_SITE
        index = int(domain.split(".", 1)[0][1:])
        return f"mx{index // DOMAINS_PER_SITE}.other.test"

    def sites(self) -> dict[str, str]:
        return {domain: self.site(domain) for domain in (*self.throttled, *self.others)}

    def domains_of(self, size: int, share: float) -> list[str]:
        """The destination domain of each of ``size`` messages, the throttled ones
        spread evenly among the others (as mail would arrive)."""
        throttled = round(size * share)
        result: list[str] = []
        taken = 0
        for n in range(size):
            if taken < throttled and (n + 1) * share >= taken + 1:
                result.append(self.throttled[taken % len(self.throttled)])
                taken += 1
            else:
                index = n - taken
                result.append(self.others[index % len(self.others)])
        return result


class BenchResolver:
    """``smtp_out.dns.RouteResolver`` from a table, without the network."""

    def __init__(self, sites: dict[str, str]) -> None:
        self._routes = {
            domain: MxRoute(domain, site, [MxHost(site, 10, [SINK_ADDRESS])])
            for domain, site in sites.items()
        }
        self.lookups = 0

    async def resolve(self, domain: str) -> Route:
        self.lookups += 1
        return self._routes[domain]


@dataclass(frozen=True)
class IdleResult:
    ready_seconds: float
    settled_after_seconds: float
    startup_cpu_seconds: float
    cpu_pct: float
    rss_mib: float
    peak_rss_mib: float


@dataclass(frozen=True)
class PickResult:
    queues: int
    first_pick_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    counted: int
    messages_per_pick: float
    empty_p50_ms: float
    others: int
    others_picked: int
    picks_to_drain: int
    least_picks: int
    drain_seconds: float
    empty_picks_before_drain: int
    throttled_picked: int
    throttled_allowed: int
    settle_ms: float


@dataclass(frozen=True)
class Row:
    backend: str
    size: int
    fill_seconds: float
    idle: IdleResult | None
    picks: PickResult


# Filling the store.


async def fill(store: Store, workload: Workload, size: int, share: float, due_at: float) -> int:
    """``size`` messages queued through ``store.accept``; the tenant id."""
    await store.migrate()
    now = time.time()
    tenant = await store.create_tenant(TENANT, now)
    domains = workload.domains_of(size, share)
    for start in range(0, size, FILL_CHUNK):
        sid = f"s{start // FILL_CHUNK:05d}"
        messages = tuple(
            QueuedMessage(
                id=f"m{n:07d}",
                submission_id=sid,
                tenant_id=tenant.id,
                queue=f"{TENANT}@{domains[n]}",
                campaign="",
                sender=SENDER,
                recipient=f"r{n}@{domains[n]}",
                domain=domains[n],
                state=MessageState.QUEUED,
                due_at=due_at,
                created_at=now,
            )
            for n in range(start, min(size, start + FILL_CHUNK))
        )
        await store.accept([Submission(sid, tenant.id, BODY, messages, now)], [])
    return tenant.id


async def make_due(url: str, now: float) -> None:
    """Every queued message due at ``now``."""
    sql = "UPDATE messages SET due_at = {} WHERE state = 'queued'"
    if url.startswith("sqlite:"):
        connection = sqlite3.connect(url.removeprefix("sqlite:"))
        try:
            connection.execute(sql.format("?"), (now,))
            connection.commit()
        finally:
            connection.close()
        return
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql.format("$1"), now)
    finally:
        await connection.close()


# The idle engine.


def write_files(directory: Path, url: str, dns: tuple[str, int], options: Options) -> Path:
    shaping = directory / "shaping.toml"
    shaping.write_text(
        f'[site."{THROTTLED_SITE}"]\nmax_message_rate = {_toml_string(options.throttled_rate)}\n'
    )
    path = directory / "penguin.toml"
    path.write_text(
        f"""\
[engine]
data_dir = {_toml_string(str(directory / "var"))}
hostname = "bench.localhost"
node_id = "bench"
processes = 1

[database]
url = {_toml_string(url)}

[dns]
nameservers = ["{dns[0]}:{dns[1]}"]

[scheduler]
shaping_files = [{_toml_string(str(shaping))}]

[admin]
listen = "127.0.0.1:0"

[records]
json_log_enabled = false

[logging]
level = "WARNING"
"""
    )
    return path


def zones_for(sites: dict[str, str]) -> Zones:
    zones = Zones(default_ttl=86_400)
    for domain, site in sites.items():
        zones.add_mx(domain, [(10, site)])
    for site in set(sites.values()):
        zones.add_a(site, [SINK_ADDRESS])
    return zones


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/{pid}/status")


def measure_idle(config: Path, directory: Path, options: Options) -> IdleResult:
    """The delivery engine on a store where nothing is due: CPU and RSS once settled."""
    engine = EngineProcess(config, directory, role="delivery")
    started = time.monotonic()
    engine.start(timeout=600)
    ready = time.monotonic() - started
    try:
        settle_deadline = time.monotonic() + options.settle_seconds
        while True:
            cpu, at = engine.cpu_seconds(), time.monotonic()
            time.sleep(5.0)
            rate = (engine.cpu_seconds() - cpu) / (time.monotonic() - at)
            if rate < 0.10 or time.monotonic() >= settle_deadline:
                break
        settled = time.monotonic() - started
        startup_cpu = engine.cpu_seconds()
        cpu0, t0 = engine.cpu_seconds(), time.monotonic()
        time.sleep(options.idle_seconds)
        cpu1, t1 = engine.cpu_seconds(), time.monotonic()
        rss = _status_kib(engine.pid, "VmRSS") / 1024
        peak = _status_kib(engine.pid, "VmHWM") / 1024
    except BaseException:
        print(engine.output_tail(), file=sys.stderr)
        raise
    finally:
        engine.stop()
    return IdleResult(
        ready_seconds=ready,
        settled_after_seconds=settled,
        startup_cpu_seconds=startup_cpu,
        cpu_pct=100.0 * (cpu1 - cpu0) / (t1 - t0),
        rss_mib=rss,
        peak_rss_mib=peak,
    )


# Picks.


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


async def measure_picks(
    url: str, shaping_file: Path, workload: Workload, size: int, options: Options
) -> PickResult:
    """Ask a lane scheduler for batches until the other sites' mail is all picked."""
    store = open_store(url)
    clock = SystemClock()
    scheduler: LaneScheduler = lane_scheduler(
        store=store,
        limiter=LocalLimiter(clock),
        settings=parse_settings({}),
        resolver=BenchResolver(workload.sites()),
        shaping=Shaping.load([shaping_file]),
        nodeid="bench",
    )
    throttle = ThrottleSpec.parse(options.throttled_rate)
    others = size - round(size * options.throttled_share)
    others_picked = throttled_picked = picks = empty_before_drain = 0
    first_ms = math.nan
    full: list[float] = []
    empty: list[float] = []
    settles: list[float] = []
    started = time.monotonic()
    drained_at = math.nan
    picks_to_drain = 0
    try:
        while time.monotonic() - started < options.max_drain_seconds:
            tick = time.perf_counter()
            batch = await scheduler.next_batch(
                owner=OWNER, now=clock.now(), lease_seconds=LEASE_SECONDS, limit=options.limit
            )
            cost = (time.perf_counter() - tick) * 1000
            picks += 1
            if picks == 1:
                first_ms = cost
            elif batch:
                full.append(cost)
            else:
                empty.append(cost)
            throttled = sum(1 for d in batch if d.site == THROTTLED_SITE)
            throttled_picked += throttled
            others_picked += len(batch) - throttled
            if not batch:
                if others_picked < others:
                    empty_before_drain += 1
                wait = min(IDLE_POLL_SECONDS, scheduler.next_wakeup() - clock.now())
                await asyncio.sleep(max(wait, 0.001))
                continue
            tick = time.perf_counter()
            now = clock.now()
            settled = [
                (
                    Settlement(
                        d.message.id,
                        d.message.lease_token or "",
                        MessageState.DELIVERED,
                        d.message.attempts + 1,
                        now,
                    ),
                    Record(RecordType.DELIVERY, now, d.message.tenant_id, d.message.id),
                )
                for d in batch
            ]
            applied = await store.settle(settled)
            if len(applied) != len(batch):
                raise BenchError(f"{len(batch) - len(applied)} settlements did not apply")
            for dispatch in batch:
                await scheduler.finished(dispatch, now, "delivered", DELIVERED)
            settles.append((time.perf_counter() - tick) * 1000)
            if others_picked >= others and math.isnan(drained_at):
                drained_at = time.monotonic() - started
                picks_to_drain = picks
                break
        elapsed = time.monotonic() - started
    finally:
        await store.close()
    counted = full[: options.picks]
    return PickResult(
        queues=len(scheduler.catalog),
        first_pick_ms=first_ms,
        p50_ms=_percentile(counted, 0.5),
        p99_ms=_percentile(counted, 0.99),
        max_ms=max(counted, default=math.nan),
        counted=len(counted),
        messages_per_pick=(others_picked + throttled_picked) / max(1, picks),
        empty_p50_ms=_percentile(empty, 0.5),
        others=others,
        others_picked=others_picked,
        picks_to_drain=picks_to_drain,
        least_picks=math.ceil(others / options.limit),
        drain_seconds=drained_at,
        empty_picks_before_drain=empty_before_drain,
        throttled_picked=throttled_picked,
        throttled_allowed=math.floor(throttle.max_burst + elapsed / throttle.interval),
        settle_ms=statistics.median(settles) if settles else math.nan,
    )


# One size on one backend.


def bench_size(backend: str, size: int, workload: Workload, options: Options) -> Row:
    directory = Path(tempfile.mkdtemp(prefix=f"penguin-sched-{backend}-{size}-"))
    try:
        with database(backend, directory) as url:
            sites = workload.sites()
            with ThreadedDnsServer(zones_for(sites)) as dns:
                config = write_files(directory, url, dns.address, options)
                due_at = time.time() + DEFERRED_SECONDS
                tick = time.monotonic()
                asyncio.run(_fill(url, workload, size, options.throttled_share, due_at))
                fill_seconds = time.monotonic() - tick
                _log(f"{backend} {size:,}: filled in {fill_seconds:.1f} s ({_load()})")
                idle = None
                if not options.skip_idle:
                    idle = measure_idle(config, directory, options)
                    _log(
                        f"{backend} {size:,}: idle engine ready in {idle.ready_seconds:.1f} s,"
                        f" settled after {idle.settled_after_seconds:.0f} s"
                        f" ({idle.startup_cpu_seconds:.1f} CPU s), then"
                        f" {idle.cpu_pct:.2f}% of a core over {options.idle_seconds:.0f} s,"
                        f" RSS {idle.rss_mib:.0f} MiB (peak {idle.peak_rss_mib:.0f}) ({_load()})"
                    )
            tick = time.monotonic()
            asyncio.run(make_due(url, time.time()))
            _log(f"{backend} {size:,}: made due in {time.monotonic() - tick:.1f} s")
            picks = asyncio.run(
                measure_picks(url, directory / "shaping.toml", workload, size, options)
            )
            _log(f"{backend} {size:,}: {picks} ({_load()})")
            return Row(backend, size, fill_seconds, idle, picks)
    finally:
        if options.keep:
            _log(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


async def _fill(url: str, workload: Workload, size: int, share: float, due_at: float) -> None:
    store = open_store(url)
    try:
        await fill(store, workload, size, share, due_at)
    finally:
        await store.close()


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


# Output.


def table(rows: list[Row]) -> str:
    lines = [
        "| backend | queued | queues | fill s | first pick ms | pick p50 ms | pick p99 ms"
        " | msgs/pick | others: picks to drain (least) | drain s | empty picks before"
        " | throttled picked (allowed) | idle RSS MiB | idle CPU % core |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        p = row.picks
        idle = row.idle
        drain = f"{p.picks_to_drain:,} ({p.least_picks:,})" if p.picks_to_drain else "not drained"
        if not p.picks_to_drain:
            drain += f" {p.others_picked:,}/{p.others:,}"
        lines.append(
            f"| {row.backend} | {row.size:,} | {p.queues:,} | {row.fill_seconds:.0f}"
            f" | {p.first_pick_ms:.0f} | {p.p50_ms:.1f} | {p.p99_ms:.1f} (n={p.counted})"
            f" | {p.messages_per_pick:.0f} | {drain} | {p.drain_seconds:.1f}"
            f" | {p.empty_picks_before_drain} | {p.throttled_picked} ({p.throttled_allowed})"
            f" | {f'{idle.rss_mib:.0f}' if idle else 'n/a'}"
            f" | {f'{idle.cpu_pct:.2f}' if idle else 'n/a'} |"
        )
    return "\n".join(lines)


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scheduler",
        description="lane scheduler pick cost, fairness and idle footprint by queue size",
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="messages queued")
    parser.add_argument("--backends", default="sqlite", help="sqlite and/or postgres")
    parser.add_argument("--domains", type=int, default=10_000, help="destination domains")
    parser.add_argument("--throttled-domains", type=int, default=1_000)
    parser.add_argument("--throttled-share", type=float, default=0.9)
    parser.add_argument("--throttled-rate", default="10/min")
    parser.add_argument("--limit", type=int, default=100, help="messages asked per pick")
    parser.add_argument("--picks", type=int, default=200, help="picks in the p50/p99")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=300.0, help="most seconds to settle")
    parser.add_argument("--max-drain-seconds", type=float, default=600.0)
    parser.add_argument("--skip-idle", action="store_true", help="no idle engine")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)
    if not 0 < args.throttled_domains < args.domains:
        parser.error("--throttled-domains must be between 0 and --domains")
    return Options(
        sizes=tuple(int(size) for size in _csv(args.sizes)),
        backends=_csv(args.backends),
        domains=args.domains,
        throttled_domains=args.throttled_domains,
        throttled_share=args.throttled_share,
        throttled_rate=args.throttled_rate,
        limit=args.limit,
        picks=args.picks,
        idle_seconds=args.idle_seconds,
        settle_seconds=args.settle,
        max_drain_seconds=args.max_drain_seconds,
        skip_idle=args.skip_idle,
        keep=args.keep,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    unwind_on_sigterm()
    workload = Workload.build(options.domains, options.throttled_domains)
    _log(
        f"machine: nproc {os.cpu_count()}, {_cpu_model()}, Python {platform.python_version()},"
        f" {_load()}; postgres at {POSTGRES_SERVER}"
    )
    rows: list[Row] = []
    try:
        for backend in options.backends:
            for size in options.sizes:
                rows.append(bench_size(backend, size, workload, options))
    except BenchError as exc:
        _log(f"benchmark failed: {exc}")
        return 1
    finally:
        if rows:
            print(table(rows))
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
