"""The stats rollup over real stores (SQLite and PostgreSQL): every record type
counted once, across batches, restarts and processes."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.clock import FakeClock
from engine.rollup.service import StatsRollup, read_stats
from engine.scheduler.shaping import Shaping
from engine.stats.report import Dimension, StatsQuery
from engine.store import Store
from tests.integration.stats_support import RECORDS, T0, TOTALS, send_traffic, until_counted

PROVIDER_OF = Shaping.load().provider_of


def rollup(store: Store, clock: FakeClock, owner: str = "node:1", batch: int = 3) -> StatsRollup:
    return StatsRollup(store, PROVIDER_OF, clock, owner, batch=batch)


async def rows(store: Store, tenant_id: int, *group_by: Dimension) -> list[dict[str, Any]]:
    return [r.to_json() for r in await read_stats(store, tenant_id, StatsQuery(group_by))]


async def test_every_record_type_is_counted_into_its_metric(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    other = await store.create_tenant("other", T0)
    await send_traffic(store, acme)
    await send_traffic(store, other, campaign="autumn")
    clock = FakeClock(T0)
    await until_counted(rollup(store, clock), 2 * RECORDS)

    assert await rows(store, acme.id) == [TOTALS]
    by_campaign = await rows(store, other.id, Dimension.CAMPAIGN, Dimension.DOMAIN)
    assert by_campaign == [{"campaign": "autumn", "domain": "other.example", **TOTALS}]


async def test_records_are_grouped_by_provider_and_hour(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    await send_traffic(store, acme)
    await until_counted(rollup(store, FakeClock(T0)), RECORDS)

    by_provider = {r["provider"]: r for r in await rows(store, acme.id, Dimension.PROVIDER)}
    assert sorted(by_provider) == ["google", "other"]
    google, other = by_provider["google"], by_provider["other"]
    # Receptions come before any delivery taught the domain's provider.
    assert (other["sent"], other["expired"], other["delivered"]) == (5, 1, 0)
    assert (google["delivered"], google["bounced"], google["opens"]["total"]) == (3, 2, 3)
    assert google["bounced_by_category"] == {"InvalidRecipient": 1, "QuotaIssues": 1}

    by_hour = await rows(store, acme.id, Dimension.HOUR)
    assert [(r["hour"], r["sent"], r["bounced"]) for r in by_hour] == [
        ("2027-01-15T08:00:00Z", 5, 1),
        ("2027-01-15T09:00:00Z", 0, 1),
    ]


async def test_a_restart_between_batches_counts_nothing_twice_or_not_at_all(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    await send_traffic(store, acme)
    clock = FakeClock(T0)
    crashed = rollup(store, clock, owner="node:1", batch=4)
    await until_counted(crashed, 8)
    assert crashed.applied < RECORDS  # two batches at most (fewer records when some wait)
    # node:1 dies holding the lease: node:2 waits for it to run out, then goes on.
    successor = rollup(store, clock, owner="node:2", batch=4)
    assert await successor.step() == 0
    clock.advance(31)
    await until_counted(successor, RECORDS - crashed.applied)
    assert await successor.step() == 0
    assert await rows(store, acme.id) == [TOTALS]
    assert await crashed.step() == 0  # the old owner, back, finds nothing left to count


async def test_two_processes_never_count_a_record_twice(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    await send_traffic(store, acme)
    clock = FakeClock(T0)
    first, second = rollup(store, clock, "node:1", 2), rollup(store, clock, "node:2", 2)
    async with asyncio.timeout(10):
        while first.applied + second.applied < RECORDS:
            for process in (first, second):
                await process.step()
                clock.advance(31)  # the lease runs out: the other process takes it
    assert first.applied > 0 and second.applied > 0
    assert await first.step() == await second.step() == 0
    assert first.applied + second.applied == RECORDS
    assert await rows(store, acme.id) == [TOTALS]
