"""The delivery service end to end in one process, with a clock the test moves.

Real parts: the SQLite store, the SMTP client, a DNS server and SMTP sinks
on loopback. Messages are accepted through the real acceptance code.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dkim
import dns.message
import dns.query
import dns.rdatatype
import pytest

from config import Settings
from config.loader import parse_settings
from engine.clock import FakeClock
from engine.delivery.bounce_classify import BounceClassifier
from engine.delivery.service import DeliveryService
from engine.delivery.transform import MessageTransform, ReturnPathTransform, TransformChain
from engine.dkim.keys import generate_key
from engine.dkim.signing_keys import SigningKeys
from engine.limits.local import LocalLimiter
from engine.model import (
    MessageState,
    QueuedMessage,
    SendingDomain,
    Submission,
    Tenant,
    TrackingPolicy,
)
from engine.records import metrics
from engine.records.log import RecordLog
from engine.records.record import Record
from engine.return_path import REFERENCE_HEADER, ReturnPathCodec, derive_key
from engine.runtime.app import lane_scheduler
from engine.scheduler import Dispatch, Scheduler
from engine.scheduler.shaping import Shaping
from engine.scheduler.sources import Source
from engine.sealing import Sealer
from engine.smtp.reply import Reply
from engine.store import Store
from engine.store.sqlite import SqliteStore
from engine.submission.acceptance import Reception, parse_header_fields, plan_submission
from smtp_out.deliverer import SmtpDeliverer
from smtp_out.dns import MxResolver
from tests.harness.conditions import wait_for
from tests.harness.dns_server import DnsServer, Zones
from tests.harness.smtp_sink import SmtpSink
from tests.harness.tracking_urls import FakeTrackingUrls, target
from tracking_edge.rewriting import TrackingTransform

MX_ADDRESS = "127.0.0.2"
SOURCE_ADDRESS = "127.0.0.10"
SchedulerFactory = Callable[[Store, Settings, MxResolver, Shaping, FakeClock], Scheduler]
RX = Reception(
    protocol="ESMTPSA",
    peer_host="127.0.0.1",
    ehlo_name="client.test",
    session_id="s",
    username="u",
    tls_version=None,
    tls_cipher=None,
    hostname="mta.penguin.test",
    nodeid="n1",
)


@dataclass
class World:
    store: SqliteStore
    clock: FakeClock
    sink: SmtpSink
    dns: DnsServer
    service: DeliveryService
    tenants: dict[str, Tenant]
    log_path: Path
    zones: Zones
    service_sealer: Sealer

    async def submit(
        self,
        recipients: list[str],
        domain: str = "rsa.acme.test",
        headers: str = "",
        sender: str | None = None,
        content: str = "Hello!\r\n",
    ) -> str:
        """Submit a message From news@``domain``, with ``sender`` (default: the From
        address) as its envelope sender; its submission id."""
        submission, records = self.plan(recipients, domain, headers, sender, content)
        await self.store.accept([submission], records)
        self.service.wake()
        return submission.id

    def plan(
        self,
        recipients: list[str],
        domain: str = "rsa.acme.test",
        headers: str = "",
        sender: str | None = None,
        content: str = "Hello!\r\n",
    ) -> tuple[Submission, list[Record]]:
        """The submission ``submit`` accepts, and its records, not yet accepted."""
        author = f"news@{domain}"
        sender = author if sender is None else sender
        raw = (
            f"From: News <{author}>\r\nTo: {recipients[0]}\r\nSubject: hello\r\n{headers}"
            "List-Unsubscribe: <https://u.acme.test/x>\r\n"
            f"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n{content}"
        ).encode()
        submission, records = plan_submission(
            tenant=self.tenants["acme"],
            sender=sender,
            recipients=recipients,
            raw=raw,
            fields=parse_header_fields(raw),
            submission_id=secrets.token_hex(8),
            now=self.clock.now(),
            reception=RX,
        )
        return submission, list(records)

    async def state_of(self, message_id: str) -> MessageState:
        message = await self.store.get_message(message_id)
        assert message is not None
        return message.state

    async def wait_state(self, message_id: str, *states: MessageState) -> None:
        await wait_for(lambda: self._in_state(message_id, states), f"{message_id} in {states}")

    async def _in_state(self, message_id: str, states: tuple[MessageState, ...]) -> bool:
        return await self.state_of(message_id) in states

    async def records(self, message_id: str) -> list[dict[str, Any]]:
        return await self.store.list_records(message_id)


@pytest.fixture
def sources() -> dict[str, str]:
    """The ``[sources.NAME]`` addresses, all in the default pool."""
    return {"default": SOURCE_ADDRESS}


def production_scheduler(
    store: Store, settings: Settings, resolver: MxResolver, shaping: Shaping, clock: FakeClock
) -> Scheduler:
    return lane_scheduler(
        store=store,
        limiter=LocalLimiter(clock),
        settings=settings,
        resolver=resolver,
        shaping=shaping,
        nodeid="n1",
    )


@pytest.fixture
def scheduler() -> SchedulerFactory:
    return production_scheduler


CODEC = ReturnPathCodec({"a": derive_key(bytes(32), "a")}, "a")
"""The return-path codec of the engine under test."""


@pytest.fixture
def transform() -> MessageTransform:
    return ReturnPathTransform(CODEC)


@pytest.fixture
async def world(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    sources: dict[str, str],
    scheduler: SchedulerFactory,
    transform: MessageTransform,
) -> AsyncIterator[World]:
    tuning: dict[str, float] = getattr(request, "param", {})  # [delivery] settings
    clock = FakeClock(time.time())
    store = SqliteStore(str(tmp_path / "penguin.db"))
    await store.migrate()
    sealer = Sealer(secrets.token_bytes(32))
    acme = await store.create_tenant("acme", clock.now())
    zones = Zones()
    for name, algorithm in (("rsa.acme.test", "rsa"), ("ed.acme.test", "ed25519")):
        key = generate_key(algorithm)
        await store.add_domain(
            SendingDomain(
                acme.id, name, "s1", algorithm, sealer.seal(key.private_pem), key.public_b64, 0.0
            )
        )
        zones.add_txt(f"s1._domainkey.{name}", f"v=DKIM1; k={algorithm}; p={key.public_b64}")
    for domain in ("example.com", "example.org"):
        zones.add_mx(domain, [(10, "mx.example.net")])
    zones.add_a("mx.example.net", [MX_ADDRESS])
    zones.add_null_mx("nullmx.test")
    dns_server = DnsServer(zones)
    dns_host, dns_port = await dns_server.start()
    sink = SmtpSink(slow_seconds=0.2)
    _, sink_port = await sink.start(MX_ADDRESS, 0)
    settings = parse_settings(
        {
            "dns": {"nameservers": [f"{dns_host}:{dns_port}"], "timeout_seconds": 2},
            "delivery": {
                "port": sink_port,
                "data_timeout_seconds": 1.5,
                "command_timeout_seconds": 2,
                "idle_poll_seconds": 0.05,
                "signing_threads": 2,
                **tuning,
            },
            "sources": {
                name: {"address": address, "ehlo_hostname": f"{name}.mta.test"}
                for name, address in sources.items()
            },
            "pools": {"default": {"sources": list(sources)}},
            "retry": {"first_retry_seconds": 600, "max_age_seconds": 7200, "jitter": 0.1},
            "scheduler": {"refresh_seconds": 0.1},
        }
    )
    resolver = MxResolver([(dns_host, dns_port)], 2.0, clock, random.Random(1))
    shaping = Shaping.load()
    deliverer = SmtpDeliverer(
        delivery=settings.delivery,
        resolver=resolver,
        classifier=BounceClassifier(),
        clock=clock,
        shaping=shaping,
        limiter=LocalLimiter(clock),
    )
    log_path = tmp_path / "records.jsonl"
    record_log = RecordLog(str(log_path))
    service = DeliveryService(
        store=store,
        scheduler=scheduler(store, settings, resolver, shaping, clock),
        deliverer=deliverer,
        transform=transform,
        keys=SigningKeys(store, sealer, clock),
        settings=settings,
        clock=clock,
        record_log=record_log,
        owner="n1:1",
        rng=random.Random(7),
    )
    task = asyncio.create_task(service.run())
    try:
        yield World(
            store, clock, sink, dns_server, service, {"acme": acme}, log_path, zones, sealer
        )
    finally:
        service.stop()
        await asyncio.wait_for(task, 20)
        await deliverer.close()
        record_log.close()
        await sink.stop()
        await dns_server.stop()
        await store.close()


def dkim_dns(server: tuple[str, int]) -> Callable[..., bytes]:
    """dkimpy's TXT lookup, answered by the test DNS server over the network."""

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        query = dns.message.make_query(name.decode().rstrip("."), dns.rdatatype.TXT)
        response = dns.query.udp(query, server[0], port=server[1], timeout=timeout)
        for rrset in response.answer:
            for rdata in rrset:
                return b"".join(rdata.strings)
        return b""

    return lookup


