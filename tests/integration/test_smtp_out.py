"""SmtpDeliverer over real sockets: harness sinks on 127.0.0.x behind the harness DNS server."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

import pytest

from config.schema import DeliverySettings, RetrySettings
from engine.clock import Clock, FakeClock, SystemClock
from engine.delivery.bounce_classify import BounceClassifier
from engine.delivery.outcome import OutcomeKind, Scope
from engine.delivery.settling import RecordContext, settle_attempt
from engine.delivery.transport import AttemptReport, OutboundMessage
from engine.limits import Limiter, open_limiter
from engine.limits.local import LocalLimiter
from engine.model import MessageState, QueuedMessage
from engine.records.metrics import REGISTRY
from engine.records.record import RecordType
from engine.scheduler.shaping import Shaping
from engine.scheduler.sources import Source
from engine.smtp.reply import Stage
from smtp_out.deliverer import SmtpDeliverer
from smtp_out.dns import MxResolver
from smtp_out.pool import SLOT_TTL_SECONDS
from tests.harness.dns_server import DnsServer, Zones
from tests.harness.smtp_sink import SinkOptions, SmtpSink
from tests.harness.tlsutil import make_tls_pair

DOMAIN = "example.test"
MX1, MX2 = "mx1.example.test", "mx2.example.test"
SINK_ADDRESS, SECOND_ADDRESS, DEAD_ADDRESS = "127.0.0.2", "127.0.0.3", "127.0.0.9"
UNBOUND = Source("default", "0.0.0.0", "default.sender.test")
BODY = b"From: a@sender.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\n.dot line\r\nbody\r\n"
FAST = DeliverySettings(
    connect_timeout_seconds=2,
    greeting_timeout_seconds=2,
    ehlo_timeout_seconds=2,
    command_timeout_seconds=2,
    data_timeout_seconds=2,
    wait_timeout_seconds=5,
)
CONNECTION_LIMIT = 10
IDLE_TIMEOUT_SECONDS = 5.0


@dataclass
class World:
    """One DNS server, the sinks on a shared port, and the deliverers to close."""

    zones: Zones
    dns: DnsServer
    clock: FakeClock
    port: int = 0
    sinks: list[SmtpSink] = field(default_factory=list)
    deliverers: list[SmtpDeliverer] = field(default_factory=list)

    async def sink(self, address: str = SINK_ADDRESS, **options: Unpack[SinkOptions]) -> SmtpSink:
        sink = SmtpSink(**options)
        _, self.port = await sink.start(address, self.port)
        self.sinks.append(sink)
        return sink

    def deliverer(
        self,
        delivery: DeliverySettings = FAST,
        *,
        max_deliveries: int = 100,
        connection_limit: int = CONNECTION_LIMIT,
        shaping: dict[str, Any] | None = None,
        limiter: Limiter | None = None,
        clock: Clock | None = None,
    ) -> SmtpDeliverer:
        """A deliverer to the sinks; ``shaping`` adds tables to a shaping document whose
        ``[default]`` sets ``max_deliveries`` and ``connection_limit``. Its limiter is
        its own unless ``limiter`` is shared."""
        clock = clock or self.clock
        deliverer = SmtpDeliverer(
            delivery=dataclasses.replace(delivery, port=self.port),
            resolver=MxResolver([self.dns.address], 2.0, clock, random.Random(1)),
            classifier=BounceClassifier(),
            clock=clock,
            shaping=shaping_of(max_deliveries, connection_limit, shaping),
            limiter=limiter or LocalLimiter(clock),
        )
        self.deliverers.append(deliverer)
        return deliverer


def shaping_of(
    max_deliveries: int = 100,
    connection_limit: int = CONNECTION_LIMIT,
    tables: dict[str, Any] | None = None,
) -> Shaping:
    default = {
        "max_deliveries_per_connection": max_deliveries,
        "connection_limit": connection_limit,
        "idle_timeout_seconds": IDLE_TIMEOUT_SECONDS,
    }
    return Shaping.parse(("test", {"default": default, **(tables or {})}))


@pytest.fixture
async def world() -> AsyncIterator[World]:
    zones = Zones()
    zones.add_mx(DOMAIN, [(10, MX1)])
    zones.add_a(MX1, [SINK_ADDRESS])
    server = DnsServer(zones)
    await server.start()
    world = World(zones, server, FakeClock())
    try:
        yield world
    finally:
        for deliverer in world.deliverers:
            await deliverer.close()
            assert deliverer.open_connections == 0
        for sink in world.sinks:
            await sink.stop()
            assert not sink.errors
        await server.stop()


def message(
    local: str = "user", n: int = 1, data: bytes = BODY, source: Source = UNBOUND
) -> OutboundMessage:
    return OutboundMessage(
        id=f"m{n}",
        sender="bounces@sender.test",
        recipient=f"{local}@{DOMAIN}",
        domain=DOMAIN,
        source=source,
        data=data,
    )


def delivered(report: AttemptReport) -> None:
    assert report.outcome.kind is OutcomeKind.DELIVERED, report


async def test_delivery_with_pipelining(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer()
    report = await deliverer.deliver(message())
    delivered(report)
    assert report.outcome.reply.code == 250
    assert (report.site, report.peer_name, report.peer_address) == (MX1, MX1, SINK_ADDRESS)
    assert (report.source, report.source_address) == ("default", "0.0.0.0")
    [received] = sink.messages
    assert received.data == BODY
    assert received.mail_from == "bounces@sender.test"
    assert received.rcpt_tos == (f"user@{DOMAIN}",)
    assert received.ehlo == "default.sender.test"


async def test_delivery_without_pipelining(world: World) -> None:
    sink = await world.sink(ehlo_extensions=("8BITMIME",))
    deliverer = world.deliverer()
    data = b"Subject: caf\xc3\xa9\r\n\r\n.\r\n..two\r\nno final newline"
    delivered(await deliverer.deliver(message(data=data)))
    delivered(await deliverer.deliver(message(n=2)))
    assert [m.data for m in sink.messages] == [data + b"\r\n", BODY]
    assert sink.inbox.connections == 1


async def test_helo_when_ehlo_is_refused(world: World) -> None:
    server = await asyncio.start_server(_ehlo_refusing_server, SINK_ADDRESS, 0)
    world.port = server.sockets[0].getsockname()[1]
    try:
        report = await world.deliverer().deliver(message())
        delivered(report)
    finally:
        server.close()
        await server.wait_closed()


async def _ehlo_refusing_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server without ESMTP; it also answers several commands in one write."""
    replies = {b"EHLO": b"502 5.5.1 no\r\n", b"HELO": b"250 hi\r\n", b"QUIT": b"221 bye\r\n"}
    writer.write(b"220 old.test SMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 2.0.0 queued\r\n")
            else:
                writer.write(replies.get(verb, b"250 2.1.0 ok\r\n"))
            if verb == b"QUIT":
                break
    finally:
        writer.close()
        await writer.wait_closed()


