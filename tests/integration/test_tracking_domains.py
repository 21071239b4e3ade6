"""Tracking domains on SQLite and PostgreSQL: provisioning refuses what it must, and
the snapshot delivery and the edge read follows the store, refreshed by its service."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from config import Settings
from config.loader import parse_settings
from engine.clock import FakeClock
from engine.model import TrackingPolicy
from engine.provisioning import (
    AlreadyExists,
    DkimKeySpec,
    Invalid,
    Provisioning,
    TrackingDomains,
    TrackingRefresh,
    Unknown,
)
from engine.store import Store, open_store

NOW = 1_800_000_000.0
DEADLINE_SECONDS = 10.0


def settings_for(tmp_path: Path, tables: dict[str, object] | None = None) -> Settings:
    raw = {"engine": {"data_dir": str(tmp_path / "var"), "hostname": "mta.penguin.test"}}
    return parse_settings(raw | (tables or {}))


@pytest.fixture
def provisioning(store: Store, tmp_path: Path) -> Provisioning:
    return Provisioning(store, settings_for(tmp_path), nodeid="n1", clock=FakeClock(NOW))


async def test_a_tracking_domain_is_registered_with_its_cname(store: Store, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, {"tracking": {"cname_target": "Edge.Penguin.Test"}})
    p = Provisioning(store, settings, nodeid="n1", clock=FakeClock(NOW))
    acme = await p.create_tenant("acme")
    added = await p.add_tracking_domain("acme", "Click.Acme.Test.")
    assert (added.domain.tenant_id, added.domain.name) == (acme.id, "click.acme.test")
    assert (added.domain.is_default, added.domain.created_at) == (False, NOW)
    [cname] = added.dns_records
    assert (cname.name, cname.type, cname.value) == (
        "click.acme.test",
        "CNAME",
        "edge.penguin.test.",
    )
    assert await p.tracking_domain("CLICK.acme.test") == added
    assert await p.list_tracking_domains("acme") == [added.domain]


async def test_a_tenant_has_one_default_at_a_time(provisioning: Provisioning) -> None:
    p = provisioning
    await p.create_tenant("acme")
    first = (await p.add_tracking_domain("acme", "a.acme.test", default=True)).domain
    second = (await p.add_tracking_domain("acme", "b.acme.test")).domain
    assert [d.is_default for d in await p.list_tracking_domains("acme")] == [True, False]
    chosen = await p.set_default_tracking_domain("acme", "B.acme.test")
    assert chosen == dataclasses.replace(second, is_default=True)
    assert [d.is_default for d in await p.list_tracking_domains("acme")] == [False, True]
    await p.add_tracking_domain("acme", "c.acme.test", default=True)
    listed = await p.list_tracking_domains("acme")
    assert [(d.name, d.is_default) for d in listed] == [
        (first.name, False),
        (second.name, False),
        ("c.acme.test", True),
    ]
    removed = await p.remove_tracking_domain("c.acme.test")
    assert removed.is_default
    assert not any(d.is_default for d in await p.list_tracking_domains("acme"))
    with pytest.raises(Unknown, match=r"no tracking domain .c\.acme\.test."):
        await p.remove_tracking_domain("c.acme.test")


async def test_a_domain_of_one_tenant_cannot_serve_another(provisioning: Provisioning) -> None:
    p = provisioning
    await p.create_tenant("acme")
    await p.create_tenant("beta")
    await p.add_domain("beta", "beta.test", DkimKeySpec("ed25519"))
    await p.add_tracking_domain("beta", "go.beta.test")
    await p.add_tracking_domain("acme", "click.acme.test")

    with pytest.raises(AlreadyExists, match="registered for another tenant"):
        await p.add_tracking_domain("acme", "GO.beta.test")
    with pytest.raises(AlreadyExists, match="registered for this tenant"):
        await p.add_tracking_domain("acme", "click.acme.test")
    for under_beta in ("beta.test", "t.beta.test", "x.y.beta.test"):
        with pytest.raises(Invalid, match="a sending domain of another tenant"):
            await p.add_tracking_domain("acme", under_beta)
    with pytest.raises(Invalid, match="not a tracking domain of tenant 'acme'"):
        await p.set_default_tracking_domain("acme", "go.beta.test")
    assert [d.name for d in await p.list_tracking_domains("acme")] == ["click.acme.test"]
    assert not any(d.is_default for d in await p.list_tracking_domains("beta"))
    assert (await p.add_tracking_domain("beta", "t.beta.test")).domain.name == "t.beta.test"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("click acme.test", "not a host name"),
        ("-click.acme.test", "not a host name"),
        ("click_1.acme.test", "not a host name"),
        ("localhost", "not a host name with a domain"),
        ("", "not a host name"),
        ("198.51.100.7", "an IP address"),
        ("mta.penguin.test", "the CNAME target"),
    ],
)
async def test_a_name_that_cannot_be_a_tracking_domain_is_refused(
    provisioning: Provisioning, name: str, problem: str
) -> None:
    await provisioning.create_tenant("acme")
    with pytest.raises(Invalid, match=problem):
        await provisioning.add_tracking_domain("acme", name)
    assert await provisioning.list_tracking_domains("acme") == []


async def test_tracking_domains_go_with_their_tenant(provisioning: Provisioning) -> None:
    p = provisioning
    await p.create_tenant("acme")
    await p.add_tracking_domain("acme", "click.acme.test", default=True)
    await p.remove_tenant("acme")
    with pytest.raises(Unknown):
        await p.tracking_domain("click.acme.test")
    await p.create_tenant("beta")
    assert (await p.add_tracking_domain("beta", "click.acme.test")).domain.name == "click.acme.test"


async def test_the_snapshot_follows_the_store(
    store: Store, provisioning: Provisioning, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path,
        {
            "tenants": {"acme": {"track_opens": False}},
            "campaigns": {"acme:spring": {"tracking_domain": "spring.acme.test"}},
        },
    )
    p = provisioning
    acme = await p.create_tenant("acme")
    beta = await p.create_tenant("beta")
    await p.add_tracking_domain("acme", "click.acme.test", default=True)
    await p.add_tracking_domain("acme", "spring.acme.test")
    await p.add_tracking_domain("beta", "go.beta.test")
    domains = TrackingDomains(settings)
    await domains.refresh(store)

    unopened = TrackingPolicy("click.acme.test", opens=False)
    assert domains.policy_for(acme.id, "") == unopened
    assert domains.policy_for(acme.id, "spring") == TrackingPolicy("spring.acme.test", opens=False)
    assert domains.policy_for(beta.id, "") is None, "beta has no default"
    assert (domains.tenant_of("go.beta.test"), domains.tenant_of("Click.Acme.Test")) == (
        beta.id,
        acme.id,
    )

    await p.set_default_tracking_domain("beta", "go.beta.test")
    await p.remove_tracking_domain("spring.acme.test")
    assert domains.policy_for(beta.id, "") is None, "unchanged until refreshed"
    await domains.refresh(store)
    assert domains.policy_for(beta.id, "") == TrackingPolicy("go.beta.test")
    assert domains.policy_for(acme.id, "spring") is None, "its domain is gone: no tracking"
    assert domains.tenant_of("spring.acme.test") is None


async def wait_until(refresh: TrackingRefresh, done: Callable[[], object]) -> None:
    """Wait for refreshes until ``done()`` holds, for ``DEADLINE_SECONDS`` at most."""
    async with asyncio.timeout(DEADLINE_SECONDS):
        while not done():
            await refresh.next_refresh()


async def test_the_refresh_service_loads_at_start_then_periodically_and_on_reload(
    store: Store, provisioning: Provisioning, tmp_path: Path
) -> None:
    p = provisioning
    acme = await p.create_tenant("acme")
    await p.add_tracking_domain("acme", "click.acme.test", default=True)
    clock = FakeClock(NOW)
    periodic = TrackingRefresh(TrackingDomains(settings_for(tmp_path)), store, 0.1, clock)
    on_reload = TrackingRefresh(TrackingDomains(settings_for(tmp_path)), store, 3600, clock)
    for service in (periodic, on_reload):
        assert await service.start() == []
        assert service.domains.tenant_of("click.acme.test") == acme.id, "loaded by start"
        assert service.health().ok
    runs = [asyncio.create_task(s.run()) for s in (periodic, on_reload)]
    try:
        await p.add_tracking_domain("acme", "links.acme.test")
        await wait_until(periodic, lambda: periodic.domains.tenant_of("links.acme.test"))
        assert on_reload.domains.tenant_of("links.acme.test") is None, "an hour to its next"
        on_reload.reload()
        await wait_until(on_reload, lambda: on_reload.domains.tenant_of("links.acme.test"))
    finally:
        for service in (periodic, on_reload):
            await service.stop(1.0)
        async with asyncio.timeout(DEADLINE_SECONDS):
            await asyncio.gather(*runs)


async def test_a_failed_refresh_keeps_the_snapshot_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(f"sqlite:{tmp_path / 'penguin.db'}")
    await store.migrate()
    p = Provisioning(store, settings_for(tmp_path), nodeid="n1", clock=FakeClock(NOW))
    acme = await p.create_tenant("acme")
    await p.add_tracking_domain("acme", "click.acme.test", default=True)
    clock = FakeClock(NOW)
    refresh = TrackingRefresh(TrackingDomains(settings_for(tmp_path)), store, 3600, clock)
    await refresh.start()
    with contextlib.closing(sqlite3.connect(tmp_path / "penguin.db")) as other:
        other.execute("DROP TABLE tracking_domains")  # later reads fail with StoreError
    clock.advance(30)
    caplog.set_level(logging.ERROR, "engine.provisioning.tracking_refresh")
    run = asyncio.create_task(refresh.run())
    try:
        refresh.reload()
        await wait_until(refresh, lambda: not refresh.health().ok)
        assert refresh.health().detail.startswith("tracking domains 30s old: ")
        assert refresh.domains.tenant_of("click.acme.test") == acme.id
        assert refresh.domains.policy_for(acme.id, "") == TrackingPolicy("click.acme.test")
        assert "the last ones stay in use" in caplog.text
    finally:
        await refresh.stop(1.0)
        async with asyncio.timeout(DEADLINE_SECONDS):
            await run
        await store.close()