def signings() -> float:
    return metrics.REGISTRY.get_sample_value("penguin_dkim_sign_seconds_count") or 0.0


def signed_headers(data: bytes) -> list[str]:
    """The ``h=`` list of the first DKIM-Signature field."""
    field = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"").replace(b" ", b"")
    match = re.search(rb"h=([^;]+)", field)
    assert match is not None
    return match.group(1).decode().lower().split(":")


@pytest.mark.parametrize(
    "world",
    [{"signing_threads": 2}, {"signing_threads": 0}],
    indirect=True,
    ids=["signing-threads", "on-the-loop"],
)
@pytest.mark.parametrize("domain", ["rsa.acme.test", "ed.acme.test"])
async def test_delivered_copies_carry_a_valid_dkim_signature(world: World, domain: str) -> None:
    signed_before = signings()
    sid = await world.submit(["a@example.com", "b@example.org"], domain)
    received = await world.sink.wait_for_count(2, timeout=15)
    assert signings() - signed_before == 1, "one signing per submission, for all its recipients"
    lookup = dkim_dns(world.dns.address)
    for message in received:
        verified = await asyncio.to_thread(dkim.verify, message.data, dnsfunc=lookup)
        assert verified, message.data[:400]
        assert signed_headers(message.data).count("from") == 2
        assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(signed_headers(message.data))
        assert message.peer[0] == SOURCE_ADDRESS
    for n in (1, 2):
        await world.wait_state(f"{sid}-{n}", MessageState.DELIVERED)
        delivery = (await world.records(f"{sid}-{n}"))[-1]
        assert delivery["type"] == "Delivery"
        assert delivery["response"]["code"] == 250
        assert delivery["site"] == "mx.example.net"
        assert delivery["peer_address"]["addr"] == MX_ADDRESS
        assert delivery["source_address"] == SOURCE_ADDRESS
        assert delivery["num_attempts"] == 1
        assert delivery["meta"]["tenant"] == "acme"


