"""MX resolution for delivery: a destination domain in, a route out.

Owns the DNS lookups that turn a recipient domain into the ordered list of
hosts to connect to, and the cache of their answers.

In: a domain name (the part after ``@``; IP literals are refused at
submission and never reach here). Out: a ``Route``, which is a value, never an
exception, like every delivery result:

- ``MxRoute``: the domain's ``site`` (MX rollup, ``smtp_out.site``) and its
  hosts, ordered by preference, equal preferences shuffled with the injected
  ``rng`` on every call (RFC 5321 §5.1), each with its IPv4 then IPv6
  addresses; hosts without any address are dropped.
- ``DnsFailure``: ``permanent`` with classification ``BadDomain`` when the
  domain cannot receive mail, otherwise temporary ``DNSFailure``.

Rules (RFC 5321 §5.1, RFC 7505):

- MX records present: deliver to their exchanges.
- No MX records (NOERROR, no data): the implicit MX, the domain's own A/AAAA
  addresses at preference 0; the site is the domain itself. Neither MX nor
  A/AAAA: permanent ``BadDomain``.
- Null MX (the only exchange is the root ``.``, RFC 7505 §3): permanent
  ``BadDomain``. A root exchange next to real ones is ignored.
- NXDOMAIN or an unparseable name: permanent ``BadDomain``.
- SERVFAIL, REFUSED, timeouts, network errors: temporary ``DNSFailure``.
- MX records whose hosts all lack addresses: temporary ``DNSFailure`` (a
  misconfiguration the domain may still fix).

Cache: every (name, type) lookup is kept for the smallest TTL of its answer
and CNAME chain (capped at a day); NXDOMAIN and NODATA for the negative TTL
of RFC 2308 §5, min(SOA TTL, SOA MINIMUM), 300 s when the response carries no
SOA, capped at an hour; temporary failures for 30 s, so a broken or slow
resolver costs one query per name and half-minute rather than one per
delivery attempt (deliveries deferred by it retry later anyway). Expiry uses
the injected clock. The cache holds at most ``cache_size`` lookups, evicting
the least recently used. Concurrent lookups of the same (name, type) share
one query. A domain's route is kept too, until the first of the lookups it
was built from expires (at most ``cache_size`` routes), so a cached domain
costs a dictionary look-up and, when its hosts share a preference, a shuffle.

dnspython exceptions are translated here and never leave this module.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.SOA import SOA

from engine.clock import Clock
from smtp_out.site import canonical_host, site_name

BAD_DOMAIN = "BadDomain"
DNS_FAILURE = "DNSFailure"

POSITIVE_TTL_CAP = 86_400.0
NEGATIVE_TTL_FALLBACK = 300.0
NEGATIVE_TTL_CAP = 3_600.0
FAILURE_TTL = 30.0
CACHE_SIZE = 10_000
EDNS_PAYLOAD = 1232
"""The DNS flag day 2020 UDP size; larger answers come over TCP."""


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str
    """Lower-case, without the trailing dot."""
    preference: int
    addresses: list[str]
    """IPv4 addresses first, then IPv6; never empty."""


@dataclass(frozen=True, slots=True)
class MxRoute:
    domain: str
    site: str
    hosts: list[MxHost]
    """Ordered by preference, equal preferences in random order; never empty."""


@dataclass(frozen=True, slots=True)
class DnsFailure:
    domain: str
    permanent: bool
    classification: str
    """``BadDomain`` (permanent) or ``DNSFailure`` (temporary)."""
    reason: str


Route: TypeAlias = MxRoute | DnsFailure


class RouteResolver(Protocol):
    """The resolver seam: the delivery side depends on this, tests may fake it."""

    async def resolve(self, domain: str) -> Route: ...


class ResolverConfigurationError(Exception):
    """The system resolver configuration (/etc/resolv.conf) is missing or unusable."""


class _Status(enum.Enum):
    ANSWER = "answer"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class _Lookup:
    """The result of one (name, type) query."""

    status: _Status
    records: tuple[dns.rdata.Rdata, ...]
    ttl: float
    reason: str = ""


_Key: TypeAlias = tuple[str, dns.rdatatype.RdataType]


class _Cache:
    """Lookups by (name, type) until they expire; least recently used evicted first."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"cache size must be at least 1, got {max_entries}")
        self._max_entries = max_entries
        self._entries: OrderedDict[_Key, tuple[float, _Lookup]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: _Key, now: float) -> _Lookup | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, lookup = entry
        if expires <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return lookup

    def expiry(self, key: _Key) -> float | None:
        """When ``key``'s cached lookup expires, or ``None`` if it is not cached."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: _Key, lookup: _Lookup, now: float) -> None:
        if lookup.ttl <= 0:
            return
        self._entries[key] = (now + lookup.ttl, lookup)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


def order_by_preference(
    records: Iterable[tuple[int, str]], rng: random.Random
) -> list[tuple[int, str]]:
    """MX (preference, host) pairs, lowest preference first, ties shuffled (RFC 5321 §5.1)."""
    groups: dict[int, list[str]] = {}
    for preference, host in records:
        groups.setdefault(preference, []).append(host)
    ordered: list[tuple[int, str]] = []
    for preference in sorted(groups):
        hosts = groups[preference]
        rng.shuffle(hosts)
        ordered.extend((preference, host) for host in hosts)
    return ordered


def _reshuffled(hosts: list[MxHost], rng: random.Random) -> list[MxHost]:
    """``hosts`` (ordered by preference) with the ties among them shuffled again."""
    groups: dict[int, list[MxHost]] = {}
    for host in hosts:
        groups.setdefault(host.preference, []).append(host)
    ordered: list[MxHost] = []
    for preference in sorted(groups):
        group = groups[preference]
        rng.shuffle(group)
        ordered.extend(group)
    return ordered


@dataclass(frozen=True, slots=True)
class _KnownRoute:
    expires: float
    mx_key: _Key
    """The lookup the route starts from: evicted from the cache, the route goes too."""
    route: MxRoute
    ties: bool
    """Whether some of its hosts share a preference (shuffled on each use)."""


def negative_ttl(response: dns.message.Message | None) -> float:
    """How long a NXDOMAIN or NODATA answer may be cached (RFC 2308 §5)."""
    ttls = [
        min(rrset.ttl, rdata.minimum)
        for rrset in (response.authority if response is not None else [])
        for rdata in rrset
        if isinstance(rdata, SOA)
    ]
    ttl = float(min(ttls)) if ttls else NEGATIVE_TTL_FALLBACK
    return min(ttl, NEGATIVE_TTL_CAP)


@dataclass(frozen=True, slots=True)
class _Addresses:
    addresses: list[str]
    failure: str | None
    """Why a lookup failed temporarily, if one did."""


class MxResolver:
    """Resolves destination domains to routes, with a TTL cache (see module docstring)."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]],
        timeout_seconds: float,
        clock: Clock,
        rng: random.Random,
        *,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._resolver = make_resolver(nameservers, timeout_seconds)
        self._timeout = timeout_seconds
        self._clock = clock
        self._rng = rng
        self._cache = _Cache(cache_size)
        self._cache_size = cache_size
        self._routes: OrderedDict[str, _KnownRoute] = OrderedDict()
        self._inflight: dict[_Key, asyncio.Future[_Lookup]] = {}

    async def resolve(self, domain: str) -> Route:
        known = self._routes.get(domain)
        if known is not None:
            if known.expires > self._clock.now() and self._cache.expiry(known.mx_key):
                if not known.ties:
                    return known.route
                hosts = _reshuffled(known.route.hosts, self._rng)
                return MxRoute(domain=domain, site=known.route.site, hosts=hosts)
            del self._routes[domain]
        route = await self._resolve(domain)
        if isinstance(route, MxRoute):
            self._remember(route)
        return route

    def _remember(self, route: MxRoute) -> None:
        """Keep ``route`` until the first of the lookups it was built from expires."""
        name = canonical_host(route.domain)
        mx = self._cache.get((name, dns.rdatatype.MX), self._clock.now())
        if mx is None:
            return
        hosts = {name}  # the implicit MX
        if mx.status is _Status.ANSWER:
            hosts = {canonical_host(r.exchange.to_text()) for r in mx.records if isinstance(r, MX)}
        mx_key: _Key = (name, dns.rdatatype.MX)
        keys = [mx_key]
        for host in hosts - {""}:
            keys += [(host, dns.rdatatype.A), (host, dns.rdatatype.AAAA)]
        expiries = [self._cache.expiry(key) for key in keys]
        if None in expiries:
            return
        preferences = [host.preference for host in route.hosts]
        ties = len(set(preferences)) < len(preferences)
        self._routes[route.domain] = _KnownRoute(
            min(e for e in expiries if e is not None), mx_key, route, ties
        )
        while len(self._routes) > self._cache_size:
            self._routes.popitem(last=False)

    async def _resolve(self, domain: str) -> Route:
        name = canonical_host(domain)
        if not _valid_name(name):
            return _permanent(domain, f"{domain!r} is not a valid domain name")
        mx = await self._lookup(name, dns.rdatatype.MX)
        if mx.status is _Status.NXDOMAIN:
            return _permanent(domain, f"{name} does not exist (NXDOMAIN)")
        if mx.status is _Status.FAILURE:
            return _temporary(domain, f"MX lookup for {name} failed: {mx.reason}")
        if mx.status is _Status.NODATA:
            return await self._implicit_route(domain, name)
        records = [
            (rdata.preference, canonical_host(rdata.exchange.to_text()))
            for rdata in mx.records
            if isinstance(rdata, MX)
        ]
        records = [(preference, host) for preference, host in records if host]
        if not records:
            return _permanent(domain, f"{name} accepts no mail (null MX, RFC 7505)")
        return await self._mx_route(domain, records)

    async def _implicit_route(self, domain: str, name: str) -> Route:
        found = await self._addresses(name)
        if found.addresses:
            host = MxHost(name=name, preference=0, addresses=found.addresses)
            return MxRoute(domain=domain, site=site_name([name]), hosts=[host])
        if found.failure is not None:
            return _temporary(domain, f"address lookup for {name} failed: {found.failure}")
        return _permanent(domain, f"{name} has no MX and no A/AAAA records")

    async def _mx_route(self, domain: str, records: list[tuple[int, str]]) -> Route:
        names = sorted({host for _, host in records})
        cached = {host: self._cached_addresses(host) for host in names}
        found = {host: addresses for host, addresses in cached.items() if addresses is not None}
        if len(found) < len(names):
            async with asyncio.TaskGroup() as group:
                tasks = {
                    host: group.create_task(self._addresses(host))
                    for host in names
                    if host not in found
                }
            found.update((host, task.result()) for host, task in tasks.items())
        hosts = [
            MxHost(name=host, preference=preference, addresses=found[host].addresses)
            for preference, host in order_by_preference(records, self._rng)
            if found[host].addresses
        ]
        if hosts:
            return MxRoute(domain=domain, site=site_name(names), hosts=hosts)
        why = "; ".join(f"{host}: {found[host].failure or 'no A/AAAA records'}" for host in names)
        return _temporary(domain, f"no MX host of {canonical_host(domain)} has an address ({why})")

    def _cached_addresses(self, name: str) -> _Addresses | None:
        """``name``'s addresses when both lookups are cached (no task, no await)."""
        now = self._clock.now()
        v4 = self._cache.get((name, dns.rdatatype.A), now)
        v6 = self._cache.get((name, dns.rdatatype.AAAA), now)
        return None if v4 is None or v6 is None else _addresses_of(v4, v6)

    async def _addresses(self, name: str) -> _Addresses:
        async with asyncio.TaskGroup() as group:
            v4 = group.create_task(self._lookup(name, dns.rdatatype.A))
            v6 = group.create_task(self._lookup(name, dns.rdatatype.AAAA))
        return _addresses_of(v4.result(), v6.result())

    async def _lookup(self, name: str, rdtype: dns.rdatatype.RdataType) -> _Lookup:
        """One query through the cache, shared by concurrent callers."""
        key = (name, rdtype)
        cached = self._cache.get(key, self._clock.now())
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        shared: asyncio.Future[_Lookup] = asyncio.get_running_loop().create_future()
        self._inflight[key] = shared
        lookup = _Lookup(_Status.FAILURE, (), 0.0, "lookup abandoned")
        try:
            lookup = await self._query(name, rdtype)
            self._cache.put(key, lookup, self._clock.now())
        finally:
            del self._inflight[key]
            shared.set_result(lookup)
        return lookup

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> _Lookup:
        qname = dns.name.from_text(name)
        try:
            answer = await self._resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            responses: dict[dns.name.Name, dns.message.Message] = exc.kwargs.get("responses", {})
            return _Lookup(_Status.NXDOMAIN, (), negative_ttl(responses.get(qname)))
        except dns.exception.Timeout:
            return _failure(f"no answer within {self._timeout:g} s")
        except dns.exception.DNSException as exc:
            return _failure(str(exc))
        except OSError as exc:
            return _failure(f"network error: {exc}")
        if answer.rrset is None:
            return _Lookup(_Status.NODATA, (), negative_ttl(answer.response))
        ttl = min(float(answer.chaining_result.minimum_ttl), POSITIVE_TTL_CAP)
        return _Lookup(_Status.ANSWER, tuple(answer.rrset), ttl)


