"""The campaigns benchmark: a campaign's recipients expanded into queued messages.

For each store backend (SQLite in a temporary directory; PostgreSQL in a
fresh database dropped afterwards) it makes a tenant with a sending domain,
creates a campaign through the campaigns service (the API's and the CLI's),
adds ``--recipients`` rows (CSV lines with two variables, streamed in
batches through ``Campaigns.add_recipients``), starts it and runs the
expansion service's rounds (``engine.campaigns.expansion``: render, compose,
accept through the real acceptor and its group-committing spool, mark the
rows) until the campaign is done, all in this process. Durability check: the
store must then hold exactly one queued message per row.

Prints, per backend: rows stored per second (the upload), rows expanded per
second, and this process's peak resident memory (``ru_maxrss``, which covers
both phases). Writes nothing else; results go into ``benchmarks/RESULTS.md``
by hand.

    python -m benchmarks.campaigns [--recipients 1000000] [--backends sqlite,postgres]
        [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import uvloop

from benchmarks.accept import BACKENDS, database
from config import Settings
from engine.campaigns import Campaigns, CampaignSpec
from engine.campaigns.expansion import Expansion
from engine.campaigns.recipients import csv_rows
from engine.clock import SystemClock
from engine.model import CampaignState, CampaignTemplate, SendingDomain
from engine.provisioning import Operations
from engine.records.log import RecordLog
from engine.store import Store, open_store
from engine.submission.acceptor import Acceptor
from engine.submission.spool import Spool

DOMAIN = "bench.test"
TEMPLATE = CampaignTemplate(
    f"news@{DOMAIN}",
    "Hello {{ first_name }}",
    html="<p>Hi {{ first_name }}, news from {{ city }}.</p>",
    text="Hi {{ first_name }}, news from {{ city }}.",
)


def lines(count: int) -> Iterator[str]:
    """A CSV of ``count`` recipients, made as it is read."""
    yield "email,first_name,city\n"
    for n in range(count):
        yield f"r{n}@dest{n % 1000}.example,Name{n},City{n % 97}\n"


async def bench(url: str, recipients: int, batch: int, directory: Path) -> dict[str, float]:
    store = open_store(url)
    await store.migrate()
    clock = SystemClock()
    spool = Spool(store, RecordLog(str(directory / "records.jsonl")), 256)
    spooling = asyncio.create_task(spool.run())
    try:
        tenant = await store.create_tenant("bench", clock.now())
        await store.add_domain(SendingDomain(tenant.id, DOMAIN, "s1", "rsa", b"", "", 0.0))
        operations = Operations(store, Settings(), nodeid="bench", clock=clock)
        campaigns = Campaigns(store, Settings(), clock, operations)
        made = await campaigns.create(
            tenant, CampaignSpec("bench", TEMPLATE, ("first_name", "city"))
        )
        started = time.perf_counter()
        report = await campaigns.add_recipients(
            tenant, made.id, csv_rows(lines(recipients), {"first_name", "city"})
        )
        upload = time.perf_counter() - started
        assert report.added == recipients, report
        await campaigns.start(tenant, made.id)
        acceptor = Acceptor(store=store, spool=spool, clock=clock)
        runner = Expansion(
            store=store,
            acceptor=acceptor,
            operations=operations,
            clock=clock,
            hostname="mta.bench.test",
            nodeid="bench",
            batch=batch,
        )
        started = time.perf_counter()
        while await runner.round():
            pass
        await runner.round()
        expansion = time.perf_counter() - started
        done = await store.get_campaign(tenant.id, made.id)
        assert done is not None and done.state is CampaignState.DONE, done
        await _check(store, tenant.id, made.id, recipients)
    finally:
        spool.close()
        await spooling
        await store.close()
    return {"upload_rows_s": recipients / upload, "expand_rows_s": recipients / expansion}


async def _check(store: Store, tenant_id: int, campaign_id: int, recipients: int) -> None:
    counts = await store.campaign_counts(tenant_id, campaign_id)
    queued = sum(n for _, n, *_ in _depths(await store.queue_depths()))
    if counts.get("queued") != recipients or queued != recipients:
        raise SystemExit(f"expected {recipients} queued, rows say {counts}, queues {queued}")


def _depths(depths: dict[str, tuple[int, float | None]]) -> list[tuple[str, int]]:
    return [(queue, count) for queue, (count, _) in depths.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--batch", type=int, default=500, help="rows per acceptance")
    args = parser.parse_args(argv)
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as url:
            result = uvloop.run(bench(url, args.recipients, args.batch, Path(tmp)))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{backend:<9} recipients={args.recipients}"
            f" upload={result['upload_rows_s']:,.0f} rows/s"
            f" expand={result['expand_rows_s']:,.0f} rows/s peak_rss={peak_mb:,.0f} MB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