@pytest.mark.parametrize(
    "world",
    [{"signing_threads": 2}, {"signing_threads": 0}],
    indirect=True,
    ids=["signing-threads", "on-the-loop"],
)
async def test_a_claimed_batch_is_signed_copy_by_copy_and_one_bad_key_parks_only_its_own(
    world: World,
) -> None:
    """Submissions claimed in one batch are signed together: each copy with its own
    domain's key, once per submission, and a key that cannot be opened parks only the
    messages signed with it."""
    current = await world.store.get_domain("rsa.acme.test")
    assert current is not None
    await world.store.rotate_domain_key(
        replace(current, selector="broken", private_key_sealed=b"\x01not a sealed key")
    )
    world.clock.advance(61)
    planned = [
        world.plan(["a@example.com", "b@example.org"], "ed.acme.test"),
        world.plan(["c@example.com"], "rsa.acme.test"),
        world.plan(["d@example.com", "e@example.org"], "ed.acme.test"),
        world.plan(["f@example.com"], "unknown.test"),
    ]
    signed_before = signings()
    await world.store.accept([s for s, _ in planned], [r for _, rs in planned for r in rs])
    world.service.wake()
    received = await world.sink.wait_for_count(5, timeout=15)
    (good, _), (bad, _), (other, _), (unsigned, _) = planned
    await world.wait_state(f"{bad.id}-1", MessageState.SHUNTED)
    assert "SealError" in (await world.records(f"{bad.id}-1"))[-1]["response"]["content"]
    for sid, n in ((good.id, 1), (good.id, 2), (other.id, 1), (other.id, 2), (unsigned.id, 1)):
        await world.wait_state(f"{sid}-{n}", MessageState.DELIVERED)
    assert signings() - signed_before == 2, "one signing per submission signed"
    lookup = dkim_dns(world.dns.address)
    by_recipient = {m.rcpt_tos[0]: m.data for m in received}
    for recipient in ("a@example.com", "b@example.org", "d@example.com", "e@example.org"):
        data = by_recipient[recipient]
        assert await asyncio.to_thread(dkim.verify, data, dnsfunc=lookup), data[:400]
        assert b"d=ed.acme.test" in data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b"")
    assert b"DKIM-Signature" not in by_recipient["f@example.com"].split(b"\r\n\r\n", 1)[0]


