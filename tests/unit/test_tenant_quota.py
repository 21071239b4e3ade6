"""Tenants' settings in force (config + store overrides) and their quotas at acceptance,
on a fake clock and the in-process limiter."""

from __future__ import annotations

import pytest

from config.schema import PoolSettings, Settings, SourceSettings, TenantSettings
from engine.clock import FakeClock
from engine.limits.local import LocalLimiter
from engine.model import Tenant, TenantOverrides
from engine.scheduler.routing import pool_of, priority_of
from engine.scheduler.tenant_settings import (
    TenantSettingsBook,
    check_overrides,
    config_quota_problem,
    effective,
)
from engine.scheduler.warmup import SECONDS_PER_DAY
from engine.submission.quota import TenantQuota

DAY_START = 1_800_057_600.0  # 00:00 UTC
ACME = Tenant(1, "acme", 0.0)
BETA = Tenant(2, "beta", 0.0)


def settings(**acme: object) -> Settings:
    return Settings(
        sources={"s1": SourceSettings(address="127.0.0.2", ehlo_hostname="s1.example")},
        pools={
            "default": PoolSettings(sources=["s1"]),
            "warm": PoolSettings(sources=["s1"]),
        },
        tenants={"acme": TenantSettings(**acme)},  # type: ignore[arg-type]
    )


def book_with(config: Settings, *overrides: TenantOverrides) -> TenantSettingsBook:
    book = TenantSettingsBook(config)
    book.load([ACME, BETA], overrides)
    return book


def test_a_stored_value_wins_over_the_config_and_an_unset_one_leaves_it() -> None:
    config = TenantSettings(pool="default", priority="bulk", daily_quota=10)
    stored = TenantOverrides(1, pool="warm", daily_quota=0)
    merged = effective(config, stored)
    assert (merged.pool, merged.priority, merged.daily_quota) == ("warm", "bulk", 0)
    assert effective(config, None) is config


def test_routing_reads_the_book() -> None:
    config = settings(priority="bulk")
    book = book_with(config, TenantOverrides(1, pool="warm"), TenantOverrides(2, priority="9"))
    assert pool_of(book.routing, "acme", "") == "warm"
    assert priority_of(book.routing, "acme", "", None) == 0
    assert priority_of(book.routing, "beta", "", None) == 9
    assert pool_of(book.routing, "gamma", "") == "default"
    book.load([ACME, BETA], [])
    assert pool_of(book.routing, "acme", "") == "default"
    assert book.routing.pools == config.pools


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (TenantOverrides(1, pool="cold"), "pool"),
        (TenantOverrides(1, priority="urgent"), "priority"),
        (TenantOverrides(1, daily_quota=-1), "daily_quota"),
        (TenantOverrides(1, rate_quota="fast"), "rate_quota"),
        (TenantOverrides(1, rate_quota="10/fortnight"), "rate_quota"),
    ],
)
def test_values_that_cannot_be_stored_are_named(overrides: TenantOverrides, field: str) -> None:
    problem = check_overrides(settings(), overrides)
    assert problem is not None and problem[0] == field


def test_good_values_pass() -> None:
    good = TenantOverrides(1, pool="warm", priority="transactional", daily_quota=0, rate_quota="")
    assert check_overrides(settings(), good) is None
    assert check_overrides(settings(), TenantOverrides(1, rate_quota="100/min,max_burst=5")) is None


def test_a_config_rate_quota_that_is_no_spec_is_named() -> None:
    assert config_quota_problem(settings(rate_quota="10 per s")) is not None
    assert config_quota_problem(settings(rate_quota="10/s")) is None
    with pytest.raises(ValueError, match=r"tenants\.acme\.rate_quota"):
        TenantSettingsBook(settings(rate_quota="10 per s"))


def quota(book: TenantSettingsBook, clock: FakeClock) -> TenantQuota:
    return TenantQuota(LocalLimiter(clock), book)


async def test_the_message_after_the_daily_quota_is_refused_until_the_next_day() -> None:
    clock = FakeClock(DAY_START + 3600)
    gate = quota(book_with(settings(), TenantOverrides(1, daily_quota=3)), clock)
    for _ in range(3):
        assert (await gate.admit(ACME, 1, clock.now())).allowed
    refused = await gate.admit(ACME, 1, clock.now())
    assert not refused.allowed and refused.quota == "daily" and refused.limit == "3"
    assert refused.retry_after == pytest.approx(SECONDS_PER_DAY - 3600)
    assert "daily quota of 3 messages" in refused.reason("acme")
    assert await gate.used_today(ACME, clock.now()) == 3
    assert (await gate.admit(BETA, 100, clock.now())).allowed  # no quota for beta
    clock.advance(SECONDS_PER_DAY - 3600)  # 00:00 UTC the next day
    assert (await gate.admit(ACME, 1, clock.now())).allowed
    assert await gate.used_today(ACME, clock.now()) == 1


async def test_a_request_over_what_the_day_has_left_takes_nothing() -> None:
    clock = FakeClock(DAY_START)
    gate = quota(book_with(settings(daily_quota=5)), clock)
    assert (await gate.admit(ACME, 4, clock.now())).allowed
    assert not (await gate.admit(ACME, 2, clock.now())).allowed
    assert await gate.used_today(ACME, clock.now()) == 4
    await gate.give_back(ACME, 4, clock.now())
    assert (await gate.admit(ACME, 5, clock.now())).allowed


async def test_a_burst_over_the_rate_quota_is_refused_then_admitted_at_the_rate() -> None:
    clock = FakeClock(DAY_START)
    overrides = TenantOverrides(1, rate_quota="60/min,max_burst=5", daily_quota=100)
    gate = quota(book_with(settings(), overrides), clock)
    for _ in range(5):
        assert (await gate.admit(ACME, 1, clock.now())).allowed
    refused = await gate.admit(ACME, 1, clock.now())
    assert not refused.allowed and refused.quota == "rate"
    assert refused.retry_after == pytest.approx(1.0)
    assert await gate.used_today(ACME, clock.now()) == 5  # the refused one given back
    clock.advance(1.0)
    assert (await gate.admit(ACME, 1, clock.now())).allowed
    assert not (await gate.admit(ACME, 1, clock.now())).allowed


async def test_a_quota_set_in_the_store_applies_once_the_book_is_loaded() -> None:
    clock = FakeClock(DAY_START)
    book = book_with(settings())
    gate = quota(book, clock)
    assert (await gate.admit(ACME, 10, clock.now())).allowed
    book.load([ACME, BETA], [TenantOverrides(1, daily_quota=2)])
    assert (await gate.admit(ACME, 2, clock.now())).allowed
    assert not (await gate.admit(ACME, 1, clock.now())).allowed
