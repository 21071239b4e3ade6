"""The lane scheduler on a real store, a real DNS server and the in-process limiter,
with a clock the test moves: what it claims, for which lane, and what it holds back.

The delivery service is left out: each test plays its part (asks for batches,
reports how each dispatch ended), so every decision can be seen one by one.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from config.loader import parse_settings
from engine.clock import FakeClock
from engine.limits.local import LocalLimiter
from engine.model import (
    MessageState,
    QueuedMessage,
    Settlement,
    Submission,
    Suspension,
    SuspensionScope,
    Tenant,
    TenantOverrides,
)
from engine.records.record import Record, RecordType
from engine.runtime.app import lane_scheduler
from engine.scheduler import Dispatch
from engine.scheduler.lanes import DELAY_GRACE_SECONDS, LaneScheduler
from engine.scheduler.shaping import Shaping
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.scheduler.warmup import SECONDS_PER_DAY, utc_day
from engine.smtp.reply import Reply, Stage
from engine.store.sqlite import SqliteStore
from smtp_out.dns import MxResolver
from tests.harness.dns_server import DnsServer, Zones

DELIVERED = Reply(250, "2.0.0", "ok", Stage.DOT)
START = 1_800_000_000.0 - (1_800_000_000.0 % SECONDS_PER_DAY) + 3600.0
"""01:00 UTC on some day: a whole day ahead for the warmup tests."""


@dataclass
class World:
    store: SqliteStore
    clock: FakeClock
    scheduler: LaneScheduler
    tenants: dict[str, Tenant]
    counter: int = 0
    held: list[Dispatch] = field(default_factory=list)

    async def queue(
        self,
        tenant: str,
        domain: str,
        count: int,
        *,
        priority: int = 5,
        campaign: str = "",
        due_in: float = 0.0,
    ) -> list[str]:
        """Queue ``count`` messages for ``domain`` in one submission, due ``due_in``
        seconds from now; their ids."""
        self.counter += 1
        sid = f"s{self.counter}"
        now = self.clock.now()
        queue = f"{campaign}:{tenant}@{domain}" if campaign else f"{tenant}@{domain}"
        messages = tuple(
            QueuedMessage(
                id=f"{sid}-{n}",
                submission_id=sid,
                tenant_id=self.tenants[tenant].id,
                queue=queue,
                campaign=campaign,
                sender=f"news@{tenant}.test",
                recipient=f"r{n}@{domain}",
                domain=domain,
                state=MessageState.QUEUED,
                due_at=now + due_in,
                created_at=now,
                priority=priority,
            )
            for n in range(1, count + 1)
        )
        submission = Submission(
            sid, self.tenants[tenant].id, b"Subject: x\r\n\r\nx\r\n", messages, now
        )
        await self.store.accept([submission], [])
        return [m.id for m in messages]

    async def pick(self, limit: int = 1000) -> list[Dispatch]:
        batch = await self.scheduler.next_batch(
            owner="n1:1", now=self.clock.now(), lease_seconds=300, limit=limit
        )
        self.held.extend(batch)
        return list(batch)

    async def finish(self, dispatches: Sequence[Dispatch], reply: Reply = DELIVERED) -> list[Any]:
        """Report each dispatch delivered (or answered ``reply``) and settle it so."""
        kind = "delivered" if reply.code < 400 else "transient" if reply.code < 500 else "permanent"
        records = []
        now = self.clock.now()
        state = {"delivered": MessageState.DELIVERED, "permanent": MessageState.BOUNCED}
        for dispatch in dispatches:
            self.held.remove(dispatch)
            message = dispatch.message
            assert message.lease_token is not None
            settlement = Settlement(
                message.id,
                message.lease_token,
                state.get(kind, MessageState.QUEUED),
                message.attempts + 1,
                now + 600,
            )
            record = Record(RecordType.DELIVERY, now, message.tenant_id, message.id)
            assert await self.store.settle([(settlement, record)]) == {message.id}
            records += await self.scheduler.finished(dispatch, now, kind, reply)
        return records


@pytest.fixture
async def dns() -> AsyncIterator[tuple[str, int]]:
    zones = Zones()
    for n in range(1, 4):
        zones.add_mx(f"site{n}.test", [(10, f"mx.site{n}.test")])
        zones.add_a(f"mx.site{n}.test", [f"127.0.0.{n + 1}"])
    zones.add_mx("gmail.test", [(5, "aspmx.l.google.com")])
    zones.add_a("aspmx.l.google.com", ["127.0.0.9"])
    zones.add_mx("hotmail.test", [(5, "hotmail-test.mail.protection.outlook.com")])
    zones.add_a("hotmail-test.mail.protection.outlook.com", ["127.0.0.8"])
    server = DnsServer(zones)
    address = await server.start()
    try:
        yield address
    finally:
        await server.stop()


async def make_world(
    tmp_path: Path,
    dns: tuple[str, int],
    config: dict[str, Any],
    shaping: dict[str, Any] | None = None,
    tenant_settings: Callable[[Settings], TenantSettingsBook] | None = None,
) -> World:
    clock = FakeClock(START)
    store = SqliteStore(str(tmp_path / "penguin.db"))
    await store.migrate()
    tenants = {}
    for name in ("acme", "beta"):
        tenants[name] = await store.get_tenant(name) or await store.create_tenant(name, START)
    settings: Settings = parse_settings(
        {
            "scheduler": {"refresh_seconds": 0.001, "changes_poll_seconds": 0.001},
            **config,
        }
    )
    scheduler = lane_scheduler(
        store=store,
        limiter=LocalLimiter(clock),
        settings=settings,
        resolver=MxResolver([dns], 2.0, clock, random.Random(1)),
        shaping=Shaping.parse(("test-shaping.toml", shaping or {})),
        nodeid="n1",
        tenant_settings=tenant_settings(settings) if tenant_settings else None,
    )
    return World(store, clock, scheduler, tenants)


@pytest.fixture
async def world(tmp_path: Path, dns: tuple[str, int]) -> AsyncIterator[World]:
    built = await make_world(tmp_path, dns, {})
    yield built
    await built.store.close()


async def test_a_transactional_message_jumps_the_bulk_backlog_of_its_queue(world: World) -> None:
    await world.queue("acme", "site1.test", 2000, priority=0)
    [urgent] = await world.queue("acme", "site1.test", 1, priority=9)
    batch = await world.pick(limit=10)
    assert batch[0].message.id == urgent
    assert len(batch) == 10


async def test_a_full_lane_parks_its_queue_and_a_freed_slot_brings_it_back(world: World) -> None:
    await world.queue("acme", "site1.test", 100)
    room = 10 * 4  # connection_limit x ready_per_connection
    first = await world.pick()
    assert len(first) == room
    assert await world.pick() == []
    await world.finish(first[:3])
    again = await world.pick()
    assert len(again) == 3


async def test_a_throttled_site_never_holds_back_the_other_sites(
    tmp_path: Path, dns: tuple[str, int]
) -> None:
    shaping = {"site": {"mx.site1.test": {"max_message_rate": "1/min,max_burst=2"}}}
    world = await make_world(tmp_path, dns, {}, shaping)
    await world.queue("acme", "site1.test", 5000)
    await world.queue("acme", "site2.test", 30)
    await world.queue("beta", "site3.test", 30)
    claimed: Counter[str] = Counter()
    for _ in range(5):
        batch = await world.pick(limit=100)
        claimed.update(d.message.domain for d in batch)
        await world.finish(batch)
    assert claimed == {"site1.test": 2, "site2.test": 30, "site3.test": 30}
    world.clock.advance(60)
    batch = await world.pick()
    assert [d.message.domain for d in batch] == ["site1.test"]
    await world.store.close()


async def test_queues_with_only_deferred_mail_leave_a_throttled_lane_until_their_mail_is_due(
    tmp_path: Path, dns: tuple[str, int]
) -> None:
    shaping = {"site": {"mx.site1.test": {"max_message_rate": "1/min"}}}
    world = await make_world(tmp_path, dns, {}, shaping)
    for tenant in ("acme", "beta"):
        await world.queue(tenant, "site1.test", 3, due_in=3600)
    assert await world.pick() == []
    assert world.scheduler.next_wakeup() == pytest.approx(world.clock.now() + 3600)
    world.clock.advance(3600)
    assert len(await world.pick()) == 1
    await world.store.close()


async def test_sources_take_weighted_turns_and_campaigns_use_their_own_pool(
    tmp_path: Path, dns: tuple[str, int]
) -> None:
    config = {
        "sources": {
            "a": {"address": "127.0.0.21", "weight": 3},
            "b": {"address": "127.0.0.22"},
            "c": {"address": "127.0.0.23"},
        },
        "pools": {"p1": {"sources": ["a", "b"]}, "p2": {"sources": ["c"]}},
        "tenants": {"acme": {"pool": "p1"}},
        "campaigns": {"acme:promo": {"pool": "p2"}},
    }
    world = await make_world(tmp_path, dns, config)
    await world.queue("acme", "site1.test", 40)
    await world.queue("acme", "site2.test", 10, campaign="promo")
    batch = await world.pick(limit=100)
    by_queue: dict[str, Counter[str]] = {}
    for dispatch in batch:
        by_queue.setdefault(dispatch.message.queue, Counter())[dispatch.source.name] += 1
    assert by_queue["acme@site1.test"] == {"a": 30, "b": 10}
    assert by_queue["promo:acme@site2.test"] == {"c": 10}
    assert {d.pool for d in batch if d.message.campaign == "promo"} == {"p2"}
    await world.store.close()


async def test_a_pool_set_in_the_store_routes_the_tenants_mail_once_loaded(
    tmp_path: Path, dns: tuple[str, int]
) -> None:
    config = {
        "sources": {"a": {"address": "127.0.0.21"}, "c": {"address": "127.0.0.23"}},
        "pools": {"p1": {"sources": ["a"]}, "p2": {"sources": ["c"]}},
        "tenants": {"acme": {"pool": "p1"}},
    }
    books: list[TenantSettingsBook] = []

    def book_of(settings: Settings) -> TenantSettingsBook:
        books.append(TenantSettingsBook(settings))
        return books[-1]

    world = await make_world(tmp_path, dns, config, tenant_settings=book_of)
    await world.queue("acme", "site1.test", 2)
    assert {d.source.name for d in await world.pick()} == {"a"}
    acme = world.tenants["acme"]
    await world.store.put_tenant_overrides(TenantOverrides(acme.id, pool="p2", updated_at=START))
    await books[0].refresh(world.store)
    await world.queue("acme", "site2.test", 2)
    batch = await world.pick()
    assert {(d.source.name, d.pool) for d in batch} == {("c", "p2")}
    await world.store.close()


async def test_tenants_sharing_a_lane_get_fair_shares(world: World) -> None:
    await world.queue("acme", "site1.test", 3000)
    await world.queue("beta", "site1.test", 3000)
    delivered: Counter[str] = Counter()
    for _ in range(60):
        batch = await world.pick(limit=7)
        delivered.update(d.message.queue for d in batch)
        await world.finish(batch)
        world.clock.advance(0.1)
    acme, beta = delivered["acme@site1.test"], delivered["beta@site1.test"]
    assert acme + beta >= 400
    assert abs(acme - beta) <= 0.1 * max(acme, beta)


async def test_a_suspended_tenant_is_not_claimed_and_its_mail_is_delayed_without_an_attempt(
    world: World,
) -> None:
    ids = await world.queue("acme", "site1.test", 5)
    await world.queue("beta", "site1.test", 5)
    now = world.clock.now()
    await world.store.add_suspension(
        _suspension(SuspensionScope.TENANT, "acme", now, now + 7200), []
    )
    batch = await world.pick()
    assert {d.message.queue for d in batch} == {"beta@site1.test"}
    await world.finish(batch)
    world.clock.advance(DELAY_GRACE_SECONDS)
    assert await world.pick() == []
    for message_id in ids:
        message = await world.store.get_message(message_id)
        assert message is not None and message.state is MessageState.QUEUED
        assert message.attempts == 0 and message.due_at == pytest.approx(now + 7200)
        records = await world.store.list_records(message_id)
        assert [r["type"] for r in records] == ["Delayed"]
        assert records[0]["num_attempts"] == 0
        assert "suspension" in records[0]["response"]["content"]
    world.clock.advance(7200)
    assert len(await world.pick()) == 5


async def test_warmup_caps_each_day_and_advances_only_on_sending_days(
    tmp_path: Path, dns: tuple[str, int]
) -> None:
    plan = [3, 6, 12, 24]
    config = {
        "sources": {"cold": {"address": "127.0.0.31", "warmup": "tiny"}},
        "pools": {"default": {"sources": ["cold"]}},
        "warmup_plans": {"tiny": {"daily": plan}},
    }
    world = await make_world(tmp_path, dns, config)
    await world.queue("acme", "gmail.test", 200)
    await world.queue("acme", "site1.test", 200)
    sent: dict[int, Counter[str]] = {}
    for day in range(7):
        if day == 2:  # a day without sending: the ramp must not move
            world.clock.advance(SECONDS_PER_DAY)
            continue
        today: Counter[str] = Counter()
        for _ in range(20):
            batch = await world.pick(limit=50)
            today.update(d.shaping.provider or "other" for d in batch)
            await world.finish(batch)
        sent[utc_day(world.clock.now())] = today
        world.clock.advance(SECONDS_PER_DAY)
    days = [counts for _, counts in sorted(sent.items())]
    assert len(days) == 6
    assert [(c["google"], c["other"]) for c in days[:4]] == [(3, 3), (6, 6), (12, 12), (24, 24)]
    assert all(c["google"] > 24 for c in days[4:]), "warm after the plan: no cap"
    await world.store.close()


async def test_mail_over_the_warmup_cap_spills_to_a_warm_source(
    tmp_path: Path, dns: tuple[str, int]
) -> None:
    config = {
        "sources": {
            "cold": {"address": "127.0.0.31", "warmup": "tiny"},
            "warm": {"address": "127.0.0.32"},
        },
        "pools": {"default": {"sources": ["cold", "warm"]}},
        "warmup_plans": {"tiny": {"daily": [4]}},
    }
    world = await make_world(tmp_path, dns, config)
    await world.queue("acme", "site1.test", 60)
    sources: Counter[str] = Counter()
    for _ in range(5):
        batch = await world.pick(limit=30)
        sources.update(d.source.name for d in batch)
        await world.finish(batch)
    assert sources == {"cold": 4, "warm": 56}
    await world.store.close()


async def test_with_every_source_capped_the_queue_waits_for_the_next_day(
    tmp_path: Path, dns: tuple[str, int]
) -> None:
    config = {
        "sources": {"cold": {"address": "127.0.0.31", "warmup": "tiny"}},
        "pools": {"default": {"sources": ["cold"]}},
        "warmup_plans": {"tiny": {"daily": [2, 4]}},
    }
    world = await make_world(tmp_path, dns, config)
    ids = await world.queue("acme", "site1.test", 10)
    batch = await world.pick()
    assert len(batch) == 2
    await world.finish(batch)
    assert await world.pick() == []
    world.clock.advance(DELAY_GRACE_SECONDS)
    assert await world.pick() == []
    waiting = [m for m in [await world.store.get_message(i) for i in ids] if m and m.attempts == 0]
    held = [m for m in waiting if m.state is MessageState.QUEUED]
    assert len(held) == 8
    tomorrow = (utc_day(world.clock.now()) + 1) * SECONDS_PER_DAY
    assert all(m.due_at == pytest.approx(tomorrow) for m in held)
    records = await world.store.list_records(held[0].id)
    assert records[-1]["type"] == "Delayed" and "warmup cap" in records[-1]["response"]["content"]
    world.clock.advance(tomorrow - world.clock.now())
    assert len(await world.pick()) == 4
    await world.store.close()


async def test_a_sibling_that_reserved_the_cap_keeps_its_share_of_a_capped_queue(
    tmp_path: Path, dns: tuple[str, int]
) -> None:
    config = {
        "sources": {"cold": {"address": "127.0.0.31", "warmup": "tiny"}},
        "pools": {"default": {"sources": ["cold"]}},
        "warmup_plans": {"tiny": {"daily": [2, 4]}},
    }
    world = await make_world(tmp_path, dns, config)
    queue = "acme@site1.test"
    ids = await world.queue("acme", "site1.test", 10)
    now = world.clock.now()
    # A sibling process counted today's 2 and has not claimed them yet.
    assert await world.scheduler.ledger.take("cold", "", 2, now) == 2
    assert await world.pick() == []
    assert [m.due_at for m in [await world.store.get_message(i) for i in ids] if m] == [now] * 10
    sibling = (await world.store.claim_queues([(queue, 2)], "n2:1", now, 300))[queue].messages
    world.clock.advance(DELAY_GRACE_SECONDS)
    assert await world.pick() == []
    messages = [m for m in [await world.store.get_message(i) for i in ids] if m]
    leased = [m for m in messages if m.state is MessageState.LEASED]
    assert [m.id for m in leased] == [m.id for m in sibling]
    assert all(m.due_at == now for m in leased), "the sibling's share is not delayed"
    tomorrow = (utc_day(now) + 1) * SECONDS_PER_DAY
    delayed = [m for m in messages if m.state is MessageState.QUEUED]
    assert len(delayed) == 8 and all(m.due_at == pytest.approx(tomorrow) for m in delayed)
    await world.store.close()


async def test_a_rate_reply_slows_the_source_for_that_provider(world: World) -> None:
    await world.queue("acme", "gmail.test", 500)
    first = await world.pick(limit=5)
    assert {d.shaping.provider for d in first} == {"google"}
    normal = first[0].shaping
    await world.finish(
        first[:1], Reply(421, "4.7.28", "Our system has detected an unusual rate", Stage.RCPT)
    )
    await world.finish(first[1:])
    later = await world.pick(limit=5)
    assert later, "a slowed lane still sends"
    slowed = later[0].shaping
    assert slowed.connection_limit < normal.connection_limit
    assert normal.max_message_rate is not None and slowed.max_message_rate is not None
    assert slowed.max_message_rate.per_second < normal.max_message_rate.per_second


async def test_a_network_block_suspends_the_source_for_that_provider(world: World) -> None:
    await world.queue("acme", "hotmail.test", 20)
    await world.queue("acme", "site1.test", 5)
    batch = await world.pick(limit=3)
    hotmail = [d for d in batch if d.message.domain == "hotmail.test"]
    assert hotmail
    block = Reply(
        550,
        "5.7.1",
        "Unfortunately, messages from [127.0.0.1] weren't sent. Please contact your "
        "Internet service provider since part of their network is on our block list (S3150).",
        Stage.RCPT,
    )
    records = await world.finish(hotmail[:1], block)
    assert [r.type.value for r in records] == ["AdminAction"]
    assert "S3150" in records[0].response.text or "block" in records[0].response.text
    await world.finish(hotmail[1:] + [d for d in batch if d not in hotmail])
    later = await world.pick()
    assert {d.message.domain for d in later} == {"site1.test"}
    suspensions = await world.store.active_suspensions(world.clock.now())
    assert [(s.scope, s.target) for s in suspensions] == [
        (SuspensionScope.SOURCE_PROVIDER, "default|microsoft")
    ]


def _suspension(scope: SuspensionScope, target: str, now: float, until: float) -> Suspension:
    return Suspension(scope, target, "maintenance", now, until, "admin")


async def test_warmup_counts_survive_a_restart(tmp_path: Path, dns: tuple[str, int]) -> None:
    """A new scheduler on the same store (a restarted engine, its in-process counters
    gone) still knows what the source sent today."""
    config = {
        "sources": {"cold": {"address": "127.0.0.31", "warmup": "tiny"}},
        "pools": {"default": {"sources": ["cold"]}},
        "warmup_plans": {"tiny": {"daily": [5]}},
    }
    world = await make_world(tmp_path, dns, config)
    await world.queue("acme", "site1.test", 20)
    first = await world.pick()
    await world.finish(first[:3])
    await world.scheduler.ledger.flush()
    await world.finish(first[3:])
    await world.scheduler.ledger.flush()
    assert len(first) == 5
    await world.store.close()

    again = await make_world(tmp_path, dns, config)
    again.clock.advance(60)  # a minute later, the same day
    assert await again.pick() == []
    report = await again.scheduler.report(again.clock.now(), {})
    [cold] = [row for row in report["sources"] if row["provider"] == ""]
    assert cold == {"source": "cold", "provider": "", "sent": 5}
    await again.store.close()


async def test_the_report_shows_each_lane_in_use(world: World) -> None:
    await world.queue("acme", "site1.test", 3)
    batch = await world.pick()
    report = await world.scheduler.report(world.clock.now(), {("default", "mx.site1.test"): 1})
    [lane] = report["lanes"]
    assert (lane["source"], lane["site"], lane["in_flight"], lane["connections"]) == (
        "default",
        "mx.site1.test",
        3,
        1,
    )
    assert lane["queues"] == ["acme@site1.test"] and lane["backoff_level"] == 0
    await world.finish(batch)