def make_resolver(
    nameservers: Sequence[tuple[str, int]], timeout_seconds: float
) -> dns.asyncresolver.Resolver:
    """A dnspython resolver on ``nameservers`` (the system's when empty), without its
    own cache, each query allowed ``timeout_seconds``; ``ResolverConfigurationError``
    when the system configuration is unusable."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
        ]
    else:
        try:
            resolver = dns.asyncresolver.Resolver(configure=True)
        except dns.exception.DNSException as exc:
            raise ResolverConfigurationError(f"system resolver: {exc}") from exc
    resolver.timeout = timeout_seconds
    resolver.lifetime = timeout_seconds
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    resolver.cache = None
    return resolver


def _valid_name(name: str) -> bool:
    try:
        dns.name.from_text(name)
    except (dns.exception.DNSException, UnicodeError):
        return False
    return bool(name)


def _failure(reason: str) -> _Lookup:
    return _Lookup(_Status.FAILURE, (), FAILURE_TTL, reason)


def _permanent(domain: str, reason: str) -> DnsFailure:
    return DnsFailure(domain=domain, permanent=True, classification=BAD_DOMAIN, reason=reason)


def _temporary(domain: str, reason: str) -> DnsFailure:
    return DnsFailure(domain=domain, permanent=False, classification=DNS_FAILURE, reason=reason)


def _addresses_of(v4: _Lookup, v6: _Lookup) -> _Addresses:
    lookups = (v4, v6)
    addresses = [rdata.to_text() for lookup in lookups for rdata in lookup.records]
    failures = [lookup.reason for lookup in lookups if lookup.status is _Status.FAILURE]
    return _Addresses(addresses=addresses, failure=failures[0] if failures else None)
