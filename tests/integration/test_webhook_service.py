"""The webhooks service on a real store (both backends) posting to a real endpoint on
loopback: records reach the webhooks that want them, signed, single or in ordered batches;
failures back off on the fake clock until they fail; a slow endpoint holds only its own
POSTs; two processes on one store post each record once; with no webhook enabled the
dispatcher moves past the log without reading it, and a webhook gets what follows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from config import Settings
from config.schema import WebhookSettings
from engine.clock import FakeClock
from engine.model import Tenant, WebhookDelivery, WebhookDeliveryState, WebhookFormat
from engine.provisioning.webhooks import WebhookRegistry
from engine.records.record import Record, RecordType
from engine.sealing import Sealer
from engine.store import Store, open_store
from engine.webhooks.client import HttpPoster
from engine.webhooks.dispatcher import WebhookDispatcher
from engine.webhooks.sender import WebhookSender
from engine.webhooks.service import WebhookService
from engine.webhooks.signature import verify
from tests.harness.conditions import wait_for
from tests.harness.webhook_receiver import WebhookReceiver, webhook_receiver

SETTINGS = WebhookSettings(
    allow_http=True,
    allow_private=True,
    request_timeout_seconds=2.0,
    concurrency_per_endpoint=2,
    poll_seconds=0.01,
    first_retry_seconds=30,
    max_retry_seconds=3600,
    retry_jitter=0.2,
)
SEALER = Sealer(secrets.token_bytes(32))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def receiver(clock: FakeClock) -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver(clock.now) as running:
        yield running


def service_on(store: Store, clock: FakeClock) -> WebhookService:
    poster = HttpPoster(timeout=SETTINGS.request_timeout_seconds, allow_private=True)
    sender = WebhookSender(
        store=store, settings=SETTINGS, sealer=SEALER, clock=clock, post=poster.post
    )
    return WebhookService(store=store, settings=SETTINGS, clock=clock, sender=sender)


@contextlib.asynccontextmanager
async def running(service: WebhookService) -> AsyncIterator[WebhookService]:
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        await service.stop(1)
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def webhooks(store: Store, clock: FakeClock) -> AsyncIterator[WebhookService]:
    async with running(service_on(store, clock)) as service:
        yield service


@dataclass(frozen=True)
class Rig:
    """A store with the webhooks service running on it, an endpoint, the clock."""

    store: Store
    clock: FakeClock
    receiver: WebhookReceiver
    registry: WebhookRegistry


@pytest.fixture
def rig(store: Store, clock: FakeClock, receiver: WebhookReceiver, webhooks: WebhookService) -> Rig:
    registry = WebhookRegistry(store, Settings(webhooks=SETTINGS), lambda: SEALER, clock)
    return Rig(store, clock, receiver, registry)


async def deliveries(store: Store, tenant: Tenant, webhook_id: str) -> list[WebhookDelivery]:
    return await store.list_webhook_deliveries(tenant.id, webhook_id, None, 1000)


def delivery_records(tenant: Tenant, clock: FakeClock, count: int) -> list[Record]:
    return [
        Record(RecordType.DELIVERY, clock.now(), tenant.id, id=f"m{n}", recipient=f"u{n}@x.test")
        for n in range(count)
    ]


async def test_records_reach_the_webhooks_that_want_them_signed_single_or_batched(rig: Rig) -> None:
    store, clock, receiver, registry = rig.store, rig.clock, rig.receiver, rig.registry
    acme = await store.create_tenant("acme", clock.now())
    beta = await store.create_tenant("beta", clock.now())
    single = await registry.create(
        acme.id, receiver.url("/single"), ["Delivery"], WebhookFormat.SINGLE, 1, True
    )
    batch = await registry.create(acme.id, receiver.url("/batch"), [], WebhookFormat.BATCH, 3, True)
    records = delivery_records(acme, clock, 5)
    records.insert(2, Record(RecordType.BOUNCE, clock.now(), acme.id, id="b1"))
    await store.add_records(records[:3])
    await store.add_records(records[3:])
    await store.add_records([Record(RecordType.DELIVERY, clock.now(), beta.id, id="theirs")])

    await wait_for(posts(receiver, {"/single": 5, "/batch": 2}), "5 single and 2 batch POSTs")
    singles = receiver.on("/single")
    assert sorted(json.loads(r.body)["id"] for r in singles) == [f"m{n}" for n in range(5)]
    batches = sorted(receiver.on("/batch"), key=lambda r: json.loads(r.body)[0]["id"] != "m0")
    assert [[r["id"] for r in json.loads(b.body)] for b in batches] == [
        ["m0", "m1", "b1"],
        ["m2", "m3", "m4"],
    ]
    assert json.loads(batches[0].body)[0] == records[0].to_json()
    for request in [*singles, *batches]:
        secret = single.secret if request.path == "/single" else batch.secret
        assert verify(secret, request.headers["penguin-signature"], request.body, clock.now())

    async def all_delivered() -> bool:
        log = await deliveries(store, acme, single.webhook.id)
        log += await deliveries(store, acme, batch.webhook.id)
        return len(log) == 7 and all(d.state is WebhookDeliveryState.DELIVERED for d in log)

    await wait_for(all_delivered, "the deliveries marked delivered")
    for delivery in await deliveries(store, acme, batch.webhook.id):
        assert (delivery.attempts, delivery.last_status, delivery.last_error) == (1, 200, None)
        assert delivery.record_count == 3
    assert len(receiver.requests) == 7  # nothing for beta, nothing twice


async def test_a_failing_endpoint_is_retried_with_backoff_for_a_day_then_failed(rig: Rig) -> None:
    store, clock, receiver, registry = rig.store, rig.clock, rig.receiver, rig.registry
    acme = await store.create_tenant("acme", clock.now())
    hook = await registry.create(acme.id, receiver.url("/fail"), [], WebhookFormat.SINGLE, 1, True)
    start = clock.now()
    await store.add_records(delivery_records(acme, clock, 1))

    def attempted(n: int) -> Callable[[], Awaitable[bool]]:
        async def stored() -> bool:
            log = await deliveries(store, acme, hook.webhook.id)
            return bool(log) and log[0].attempts == n and log[0].lease_token is None

        return stored

    delays: list[float] = []
    n = 1
    while True:
        await wait_for(attempted(n), f"attempt {n}")
        [delivery] = await deliveries(store, acme, hook.webhook.id)
        assert (delivery.last_status, delivery.last_error) == (500, "HTTP 500")
        if delivery.state is WebhookDeliveryState.FAILED:
            break
        assert delivery.state is WebhookDeliveryState.PENDING
        delays.append(delivery.next_at - clock.now())
        clock.advance(delivery.next_at - clock.now() - 1)
        await asyncio.sleep(0.05)  # a poll or two: nothing is due a second early
        assert len(receiver.requests) == n
        clock.advance(1)
        n += 1
    assert 30 <= delays[0] <= 36 and 60 <= delays[1] <= 72 and 120 <= delays[2] <= 144
    assert max(delays) <= 3600 * 1.2
    assert clock.now() - start >= SETTINGS.retry_for_seconds
    assert len(receiver.requests) == n
    assert {r.headers["penguin-delivery-id"] for r in receiver.requests} == {str(delivery.id)}


async def test_a_slow_endpoint_holds_only_its_own_posts(rig: Rig) -> None:
    store, clock, receiver, registry = rig.store, rig.clock, rig.receiver, rig.registry
    acme = await store.create_tenant("acme", clock.now())
    await registry.create(acme.id, receiver.url("/slow"), [], WebhookFormat.SINGLE, 1, True)
    await registry.create(acme.id, receiver.url("/ok"), [], WebhookFormat.SINGLE, 1, True)
    await store.add_records(delivery_records(acme, clock, 6))
    await wait_for(posts(receiver, {"/ok": 6}), "the fast endpoint's 6 POSTs")
    assert 1 <= len(receiver.on("/slow")) <= SETTINGS.concurrency_per_endpoint


async def test_two_processes_on_one_store_post_each_record_once(rig: Rig, store_url: str) -> None:
    store, clock, receiver, registry = rig.store, rig.clock, rig.receiver, rig.registry
    other = open_store(store_url)
    try:
        async with running(service_on(other, clock)):
            acme = await store.create_tenant("acme", clock.now())
            await registry.create(acme.id, receiver.url("/ok"), [], WebhookFormat.SINGLE, 1, True)
            for n in range(10):
                await store.add_records(delivery_records(acme, clock, 3))
                await other.add_records(
                    [Record(RecordType.BOUNCE, clock.now(), acme.id, id=f"o{n}")]
                )
            await wait_for(posts(receiver, {"/ok": 40}), "40 POSTs")
            await asyncio.sleep(0.2)  # any repeat would come in this time
    finally:
        await other.close()
    assert len(receiver.on("/ok")) == 40


def posts(receiver: WebhookReceiver, wanted: dict[str, int]) -> Callable[[], Awaitable[bool]]:
    """A condition: the receiver got at least ``wanted[path]`` POSTs on each path."""

    async def arrived() -> bool:
        return all(len(receiver.on(path)) >= count for path, count in wanted.items())

    return arrived


async def test_without_webhooks_the_log_is_passed_unread_and_a_new_webhook_gets_what_follows(
    store: Store, clock: FakeClock
) -> None:
    acme = await store.create_tenant("acme", clock.now())
    dispatcher = WebhookDispatcher(store, clock, batch=100)
    start = await store.webhook_position()
    await store.add_records(delivery_records(acme, clock, 3))

    async def passed_unread() -> bool:
        assert await dispatcher.dispatch_once() == (0, 0)
        return await store.webhook_position() != start

    await wait_for(passed_unread, "the position past the records logged before any webhook")
    assert await store.log_end(await store.webhook_position()) == await store.webhook_position()

    registry = WebhookRegistry(store, Settings(webhooks=SETTINGS), lambda: SEALER, clock)
    hook = await registry.create(acme.id, "http://127.0.0.1:9/h", [], WebhookFormat.SINGLE, 1, True)
    after = Record(RecordType.BOUNCE, clock.now(), acme.id, id="after")
    await store.add_records([after])

    async def dispatched() -> bool:
        return await dispatcher.dispatch_once() == (1, 1)

    await wait_for(dispatched, "the record logged after the webhook dispatched")
    queued = await deliveries(store, acme, hook.webhook.id)
    assert [json.loads(d.payload)["id"] for d in queued] == ["after"]