async def test_pipelined_replies_in_one_segment(world: World) -> None:
    server = await asyncio.start_server(_batching_server, SINK_ADDRESS, 0)
    world.port = server.sockets[0].getsockname()[1]
    try:
        deliverer = world.deliverer()
        delivered(await deliverer.deliver(message()))
        report = await deliverer.deliver(message("nobody", n=2))
        assert report.outcome.kind is OutcomeKind.PERMANENT
        assert report.outcome.scope is Scope.RECIPIENT
        delivered(await deliverer.deliver(message(n=3)))
    finally:
        server.close()
        await server.wait_closed()


async def _batching_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers MAIL, RCPT and DATA together, as Postfix does when they arrive together."""
    writer.write(b"220 batch.test ESMTP\r\n")
    try:
        await reader.readline()
        writer.write(b"250-batch.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        while True:
            head = await reader.readuntil(b"DATA\r\n")
            if b"nobody@" in head:
                writer.write(b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no rcpt\r\n")
                await reader.readuntil(b"RSET\r\n")
                writer.write(b"250 2.0.0 reset\r\n")
                continue
            writer.write(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
            await reader.readuntil(b"\r\n.\r\n")
            writer.write(b"250 2.0.0 queued\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_reply_while_idle_retires_the_connection_unused(world: World) -> None:
    spoke = asyncio.Event()
    server = await asyncio.start_server(lambda r, w: _idle_talker(r, w, spoke), SINK_ADDRESS, 0)
    world.port = server.sockets[0].getsockname()[1]
    try:
        deliverer = world.deliverer()
        delivered(await deliverer.deliver(message()))
        assert deliverer.idle_connections == 1
        spoke.set()
        async with asyncio.timeout(5):
            while deliverer.idle_connections:
                await asyncio.sleep(0.01)
                await deliverer.sweep()
        delivered(await deliverer.deliver(message(n=2)))
        assert deliverer.window(MX1) == CONNECTION_LIMIT, "no failure was counted"
    finally:
        server.close()
        await server.wait_closed()


async def _idle_talker(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spoke: asyncio.Event
) -> None:
    """Accepts one message per connection, then says 421 (once told) and stays open."""
    writer.write(b"220 talker.test ESMTP\r\n")
    try:
        await reader.readline()
        writer.write(b"250-talker.test\r\n250 PIPELINING\r\n")
        await reader.readuntil(b"DATA\r\n")
        writer.write(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 2.0.0 queued\r\n")
        await spoke.wait()
        writer.write(b"421 4.4.2 idle for too long\r\n")
        await reader.read()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_trickled_reply_times_out_at_its_deadline(world: World) -> None:
    server = await asyncio.start_server(_trickler, SINK_ADDRESS, 0)
    world.port = server.sockets[0].getsockname()[1]
    try:
        deliverer = world.deliverer(dataclasses.replace(FAST, greeting_timeout_seconds=0.3))
        async with asyncio.timeout(5):
            report = await deliverer.deliver(message())
        assert report.outcome.kind is OutcomeKind.TRANSIENT
        text = "timed out waiting for the greeting after 0.3 s"
        assert report.outcome.reply.text == text
    finally:
        server.close()
        await server.wait_closed()


async def _trickler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A greeting that never ends, one octet every 20 ms."""
    try:
        for octet in itertools.cycle(b"220-still greeting\r\n"):
            writer.write(bytes([octet]))
            await writer.drain()
            await asyncio.sleep(0.02)
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_starttls_when_offered(world: World, tmp_path: Path) -> None:
    sink = await world.sink(tls=make_tls_pair(tmp_path).server)
    report = await world.deliverer().deliver(message())
    delivered(report)
    [received] = sink.messages
    assert received.tls_version is not None
    assert report.tls_version == received.tls_version
    assert report.tls_cipher


