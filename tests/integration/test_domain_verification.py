"""Verifying a sending domain through real DNS: the provisioning service asks the
harness DNS server through ``smtp_out.dns_lookup.RecordLookup``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config import Settings
from config.schema import EngineSettings, TrackingSettings
from engine.clock import FakeClock
from engine.dkim.keys import DnsRecord
from engine.provisioning import Provisioning, Unknown
from engine.provisioning.verification import CheckStatus, DnsAnswer
from engine.store import open_store
from smtp_out.dns_lookup import RecordLookup
from tests.harness.dns_server import DnsServer, Zones

NOW = 1_800_000_000.0
TIMEOUT = 0.5


@pytest.fixture
async def dns() -> AsyncIterator[tuple[Zones, RecordLookup]]:
    zones = Zones()
    server = DnsServer(zones)
    await server.start()
    try:
        yield zones, RecordLookup([server.address], TIMEOUT)
    finally:
        await server.stop()


@pytest.fixture
async def provisioning(tmp_path: Path) -> AsyncIterator[Provisioning]:
    settings = dataclasses.replace(
        Settings(),
        engine=EngineSettings(data_dir=str(tmp_path), hostname="mta.penguin.test"),
        tracking=TrackingSettings(cname_target="edge.penguin.test"),
    )
    store = open_store(settings.database_url())
    await store.migrate()
    p = Provisioning(store, settings, nodeid="n1", clock=FakeClock(NOW))
    await p.create_tenant("acme")
    await p.create_tenant("beta")
    try:
        yield p
    finally:
        await store.close()


def publish(zones: Zones, records: list[DnsRecord]) -> None:
    for record in records:
        if record.type == "TXT":
            zones.add_txt(record.name, record.value)
        elif record.type == "MX":
            preference, host = record.value.split()
            zones.add_mx(record.name, [(int(preference), host)])
        else:
            zones.add_cname(record.name, record.value)


async def test_a_domain_whose_records_are_published_is_verified(
    provisioning: Provisioning, dns: tuple[Zones, RecordLookup]
) -> None:
    zones, lookup = dns
    added = await provisioning.add_domain("acme", "acme.test")
    tracking = await provisioning.add_tracking_domain("acme", "click.acme.test")
    await provisioning.add_tracking_domain("beta", "click.beta.test")
    publish(zones, [*added.dns_records, *tracking.dns_records])
    zones.add_txt("acme.test", "v=spf1 include:_spf.mail.example -all")
    zones.add_cname("click.beta.test", "elsewhere.example")

    verified = await provisioning.verify_domain("ACME.test.", lookup, tenant="acme")

    assert verified.domain == "acme.test"
    assert [(c.check, c.name, c.status) for c in verified.checks] == [
        ("spf", "acme.test", CheckStatus.PASS),
        ("dkim", f"{added.domain.selector}._domainkey.acme.test", CheckStatus.PASS),
        ("return_path_spf", "bounces.acme.test", CheckStatus.PASS),
        ("return_path_mx", "bounces.acme.test", CheckStatus.PASS),
        ("dmarc", "_dmarc.acme.test", CheckStatus.PASS),
        ("tracking_cname", "click.acme.test", CheckStatus.PASS),
    ]
    assert verified.verified
    dkim = verified.checks[1]
    assert dkim.found == [dkim.expected]  # the 255-octet strings joined back


async def test_each_check_reports_what_it_found_against_what_it_expected(
    provisioning: Provisioning, dns: tuple[Zones, RecordLookup]
) -> None:
    zones, lookup = dns
    added = await provisioning.add_domain("acme", "acme.test")
    await provisioning.add_tracking_domain("acme", "click.acme.test")
    dkim, rp_spf, rp_mx, _dmarc = added.dns_records
    publish(zones, [dkim, rp_spf])
    zones.add_mx("bounces.acme.test", [(10, "mx.elsewhere.example")])
    zones.servfail("acme.test", "TXT")
    zones.add_cname("click.acme.test", "old-edge.example")

    verified = await provisioning.verify_domain("acme.test", lookup)

    by_check = {c.check: c for c in verified.checks}
    assert not verified.verified
    assert by_check["spf"].status is CheckStatus.FAIL
    assert "DNS lookup failed" in by_check["spf"].detail
    assert by_check["dkim"].status is CheckStatus.PASS
    assert by_check["return_path_mx"].status is CheckStatus.FAIL
    assert by_check["return_path_mx"].found == ["10 mx.elsewhere.example."]
    assert by_check["return_path_mx"].expected == rp_mx.value
    assert by_check["dmarc"].status is CheckStatus.MISSING
    assert by_check["dmarc"].found == []
    assert by_check["tracking_cname"].status is CheckStatus.FAIL
    assert by_check["tracking_cname"].found == ["old-edge.example."]
    assert by_check["tracking_cname"].expected == "edge.penguin.test."


async def test_another_tenants_domain_is_unknown(
    provisioning: Provisioning, dns: tuple[Zones, RecordLookup]
) -> None:
    _, lookup = dns
    await provisioning.add_domain("acme", "acme.test")
    with pytest.raises(Unknown, match=re.escape("no sending domain 'acme.test'")):
        await provisioning.verify_domain("acme.test", lookup, tenant="beta")
    with pytest.raises(Unknown, match=re.escape("no sending domain 'nope.test'")):
        await provisioning.verify_domain("nope.test", lookup, tenant="beta")


async def test_an_unanswering_server_is_a_failure_not_an_error(
    dns: tuple[Zones, RecordLookup],
) -> None:
    zones, lookup = dns
    zones.add_txt("acme.test", "v=spf1 -all")
    zones.drop("slow.acme.test")
    assert await lookup.lookup("acme.test", "TXT") == DnsAnswer(("v=spf1 -all",))
    assert await lookup.lookup("nothing.acme.test", "TXT") == DnsAnswer()
    assert await lookup.lookup("acme.test", "MX") == DnsAnswer()
    dropped = await lookup.lookup("slow.acme.test", "TXT")
    assert dropped.values == ()
    assert dropped.failure is not None
