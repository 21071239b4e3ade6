"""Acceptor, the acceptance path SMTP and HTTP share, on a real store and spool."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FakeClock
from engine.model import IdempotencyKey, MessageState, Suppression, Tenant
from engine.records.log import RecordLog
from engine.store import Store
from engine.submission.acceptance import Reception
from engine.submission.acceptor import (
    CLAIM_SECONDS,
    IDEMPOTENCY_SECONDS,
    Acceptor,
    Idempotency,
    IdempotencyInProgress,
    IdempotencyMismatch,
    Outgoing,
    Refused,
)
from engine.submission.composition import Draft, Mailbox, composed_message
from engine.submission.spool import Spool

DOMAINS = frozenset({"acme.example"})
HTTP = Reception("HTTP", "127.0.0.1", "api", "req-1", "pm_abc", None, None, "mx.test", "node-1")


def raw(subject: str = "hi", sender: str = "news@acme.example") -> bytes:
    return f"From: {sender}\r\nTo: a@dest.example\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


@dataclass
class World:
    store: Store
    acceptor: Acceptor
    clock: FakeClock
    tenant: Tenant


@pytest.fixture
async def world(store: Store, tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock()
    record_log = RecordLog(str(tmp_path / "records.jsonl"))
    spool = Spool(store, record_log, batch_max=64)
    writer = asyncio.create_task(spool.run())
    tenant = await store.create_tenant("acme", clock.now())
    acceptor = Acceptor(store=store, spool=spool, clock=clock, rng=random.Random(7))
    try:
        yield World(store, acceptor, clock, tenant)
    finally:
        spool.close()
        await writer
        record_log.close()


async def accept(
    w: World,
    *messages: Outgoing,
    due_at: float | None = None,
    meta: dict[str, Any] | None = None,
    idempotency: Idempotency | None = None,
) -> dict[str, Any]:
    return await w.acceptor.accept(
        tenant=w.tenant,
        domains=DOMAINS,
        sender="bounces@acme.example",
        messages=list(messages),
        reception=HTTP,
        due_at=due_at,
        meta=meta,
        idempotency=idempotency,
    )


async def test_accepted_messages_are_queued_with_http_reception_records(world: World) -> None:
    await world.store.add_suppression(
        Suppression(world.tenant.id, "gone@dest.example", "bounce", 0.0)
    )
    due = world.clock.now() + 3600
    receipt = await accept(
        world,
        Outgoing(raw(), ["a@dest.example", "Gone@dest.example"]),
        due_at=due,
        meta={"tags": ["welcome"], "metadata": {"user": "42"}},
    )
    assert receipt["suppressed"] == ["Gone@dest.example"]
    [queued] = receipt["messages"]
    found = await world.store.tenant_message(world.tenant.id, queued["id"])
    assert found is not None
    message, records = found
    assert message.state is MessageState.QUEUED and message.due_at == due
    assert records[0]["type"] == "Reception"
    assert records[0]["reception_protocol"] == "HTTP"
    assert records[0]["meta"]["tags"] == ["welcome"]
    assert records[0]["meta"]["metadata"] == {"user": "42"}
    assert records[0]["meta"]["tenant"] == "acme"


async def test_one_request_may_hold_several_messages_stored_together(world: World) -> None:
    receipt = await accept(
        world, Outgoing(raw("one"), ["a@dest.example"]), Outgoing(raw("two"), ["b@dest.example"])
    )
    ids = [m["id"] for m in receipt["messages"]]
    assert len(ids) == 2 and ids[0].split("-")[0] != ids[1].split("-")[0]
    bodies = []
    for message_id in ids:
        found = await world.store.tenant_message(world.tenant.id, message_id)
        assert found is not None
        bodies.append(await world.store.get_body(found[0].submission_id))
    assert b"Subject: one" in (bodies[0] or b"") and b"Subject: two" in (bodies[1] or b"")


async def test_a_composed_message_is_accepted_on_the_fields_it_was_written_with(
    world: World,
) -> None:
    draft = Draft(
        sender=Mailbox("news@acme.example"),
        to=(Mailbox("a@dest.example"),),
        subject="spring",
        text="hello",
        campaign="spring",
    )
    message, fields = composed_message(draft)
    receipt = await accept(world, Outgoing(message, ["a@dest.example"], fields))
    found = await world.store.tenant_message(world.tenant.id, receipt["messages"][0]["id"])
    assert found is not None
    assert found[0].queue == "spring:acme@dest.example"
    body = await world.store.get_body(found[0].submission_id) or b""
    assert b"X-Campaign" not in body  # cut at the span the composer wrote it at
    assert b"Subject: spring\r\nMIME-Version: 1.0\r\n" in body and body.endswith(
        b"\r\n\r\nhello\r\n"
    )


async def test_known_header_fields_are_checked_as_read_ones_are(world: World) -> None:
    message, _ = composed_message(
        Draft(sender=Mailbox("news@acme.example"), to=(Mailbox("a@dest.example"),), text="x")
    )
    _, elsewhere = composed_message(
        Draft(sender=Mailbox("news@other.example"), to=(Mailbox("a@dest.example"),), text="x")
    )
    with pytest.raises(Refused) as refused:
        await accept(world, Outgoing(message, ["a@dest.example"], elsewhere))
    assert refused.value.reply.code == 550 and refused.value.header
    assert await world.store.tenant_messages(world.tenant.id, 10) == []


@pytest.mark.parametrize(
    ("sender", "message", "code", "recipient"),
    [
        ("news@other.example", raw(), 550, None),
        ("bounces@acme.example", raw(sender="x@other.example"), 550, None),
        ("bounces@acme.example", b"Subject: x\r\n broken\r\nnot a header\r\n\r\nx", 550, None),
    ],
)
async def test_what_smtp_refuses_is_refused(
    world: World, sender: str, message: bytes, code: int, recipient: int | None
) -> None:
    with pytest.raises(Refused) as refused:
        await world.acceptor.accept(
            tenant=world.tenant,
            domains=DOMAINS,
            sender=sender,
            messages=[Outgoing(message, ["a@dest.example"])],
            reception=HTTP,
        )
    assert refused.value.reply.code == code
    assert refused.value.recipient == recipient
    assert await world.store.tenant_messages(world.tenant.id, 10) == []


async def test_a_relay_style_recipient_is_refused_by_its_index(world: World) -> None:
    with pytest.raises(Refused) as refused:
        await accept(world, Outgoing(raw(), ["a@dest.example", "b%c@dest.example"]))
    assert refused.value.recipient == 1 and refused.value.reply.code == 553


async def test_an_idempotency_key_answers_with_the_first_receipt_for_a_day(world: World) -> None:
    key = Idempotency("order-1", "hash-a")
    first = await accept(world, Outgoing(raw(), ["a@dest.example"]), idempotency=key)
    again = await accept(world, Outgoing(raw(), ["a@dest.example"]), idempotency=key)
    assert again == first
    assert len(await world.store.tenant_messages(world.tenant.id, 10)) == 1

    with pytest.raises(IdempotencyMismatch):
        await accept(
            world, Outgoing(raw(), ["a@dest.example"]), idempotency=Idempotency("order-1", "hash-b")
        )

    world.clock.advance(IDEMPOTENCY_SECONDS + 1)
    later = await accept(world, Outgoing(raw(), ["a@dest.example"]), idempotency=key)
    assert later != first
    assert len(await world.store.tenant_messages(world.tenant.id, 10)) == 2


async def test_concurrent_requests_with_one_key_queue_once(world: World) -> None:
    key = Idempotency("order-2", "hash-a")
    receipts = await asyncio.gather(
        *(accept(world, Outgoing(raw(), ["a@dest.example"]), idempotency=key) for _ in range(5))
    )
    assert all(r == receipts[0] for r in receipts)
    assert len(await world.store.tenant_messages(world.tenant.id, 10)) == 1


async def test_a_refused_first_request_does_not_let_two_later_ones_race(world: World) -> None:
    key = Idempotency("order-3", "hash-a")
    refused = accept(
        world, Outgoing(raw(sender="x@other.example"), ["a@dest.example"]), idempotency=key
    )
    waiting = [
        accept(world, Outgoing(raw(), ["a@dest.example"]), idempotency=key) for _ in range(2)
    ]
    first, *rest = await asyncio.gather(refused, *waiting, return_exceptions=True)
    assert isinstance(first, Refused)
    late = await accept(world, Outgoing(raw(), ["a@dest.example"]), idempotency=key)
    assert rest[0] == rest[1] == late
    assert len(await world.store.tenant_messages(world.tenant.id, 10)) == 1


async def test_a_claim_abandoned_by_a_dead_process_holds_the_key_for_claim_seconds(
    world: World,
) -> None:
    dead = IdempotencyKey(world.tenant.id, "order-4", "hash-a", "", world.clock.now(), "dead")
    await world.store.claim_idempotency_key(replace(dead, pending=True), 0.0, 0.0)
    with pytest.raises(IdempotencyInProgress):
        await accept(
            world, Outgoing(raw(), ["a@dest.example"]), idempotency=Idempotency("order-4", "x")
        )
    world.clock.advance(CLAIM_SECONDS + 1)
    key = Idempotency("order-4", "hash-a")
    first = await accept(world, Outgoing(raw(), ["a@dest.example"]), idempotency=key)
    assert await accept(world, Outgoing(raw(), ["a@dest.example"]), idempotency=key) == first
    assert len(await world.store.tenant_messages(world.tenant.id, 10)) == 1