async def test_broken_tls_costs_a_retry_then_goes_in_clear(world: World) -> None:
    sink = await world.sink(broken_tls=True)
    deliverer = world.deliverer()
    first = await deliverer.deliver(message())
    assert first.outcome.kind is OutcomeKind.TRANSIENT
    assert first.outcome.scope is Scope.SESSION
    assert first.outcome.classification == "BadConnection"
    assert first.tls_version is None
    delivered(await deliverer.deliver(message(n=2)))
    assert [m.tls_version for m in sink.messages] == [None]
    await deliverer.close()
    world.clock.advance(FAST.broken_tls_memory_seconds + 1)
    again = await deliverer.deliver(message(n=3))
    assert again.outcome.kind is OutcomeKind.TRANSIENT


async def test_connection_reused_then_closed_after_max_deliveries(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer(max_deliveries=3)
    for n in range(5):
        delivered(await deliverer.deliver(message(n=n)))
    ports = [m.peer[1] for m in sink.messages]
    assert ports[0] == ports[1] == ports[2] != ports[3] == ports[4]
    assert sink.inbox.connections == 2
    assert deliverer.open_connections == 1
    assert deliverer.idle_connections == 1


async def test_idle_connection_closed_after_idle_timeout(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer()
    delivered(await deliverer.deliver(message()))
    assert deliverer.idle_connections == 1
    world.clock.advance(IDLE_TIMEOUT_SECONDS + 1)
    await deliverer.sweep()
    assert deliverer.open_connections == 0
    delivered(await deliverer.deliver(message(n=2)))
    assert sink.inbox.connections == 2


async def test_tempfail_is_transient_for_the_recipient(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer()
    report = await deliverer.deliver(message("tempfail"))
    assert report.outcome.kind is OutcomeKind.TRANSIENT
    assert report.outcome.scope is Scope.RECIPIENT
    assert (report.outcome.reply.code, report.outcome.reply.enhanced) == (451, "4.3.0")
    delivered(await deliverer.deliver(message(n=2)))
    assert sink.inbox.connections == 1


async def test_permfail_is_permanent_invalid_recipient(world: World) -> None:
    await world.sink(ehlo_extensions=("ENHANCEDSTATUSCODES",))
    report = await world.deliverer().deliver(message("permfail"))
    assert report.outcome.kind is OutcomeKind.PERMANENT
    assert report.outcome.scope is Scope.RECIPIENT
    assert report.outcome.classification == "InvalidRecipient"
    assert report.outcome.reply.stage is Stage.RCPT


async def test_421_closes_the_connection(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer()
    report = await deliverer.deliver(message("421-closing"))
    assert report.outcome.kind is OutcomeKind.TRANSIENT
    assert report.outcome.scope is Scope.SITE
    assert deliverer.idle_connections == 0
    delivered(await deliverer.deliver(message(n=2)))
    assert sink.inbox.connections == 2


async def test_second_mx_when_the_first_refuses_connections(world: World) -> None:
    world.zones.add_mx(DOMAIN, [(10, MX1), (20, MX2)])
    world.zones.add_a(MX1, [DEAD_ADDRESS])
    world.zones.add_a(MX2, [SECOND_ADDRESS])
    sink = await world.sink(SECOND_ADDRESS)
    report = await world.deliverer().deliver(message())
    delivered(report)
    assert (report.peer_name, report.peer_address) == (MX2, SECOND_ADDRESS)
    assert report.site == f"{MX1},{MX2}"
    assert len(sink.messages) == 1


async def test_every_mx_refusing_is_transient_no_answer(world: World) -> None:
    world.zones.add_a(MX1, [DEAD_ADDRESS])
    await world.sink()
    report = await world.deliverer().deliver(message())
    assert report.outcome.kind is OutcomeKind.TRANSIENT
    assert report.outcome.scope is Scope.SITE
    assert report.outcome.classification == "NoAnswerFromHost"
    assert report.peer_address == DEAD_ADDRESS


async def test_refusing_greeting_moves_to_the_next_mx(world: World) -> None:
    world.zones.add_mx(DOMAIN, [(10, MX1), (20, MX2)])
    world.zones.add_a(MX2, [SECOND_ADDRESS])
    await world.sink(greeting_code=554)
    second = await world.sink(SECOND_ADDRESS)
    delivered(await world.deliverer().deliver(message()))
    assert len(second.messages) == 1


async def test_disconnect_in_data_is_transient(world: World) -> None:
    sink = await world.sink()
    report = await world.deliverer().deliver(message("disconnect-in-data"))
    assert report.outcome.kind is OutcomeKind.TRANSIENT
    assert report.outcome.scope is Scope.SESSION
    assert report.outcome.classification == "BadConnection"
    assert not sink.messages


async def test_stall_is_transient_after_the_data_timeout(world: World) -> None:
    await world.sink()
    client = DeliverySettings(data_timeout_seconds=0.3, command_timeout_seconds=2)
    report = await world.deliverer(client).deliver(message("stall"))
    assert report.outcome.kind is OutcomeKind.TRANSIENT
    assert report.outcome.scope is Scope.SESSION
    assert "timed out" in report.outcome.reply.text


async def test_garbage_reply_is_transient(world: World) -> None:
    await world.sink()
    deliverer = world.deliverer()
    report = await deliverer.deliver(message("garbage"))
    assert report.outcome.kind is OutcomeKind.TRANSIENT
    assert report.outcome.scope is Scope.SESSION
    assert report.outcome.classification == "ProtocolErrors"
    delivered(await deliverer.deliver(message(n=2)))


@pytest.mark.parametrize("null_mx", [True, False])
async def test_null_mx_and_nxdomain_are_permanent_bad_domain(world: World, null_mx: bool) -> None:
    if null_mx:
        world.zones.add_null_mx(DOMAIN)
    else:
        del world.zones[DOMAIN]
    await world.sink()
    report = await world.deliverer().deliver(message())
    assert report.outcome.kind is OutcomeKind.PERMANENT
    assert report.outcome.classification == "BadDomain"
    assert report.site is None


async def test_each_message_goes_out_from_its_source(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer()
    a = Source("a", "127.0.0.7", "a.sender.test")
    b = Source("b", "127.0.0.8", "b.sender.test")
    reports = [await deliverer.deliver(message(n=n, source=s)) for n, s in enumerate([a, b, b, a])]
    for report in reports:
        delivered(report)
    assert [r.source for r in reports] == ["a", "b", "b", "a"]
    addresses = ["127.0.0.7", "127.0.0.8", "127.0.0.8", "127.0.0.7"]
    assert [r.source_address for r in reports] == addresses
    assert [m.peer[0] for m in sink.messages] == addresses
    assert [m.ehlo for m in sink.messages] == [f"{s}.sender.test" for s in "abba"]
    assert sink.inbox.connections == 2, "a lane per source, its connection reused"


async def test_non_ascii_address_without_smtputf8_is_permanent(world: World) -> None:
    sink = await world.sink(ehlo_extensions=("PIPELINING",))
    report = await world.deliverer().deliver(message("jos\u00e9"))
    assert report.outcome.kind is OutcomeKind.PERMANENT
    assert report.outcome.reply.enhanced == "5.6.7"
    assert sink.attempts_for(f"jos\u00e9@{DOMAIN}") == 0


async def test_waiters_share_the_connection_limit(world: World) -> None:
    sink = await world.sink(slow_seconds=0.3)
    client = DeliverySettings(wait_timeout_seconds=5)
    deliverer = world.deliverer(client, connection_limit=1)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(deliverer.deliver(message("slow", n=n))) for n in range(3)]
    for task in tasks:
        delivered(task.result())
    assert sink.inbox.connections == 1


async def test_busy_lanes_reuse_their_connections(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer(connection_limit=3, max_deliveries=20)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(deliverer.deliver(message(n=n))) for n in range(60)]
    for task in tasks:
        delivered(task.result())
    assert sink.inbox.connections == 3, "each connection carries max_deliveries messages"


async def test_waiter_timeout_is_a_delay(world: World) -> None:
    sink = await world.sink(slow_seconds=1.0)
    client = DeliverySettings(wait_timeout_seconds=0.1, delayed_retry_seconds=3)
    deliverer = world.deliverer(client, connection_limit=1)
    delivered(await deliverer.deliver(message()))
    async with asyncio.TaskGroup() as group:
        first = group.create_task(deliverer.deliver(message("slow", n=2)))
        second = group.create_task(deliverer.deliver(message("waiter", n=3)))
    delivered(first.result())
    held = second.result()
    assert held.outcome.kind is OutcomeKind.DELAYED
    assert (held.outcome.reply.code, held.outcome.reply.enhanced) == (451, "4.4.5")
    lane = f"default -> {MX1}"
    assert (
        held.outcome.reply.text
        == f"connection limit: no connection free on lane {lane} within 0.1 s"
    )
    assert (held.retry_after, held.site, held.source) == (3, MX1, "default")
    assert sink.attempts_for(f"waiter@{DOMAIN}") == 0


async def test_failing_site_gets_one_connection_until_it_answers(world: World) -> None:
    world.zones.add_mx(DOMAIN, [(10, MX1), (20, MX2)])
    world.zones.add_a(MX1, [DEAD_ADDRESS])
    world.zones.add_a(MX2, [SECOND_ADDRESS])
    await world.sink(SECOND_ADDRESS)
    deliverer = world.deliverer()
    site = f"{MX1},{MX2}"
    assert deliverer.window(site) == CONNECTION_LIMIT
    delivered(await deliverer.deliver(message()))
    assert deliverer.window(site) == 2


OTHER_DOMAIN, OTHER_MX = "other.test", "mx.other.test"


def other_message(n: int) -> OutboundMessage:
    return dataclasses.replace(
        message(n=n), recipient=f"user@{OTHER_DOMAIN}", domain=OTHER_DOMAIN, id=f"o{n}"
    )


def connection_runs(sink: SmtpSink) -> list[int]:
    """How many messages each connection carried, in order."""
    ports = [m.peer[1] for m in sink.messages]
    return [len(list(run)) for _, run in itertools.groupby(ports)]


async def test_provider_sets_deliveries_per_connection(world: World) -> None:
    world.zones.add_mx(OTHER_DOMAIN, [(10, OTHER_MX)])
    world.zones.add_a(OTHER_MX, [SECOND_ADDRESS])
    overridden = await world.sink()
    other = await world.sink(SECOND_ADDRESS)
    example = {"match": [".EXAMPLE.test"], "max_deliveries_per_connection": 2}
    deliverer = world.deliverer(max_deliveries=3, shaping={"provider": {"example": example}})
    for n in range(5):
        delivered(await deliverer.deliver(message(n=n)))
        delivered(await deliverer.deliver(other_message(n)))
    assert connection_runs(overridden) == [2, 2, 1]
    assert overridden.inbox.connections == 3
    assert connection_runs(other) == [3, 2]
    assert other.inbox.connections == 2


async def test_provider_sets_tls_and_connection_limit(world: World, tmp_path: Path) -> None:
    sink = await world.sink(tls=make_tls_pair(tmp_path).server)
    example = {"match": ["example.test"], "enable_tls": "disabled", "connection_limit": 1}
    deliverer = world.deliverer(shaping={"provider": {"example": example}})
    assert deliverer.window(MX1) == 1
    assert deliverer.window(OTHER_MX) == CONNECTION_LIMIT
    report = await deliverer.deliver(message())
    delivered(report)
    assert report.tls_version is None
    assert [m.tls_version for m in sink.messages] == [None]


def open_connections_metric() -> float:
    value = REGISTRY.get_sample_value("penguin_smtp_connections_open")
    assert value is not None
    return value


async def test_open_connections_metric_follows_the_connections(world: World) -> None:
    await world.sink()
    before = open_connections_metric()
    deliverer = world.deliverer()
    delivered(await deliverer.deliver(message()))
    assert deliverer.open_connections == 1
    assert open_connections_metric() == before + 1
    await deliverer.close()
    assert deliverer.open_connections == 0
    assert open_connections_metric() == before


async def test_a_source_table_requires_tls_on_that_sources_lanes(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer(shaping={"source": {"strict": {"enable_tls": "required"}}})
    strict = Source("strict", "0.0.0.0", "strict.sender.test")
    report = await deliverer.deliver(message(source=strict))
    assert report.outcome.kind is OutcomeKind.TRANSIENT
    assert sink.messages == []
    delivered(await deliverer.deliver(message(n=2)))
    assert len(sink.messages) == 1


# Connection limits shared through the limiter.

BOUND = Source("a", "127.0.0.7", "a.sender.test")


@pytest.fixture(params=["local", "redis"])
async def shared_limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    """One limiter for several deliverers: the in-process one, or Redis."""
    if request.param == "redis":
        limiter = open_limiter(request.getfixturevalue("redis_settings"), FakeClock())
    else:
        limiter = LocalLimiter(FakeClock())
    try:
        yield limiter
    finally:
        await limiter.close()


async def deliver_until_sent(deliverer: SmtpDeliverer, messages: list[OutboundMessage]) -> int:
    """Deliver each message, again while it is delayed; the number of delays."""
    delays = 0
    for outbound in messages:
        while (report := await deliverer.deliver(outbound)).outcome.kind is OutcomeKind.DELAYED:
            delays += 1
        delivered(report)
    return delays


async def deliver_concurrently(
    deliverers: list[SmtpDeliverer], messages: list[OutboundMessage], tasks_each: int
) -> None:
    """Each deliverer sends every message through ``tasks_each`` concurrent tasks."""
    async with asyncio.TaskGroup() as group:
        for d, deliverer in enumerate(deliverers):
            for t in range(tasks_each):
                share = [
                    dataclasses.replace(m, id=f"{d}-{m.id}", recipient=f"slow-{d}-{m.recipient}")
                    for m in messages[t::tasks_each]
                ]
                group.create_task(deliver_until_sent(deliverer, share))


async def test_deliverers_sharing_a_limiter_keep_the_lane_connection_limit(
    world: World, shared_limiter: Limiter
) -> None:
    sink = await world.sink(slow_seconds=0.05)
    deliverers = [
        world.deliverer(connection_limit=2, max_deliveries=1, limiter=shared_limiter)
        for _ in range(2)
    ]
    messages = [message(n=n, source=BOUND) for n in range(12)]
    await deliver_concurrently(deliverers, messages, tasks_each=4)
    assert len(sink.messages) == 24
    assert sink.inbox.peak_connections(BOUND.address) == 2, "each alone would open 2"
    assert await shared_limiter.slots_in_use(f"conn:a|{MX1}", world.clock.now()) == 0


async def test_provider_connection_limit_spans_its_sites(
    world: World, shared_limiter: Limiter
) -> None:
    world.zones.add_mx(OTHER_DOMAIN, [(10, OTHER_MX)])
    world.zones.add_a(OTHER_MX, [SINK_ADDRESS])
    sink = await world.sink(slow_seconds=0.05)
    example = {"match": [".example.test", ".other.test"], "provider_connection_limit": 2}
    deliverers = [
        world.deliverer(
            connection_limit=2,
            max_deliveries=1,
            shaping={"provider": {"example": example}},
            limiter=shared_limiter,
        )
        for _ in range(2)
    ]
    messages = [
        dataclasses.replace(m, source=BOUND)
        for n in range(6)
        for m in (message(n=n), other_message(n))
    ]
    await deliver_concurrently(deliverers, messages, tasks_each=4)
    assert len(sink.messages) == 24
    assert {m.rcpt_tos[0].rpartition("@")[2] for m in sink.messages} == {DOMAIN, OTHER_DOMAIN}
    assert sink.inbox.peak_connections(BOUND.address) == 2, "2 per site, 2 per deliverer"
    now = world.clock.now()
    assert await shared_limiter.slots_in_use("provider_conn:a|example", now) == 0


async def test_no_shared_slot_is_a_delay_that_counts_no_attempt(world: World) -> None:
    sink = await world.sink()
    limiter = LocalLimiter(world.clock)
    holding = world.deliverer(connection_limit=1, limiter=limiter)
    client = DeliverySettings(wait_timeout_seconds=0.2, delayed_retry_seconds=4)
    waiting = world.deliverer(client, connection_limit=1, limiter=limiter)
    delivered(await holding.deliver(message(source=BOUND)))
    assert holding.idle_connections == 1, "its idle connection keeps the lane's slot"
    report = await waiting.deliver(message("held", n=2, source=BOUND))
    assert report.outcome.kind is OutcomeKind.DELAYED
    assert report.outcome.reply.enhanced == "4.4.5"
    assert report.outcome.reply.text == f"connection limit: no slot on lane a -> {MX1} within 0.2 s"
    assert report.retry_after == 4
    assert sink.attempts_for(f"held@{DOMAIN}") == 0
    now = world.clock.now()
    claimed = QueuedMessage(
        id="m2",
        submission_id="s",
        tenant_id=1,
        queue=f"acme@{DOMAIN}",
        campaign="",
        sender="bounces@sender.test",
        recipient=f"held@{DOMAIN}",
        domain=DOMAIN,
        state=MessageState.LEASED,
        due_at=now,
        created_at=now,
        attempts=3,
    )
    settlement, record = settle_attempt(
        claimed,
        report,
        lease_token="t",
        now=now,
        size=len(BODY),
        retry=RetrySettings(),
        rng=random.Random(1),
        context=RecordContext("node", "acme"),
    )
    assert (settlement.state, settlement.attempts) == (MessageState.QUEUED, 3)
    assert settlement.due_at == world.clock.now() + 4
    assert (record.type, record.num_attempts) == (RecordType.DELAYED, 3)
    await holding.close()
    delivered(await waiting.deliver(message("held", n=2, source=BOUND)))


async def test_sweep_renews_the_slots_of_open_connections(world: World) -> None:
    await world.sink()
    limiter = LocalLimiter(world.clock)
    long_idle = {"source": {"a": {"idle_timeout_seconds": 10 * SLOT_TTL_SECONDS}}}
    deliverer = world.deliverer(limiter=limiter, shaping=long_idle)
    delivered(await deliverer.deliver(message(source=BOUND)))
    key = f"conn:a|{MX1}"
    for _ in range(3):
        world.clock.advance(SLOT_TTL_SECONDS * 0.8)
        await deliverer.sweep()
    world.clock.advance(SLOT_TTL_SECONDS * 0.8)
    assert await limiter.slots_in_use(key, world.clock.now()) == 1
    await deliverer.close()
    assert await limiter.slots_in_use(key, world.clock.now()) == 0


async def test_connection_rate_beyond_the_wait_is_a_delay(world: World) -> None:
    sink = await world.sink()
    rate = {"source": {"a": {"max_connection_rate": "1/min"}}}
    deliverer = world.deliverer(max_deliveries=1, shaping=rate)
    delivered(await deliverer.deliver(message(source=BOUND)))
    report = await deliverer.deliver(message("later", n=2, source=BOUND))
    assert report.outcome.kind is OutcomeKind.DELAYED
    assert report.outcome.reply.text.startswith(
        f"connection rate 1/60s: next connection on lane a -> {MX1} in "
    )
    assert report.retry_after == pytest.approx(60)
    assert sink.attempts_for(f"later@{DOMAIN}") == 0
    world.clock.advance(60)
    delivered(await deliverer.deliver(message("later", n=2, source=BOUND)))
    assert sink.inbox.connections == 2


async def test_connection_rate_spaces_new_connections(world: World) -> None:
    sink = await world.sink()
    rate = {"source": {"a": {"max_connection_rate": "20/s,max_burst=1"}}}
    deliverer = world.deliverer(max_deliveries=1, shaping=rate, clock=SystemClock())
    async with asyncio.TaskGroup() as group:
        for n in range(5):
            group.create_task(deliver_until_sent(deliverer, [message(n=n, source=BOUND)]))
    accepted = sink.inbox.accepted_at(BOUND.address)
    assert len(accepted) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(accepted)]
    assert min(gaps) > 0.03, gaps


async def test_a_message_brings_its_lanes_scaled_shaping(world: World) -> None:
    sink = await world.sink()
    deliverer = world.deliverer(max_deliveries=100)
    scaled = dataclasses.replace(
        shaping_of(max_deliveries=100).for_lane("default", MX1), max_deliveries_per_connection=2
    )
    for n in range(5):
        delivered(await deliverer.deliver(dataclasses.replace(message(n=n), shaping=scaled)))
    assert connection_runs(sink) == [2, 2, 1]
    delivered(await deliverer.deliver(message(n=6)))
    delivered(await deliverer.deliver(message(n=7)))
    assert connection_runs(sink) == [2, 2, 3], "without it, the configured 100 per connection"