async def test_tempfail_is_retried_after_the_backoff(world: World) -> None:
    sid = await world.submit(["tempfail@example.com"])
    message_id = f"{sid}-1"
    await wait_for(lambda: _has_record(world, message_id, "TransientFailure"), "a TransientFailure")
    message = await world.store.get_message(message_id)
    assert message is not None and message.state is MessageState.QUEUED
    assert 600 <= message.due_at - world.clock.now() <= 660
    assert world.sink.attempts_for("tempfail@example.com") == 1

    world.clock.advance(300)
    world.service.wake()
    await asyncio.sleep(0.2)
    assert world.sink.attempts_for("tempfail@example.com") == 1

    world.clock.advance(400)
    world.service.wake()
    await wait_for(
        lambda: _sync(world.sink.attempts_for("tempfail@example.com") == 2), "a second attempt"
    )
    records = await world.records(message_id)
    failure = next(r for r in records if r["type"] == "TransientFailure")
    assert failure["response"]["code"] == 451
    assert failure["bounce_classification"] == "TransientFailure"


async def test_permfail_bounces_with_a_classification(world: World) -> None:
    sid = await world.submit(["permfail@example.com"])
    await world.wait_state(f"{sid}-1", MessageState.BOUNCED)
    bounce = (await world.records(f"{sid}-1"))[-1]
    assert bounce["type"] == "Bounce"
    assert bounce["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 1}
    assert bounce["bounce_classification"] == "InvalidRecipient"


async def test_null_mx_bounces_as_bad_domain(world: World) -> None:
    sid = await world.submit(["someone@nullmx.test"])
    await world.wait_state(f"{sid}-1", MessageState.BOUNCED)
    assert (await world.records(f"{sid}-1"))[-1]["bounce_classification"] == "BadDomain"


async def test_message_expires_after_its_maximum_age(world: World) -> None:
    sid = await world.submit(["tempfail@example.com"])
    message_id = f"{sid}-1"
    await wait_for(lambda: _has_record(world, message_id, "TransientFailure"), "first failure")
    for _ in range(6):
        world.clock.advance(1800)
        world.service.wake()
        if await world.state_of(message_id) is MessageState.EXPIRED:
            break
        await asyncio.sleep(0.2)
    await world.wait_state(message_id, MessageState.EXPIRED)
    assert (await world.records(message_id))[-1]["type"] == "Expiration"


@pytest.mark.parametrize("local", ["disconnect-in-data", "garbage", "stall", "421-busy"])
async def test_a_faulty_receiver_costs_a_retry_not_the_message(world: World, local: str) -> None:
    sid = await world.submit([f"{local}@example.com"])
    message_id = f"{sid}-1"
    await wait_for(lambda: _has_record(world, message_id, "TransientFailure"), "a retry")
    assert await world.state_of(message_id) is MessageState.QUEUED
    after = await world.submit(["fine@example.com"])
    await world.wait_state(f"{after}-1", MessageState.DELIVERED)


async def test_records_reach_the_json_log(world: World) -> None:
    sid = await world.submit(["log@example.com"])
    await world.wait_state(f"{sid}-1", MessageState.DELIVERED)
    await wait_for(lambda: _sync(f'"{sid}-1"' in world.log_path.read_text()), "the JSON line")
    assert '"type":"Delivery"' in world.log_path.read_text()


async def _has_record(world: World, message_id: str, record_type: str) -> bool:
    return any(r["type"] == record_type for r in await world.records(message_id))


async def _sync(value: bool) -> bool:
    return value


async def test_key_rotation_by_selector_without_restart(world: World) -> None:
    first = await world.submit(["before@example.com"])
    await world.wait_state(f"{first}-1", MessageState.DELIVERED)
    current = await world.store.get_domain("rsa.acme.test")
    assert current is not None
    key = generate_key("ed25519")
    sealer = world.service_sealer
    await world.store.rotate_domain_key(
        replace(
            current,
            selector="s2",
            algorithm="ed25519",
            private_key_sealed=sealer.seal(key.private_pem),
            public_key_b64=key.public_b64,
        )
    )
    world.zones.add_txt("s2._domainkey.rsa.acme.test", f"v=DKIM1; k=ed25519; p={key.public_b64}")
    world.clock.advance(61)
    second = await world.submit(["after@example.com"])
    await world.wait_state(f"{second}-1", MessageState.DELIVERED)
    lookup = dkim_dns(world.dns.address)
    by_rcpt = {m.rcpt_tos[0]: m.data for m in world.sink.messages}
    assert b" s=s1;" in by_rcpt["before@example.com"].split(b"\r\n\r\n")[0]
    assert b"s=s2;" in by_rcpt["after@example.com"].split(b"\r\n\r\n")[0].replace(b"\r\n ", b" ")
    for data in by_rcpt.values():
        assert await asyncio.to_thread(dkim.verify, data, dnsfunc=lookup)


@pytest.mark.parametrize(
    "world", [{"max_waiters": 1, "delayed_retry_seconds": 30}], indirect=True, ids=["1-waiter"]
)
async def test_a_delivery_held_back_by_the_connection_limit_counts_no_attempt(
    world: World,
) -> None:
    count = 13  # the shipped 10 connections per lane, 1 waiter, 2 held back
    sid = await world.submit([f"slow-{n}@example.com" for n in range(count)])
    ids = [f"{sid}-{n}" for n in range(1, count + 1)]
    await world.sink.wait_for_count(count - 2, timeout=15)
    for message_id in ids:
        await world.wait_state(message_id, MessageState.DELIVERED, MessageState.QUEUED)
    held = [m for m in ids if await world.state_of(m) is MessageState.QUEUED]
    assert len(held) == 2
    for message_id in held:
        message = await world.store.get_message(message_id)
        assert message is not None and message.attempts == 0
        assert message.due_at == pytest.approx(world.clock.now() + 30)
        delayed = (await world.records(message_id))[-1]
        assert (delayed["type"], delayed["num_attempts"]) == ("Delayed", 0)
        assert delayed["response"]["code"] == 451
        assert delayed["response"]["content"].startswith("connection limit: ")
    world.clock.advance(30)
    world.service.wake()
    for message_id in held:
        await world.wait_state(message_id, MessageState.DELIVERED)
        assert (await world.records(message_id))[-1]["num_attempts"] == 1


async def test_domains_on_one_mx_share_a_site_and_its_connection(world: World) -> None:
    first = await world.submit(["a@example.com"])
    await world.wait_state(f"{first}-1", MessageState.DELIVERED)
    second = await world.submit(["b@example.org"])
    await world.wait_state(f"{second}-1", MessageState.DELIVERED)
    sites = {(await world.records(f"{sid}-1"))[-1]["site"] for sid in (first, second)}
    assert sites == {"mx.example.net"}
    assert world.sink.inbox.connections == 1
    assert len({m.peer for m in world.sink.messages}) == 1


async def test_a_message_that_breaks_the_engine_is_parked_not_dropped(world: World) -> None:
    current = await world.store.get_domain("rsa.acme.test")
    assert current is not None
    await world.store.rotate_domain_key(
        replace(current, selector="broken", private_key_sealed=b"\x01not a sealed key")
    )
    world.clock.advance(61)
    sid = await world.submit(["victim@example.com"])
    await world.wait_state(f"{sid}-1", MessageState.SHUNTED)
    shunted = (await world.records(f"{sid}-1"))[-1]
    assert shunted["type"] == "Shunted"
    assert "SealError" in shunted["response"]["content"]
    message = await world.store.get_message(f"{sid}-1")
    assert message is not None and message.last_error and "SealError" in message.last_error
    healthy = await world.submit(["fine@example.com"], "ed.acme.test")
    await world.wait_state(f"{healthy}-1", MessageState.DELIVERED)


async def test_a_running_attempt_keeps_its_message_when_its_lease_runs_out(world: World) -> None:
    """The lease runs out on the clock while the receiver is slow to answer the final
    dot, and the service claims the message again: the running attempt keeps it."""
    world.sink.slow_seconds = 1.0  # under the 1.5 s DATA timeout
    sid = await world.submit(["slow@example.com"])
    message_id = f"{sid}-1"
    await wait_for(lambda: _sync(world.sink.attempts_for("slow@example.com") == 1), "the RCPT")
    leased = await world.store.get_message(message_id)
    assert leased is not None and leased.lease_expires is not None
    expires = leased.lease_expires
    world.clock.advance(expires - world.clock.now())
    world.service.wake()
    await wait_for(lambda: _leased_after(world, message_id, expires), "a new claim")

    await world.wait_state(message_id, MessageState.DELIVERED)
    assert world.sink.attempts_for("slow@example.com") == 1
    assert world.sink.count_for("slow@example.com") == 1
    records = await world.records(message_id)
    assert [r["type"] for r in records] == ["Reception", "Delivery"]


async def _leased_after(world: World, message_id: str, expires: float) -> bool:
    message = await world.store.get_message(message_id)
    assert message is not None
    return message.lease_expires is not None and message.lease_expires > expires


@pytest.mark.parametrize("world", [{"lease_seconds": 1}], indirect=True)
async def test_a_running_attempt_renews_its_lease(world: World) -> None:
    """While the receiver is slow to answer the final dot, the lease is renewed from
    the clock, so another process finds nothing to claim when the first lease ends."""
    world.sink.slow_seconds = 1.0  # under the 1.5 s DATA timeout
    sid = await world.submit(["slow@example.com"])
    message_id = f"{sid}-1"
    await wait_for(lambda: _sync(world.sink.attempts_for("slow@example.com") == 1), "the RCPT")
    leased = await world.store.get_message(message_id)
    assert leased is not None and leased.lease_expires is not None
    expires = leased.lease_expires
    world.clock.advance(0.5)
    await wait_for(lambda: _leased_after(world, message_id, expires), "a renewal")
    renewed = await world.store.get_message(message_id)
    assert renewed is not None
    assert renewed.lease_token == leased.lease_token
    assert renewed.lease_expires == world.clock.now() + 1
    assert await world.store.claim("n2:1", expires, 1.0, 10) == []

    await world.wait_state(message_id, MessageState.DELIVERED)
    assert world.sink.count_for("slow@example.com") == 1


@pytest.mark.parametrize(
    "sources", [{"first": "127.0.0.11", "second": "127.0.0.12"}], ids=["two-sources"]
)
async def test_the_sources_of_the_pool_take_turns(world: World) -> None:
    sid = await world.submit([f"r{n}@example.com" for n in range(4)])
    for n in range(1, 5):
        await world.wait_state(f"{sid}-{n}", MessageState.DELIVERED)
    peers = sorted(m.peer[0] for m in world.sink.messages)
    assert peers == ["127.0.0.11", "127.0.0.11", "127.0.0.12", "127.0.0.12"]
    for n in range(1, 5):
        delivery = (await world.records(f"{sid}-{n}"))[-1]
        name = {"127.0.0.11": "first", "127.0.0.12": "second"}[delivery["source_address"]]
        copy = next(m for m in world.sink.messages if m.rcpt_tos == (f"r{n - 1}@example.com",))
        assert (copy.peer[0], copy.ehlo) == (delivery["source_address"], f"{name}.mta.test")


class SourceByDomain:
    """A scheduler that sends each message from the source named after its domain."""

    def __init__(self, store: Store, sources: Mapping[str, Source], shaping: Shaping) -> None:
        self._store = store
        self._sources = sources
        self._shaping = shaping

    async def next_batch(
        self, *, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[Dispatch]:
        claimed = await self._store.claim(owner, now, lease_seconds, limit)
        return [self._dispatch(message) for message in claimed]

    def _dispatch(self, message: QueuedMessage) -> Dispatch:
        source = self._sources[message.domain]
        return Dispatch(message, source, message.domain, self._shaping.for_lane(source.name, ""))

    def next_wakeup(self) -> float:
        return math.inf

    async def finished(
        self, dispatch: Dispatch, now: float, kind: str = "", reply: Reply | None = None
    ) -> list[Record]:
        return []

    async def report(
        self, now: float, connections: Mapping[tuple[str, str], int]
    ) -> dict[str, Any]:
        return {}


def _by_domain(
    store: Store, _settings: Settings, _resolver: MxResolver, shaping: Shaping, _clock: FakeClock
) -> Scheduler:
    return SourceByDomain(
        store,
        {
            "example.com": Source("com", "127.0.0.21", "com.mta.test"),
            "example.org": Source("org", "127.0.0.22", "org.mta.test"),
        },
        shaping,
    )


@pytest.mark.parametrize("scheduler", [_by_domain], ids=["source-by-domain"])
async def test_each_message_goes_out_from_the_source_its_scheduler_chose(world: World) -> None:
    sid = await world.submit(["a@example.com", "b@example.org", "c@example.com"])
    for n in range(1, 4):
        await world.wait_state(f"{sid}-{n}", MessageState.DELIVERED)
    peers = {m.rcpt_tos[0]: (m.peer[0], m.ehlo) for m in world.sink.messages}
    assert peers == {
        "a@example.com": ("127.0.0.21", "com.mta.test"),
        "b@example.org": ("127.0.0.22", "org.mta.test"),
        "c@example.com": ("127.0.0.21", "com.mta.test"),
    }
    sources = [(await world.records(f"{sid}-{n}"))[-1]["source_address"] for n in (1, 2, 3)]
    assert sources == ["127.0.0.21", "127.0.0.22", "127.0.0.21"]


class RecipientHeader(ReturnPathTransform):
    """A per-recipient transform: the engine's, plus a header naming the recipient."""

    def per_recipient(self, message: QueuedMessage) -> bool:
        return True

    def body(self, message: QueuedMessage, body: bytes) -> bytes:
        header = f"X-Recipient: {message.recipient}\r\n".encode()
        return header + super().body(message, body)


@pytest.mark.parametrize("transform", [RecipientHeader(CODEC)], ids=["per-recipient"])
async def test_a_per_recipient_transform_shapes_each_signed_copy(world: World) -> None:
    signed_before = signings()
    sid = await world.submit(["a@example.com", "b@example.org"])
    for n in (1, 2):
        await world.wait_state(f"{sid}-{n}", MessageState.DELIVERED)
    assert signings() - signed_before == 2, "each recipient's copy signed on its own"
    lookup = dkim_dns(world.dns.address)
    for message in world.sink.messages:
        [recipient] = message.rcpt_tos
        header_section = message.data.split(b"\r\n\r\n", 1)[0]
        assert f"\r\nX-Recipient: {recipient}\r\n".encode() in header_section
        assert await asyncio.to_thread(dkim.verify, message.data, dnsfunc=lookup)


def header_values(data: bytes, name: str) -> list[str]:
    """The values of the header fields ``name`` of a message as received."""
    fields = parse_header_fields(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    return [f.value for f in fields if f.name.lower() == name.lower()]


@pytest.mark.parametrize("domain", ["rsa.acme.test", "ed.acme.test"])
async def test_each_recipient_gets_its_own_signed_return_path_on_one_signed_body(
    world: World, domain: str
) -> None:
    signed_before = signings()
    recipients = ["a@example.com", "b@example.org", "c@example.com"]
    sid = await world.submit(recipients, domain)
    received = await world.sink.wait_for_count(3, timeout=15)
    assert signings() - signed_before == 1, "one body signed for all the recipients"
    assert len({m.data for m in received}) == 1, "the same signed body for every recipient"
    lookup = dkim_dns(world.dns.address)
    for message in received:
        [recipient] = message.rcpt_tos
        local, _, return_domain = message.mail_from.partition("@")
        assert return_domain == f"bounces.{domain}"
        assert CODEC.message_id(local) == f"{sid}-{recipients.index(recipient) + 1}"
        assert CODEC.message_id(local.upper()) == f"{sid}-{recipients.index(recipient) + 1}"
        assert await asyncio.to_thread(dkim.verify, message.data, dnsfunc=lookup)
        [reference] = header_values(message.data, REFERENCE_HEADER)
        assert CODEC.submission_id(reference) == sid
    assert len({m.mail_from for m in received}) == 3, "a return path per recipient"
    for n in (1, 2, 3):
        await world.wait_state(f"{sid}-{n}", MessageState.DELIVERED)
        delivery = (await world.records(f"{sid}-{n}"))[-1]
        assert delivery["sender"] == f"news@{domain}", "records keep the tenant's sender"


async def test_mail_from_a_domain_not_the_tenants_keeps_its_sender(world: World) -> None:
    sid = await world.submit(["a@example.com"], "elsewhere.test")
    [message] = await world.sink.wait_for_count(1, timeout=15)
    assert message.mail_from == "news@elsewhere.test"
    assert b"DKIM-Signature" not in message.data
    [reference] = header_values(message.data, REFERENCE_HEADER)
    assert CODEC.submission_id(reference) == sid


async def test_the_null_sender_stays_null(world: World) -> None:
    await world.submit(["a@example.com"], sender="")
    [message] = await world.sink.wait_for_count(1, timeout=15)
    assert message.mail_from == ""
    assert b"DKIM-Signature" in message.data


async def test_a_transactional_message_is_delivered_within_seconds_behind_a_bulk_backlog(
    world: World,
) -> None:
    """100,000 bulk messages queued for one site, then one transactional message to the
    same site: it leaves at once, while the backlog is still there."""
    now = world.clock.now()
    acme = world.tenants["acme"]
    body = b"From: News <news@rsa.acme.test>\r\nSubject: bulk\r\n\r\nHello!\r\n"
    for chunk in range(20):
        sid = f"bulk{chunk}"
        messages = tuple(
            QueuedMessage(
                id=f"{sid}-{n}",
                submission_id=sid,
                tenant_id=acme.id,
                queue="acme@example.com",
                campaign="",
                sender="news@rsa.acme.test",
                recipient=f"bulk{chunk}x{n}@example.com",
                domain="example.com",
                state=MessageState.QUEUED,
                due_at=now,
                created_at=now,
                priority=0,
            )
            for n in range(1, 5001)
        )
        await world.store.accept([Submission(sid, acme.id, body, messages, now)], [])
    world.service.wake()
    await world.sink.wait_for_count(50, timeout=15)

    async def tick() -> None:  # the clock runs with real time, so throttles refill
        while True:
            await asyncio.sleep(0.01)
            world.clock.advance(0.01)

    ticking = asyncio.create_task(tick())
    try:
        started = time.monotonic()
        sid = await world.submit(
            ["urgent@example.com"], headers="X-Priority-Class: transactional\r\n"
        )
        await world.wait_state(f"{sid}-1", MessageState.DELIVERED)
        took = time.monotonic() - started
    finally:
        ticking.cancel()
    assert took < 5.0, f"the transactional message waited {took:.1f} s"
    assert len(world.sink.messages) < 5_000, "delivered while the bulk backlog still waits"
    [copy] = [m for m in world.sink.messages if m.rcpt_tos == ("urgent@example.com",)]
    assert b"X-Priority-Class" not in copy.data, "the header is removed before sending"


TRACKING = TransformChain(
    TrackingTransform(FakeTrackingUrls(), lambda message: TrackingPolicy("click.acme.test")),
    ReturnPathTransform(CODEC),
)
NEWSLETTER = (
    "<html><body><p>Caf=C3=A9 news</p>\r\n"
    '<a href=3D"https://shop.acme.test/a/long/path/?utm_source=3Dnews&amp;utm_med=\r\n'
    'ium=3Demail">Shop</a> <a href=3D"{{unsubscribe_url}}">Unsubscribe</a>\r\n'
    "</body></html>\r\n"
)


@pytest.mark.parametrize("transform", [TRACKING], ids=["tracking"])
async def test_each_recipient_gets_tracked_links_in_a_body_that_signs_and_verifies(
    world: World,
) -> None:
    signed_before = signings()
    headers = (
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
    )
    recipients = ["a@example.com", "b@example.org"]
    sid = await world.submit(recipients, headers=headers, content=NEWSLETTER)
    received = await world.sink.wait_for_count(2, timeout=15)
    assert signings() - signed_before == 2, "each recipient's copy signed on its own"
    lookup = dkim_dns(world.dns.address)
    for message in received:
        [recipient] = message.rcpt_tos
        message_id = f"{sid}-{recipients.index(recipient) + 1}"
        assert await asyncio.to_thread(dkim.verify, message.data, dnsfunc=lookup)
        [unsubscribe] = header_values(message.data, "List-Unsubscribe")
        assert target(unsubscribe.strip("<> "))[:2] == ("u", message_id)
        assert CODEC.submission_id(header_values(message.data, REFERENCE_HEADER)[0]) == sid
        body = message.data.split(b"\r\n\r\n", 1)[1].replace(b"=\r\n", b"")
        clicks = re.findall(rb'href=3D"(https://click\.acme\.test/c/[^"]+)"', body)
        assert [target(url.decode()) for url in clicks] == [
            (
                "c",
                message_id,
                "https://shop.acme.test/a/long/path/?utm_source=news&utm_medium=email",
            )
        ]
        assert b'<img src=3D"https://click.acme.test/o/' + message_id.encode() in body


UNTRACKED = TransformChain(
    TrackingTransform(FakeTrackingUrls(), lambda message: None), ReturnPathTransform(CODEC)
)


@pytest.mark.parametrize("transform", [UNTRACKED], ids=["untracked"])
async def test_untracked_mail_is_still_signed_once_per_submission(world: World) -> None:
    signed_before = signings()
    headers = "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
    await world.submit(["a@example.com", "b@example.org", "c@example.com"], headers=headers)
    received = await world.sink.wait_for_count(3, timeout=15)
    assert signings() - signed_before == 1, "one body signed for all the recipients"
    assert len({m.data for m in received}) == 1
    assert all(b"/c/" not in m.data and b"/o/" not in m.data for m in received)
