"""Tenant settings set in the store reach a running engine, and its quotas hold at SMTP
submission: real engine (role submission) on SQLite, real SMTP over STARTTLS, the
in-process limiter, the engine's clock a fake one so the day can turn; and two
processes' quotas on one Redis."""

from __future__ import annotations

import asyncio
import json
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from config.loader import parse_settings
from config.schema import RedisSettings
from engine.clock import FakeClock
from engine.limits import open_limiter
from engine.model import Tenant, TenantOverrides
from engine.provisioning import Invalid, NewSmtpUser, Provisioning
from engine.runtime.app import Engine, Role
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.scheduler.warmup import SECONDS_PER_DAY
from engine.store import Store, open_store
from engine.submission.quota import TenantQuota
from tests.harness.conditions import wait_for
from tests.harness.tlsutil import unverified_client_context

DAY_START = 1_800_057_600.0  # 00:00 UTC
DOMAIN = "news.acme.test"
SENDER = f"news@{DOMAIN}"


@dataclass
class World:
    engine: Engine
    store: Store
    provisioning: Provisioning
    user: NewSmtpUser
    clock: FakeClock

    @property
    def address(self) -> tuple[str, int]:
        [address] = self.engine.addresses["submission"]
        return address[0], address[1]

    def records(self) -> list[dict[str, Any]]:
        path = Path(self.engine.settings.record_log_path())
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = parse_settings(
        {
            "engine": {"data_dir": str(tmp_path / "var"), "shutdown_grace_seconds": 5},
            "submission": {"listen": ["127.0.0.1:0"]},
            "admin": {"listen": "127.0.0.1:0"},
            "bounce": {"listen": ["127.0.0.1:0"]},
            "tracking": {"listen": "127.0.0.1:0"},
            "dns": {"nameservers": ["127.0.0.1:9"]},
            "sources": {"s1": {"address": "127.0.0.1", "ehlo_hostname": "s1.penguin.test"}},
            "pools": {"default": {"sources": ["s1"]}, "warm": {"sources": ["s1"]}},
            "tenants": {"acme": {"daily_quota": 100}},
            "scheduler": {"refresh_seconds": 0.05},
        }
    )
    clock = FakeClock(DAY_START + 3600)
    store = open_store(settings.database_url())
    await store.migrate()
    provisioning = Provisioning(store, settings, nodeid="t", clock=clock)
    await provisioning.create_tenant("acme")
    await provisioning.add_domain("acme", DOMAIN)
    user = await provisioning.create_smtp_user("acme")
    await provisioning.set_tenant_settings("acme", {"daily_quota": 2})
    engine = Engine(settings, role=Role.SUBMISSION, clock=clock)
    await engine.start()
    try:
        yield World(engine, store, provisioning, user, clock)
    finally:
        await engine.stop()
        await store.close()


def transaction(
    world: World, recipients: list[str], header_from: str = SENDER
) -> tuple[list[tuple[int, str]], str]:
    """One submission: each RCPT's reply, then the queue id ("" when no RCPT passed or
    DATA was refused)."""
    replies: list[tuple[int, str]] = []
    with smtplib.SMTP(*world.address, timeout=30) as client:
        client.starttls(context=unverified_client_context())
        client.login(world.user.username, world.user.password)
        client.mail(SENDER)
        for rcpt in recipients:
            code, text = client.rcpt(rcpt)
            replies.append((code, text.decode()))
        if not any(code == 250 for code, _ in replies):
            return replies, ""
        body = f"From: {header_from}\r\nTo: a@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"
        code, text = client.data(body.encode())
        if code != 250:
            return replies, ""
    return replies, text.decode().rsplit(" ", 1)[-1]


