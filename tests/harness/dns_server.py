"""A small authoritative DNS server on loopback, for tests and benchmarks.

Owns: ``Zones``, an in-memory, mutable set of records by name, and the
servers answering from it: ``DnsServer`` on the caller's event loop and
``ThreadedDnsServer`` on its own loop in a background thread (sync tests,
engine subprocesses, benchmarks).

In: DNS queries over UDP, and over TCP on the same port for answers that do
not fit a datagram (RFC 7766; the UDP limit is 512 octets, or the client's
EDNS payload size, RFC 6891 §6.2.5; larger answers are sent truncated, TC
set, RFC 1035 §4.2.1). Out: responses built with dnspython's ``dns.message``:

- a name with records of the asked type: NOERROR with them (following CNAMEs
  inside the zones);
- a known name without that type: NOERROR, no data, an SOA in authority;
- an unknown name: NXDOMAIN with an SOA in authority (RFC 2308 §3), whose
  TTL and MINIMUM are ``Zones.negative_ttl``;
- a name (or one type of it) marked ``servfail``: SERVFAIL; marked
  ``drop``: no answer at all.

Every parsed query is recorded in ``DnsServer.queries`` so a test can assert
how many queries a cache avoided. Names are case-insensitive and stored
without the trailing dot. ``Zones`` may be changed while a server runs.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.TXT import TXT

DEFAULT_TTL = 300
UDP_PLAIN_LIMIT = 512
TXT_CHUNK = 255
MAX_CNAME_CHAIN = 8


class Behaviour(enum.Enum):
    ANSWER = "answer"
    SERVFAIL = "servfail"
    DROP = "drop"


@dataclass
class Records:
    """Everything one name answers: its RRsets by type, or a failure mode."""

    rrsets: dict[dns.rdatatype.RdataType, dns.rrset.RRset] = field(default_factory=dict)
    failures: dict[dns.rdatatype.RdataType | None, Behaviour] = field(default_factory=dict)
    """How queries fail, by type; ``None`` is every type."""

    def behaviour(self, rdtype: dns.rdatatype.RdataType) -> Behaviour:
        return self.failures.get(rdtype) or self.failures.get(None) or Behaviour.ANSWER


def _key(name: str | dns.name.Name) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    return text.rstrip(".").lower()


class Zones(MutableMapping[str, Records]):
    """Records by name. Each ``add_*`` sets that name's RRset of that type, replacing any."""

    def __init__(self, default_ttl: int = DEFAULT_TTL, negative_ttl: int = DEFAULT_TTL) -> None:
        self.default_ttl = default_ttl
        self.negative_ttl = negative_ttl
        self._names: dict[str, Records] = {}

    def __getitem__(self, name: str) -> Records:
        return self._names[_key(name)]

    def __setitem__(self, name: str, records: Records) -> None:
        self._names[_key(name)] = records

    def __delitem__(self, name: str) -> None:
        del self._names[_key(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def add_mx(
        self, name: str, exchanges: Iterable[tuple[int, str]], ttl: int | None = None
    ) -> None:
        texts = [f"{preference} {_absolute(host)}" for preference, host in exchanges]
        self._set(name, dns.rdatatype.MX, texts, ttl)

    def add_null_mx(self, name: str, ttl: int | None = None) -> None:
        """The RFC 7505 null MX: one MX, preference 0, exchange the root."""
        self._set(name, dns.rdatatype.MX, ["0 ."], ttl)

    def add_a(self, name: str, addresses: Iterable[str], ttl: int | None = None) -> None:
        self._set(name, dns.rdatatype.A, list(addresses), ttl)

    def add_aaaa(self, name: str, addresses: Iterable[str], ttl: int | None = None) -> None:
        self._set(name, dns.rdatatype.AAAA, list(addresses), ttl)

    def add_cname(self, name: str, target: str, ttl: int | None = None) -> None:
        self._set(name, dns.rdatatype.CNAME, [_absolute(target)], ttl)

    def add_txt(self, name: str, text: str, ttl: int | None = None) -> None:
        """One TXT record, split into strings of at most 255 octets (RFC 1035 §3.3.14)."""
        data = text.encode()
        chunks = [data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
        rdata = TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
        rrset = dns.rrset.from_rdata(_absolute(name), self._ttl(ttl), rdata)
        self._records(name).rrsets[dns.rdatatype.TXT] = rrset

    def servfail(self, name: str, rdtype: str | None = None) -> None:
        """Answer SERVFAIL for ``name`` (only for ``rdtype`` queries, if given)."""
        self._fail(name, rdtype, Behaviour.SERVFAIL)

    def drop(self, name: str, rdtype: str | None = None) -> None:
        """Never answer for ``name`` (only for ``rdtype`` queries, if given)."""
        self._fail(name, rdtype, Behaviour.DROP)

    def _fail(self, name: str, rdtype: str | None, behaviour: Behaviour) -> None:
        key = None if rdtype is None else dns.rdatatype.from_text(rdtype)
        self._records(name).failures[key] = behaviour

    def soa(self, name: dns.name.Name) -> dns.rrset.RRset:
        """The SOA of the zone assumed to hold ``name``: its last two labels."""
        labels = name.relativize(dns.name.root).labels
        apex = dns.name.Name(labels[-2:]).derelativize(dns.name.root)
        text = (
            f"ns.{apex} hostmaster.{apex} 1 3600 600 86400 {self.negative_ttl}"
            if labels
            else f"ns.invalid. hostmaster.invalid. 1 3600 600 86400 {self.negative_ttl}"
        )
        return dns.rrset.from_text(apex, self.negative_ttl, "IN", "SOA", text)

    def _records(self, name: str) -> Records:
        return self._names.setdefault(_key(name), Records())

    def _ttl(self, ttl: int | None) -> int:
        return self.default_ttl if ttl is None else ttl

    def _set(
        self, name: str, rdtype: dns.rdatatype.RdataType, texts: list[str], ttl: int | None
    ) -> None:
        rrset = dns.rrset.from_text_list(_absolute(name), self._ttl(ttl), "IN", rdtype, texts)
        self._records(name).rrsets[rdtype] = rrset


def _absolute(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def respond(zones: Zones, query: dns.message.Message) -> dns.message.Message | None:
    """The response to ``query`` from ``zones``, or ``None`` to stay silent."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    name = question.name
    for _ in range(MAX_CNAME_CHAIN):
        records = zones.get(_key(name))
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(zones.soa(name))
            return response
        behaviour = records.behaviour(question.rdtype)
        if behaviour is Behaviour.DROP:
            return None
        if behaviour is Behaviour.SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        found = records.rrsets.get(question.rdtype)
        if found is not None:
            response.answer.append(found)
            return response
        cname = records.rrsets.get(dns.rdatatype.CNAME)
        if cname is None:
            break
        response.answer.append(cname)
        target = next(iter(cname))
        assert isinstance(target, CNAME)
        name = target.target
    response.authority.append(zones.soa(name))
    return response


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    rdtype: str
    transport: str
    """``udp`` or ``tcp``."""


_Handler = Callable[[bytes, str], bytes | None]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, handle: _Handler, closed: asyncio.Future[None]) -> None:
        self._handle = handle
        self._closed = closed
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        wire = self._handle(data, "udp")
        if wire is not None and self._transport is not None:
            self._transport.sendto(wire, addr)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


class _TcpProtocol(asyncio.Protocol):
    """Two-octet length-prefixed messages (RFC 1035 §4.2.2)."""

    def __init__(self, handle: _Handler, connections: dict[_TcpProtocol, asyncio.Future[None]]):
        self._handle = handle
        self._connections = connections
        self._buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._connections[self] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 2:
            size = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + size:
                return
            message, self._buffer = self._buffer[2 : 2 + size], self._buffer[2 + size :]
            wire = self._handle(message, "tcp")
            if wire is not None and self.transport is not None:
                self.transport.write(len(wire).to_bytes(2, "big") + wire)

    def connection_lost(self, exc: Exception | None) -> None:
        closed = self._connections.pop(self, None)
        if closed is not None and not closed.done():
            closed.set_result(None)


class DnsServer:
    """Answers from ``zones`` on one UDP and TCP port of the running event loop."""

    def __init__(self, zones: Zones) -> None:
        self.zones = zones
        self.queries: list[Query] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_closed: asyncio.Future[None] | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: dict[_TcpProtocol, asyncio.Future[None]] = {}
        self._address: tuple[str, int] | None = None

    @property
    def query_count(self) -> int:
        return len(self.queries)

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the DNS server is not running")
        return self._address

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``port`` (0: a free one, the same for UDP and TCP); return the address."""
        attempts = 10 if port == 0 else 1
        for attempt in range(attempts):
            bound = await self._bind_udp(host, port)
            try:
                self._tcp = await asyncio.get_running_loop().create_server(
                    lambda: _TcpProtocol(self._handle, self._connections), host, bound
                )
            except OSError:
                await self._close_udp()
                if attempt == attempts - 1:
                    raise
                continue
            self._address = (host, bound)
            return self._address
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            for protocol in list(self._connections):
                if protocol.transport is not None:
                    protocol.transport.close()
            await asyncio.gather(*self._connections.values())
            await self._tcp.wait_closed()
            self._tcp = None
        await self._close_udp()
        self._address = None

    async def _bind_udp(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self._handle, closed), local_addr=(host, port)
        )
        self._udp, self._udp_closed = transport, closed
        bound: int = transport.get_extra_info("sockname")[1]
        return bound

    async def _close_udp(self) -> None:
        if self._udp is not None and self._udp_closed is not None:
            self._udp.close()
            await self._udp_closed
        self._udp = self._udp_closed = None

    def _handle(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
            response = respond(self.zones, query)
        except dns.exception.DNSException:
            return None
        if query.question:
            question = query.question[0]
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append(Query(_key(question.name), rdtype, transport))
        if response is None:
            return None
        if transport == "tcp":
            return response.to_wire()
        limit = max(query.payload, UDP_PLAIN_LIMIT) if query.edns >= 0 else UDP_PLAIN_LIMIT
        return response.to_wire(max_size=limit, prefer_truncation=True)


class ThreadedDnsServer:
    """A ``DnsServer`` on its own event loop in a daemon thread; a context manager."""

    def __init__(self, zones: Zones, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = DnsServer(zones)
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the DNS server is not running")
        return self._address

    @property
    def zones(self) -> Zones:
        return self.server.zones

    @property
    def query_count(self) -> int:
        return self.server.query_count

    def __enter__(self) -> Self:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="dns-server", daemon=True)
        self._thread.start()
        try:
            start = self.server.start(self._host, self._port)
            self._address = asyncio.run_coroutine_threadsafe(start, loop).result()
        except BaseException:
            self._shut_down()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._shut_down()

    def _shut_down(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = self._thread = self._address = None
