"""Stats rollup and queries over a tenant's record log, on each store backend.

Generates ``--records`` records (about 3.6 per message: reception, delivery
or bounce, some deferrals, opens and clicks, complaints and unsubscribes)
for one tenant, spread over ``--days`` days, ``--campaigns`` campaigns,
``--domains`` sending domains and five providers, written straight into a fresh
store (``Store.accept`` and ``Store.add_records`` in batches). Then the stats
service (``engine.rollup.service.StatsRollup``) counts the whole log (records/s),
and ``read_stats`` — what ``GET /v1/stats`` and ``penguin stats`` answer
with — is timed ``--runs`` times per query (p50, p99; goal under 100 ms).

Prints a table; results go into ``benchmarks/RESULTS.md`` by hand.

    python -m benchmarks.stats [--records 1000000] [--backends sqlite,postgres]
        [--days 30] [--campaigns 10] [--domains 5] [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.accept import _csv, database
from engine.clock import SystemClock
from engine.model import MessageState, QueuedMessage, Submission
from engine.records.record import Record, RecordType
from engine.rollup.service import StatsRollup, read_stats
from engine.scheduler.shaping import Shaping
from engine.stats.report import Dimension, StatsQuery
from engine.store import Store, open_store

START = 1_790_000_000.0
SITES = (
    "gmail-smtp-in.l.google.com",
    "mta5.am0.yahoodns.net",
    "acme-com.mail.protection.outlook.com",
    "mx01.mail.icloud.com",
    "mx.smallhost.example",
)
QUERIES = {
    "by campaign": StatsQuery(group_by=(Dimension.CAMPAIGN,)),
    "by day": StatsQuery(group_by=(Dimension.DAY,)),
    "by provider, hour": StatsQuery(group_by=(Dimension.PROVIDER, Dimension.HOUR)),
    "campaign, 7 days by day": StatsQuery(
        group_by=(Dimension.DAY,), campaign="campaign3", since=START + 20 * 86400
    ),
}
BATCH = 10_000
RECORDS_PER_MESSAGE = 3.62
"""What ``message_records`` writes per message, on average."""


@dataclass(frozen=True, slots=True)
class Options:
    records: int
    backends: tuple[str, ...]
    days: int
    campaigns: int
    domains: int
    runs: int


@dataclass(frozen=True, slots=True)
class Row:
    backend: str
    records: int
    load_seconds: float
    rollup_per_second: float
    latencies: dict[str, tuple[float, float]]
    """Query name -> (p50, p99) in milliseconds."""


def message_records(m: QueuedMessage, n: int, site: str) -> Iterator[Record]:
    """About five records of message number ``n``."""
    t = m.created_at

    def record(kind: RecordType, at: float, **fields: object) -> Record:
        return Record(
            kind,
            at,
            m.tenant_id,
            id=m.id,
            sender=m.sender,
            recipient=m.recipient,
            **fields,  # type: ignore[arg-type]
        )

    yield record(RecordType.RECEPTION, t)
    if n % 10 == 0:
        yield record(RecordType.TRANSIENT_FAILURE, t + 30, site=site)
    if n % 25 == 0:
        category = ("InvalidRecipient", "SpamBlock", "QuotaIssues")[n % 3]
        yield record(RecordType.BOUNCE, t + 60, site=site, bounce_classification=category)
        return
    yield record(RecordType.DELIVERY, t + 60, site=site)
    machine = n % 7 == 0
    yield record(RecordType.OPEN, t + 900, meta={"first": True, "machine": machine})
    if n % 3 == 0:
        yield record(RecordType.OPEN, t + 4000, meta={"first": False, "machine": False})
    if n % 4 == 0:
        yield record(RecordType.CLICK, t + 1000, meta={"first": True, "machine": machine})
    if n % 500 == 0:
        yield record(RecordType.FEEDBACK, t + 7200)
    if n % 200 == 0:
        yield record(RecordType.UNSUBSCRIBE, t + 3000, meta={"first": True})


async def generate(store: Store, options: Options) -> int:
    """Write about ``options.records`` records of one tenant; how many were written."""
    tenant = await store.create_tenant("bench", START)
    messages = max(1, round(options.records / RECORDS_PER_MESSAGE))
    spacing = options.days * 86400 / messages
    written, pending = 0, list[Record]()
    body = b"Subject: stats\r\n\r\nhello\r\n"
    for first in range(0, messages, 1000):
        batch = []
        for n in range(first, min(first + 1000, messages)):
            domain = f"customer{n % 1000}.example"
            batch.append(
                QueuedMessage(
                    id=f"m{n}",
                    submission_id=f"s{first}",
                    tenant_id=tenant.id,
                    queue=f"campaign{n % options.campaigns}:bench@{domain}",
                    campaign=f"campaign{n % options.campaigns}",
                    sender=f"news@brand{(n // 7) % options.domains}.example",
                    recipient=f"user{n}@{domain}",
                    domain=domain,
                    state=MessageState.DELIVERED,
                    due_at=START,
                    created_at=START + n * spacing,
                )
            )
        submission = Submission(f"s{first}", tenant.id, body, tuple(batch), START)
        await store.accept([submission], [])
        for m in batch:
            n = int(m.id[1:])
            pending.extend(message_records(m, n, SITES[(n % 1000) % len(SITES)]))
        if len(pending) >= BATCH:
            await store.add_records(pending)
            written, pending = written + len(pending), []
    await store.add_records(pending)
    return written + len(pending)


async def bench(backend: str, url: str, options: Options) -> Row:
    store = open_store(url)
    try:
        await store.migrate()
        began = time.perf_counter()
        records = await generate(store, options)
        loaded = time.perf_counter() - began
        print(f"{backend}: {records} records written in {loaded:.1f}s", file=sys.stderr)
        tenant = await store.get_tenant("bench")
        assert tenant is not None
        rollup = StatsRollup(store, Shaping.load().provider_of, SystemClock(), "bench")
        began = time.perf_counter()
        while rollup.applied < records:  # another database's transaction may hold some back
            if not await rollup.step():
                await asyncio.sleep(0.01)
        counted = rollup.applied
        rolled = time.perf_counter() - began
        print(f"{backend}: rollup {counted / rolled:.0f} records/s", file=sys.stderr)
        latencies = {}
        for name, query in QUERIES.items():
            times = []
            for _ in range(options.runs):
                began = time.perf_counter()
                await read_stats(store, tenant.id, query)
                times.append((time.perf_counter() - began) * 1000)
            cuts = statistics.quantiles(times, n=100, method="inclusive")
            latencies[name] = (statistics.median(times), cuts[98])
        return Row(backend, records, loaded, counted / rolled, latencies)
    finally:
        await store.close()


def run_backend(backend: str, options: Options) -> Row:
    directory = Path(tempfile.mkdtemp(prefix=f"penguin-stats-{backend}-"))
    with database(backend, directory) as url:
        return asyncio.run(bench(backend, url, options))


def table(rows: list[Row]) -> str:
    lines = [
        "| backend | records | rollup records/s | query | p50 ms | p99 ms |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        for name, (p50, p99) in row.latencies.items():
            lines.append(
                f"| {row.backend} | {row.records:,} | {row.rollup_per_second:,.0f} | {name} "
                f"| {p50:.1f} | {p99:.1f} |"
            )
    return "\n".join(lines)


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stats", description="stats rollup and query latency"
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="records to generate")
    parser.add_argument("--backends", default="sqlite,postgres", help="store backends")
    parser.add_argument("--days", type=int, default=30, help="days the records span")
    parser.add_argument("--campaigns", type=int, default=10, help="campaigns")
    parser.add_argument("--domains", type=int, default=5, help="sending domains")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per query")
    args = parser.parse_args(argv)
    return Options(
        args.records, _csv(args.backends), args.days, args.campaigns, args.domains, args.runs
    )


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    rows = [run_backend(backend, options) for backend in options.backends]
    print(table(rows))


if __name__ == "__main__":
    main()