async def test_the_recipient_over_the_daily_quota_is_refused_until_the_next_day(
    world: World,
) -> None:
    replies, queued = await asyncio.to_thread(
        transaction, world, ["a@example.com", "b@example.com", "c@example.com"]
    )
    assert [code for code, _ in replies] == [250, 250, 452]
    assert replies[2][1].startswith("4.5.3 Daily quota of 2 messages reached for tenant acme")
    assert [m.recipient for m in await world.store.list_submission(queued)] == [
        "a@example.com",
        "b@example.com",
    ]

    async def rejected() -> bool:
        return any(r["type"] == "Rejection" for r in world.records())

    await wait_for(rejected, "a Rejection record")
    rejection = [r for r in world.records() if r["type"] == "Rejection"]
    assert rejection[0]["recipient"] == "c@example.com"
    assert "Daily quota of 2 messages" in rejection[0]["response"]["content"]
    details = await world.provisioning.tenant_details("acme")
    assert (details.settings.daily_quota, details.accepted_today) == (2, 2)

    world.clock.advance(SECONDS_PER_DAY)
    replies, _ = await asyncio.to_thread(transaction, world, ["c@example.com"])
    assert [code for code, _ in replies] == [250]


async def test_a_change_in_the_store_is_in_force_within_the_refresh(world: World) -> None:
    await world.provisioning.set_tenant_settings(
        "acme", {"daily_quota": None, "rate_quota": "2/h", "priority": "transactional"}
    )

    async def refused() -> bool:
        recipients = ["a@example.com", "b@example.com", "c@example.com"]
        replies, _ = await asyncio.to_thread(transaction, world, recipients)
        return replies[-1][0] == 452 and "Rate quota 2/h" in replies[-1][1]

    await wait_for(refused, "the rate quota in force")
    world.clock.advance(SECONDS_PER_DAY)
    replies, queued = await asyncio.to_thread(transaction, world, ["d@example.com"])
    assert [code for code, _ in replies] == [250]
    [stored] = await world.store.list_submission(queued)
    assert stored.priority == 9  # transactional, as set in the store


async def test_a_pool_that_is_not_configured_is_refused(world: World) -> None:
    with pytest.raises(Invalid, match="unknown pool 'cold'") as refused:
        await world.provisioning.set_tenant_settings("acme", {"pool": "cold"})
    assert refused.value.field == "pool"
    details = await world.provisioning.set_tenant_settings("acme", {"pool": "warm"})
    assert (details.settings.pool, details.overridden) == ("warm", ["pool", "daily_quota"])
    assert details.settings.daily_quota == 2 and details.to_json()["rate_quota"] == ""


async def test_recipients_of_a_message_refused_at_data_go_back_to_the_quota(world: World) -> None:
    two = ["a@example.com", "b@example.com"]
    replies, queued = await asyncio.to_thread(transaction, world, two, "x@elsewhere.test")
    assert [code for code, _ in replies] == [250, 250] and queued == ""
    replies, queued = await asyncio.to_thread(transaction, world, two)
    assert [code for code, _ in replies] == [250, 250] and queued


async def test_with_redis_every_process_counts_against_one_quota(
    redis_settings: RedisSettings,
) -> None:
    clock = FakeClock(DAY_START)
    book = TenantSettingsBook(Settings())
    acme = Tenant(1, "acme", 0.0)
    book.load([acme], [TenantOverrides(1, daily_quota=3, rate_quota="2/s")])
    limiters = [open_limiter(redis_settings, clock) for _ in range(2)]
    first, second = (TenantQuota(limiter, book) for limiter in limiters)
    try:
        assert (await first.admit(acme, 2, clock.now())).allowed
        rated = await second.admit(acme, 1, clock.now())
        assert not rated.allowed and rated.quota == "rate"  # the burst of 2 is spent
        clock.advance(0.5)
        assert (await second.admit(acme, 1, clock.now())).allowed
        clock.advance(10)
        daily = await first.admit(acme, 1, clock.now())
        assert not daily.allowed and daily.quota == "daily"
        assert await second.used_today(acme, clock.now()) == 3
        clock.advance(SECONDS_PER_DAY)
        assert (await second.admit(acme, 1, clock.now())).allowed
    finally:
        for limiter in limiters:
            await limiter.close()
