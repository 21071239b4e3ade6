"""MxResolver against the harness DNS server on 127.0.0.1 (RFC 5321 §5.1, RFC 7505)."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator

import dns.asyncresolver
import dns.message
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
from dns.rdtypes.ANY.TXT import TXT

from engine.clock import FakeClock
from smtp_out.dns import (
    BAD_DOMAIN,
    DNS_FAILURE,
    NEGATIVE_TTL_CAP,
    NEGATIVE_TTL_FALLBACK,
    DnsFailure,
    MxHost,
    MxResolver,
    MxRoute,
    Route,
    negative_ttl,
    order_by_preference,
)
from tests.harness.dns_server import DnsServer, ThreadedDnsServer, Zones

TIMEOUT = 0.3


@pytest.fixture
def zones() -> Zones:
    return Zones()


@pytest.fixture
async def server(zones: Zones) -> AsyncIterator[DnsServer]:
    server = DnsServer(zones)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_resolver(server: DnsServer, clock: FakeClock, *, cache_size: int = 1000) -> MxResolver:
    address = server.address
    return MxResolver([address], TIMEOUT, clock, random.Random(7), cache_size=cache_size)


@pytest.fixture
def resolver(server: DnsServer, clock: FakeClock) -> MxResolver:
    return make_resolver(server, clock)


def route(result: Route) -> MxRoute:
    assert isinstance(result, MxRoute), result
    return result


def failure(result: Route) -> DnsFailure:
    assert isinstance(result, DnsFailure), result
    return result


def names(result: Route) -> list[str]:
    return [host.name for host in route(result).hosts]


async def test_mx_hosts_in_preference_order(zones: Zones, resolver: MxResolver) -> None:
    zones.add_mx("example.com", [(20, "mx2.example.com"), (10, "MX1.example.com"), (30, "mx3")])
    zones.add_a("mx1.example.com", ["127.0.0.2"])
    zones.add_a("mx2.example.com", ["127.0.0.3"])
    zones.add_a("mx3", ["127.0.0.4"])

    result = route(await resolver.resolve("Example.com"))

    assert result == MxRoute(
        domain="Example.com",
        site="mx1.example.com,mx2.example.com,mx3",
        hosts=[
            MxHost("mx1.example.com", 10, ["127.0.0.2"]),
            MxHost("mx2.example.com", 20, ["127.0.0.3"]),
            MxHost("mx3", 30, ["127.0.0.4"]),
        ],
    )


async def test_equal_preferences_are_shuffled_on_every_call(
    zones: Zones, server: DnsServer, resolver: MxResolver
) -> None:
    zones.add_mx("example.com", [(10, "a.example.com"), (10, "b.example.com"), (5, "c.example")])
    for host in ("a.example.com", "b.example.com", "c.example"):
        zones.add_a(host, ["127.0.0.2"])

    orders = {tuple(names(await resolver.resolve("example.com"))) for _ in range(20)}

    assert orders == {
        ("c.example", "a.example.com", "b.example.com"),
        ("c.example", "b.example.com", "a.example.com"),
    }
    assert server.query_count == 7


async def test_ipv4_addresses_come_first(zones: Zones, resolver: MxResolver) -> None:
    zones.add_mx("example.com", [(10, "mx.example.com")])
    zones.add_aaaa("mx.example.com", ["::1", "2001:db8::25"])
    zones.add_a("mx.example.com", ["127.0.0.2", "127.0.0.3"])

    host = route(await resolver.resolve("example.com")).hosts[0]

    assert sorted(host.addresses[:2]) == ["127.0.0.2", "127.0.0.3"]
    assert sorted(host.addresses[2:]) == ["2001:db8::25", "::1"]


async def test_hosts_without_addresses_are_dropped(zones: Zones, resolver: MxResolver) -> None:
    zones.add_mx("example.com", [(10, "gone.example.com"), (20, "mx.example.com")])
    zones.add_a("mx.example.com", ["127.0.0.2"])
    zones.servfail("broken.example.com")
    zones.add_mx("other.example", [(10, "broken.example.com"), (20, "mx.example.com")])

    assert names(await resolver.resolve("example.com")) == ["mx.example.com"]
    assert names(await resolver.resolve("other.example")) == ["mx.example.com"]
    assert route(await resolver.resolve("example.com")).site == "gone.example.com,mx.example.com"


async def test_no_mx_host_with_an_address_is_temporary(zones: Zones, resolver: MxResolver) -> None:
    zones.add_mx("example.com", [(10, "gone.example.com"), (20, "v6less.example.com")])
    zones.add_txt("v6less.example.com", "not an address")

    result = failure(await resolver.resolve("example.com"))

    assert (result.permanent, result.classification) == (False, DNS_FAILURE)
    assert "gone.example.com" in result.reason
    assert "v6less.example.com" in result.reason


async def test_implicit_mx_uses_the_domains_own_addresses(
    zones: Zones, resolver: MxResolver
) -> None:
    zones.add_a("example.org", ["127.0.0.9"])
    zones.add_aaaa("example.org", ["::1"])

    assert await resolver.resolve("example.org") == MxRoute(
        domain="example.org",
        site="example.org",
        hosts=[MxHost("example.org", 0, ["127.0.0.9", "::1"])],
    )


async def test_implicit_mx_with_ipv6_only(zones: Zones, resolver: MxResolver) -> None:
    zones.add_aaaa("example.org", ["::1"])

    assert route(await resolver.resolve("example.org")).hosts == [MxHost("example.org", 0, ["::1"])]


async def test_implicit_mx_through_a_cname(zones: Zones, resolver: MxResolver) -> None:
    zones.add_cname("mail.example.org", "host.example.net")
    zones.add_a("host.example.net", ["127.0.0.5"])

    assert route(await resolver.resolve("mail.example.org")).hosts == [
        MxHost("mail.example.org", 0, ["127.0.0.5"])
    ]


@pytest.mark.parametrize("setup", ["null_mx", "nxdomain", "no_mx_no_address"])
async def test_domains_that_cannot_receive_mail_fail_permanently(
    zones: Zones, resolver: MxResolver, setup: str
) -> None:
    if setup == "null_mx":
        zones.add_null_mx("example.com")
        zones.add_a("example.com", ["127.0.0.2"])
    elif setup == "no_mx_no_address":
        zones.add_txt("example.com", "v=spf1 -all")

    result = failure(await resolver.resolve("example.com"))

    assert (result.domain, result.permanent, result.classification) == (
        "example.com",
        True,
        BAD_DOMAIN,
    )


async def test_null_mx_reason_names_rfc_7505(zones: Zones, resolver: MxResolver) -> None:
    zones.add_null_mx("example.com")

    assert "null MX" in failure(await resolver.resolve("example.com")).reason


async def test_servfail_is_temporary(zones: Zones, resolver: MxResolver) -> None:
    zones.servfail("example.com")

    result = failure(await resolver.resolve("example.com"))

    assert (result.permanent, result.classification) == (False, DNS_FAILURE)
    assert "SERVFAIL" in result.reason


async def test_no_answer_is_a_temporary_timeout(zones: Zones, resolver: MxResolver) -> None:
    zones.drop("example.com")

    result = failure(await resolver.resolve("example.com"))

    assert (result.permanent, result.classification) == (False, DNS_FAILURE)
    assert f"{TIMEOUT:g} s" in result.reason


@pytest.mark.parametrize("fail", ["servfail", "drop"])
async def test_implicit_mx_address_failure_is_temporary(
    zones: Zones, resolver: MxResolver, fail: str
) -> None:
    zones.add_txt("example.com", "no mx")
    getattr(zones, fail)("example.com", "A")

    result = failure(await resolver.resolve("example.com"))

    assert (result.permanent, result.classification) == (False, DNS_FAILURE)
    assert "example.com" in result.reason


async def test_implicit_mx_uses_the_addresses_it_could_find(
    zones: Zones, resolver: MxResolver
) -> None:
    zones.add_aaaa("example.com", ["::1"])
    zones.servfail("example.com", "A")

    assert names(await resolver.resolve("example.com")) == ["example.com"]


async def test_mx_host_timeout_drops_the_host(zones: Zones, resolver: MxResolver) -> None:
    zones.add_mx("example.com", [(10, "slow.example.com"), (20, "mx.example.com")])
    zones.drop("slow.example.com")
    zones.add_a("mx.example.com", ["127.0.0.2"])

    assert names(await resolver.resolve("example.com")) == ["mx.example.com"]


async def test_unreachable_nameserver_is_temporary(clock: FakeClock) -> None:
    resolver = MxResolver([("127.0.0.1", 9)], TIMEOUT, clock, random.Random(1))

    result = failure(await resolver.resolve("example.com"))

    assert (result.permanent, result.classification) == (False, DNS_FAILURE)


@pytest.mark.parametrize("domain", ["", "exa..mple.com", "a" * 64 + ".example"])
async def test_invalid_names_fail_permanently_without_a_query(
    server: DnsServer, resolver: MxResolver, domain: str
) -> None:
    result = failure(await resolver.resolve(domain))

    assert (result.permanent, result.classification) == (True, BAD_DOMAIN)
    assert server.query_count == 0


async def test_answers_are_cached_for_their_ttl(
    zones: Zones, server: DnsServer, resolver: MxResolver, clock: FakeClock
) -> None:
    zones.add_mx("example.com", [(10, "mx.example.com")], ttl=60)
    zones.add_a("mx.example.com", ["127.0.0.2"], ttl=600)
    zones.add_aaaa("mx.example.com", ["::1"], ttl=600)
    first = await resolver.resolve("example.com")
    assert server.query_count == 3

    assert await resolver.resolve("example.com") == first
    assert server.query_count == 3

    clock.advance(59)
    await resolver.resolve("example.com")
    assert server.query_count == 3

    clock.advance(2)
    zones.add_a("mx.example.com", ["127.0.0.3"], ttl=600)
    assert route(await resolver.resolve("example.com")).hosts[0].addresses == [
        "127.0.0.2",
        "::1",
    ]
    assert [(q.name, q.rdtype) for q in server.queries[3:]] == [("example.com", "MX")]

    clock.advance(600)
    assert route(await resolver.resolve("example.com")).hosts[0].addresses == [
        "127.0.0.3",
        "::1",
    ]


async def test_nxdomain_is_cached_for_the_negative_ttl(
    zones: Zones, server: DnsServer, resolver: MxResolver, clock: FakeClock
) -> None:
    zones.negative_ttl = 120
    await resolver.resolve("gone.example")
    await resolver.resolve("gone.example")
    assert server.query_count == 1

    clock.advance(121)
    zones.add_a("gone.example", ["127.0.0.2"])
    assert names(await resolver.resolve("gone.example")) == ["gone.example"]


async def test_nodata_is_cached_for_the_negative_ttl(
    zones: Zones, server: DnsServer, resolver: MxResolver, clock: FakeClock
) -> None:
    zones.negative_ttl = 30
    zones.add_a("example.org", ["127.0.0.2"], ttl=3600)
    await resolver.resolve("example.org")
    assert [q.rdtype for q in server.queries] == ["MX", "A", "AAAA"]

    clock.advance(29)
    await resolver.resolve("example.org")
    assert server.query_count == 3

    clock.advance(2)
    await resolver.resolve("example.org")
    assert sorted(q.rdtype for q in server.queries[3:]) == ["AAAA", "MX"]


async def test_negative_ttl_is_capped(
    zones: Zones, server: DnsServer, resolver: MxResolver, clock: FakeClock
) -> None:
    zones.negative_ttl = 86_400
    await resolver.resolve("gone.example")
    clock.advance(NEGATIVE_TTL_CAP + 1)
    await resolver.resolve("gone.example")

    assert server.query_count == 2


async def test_temporary_failures_are_cached_briefly(
    zones: Zones, server: DnsServer, resolver: MxResolver, clock: FakeClock
) -> None:
    zones.servfail("example.com")
    await resolver.resolve("example.com")
    count = server.query_count
    clock.advance(29)
    assert not failure(await resolver.resolve("example.com")).permanent
    assert server.query_count == count

    del zones["example.com"]
    zones.add_a("example.com", ["127.0.0.2"])
    clock.advance(2)
    assert names(await resolver.resolve("example.com")) == ["example.com"]


async def test_concurrent_resolutions_share_queries(
    zones: Zones, server: DnsServer, resolver: MxResolver
) -> None:
    zones.add_mx("example.com", [(10, "mx.example.com")])
    zones.add_a("mx.example.com", ["127.0.0.2"])

    results = await asyncio.gather(*(resolver.resolve("example.com") for _ in range(10)))

    assert all(names(result) == ["mx.example.com"] for result in results)
    assert server.query_count == 3


async def test_a_cancelled_resolution_does_not_block_the_others(
    zones: Zones, resolver: MxResolver
) -> None:
    zones.drop("example.com")
    first = asyncio.ensure_future(resolver.resolve("example.com"))
    second = asyncio.ensure_future(resolver.resolve("example.com"))
    await asyncio.sleep(0)
    first.cancel()

    assert "lookup abandoned" in failure(await second).reason
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_the_cache_is_bounded(zones: Zones, server: DnsServer, clock: FakeClock) -> None:
    resolver = make_resolver(server, clock, cache_size=3)
    for domain in ("a.example", "b.example"):
        zones.add_a(domain, ["127.0.0.2"])
        await resolver.resolve(domain)
    assert server.query_count == 6

    await resolver.resolve("a.example")

    assert server.query_count == 9


async def test_domains_on_the_same_mx_set_share_a_site(zones: Zones, resolver: MxResolver) -> None:
    zones.add_mx("one.example", [(10, "mx1.host.example"), (20, "mx2.host.example")])
    zones.add_mx("two.example", [(5, "MX2.host.example"), (5, "mx1.host.example")])
    zones.add_mx("three.example", [(10, "mx1.host.example")])
    zones.add_a("mx1.host.example", ["127.0.0.2"])
    zones.add_a("mx2.host.example", ["127.0.0.3"])

    one, two, three = [
        route(await resolver.resolve(domain))
        for domain in ("one.example", "two.example", "three.example")
    ]

    assert one.site == two.site == "mx1.host.example,mx2.host.example"
    assert three.site == "mx1.host.example"


def dkim_record(key_bits: int) -> str:
    key = base64.b64encode(bytes(range(256)) * (key_bits // 8 // 256 + 1))
    return "v=DKIM1; k=rsa; p=" + key[: key_bits // 8 * 4 // 3 + 38].decode()


@pytest.mark.parametrize(("bits", "transport"), [(2048, "udp"), (16384, "tcp")])
async def test_long_txt_records_round_trip_in_chunks(
    zones: Zones, server: DnsServer, bits: int, transport: str
) -> None:
    text = dkim_record(bits)
    zones.add_txt("sel._domainkey.example.com", text)
    resolver = dns.asyncresolver.Resolver(configure=False)
    host, port = server.address
    resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
    resolver.lifetime = 2.0

    answer = await resolver.resolve("sel._domainkey.example.com", "TXT")

    assert answer.rrset is not None
    (rdata,) = answer.rrset
    assert isinstance(rdata, TXT)
    assert len(rdata.strings) > 1
    assert all(len(chunk) <= 255 for chunk in rdata.strings)
    assert b"".join(rdata.strings).decode() == text
    assert server.queries[-1].transport == transport


def test_threaded_server_answers_a_synchronous_client() -> None:
    zones = Zones()
    zones.add_mx("example.com", [(10, "mx.example.com")], ttl=42)
    with ThreadedDnsServer(zones) as server:
        resolver = dns.resolver.Resolver(configure=False)
        host, port = server.address
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
        resolver.lifetime = 2.0

        answer = resolver.resolve("example.com", "MX")
        with pytest.raises(dns.resolver.NXDOMAIN):
            resolver.resolve("nowhere.example", "MX")

        assert answer.rrset is not None
        assert (answer.rrset.ttl, answer.rrset[0].to_text()) == (42, "10 mx.example.com.")
        assert server.query_count == 2
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.address


@pytest.mark.parametrize(
    ("authority", "ttl"),
    [
        ([], NEGATIVE_TTL_FALLBACK),
        (["example.com. 600 IN SOA ns. host. 1 2 3 4 120"], 120.0),
        (["example.com. 60 IN SOA ns. host. 1 2 3 4 120"], 60.0),
        (["example.com. 86400 IN SOA ns. host. 1 2 3 4 86400"], NEGATIVE_TTL_CAP),
        (["example.com. 600 IN NS ns.example.com."], NEGATIVE_TTL_FALLBACK),
    ],
)
def test_negative_ttl(authority: list[str], ttl: float) -> None:
    response = dns.message.make_response(dns.message.make_query("x.example.com", "MX"))
    response.authority = [dns.rrset.from_text(*_rr(text)) for text in authority]

    assert negative_ttl(response) == ttl


def _rr(text: str) -> tuple[str, int, str, str, str]:
    name, ttl, rdclass, rdtype, rdata = text.split(" ", 4)
    return name, int(ttl), rdclass, rdtype, rdata


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([], []),
        ([(20, "b"), (10, "a")], [(10, "a"), (20, "b")]),
        ([(0, "x")], [(0, "x")]),
    ],
)
def test_order_by_preference(
    records: list[tuple[int, str]], expected: list[tuple[int, str]]
) -> None:
    assert order_by_preference(records, random.Random(0)) == expected


def test_order_by_preference_shuffles_ties_with_the_rng() -> None:
    records = [(10, "a"), (10, "b"), (10, "c"), (20, "d")]
    orders = {tuple(order_by_preference(records, random.Random(seed))) for seed in range(30)}

    assert len(orders) == 6
    assert all(order[-1] == (20, "d") for order in orders)


async def test_a_cached_route_is_served_without_being_built_again(
    zones: Zones, server: DnsServer, resolver: MxResolver
) -> None:
    zones.add_mx("example.com", [(10, "mx.example.com")])
    zones.add_a("mx.example.com", ["127.0.0.2"])

    first = await resolver.resolve("example.com")

    assert await resolver.resolve("example.com") is first
    assert server.query_count == 3


async def test_a_host_dropped_for_want_of_addresses_returns_when_its_lookup_expires(
    zones: Zones, server: DnsServer, resolver: MxResolver, clock: FakeClock
) -> None:
    zones.add_mx("example.com", [(10, "mx1.example.com"), (20, "mx2.example.com")], ttl=86_400)
    zones.add_a("mx1.example.com", ["127.0.0.2"], ttl=86_400)
    zones.add_aaaa("mx1.example.com", ["::1"], ttl=86_400)
    assert names(await resolver.resolve("example.com")) == ["mx1.example.com"]

    zones.add_a("mx2.example.com", ["127.0.0.3"], ttl=86_400)
    clock.advance(NEGATIVE_TTL_CAP + 1)

    assert names(await resolver.resolve("example.com")) == ["mx1.example.com", "mx2.example.com"]
