"""The store contract: one suite, run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from dataclasses import replace

import pytest

from engine.model import (
    ApiKey,
    ApiScope,
    Campaign,
    CampaignRecipient,
    CampaignRoute,
    CampaignState,
    CampaignTemplate,
    IdempotencyKey,
    MessageState,
    QueueCount,
    QueuedMessage,
    QueueInfo,
    RecipientMark,
    RecipientStatus,
    SendingDomain,
    Settlement,
    SmtpUser,
    Submission,
    Suppression,
    SuppressionFilter,
    Suspension,
    SuspensionScope,
    TenantOverrides,
    TrackingDomain,
    WarmupCount,
    Webhook,
    WebhookDeliveryState,
    WebhookFormat,
)
from engine.records.record import Record, RecordType
from engine.stats.counts import METRICS, MessageFacts, StatCount, StatKey
from engine.stats.report import Dimension, StatsQuery
from engine.store import (
    ClaimLost,
    Conflict,
    InUse,
    LoggedRecord,
    LogPosition,
    NewWebhookDelivery,
    NotFound,
    RecordQuery,
    Store,
    WebhookAttempt,
)
from engine.store.migrations import Backend, migration_files
from engine.store.postgres import CLAIM_QUEUE_SELECT as POSTGRES_CLAIM
from engine.store.postgres import PostgresStore
from engine.store.rows import record_query
from engine.store.sqlite import CLAIM_QUEUE_SELECT as SQLITE_CLAIM
from engine.store.sqlite import SqliteStore

T0 = 1_700_000_000.0


@pytest.fixture
async def store(opened_store: Store) -> Store:
    await opened_store.migrate()
    return opened_store


def message(
    submission_id: str,
    n: int,
    tenant_id: int,
    *,
    due_at: float = T0,
    created_at: float = T0,
    queue: str = "default:acme@example.com",
) -> QueuedMessage:
    domain = f"dest{n}.example"
    return QueuedMessage(
        id=f"{submission_id}-{n}",
        submission_id=submission_id,
        tenant_id=tenant_id,
        queue=queue,
        campaign="default",
        sender="news@acme.example",
        recipient=f"user{n}@{domain}",
        domain=domain,
        state=MessageState.QUEUED,
        due_at=due_at,
        created_at=created_at,
    )


def submission(
    submission_id: str, tenant_id: int, messages: list[QueuedMessage], created_at: float = T0
) -> Submission:
    body = f"Subject: {submission_id}\r\n\r\nhello\r\n".encode()
    return Submission(submission_id, tenant_id, body, tuple(messages), created_at)


def reception(m: QueuedMessage) -> Record:
    return Record(
        type=RecordType.RECEPTION,
        timestamp=m.created_at,
        tenant_id=m.tenant_id,
        id=m.id,
        sender=m.sender,
        recipient=m.recipient,
        queue=m.queue,
        created=m.created_at,
        meta={"batch": 1},
    )


async def enqueue(store: Store, tenant_id: int, due_times: list[float]) -> list[QueuedMessage]:
    """One submission per due time, each with one message; returns the messages."""
    msgs = [message(f"s{i}", 0, tenant_id, due_at=due) for i, due in enumerate(due_times)]
    await store.accept([submission(m.submission_id, tenant_id, [m]) for m in msgs], [])
    return msgs


async def test_migrate_is_idempotent(opened_store: Store, backend: Backend) -> None:
    numbers = [number for number, _ in migration_files(backend)]
    assert numbers and numbers[0] == 1
    assert await opened_store.schema_version() == 0
    assert await opened_store.migrate() == numbers
    assert await opened_store.migrate() == []
    assert await opened_store.schema_version() == numbers[-1]


async def test_tenants(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0 + 1)
    assert acme.id != beta.id
    assert (acme.name, acme.created_at) == ("acme", T0)
    assert await store.get_tenant("acme") == acme
    assert await store.get_tenant_by_id(beta.id) == beta
    assert await store.get_tenant("nobody") is None
    assert await store.get_tenant_by_id(beta.id + 100) is None
    assert await store.list_tenants() == [acme, beta]
    with pytest.raises(Conflict):
        await store.create_tenant("acme", T0 + 2)
    assert await store.list_tenants() == [acme, beta]


async def test_tenant_overrides_are_stored_replaced_and_listed(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    assert await store.get_tenant_overrides(acme.id) is None
    assert await store.list_tenant_overrides() == []
    first = TenantOverrides(acme.id, pool="warm", daily_quota=1000, updated_at=T0)
    await store.put_tenant_overrides(first)
    assert await store.get_tenant_overrides(acme.id) == first
    second = TenantOverrides(
        acme.id, priority="bulk", rate_quota="10/s,max_burst=5", updated_at=T0 + 1
    )
    await store.put_tenant_overrides(second)
    other = TenantOverrides(beta.id, daily_quota=0, rate_quota="", updated_at=T0 + 2)
    await store.put_tenant_overrides(other)
    assert await store.get_tenant_overrides(acme.id) == second
    assert await store.list_tenant_overrides() == [second, other]
    with pytest.raises(NotFound):
        await store.put_tenant_overrides(TenantOverrides(999_999, pool="warm", updated_at=T0))


async def test_tenant_messages_are_counted_since_a_time(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    old = message("a", 0, acme.id, created_at=T0 - 10)
    new = [message("b", n, acme.id, created_at=T0 + n) for n in range(3)]
    other = message("c", 0, beta.id, created_at=T0)
    await store.accept(
        [
            submission("a", acme.id, [old]),
            submission("b", acme.id, new),
            submission("c", beta.id, [other]),
        ],
        [],
    )
    assert await store.count_tenant_messages(acme.id, T0) == 3
    assert await store.count_tenant_messages(acme.id, T0 - 10) == 4
    assert await store.count_tenant_messages(beta.id, T0 + 1) == 0


async def test_a_queues_waiting_messages_are_listed_soonest_due_first(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    later = message("a", 0, acme.id, due_at=T0 + 60)
    sooner = message("a", 1, acme.id, due_at=T0)
    done = message("a", 2, acme.id, due_at=T0 - 1)
    elsewhere = message("b", 0, acme.id, queue="news:acme@example.com")
    await store.accept(
        [submission("a", acme.id, [later, sooner, done]), submission("b", acme.id, [elsewhere])],
        [],
    )
    claimed = await store.claim("w1", T0, 60.0, 1)
    await settle_claimed(store, claimed, done.id, MessageState.DELIVERED, T0)
    listed = await store.queue_messages("default:acme@example.com", 10)
    assert [m.id for m in listed] == [sooner.id, later.id]
    assert [m.id for m in await store.queue_messages("default:acme@example.com", 1)] == [sooner.id]
    assert await store.queue_messages("nothing:acme@example.com", 10) == []


async def test_domains(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    domain = SendingDomain(acme.id, "acme.example", "s1", "rsa-sha256", b"\x00sealed", "MIIB", T0)
    added = await store.add_domain(domain)
    assert added.id != 0
    assert added == SendingDomain(
        acme.id, "acme.example", "s1", "rsa-sha256", b"\x00sealed", "MIIB", T0, id=added.id
    )
    other = await store.add_domain(
        SendingDomain(acme.id, "mail.acme.example", "s1", "ed25519-sha256", b"k", "AAAA", T0)
    )
    assert await store.get_domain("acme.example") == added
    assert await store.get_domain("nope.example") is None
    assert await store.list_domains(acme.id) == [added, other]
    assert await store.list_domains(beta.id) == []
    with pytest.raises(Conflict):
        await store.add_domain(
            SendingDomain(beta.id, "acme.example", "s2", "rsa-sha256", b"", "", T0)
        )
    with pytest.raises(NotFound):
        await store.add_domain(
            SendingDomain(beta.id + 100, "ghost.example", "s1", "rsa-sha256", b"", "", T0)
        )


async def test_domain_key_rotation(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    added = await store.add_domain(
        SendingDomain(acme.id, "acme.example", "s1", "rsa", b"old", "OLD", T0)
    )
    rotated = replace(
        added, selector="s2", algorithm="ed25519", private_key_sealed=b"new", public_key_b64="NEW"
    )
    assert await store.rotate_domain_key(rotated) is True
    assert await store.get_domain("acme.example") == rotated
    ghost = replace(rotated, name="ghost.example")
    assert await store.rotate_domain_key(ghost) is False


async def test_lookups_for_a_tenant_see_only_its_own(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    domain = await store.add_domain(
        SendingDomain(acme.id, "acme.example", "s1", "rsa", b"k", "KEY", T0)
    )
    user = await store.add_smtp_user(SmtpUser(acme.id, "acme-u", "hash", T0))
    tracking = await store.add_tracking_domain(TrackingDomain(acme.id, "t.acme.example", False, T0))

    assert await store.get_domain("acme.example", beta.id) is None
    assert await store.get_domain("acme.example", acme.id) == domain
    assert await store.get_smtp_user("acme-u", beta.id) is None
    assert await store.get_smtp_user("acme-u", acme.id) == user
    assert await store.get_tracking_domain("t.acme.example", beta.id) is None
    assert await store.get_tracking_domain("t.acme.example", acme.id) == tracking
    assert await store.list_domains(beta.id) == []
    assert await store.list_tracking_domains(beta.id) == []

    assert await store.rotate_domain_key(replace(domain, tenant_id=beta.id, selector="s2")) is False
    assert await store.remove_domain("acme.example", beta.id) is False
    assert await store.remove_smtp_user("acme-u", beta.id) is False
    assert await store.remove_tracking_domain("t.acme.example", beta.id) is False
    assert await store.get_domain("acme.example") == domain
    assert await store.get_smtp_user("acme-u") == user
    assert await store.get_tracking_domain("t.acme.example") == tracking

    assert await store.remove_domain("acme.example", acme.id) is True
    assert await store.remove_smtp_user("acme-u", acme.id) is True
    assert await store.remove_tracking_domain("t.acme.example", acme.id) is True
    assert await store.get_domain("acme.example") is None


async def test_smtp_users(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    user = await store.add_smtp_user(SmtpUser(acme.id, "acme-relay", "$scrypt$hash", T0))
    assert user.id != 0
    assert await store.get_smtp_user("acme-relay") == user
    assert await store.get_smtp_user("nobody") is None
    with pytest.raises(Conflict):
        await store.add_smtp_user(SmtpUser(acme.id, "acme-relay", "$other", T0))
    with pytest.raises(NotFound):
        await store.add_smtp_user(SmtpUser(acme.id + 100, "ghost", "$x", T0))


async def test_suppressions(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    await store.add_suppression(Suppression(acme.id, "Bob@Example.COM", "bounce", T0))
    await store.add_suppression(Suppression(acme.id, "bob@example.com", "complaint", T0 + 1))
    await store.add_suppression(Suppression(acme.id, "carol@example.com", "unsubscribe", T0))
    asked = ["BOB@example.com", "alice@example.com", "Carol@Example.com"]
    assert await store.suppressed(acme.id, asked) == {"bob@example.com", "carol@example.com"}
    assert await store.suppressed(beta.id, asked) == set()
    assert await store.suppressed(acme.id, []) == set()
    with pytest.raises(NotFound):
        await store.add_suppression(Suppression(beta.id + 100, "x@example.com", "bounce", T0))


async def test_accept_stores_a_batch(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    batch = [
        submission(sid, acme.id, [message(sid, n, acme.id) for n in range(count)])
        for sid, count in [("a", 2), ("b", 1), ("c", 3)]
    ]
    all_messages = [m for s in batch for m in s.messages]
    records = [reception(m) for m in all_messages]
    await store.accept(batch, records)

    for sub in batch:
        assert await store.get_body(sub.id) == sub.body
        assert await store.list_submission(sub.id) == sorted(sub.messages, key=lambda m: m.id)
    for m in all_messages:
        assert await store.get_message(m.id) == m
        assert await store.list_records(m.id) == [reception(m).to_json()]
    assert await store.queue_summary() == [
        QueueCount("default:acme@example.com", MessageState.QUEUED, 6, T0)
    ]


async def test_a_batch_nobody_suppressed_is_stored_by_the_call_that_looks_it_up(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    await store.add_suppression(Suppression(beta.id, "user0@dest0.example", "bounce", T0))
    batch = [
        submission("a", acme.id, [message("a", n, acme.id) for n in range(2)]),
        submission("b", beta.id, [message("b", 1, beta.id)]),
    ]
    all_messages = [m for s in batch for m in s.messages]
    claim = claim_of(acme.id, "k", "h", "t")
    await store.claim_idempotency_key(claim, 0.0, 0.0)
    answered = replace(claim, response='{"submission_id":"a"}')

    found = await store.accept_unless_suppressed(
        batch, [reception(m) for m in all_messages], [answered]
    )

    assert found == {}
    for m in all_messages:
        assert await store.get_message(m.id) == m
        assert await store.list_records(m.id) == [reception(m).to_json()]
    assert {q.name for q in await store.queues_changed(0)} == {"default:acme@example.com"}
    replay = await store.claim_idempotency_key(claim_of(acme.id, "k", "h", "t2"), 0.0, 0.0)
    assert replay == replace(answered, pending=False)


async def test_a_batch_with_a_suppressed_recipient_stores_nothing_and_names_them(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    await store.add_suppression(Suppression(acme.id, "user1@dest1.example", "bounce", T0))
    await store.add_suppression(Suppression(beta.id, "user0@dest0.example", "complaint", T0))
    shouted = replace(message("a", 1, acme.id), recipient="User1@DEST1.example")
    batch = [
        submission("a", acme.id, [message("a", 0, acme.id), shouted]),
        submission("b", beta.id, [message("b", 0, beta.id), message("b", 2, beta.id)]),
    ]
    all_messages = [m for s in batch for m in s.messages]
    claim = claim_of(acme.id, "k", "h", "t")
    await store.claim_idempotency_key(claim, 0.0, 0.0)

    found = await store.accept_unless_suppressed(
        batch, [reception(m) for m in all_messages], [replace(claim, response="{}")]
    )

    assert found == {acme.id: {"user1@dest1.example"}, beta.id: {"user0@dest0.example"}}
    for m in all_messages:
        assert await store.get_message(m.id) is None
        assert await store.list_records(m.id) == []
    assert await store.get_body("a") is None
    assert await store.queues_changed(0) == []
    still = await store.claim_idempotency_key(claim_of(acme.id, "k", "h", "t2"), 0.0, 0.0)
    assert still == claim  # pending, unanswered: the write that follows answers it


async def test_accept_is_one_transaction(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    first = submission("a", acme.id, [message("a", 0, acme.id)])
    await store.accept([first], [])
    fresh = submission("b", acme.id, [message("b", 0, acme.id)])
    with pytest.raises(Conflict):
        await store.accept([fresh, first], [reception(fresh.messages[0])])
    assert await store.get_body("b") is None
    assert await store.get_message("b-0") is None
    assert await store.list_records("b-0") == []
    ghost = submission("g", acme.id + 100, [message("g", 0, acme.id + 100)])
    with pytest.raises(NotFound):
        await store.accept([ghost], [])


async def test_records_are_listed_oldest_first(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    m = message("a", 0, acme.id)
    await store.accept([submission("a", acme.id, [m])], [reception(m)])
    later = Record(RecordType.DELIVERY, T0 + 5, acme.id, id=m.id, num_attempts=1)
    await store.add_records([later])
    assert await store.list_records(m.id) == [reception(m).to_json(), later.to_json()]
    assert await store.list_records("unknown") == []


def lease_token(m: QueuedMessage) -> str:
    """The token a claimed message was leased under."""
    assert m.lease_token is not None
    return m.lease_token


async def test_claim_respects_due_time_order_and_limit(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    msgs = await enqueue(store, acme.id, [T0 + 10, T0 + 30, T0 + 20, T0 + 40])
    now = T0 + 35

    first = await store.claim("w1", now, 60.0, 2)
    assert [m.id for m in first] == [msgs[0].id, msgs[2].id]
    assert all(m.state is MessageState.LEASED for m in first)
    assert all(m.lease_owner == "w1" and m.lease_expires == now + 60.0 for m in first)
    assert first[0].lease_token and first[0].lease_token == first[1].lease_token

    second = await store.claim("w1", now, 60.0, 10)
    assert [m.id for m in second] == [msgs[1].id]
    assert lease_token(second[0]) != lease_token(first[0]), "a new token for every claim"
    assert await store.claim("w1", now, 60.0, 10) == []
    assert [m.id for m in await store.claim("w1", T0 + 40, 60.0, 10)] == [msgs[3].id]


def outcome_record(m: QueuedMessage, record_type: RecordType = RecordType.DELIVERY) -> Record:
    return Record(record_type, T0 + 20, m.tenant_id, id=m.id, num_attempts=1)


async def settle_one(
    store: Store,
    m: QueuedMessage,
    token: str,
    state: MessageState,
    attempts: int,
    due_at: float,
    error: str | None,
) -> bool:
    """One settlement of ``m`` under ``token``, with a record; whether it applied."""
    settlement = Settlement(m.id, token, state, attempts, due_at, error)
    return await store.settle([(settlement, outcome_record(m))]) == {m.id}


async def test_expired_lease_returns_message_to_queue(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    [m] = await enqueue(store, acme.id, [T0])

    [leased] = await store.claim("w1", T0 + 100, 60.0, 10)
    assert leased.id == m.id
    assert await store.claim("w2", T0 + 159, 60.0, 10) == []

    [again] = await store.claim("w2", T0 + 160, 60.0, 10)
    assert (again.id, again.lease_owner, again.lease_expires) == (m.id, "w2", T0 + 220)
    late = lease_token(leased)
    assert not await settle_one(store, m, late, MessageState.QUEUED, 1, T0 + 500, "late")
    current = lease_token(again)
    assert await settle_one(store, m, current, MessageState.QUEUED, 1, T0 + 500, "421 later")


async def test_a_claim_after_an_expired_lease_fences_off_the_old_holder(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    [m] = await enqueue(store, acme.id, [T0])
    [first] = await store.claim("w1", T0, 60.0, 1)
    [second] = await store.claim("w1", T0 + 60, 60.0, 1)  # the same owner, after expiry
    assert lease_token(second) != lease_token(first)

    stale = Settlement(m.id, lease_token(first), MessageState.DELIVERED, 1, T0 + 70)
    assert await store.settle([(stale, outcome_record(m))]) == set()
    assert await store.get_message(m.id) == second
    assert await store.list_records(m.id) == []

    current = Settlement(m.id, lease_token(second), MessageState.DELIVERED, 1, T0 + 80)
    assert await store.settle([(current, outcome_record(m))]) == {m.id}
    assert await store.list_records(m.id) == [outcome_record(m).to_json()]
    assert await store.settle([(stale, outcome_record(m))]) == set()
    assert await store.list_records(m.id) == [outcome_record(m).to_json()]


async def test_renew_extends_only_the_leases_still_held(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    msgs = await enqueue(store, acme.id, [T0, T0, T0 + 5, T0 + 6])
    kept = await store.claim("w1", T0, 60.0, 2)
    [lost] = await store.claim("w1", T0 + 5, 10.0, 1)
    [other] = await store.claim("w2", T0 + 6, 10_000.0, 1)
    [taken] = await store.claim("w3", T0 + 15, 10_000.0, 1)  # ``lost`` expired at T0 + 15
    assert taken.id == lost.id
    held = [(m.id, lease_token(m)) for m in (*kept, lost)]

    assert await store.renew(held, T0 + 100) == 2
    for m in kept:
        renewed = await store.get_message(m.id)
        assert renewed is not None and renewed.lease_expires == T0 + 100
    assert await store.get_message(taken.id) == taken
    assert await store.get_message(other.id) == other
    assert await store.renew([(other.id, lease_token(kept[0]))], T0 + 100) == 0, (
        "another claim's token renews nothing"
    )
    assert await store.get_message(other.id) == other
    assert await store.claim("w4", T0 + 99, 60.0, 10) == []
    assert {m.id for m in await store.claim("w4", T0 + 100, 60.0, 10)} == {
        msgs[0].id,
        msgs[1].id,
    }

    settlement = Settlement(taken.id, lease_token(taken), MessageState.DELIVERED, 1, T0 + 30)
    assert await store.settle([(settlement, outcome_record(taken))]) == {taken.id}
    assert await store.renew([(taken.id, lease_token(taken))], T0 + 200) == 0, (
        "a settled lease is gone"
    )
    assert await store.renew([], T0 + 200) == 0


async def test_settlements_apply_only_for_the_lease_holder(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    [m] = await enqueue(store, acme.id, [T0])
    [leased] = await store.claim("w1", T0, 60.0, 1)
    token = lease_token(leased)

    assert not await settle_one(store, m, "forged", MessageState.QUEUED, 1, T0 + 300, "x")
    assert not await settle_one(store, m, "forged", MessageState.DELIVERED, 1, T0, None)
    assert await settle_one(store, m, token, MessageState.QUEUED, 1, T0 + 300, "421 busy")
    released = await store.get_message(m.id)
    assert released is not None
    assert (released.state, released.due_at, released.attempts) == (
        MessageState.QUEUED,
        T0 + 300,
        1,
    )
    assert (
        released.lease_owner,
        released.lease_expires,
        released.lease_token,
        released.last_error,
    ) == (None, None, None, "421 busy")
    assert not await settle_one(store, m, token, MessageState.QUEUED, 1, T0 + 300, None)
    assert await store.claim("w1", T0 + 299, 60.0, 1) == []

    [again] = await store.claim("w1", T0 + 300, 60.0, 1)
    assert not await settle_one(store, m, token, MessageState.DELIVERED, 2, T0, None)
    assert await settle_one(store, m, lease_token(again), MessageState.DELIVERED, 2, T0, None)
    finished = await store.get_message(m.id)
    assert finished is not None
    assert (finished.state, finished.attempts, finished.lease_owner, finished.lease_token) == (
        MessageState.DELIVERED,
        2,
        None,
        None,
    )
    again_token = lease_token(again)
    assert not await settle_one(store, m, again_token, MessageState.BOUNCED, 3, T0, None)
    assert [r["type"] for r in await store.list_records(m.id)] == ["Delivery", "Delivery"]
    assert await store.claim("w1", T0 + 10_000, 60.0, 10) == []


async def test_queue_summary(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    queue_a, queue_b = "a:acme@example.com", "b:acme@example.com"
    msgs = [message("s", n, acme.id, queue=queue_b if n < 2 else queue_a) for n in range(5)]
    await store.accept([submission("s", acme.id, msgs)], [])
    claimed = await store.claim("w1", T0, 60.0, 5)
    for m in claimed:
        if m.queue == queue_b:
            bounced = MessageState.BOUNCED
            assert await settle_one(store, m, lease_token(m), bounced, 1, T0, "550 no such user")
        elif m.id == "s-2":
            queued = MessageState.QUEUED
            assert await settle_one(store, m, lease_token(m), queued, 1, T0 + 60, None)

    acme_rows = [
        QueueCount(queue_a, MessageState.LEASED, 2, T0, None),
        QueueCount(queue_a, MessageState.QUEUED, 1, T0 + 60, None),
        QueueCount(queue_b, MessageState.BOUNCED, 2, T0, "550 no such user"),
    ]
    assert await store.queue_summary() == acme_rows

    globex = await store.create_tenant("globex", T0)
    theirs = [message("g", n, globex.id, queue="c:globex@example.com") for n in range(3)]
    await store.accept([submission("g", globex.id, theirs)], [])
    globex_rows = [QueueCount("c:globex@example.com", MessageState.QUEUED, 3, T0, None)]
    assert await store.queue_summary() == acme_rows + globex_rows
    assert await store.queue_summary(acme.id) == acme_rows
    assert await store.queue_summary(globex.id) == globex_rows
    assert await store.queue_summary(globex.id + 100) == []


async def test_get_message_and_list_submission(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    msgs = [message("s", n, acme.id) for n in range(3)]
    await store.accept([submission("s", acme.id, msgs)], [])
    assert await store.get_message("s-1") == msgs[1]
    assert await store.get_message("missing") is None
    assert await store.list_submission("s") == msgs
    assert await store.list_submission("missing") == []
    assert await store.get_body("missing") is None


async def test_a_tenant_message_comes_with_its_records_and_only_to_its_tenant(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    mine = message("a", 0, acme.id)
    await store.accept([submission("a", acme.id, [mine])], [reception(mine)])

    found = await store.tenant_message(acme.id, mine.id)
    assert found is not None
    assert found[0] == mine
    assert [r["type"] for r in found[1]] == ["Reception"]
    assert found[1][0]["meta"] == {"batch": 1}
    assert await store.tenant_message(beta.id, mine.id) is None
    assert await store.tenant_message(acme.id, "missing") is None


def claim_of(
    tenant_id: int, key: str, request_hash: str, token: str, at: float = T0
) -> IdempotencyKey:
    return IdempotencyKey(tenant_id, key, request_hash, "", at, token, pending=True)


async def test_an_idempotency_key_is_claimed_then_answered_with_the_acceptance(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    mine = claim_of(acme.id, "k1", "h1", "t1")
    assert await store.claim_idempotency_key(mine, T0 - 100, T0 - 10) == mine
    assert await store.claim_idempotency_key(claim_of(beta.id, "k1", "h3", "b1"), 0.0, 0.0) == (
        claim_of(beta.id, "k1", "h3", "b1")
    )
    in_progress = await store.claim_idempotency_key(
        claim_of(acme.id, "k1", "h1", "t2", T0 + 1), T0 - 99, T0 - 9
    )
    assert in_progress == mine

    m = message("a", 0, acme.id)
    answered = replace(mine, response='{"submission_id":"a"}')
    await store.accept([submission("a", acme.id, [m])], [reception(m)], [answered])
    replay = await store.claim_idempotency_key(
        claim_of(acme.id, "k1", "h1", "t3", T0 + 2), T0 - 98, T0 - 8
    )
    assert replay == replace(answered, pending=False)
    other_body = await store.claim_idempotency_key(
        claim_of(acme.id, "k1", "h2", "t4", T0 + 3), T0 - 97, T0 - 7
    )
    assert other_body.request_hash == "h1" and other_body.claim_token == "t1"
    assert await store.release_idempotency_key(acme.id, "k1", "t1") is False


async def test_an_answered_key_is_claimed_again_only_once_expired(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    first = claim_of(acme.id, "k", "h1", "t1")
    await store.claim_idempotency_key(first, 0.0, 0.0)
    await store.accept([], [], [replace(first, response="{}")])
    held = await store.claim_idempotency_key(claim_of(acme.id, "k", "h2", "t2"), T0, T0 + 1000)
    assert held.claim_token == "t1" and not held.pending
    later = claim_of(acme.id, "k", "h2", "t2", T0 + 10)
    assert await store.claim_idempotency_key(later, T0 + 1, T0 - 1000) == later


async def test_an_abandoned_claim_is_claimed_again_and_the_first_holder_fenced(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    first = claim_of(acme.id, "k", "h", "t1")
    await store.claim_idempotency_key(first, 0.0, 0.0)
    fresh = await store.claim_idempotency_key(claim_of(acme.id, "k", "h", "t2", T0 + 5), 0.0, T0)
    assert fresh == first
    second = claim_of(acme.id, "k", "h", "t2", T0 + 400)
    assert await store.claim_idempotency_key(second, 0.0, T0 + 100) == second

    m = message("a", 0, acme.id)
    with pytest.raises(ClaimLost):
        await store.accept(
            [submission("a", acme.id, [m])], [reception(m)], [replace(first, response="{}")]
        )
    assert await store.get_message(m.id) is None
    assert await store.release_idempotency_key(acme.id, "k", "t1") is False


async def test_a_released_claim_frees_the_key(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    first = claim_of(acme.id, "k", "h", "t1")
    await store.claim_idempotency_key(first, 0.0, 0.0)
    assert await store.release_idempotency_key(acme.id, "k", "t2") is False
    assert await store.release_idempotency_key(acme.id, "k", "t1") is True
    retry = claim_of(acme.id, "k", "h", "t2", T0 + 1)
    assert await store.claim_idempotency_key(retry, 0.0, 0.0) == retry


async def test_idempotency_keys_are_swept_when_expired(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    await store.claim_idempotency_key(claim_of(acme.id, "k1", "h", "a"), 0.0, 0.0)
    await store.claim_idempotency_key(claim_of(beta.id, "k1", "h", "b", T0 + 100), 0.0, 0.0)

    assert await store.sweep_idempotency_keys(T0) == 0
    assert await store.sweep_idempotency_keys(T0 + 1) == 1
    assert await store.release_idempotency_key(acme.id, "k1", "a") is False
    assert await store.release_idempotency_key(beta.id, "k1", "b") is True


async def test_tenant_messages_are_isolated(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    acme_subs = [
        submission(f"a{i}", acme.id, [message(f"a{i}", 0, acme.id, created_at=T0 + i)], T0 + i)
        for i in range(3)
    ]
    beta_sub = submission("b", beta.id, [message("b", n, beta.id) for n in range(2)])
    await store.accept([*acme_subs, beta_sub], [])

    newest_first = [s.messages[0].id for s in reversed(acme_subs)]
    assert [m.id for m in await store.tenant_messages(acme.id, 10)] == newest_first
    assert [m.id for m in await store.tenant_messages(acme.id, 2)] == newest_first[:2]
    assert {m.id for m in await store.tenant_messages(beta.id, 10)} == {"b-0", "b-1"}
    assert await store.tenant_messages(beta.id + 100, 10) == []


async def shunt_all(store: Store, msgs: list[QueuedMessage], at: list[float]) -> None:
    """Claim ``msgs`` and settle each as shunted at its time in ``at``."""
    claimed = await store.claim("w1", max(m.due_at for m in msgs), 60.0, len(msgs))
    tokens = {c.id: c.lease_token for c in claimed}
    for m, when in zip(msgs, at, strict=True):
        token = tokens[m.id]
        assert token is not None
        assert await settle_one(store, m, token, MessageState.SHUNTED, 2, when, f"boom {m.id}")


async def settle_claimed(
    store: Store, claimed: list[QueuedMessage], message_id: str, state: MessageState, due: float
) -> None:
    """Settle the claimed message ``message_id`` under its lease token."""
    [m] = [c for c in claimed if c.id == message_id]
    assert m.lease_token is not None
    error = None if state is MessageState.DELIVERED else "boom"
    assert await settle_one(store, m, m.lease_token, state, 1, due, error)


async def test_shunted_messages_are_listed_longest_parked_first(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    msgs = await enqueue(store, acme.id, [T0, T0, T0, T0])
    await shunt_all(store, msgs[:3], [T0 + 10, T0 + 5, T0 + 20])
    listed = await store.list_shunted(10)
    assert [m.id for m in listed] == [msgs[1].id, msgs[0].id, msgs[2].id]
    assert listed[0] == replace(
        msgs[1], state=MessageState.SHUNTED, attempts=2, due_at=T0 + 5, last_error="boom s1-0"
    )
    assert [m.id for m in await store.list_shunted(2)] == [msgs[1].id, msgs[0].id]


async def test_requeue_shunted_queues_only_shunted_messages_with_their_records(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    shunted, other_shunted, queued, delivered = await enqueue(store, acme.id, [T0] * 4)
    await shunt_all(store, [shunted, other_shunted], [T0 + 1, T0 + 1])
    claimed = await store.claim("w1", T0, 60.0, 10)
    await settle_claimed(store, claimed, delivered.id, MessageState.DELIVERED, T0)
    await settle_claimed(store, claimed, queued.id, MessageState.QUEUED, T0 + 50)
    ids = [shunted.id, queued.id, delivered.id, "ghost"]
    before = {i: await store.list_records(i) for i in ids}
    records = [Record(RecordType.ADMIN_REQUEUE, T0 + 9, acme.id, id=i) for i in ids]
    last_bump = max(q.bump for q in await store.queues_changed(0))

    assert await store.requeue_shunted(ids, T0 + 9, records) == [shunted.id]
    assert [q.name for q in await store.queues_changed(last_bump)] == [shunted.queue]
    assert await store.get_message(shunted.id) == replace(
        shunted, attempts=2, due_at=T0 + 9, last_error=f"boom {shunted.id}"
    )
    assert await store.list_records(shunted.id) == [*before[shunted.id], records[0].to_json()]
    for untouched in (queued.id, delivered.id, "ghost"):
        assert await store.list_records(untouched) == before[untouched]
    assert [m.id for m in await store.list_shunted(10)] == [other_shunted.id]
    assert await store.requeue_shunted(ids, T0 + 10, records) == []
    assert [m.id for m in await store.claim("w2", T0 + 9, 60.0, 10)] == [shunted.id]


async def test_remove_messages_takes_queued_and_shunted_ones_and_unneeded_bodies(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    kept_body = [message("a", n, acme.id) for n in range(2)]
    await store.accept(
        [
            submission("a", acme.id, kept_body),
            submission("b", acme.id, [message("b", 0, acme.id, due_at=T0 + 500)]),
            submission("c", acme.id, [message("c", 0, acme.id)]),
        ],
        [],
    )
    claimed = await store.claim("w1", T0, 60.0, 10)  # a-0, a-1 and c-0; b-0 is not due
    await settle_claimed(store, claimed, "a-0", MessageState.SHUNTED, T0)
    await settle_claimed(store, claimed, "a-1", MessageState.DELIVERED, T0)
    ids = ["a-0", "a-1", "b-0", "c-0", "ghost"]
    before = {i: await store.list_records(i) for i in ids}
    records = [Record(RecordType.ADMIN_BOUNCE, T0 + 9, acme.id, id=i) for i in ids]

    assert await store.remove_messages(ids, records) == ["a-0", "b-0"]
    assert await store.get_message("a-0") is None
    assert await store.get_message("b-0") is None
    assert await store.get_body("b") is None
    assert await store.get_body("a") is not None  # a-1 is kept, and its body
    assert [m.state for m in await store.list_submission("a")] == [MessageState.DELIVERED]
    leased = await store.get_message("c-0")
    assert leased is not None and leased.state is MessageState.LEASED
    assert await store.list_records("a-0") == [*before["a-0"], records[0].to_json()]
    assert await store.list_records("b-0") == [records[2].to_json()]
    for untouched in ("a-1", "c-0", "ghost"):
        assert await store.list_records(untouched) == before[untouched]
    assert await store.remove_messages(ids, records) == []


async def test_settle_applies_a_mixed_batch_for_lease_holders_only(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    msgs = await enqueue(store, acme.id, [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4])
    [expiring] = await store.claim("w1", T0, 10.0, 10)  # msgs[0]; expires at T0 + 10
    held = await store.claim("w1", T0 + 5, 10_000.0, 10)  # msgs[1:]
    [stolen] = await store.claim("w2", T0 + 10, 10_000.0, 10)
    assert stolen.id == expiring.id == msgs[0].id
    token = lease_token(held[0])

    delivered, requeued, bounced, forged = msgs[1:]
    settled = [
        (
            Settlement(delivered.id, token, MessageState.DELIVERED, 1, T0 + 20),
            outcome_record(delivered),
        ),
        (
            Settlement(requeued.id, token, MessageState.QUEUED, 1, T0 + 900, "421 busy"),
            outcome_record(requeued, RecordType.TRANSIENT_FAILURE),
        ),
        (
            Settlement(bounced.id, token, MessageState.BOUNCED, 1, T0 + 20, "550 no such user"),
            outcome_record(bounced, RecordType.BOUNCE),
        ),
        (
            Settlement(forged.id, "forged", MessageState.DELIVERED, 1, T0 + 20),
            outcome_record(forged),
        ),
        (
            Settlement(stolen.id, lease_token(expiring), MessageState.DELIVERED, 1, T0 + 20),
            outcome_record(stolen),
        ),
    ]
    assert await store.settle(settled) == {delivered.id, requeued.id, bounced.id}

    assert await store.get_message(delivered.id) == replace(
        delivered, state=MessageState.DELIVERED, attempts=1, due_at=T0 + 20
    )
    assert await store.get_message(bounced.id) == replace(
        bounced,
        state=MessageState.BOUNCED,
        attempts=1,
        due_at=T0 + 20,
        last_error="550 no such user",
    )
    assert await store.get_message(requeued.id) == replace(
        requeued, state=MessageState.QUEUED, attempts=1, due_at=T0 + 900, last_error="421 busy"
    )
    kept = await store.get_message(forged.id)
    assert kept is not None
    assert (kept.state, kept.lease_token, kept.attempts) == (MessageState.LEASED, token, 0)
    assert await store.get_message(stolen.id) == stolen

    for settlement, record in settled[:3]:
        assert await store.list_records(settlement.message_id) == [record.to_json()]
    for settlement, _ in settled[3:]:
        assert await store.list_records(settlement.message_id) == []
    assert await store.claim("w3", T0 + 899, 60.0, 10) == []
    assert [m.id for m in await store.claim("w3", T0 + 900, 60.0, 10)] == [requeued.id]


async def test_a_settlement_of_nothing_stores_nothing(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    [m] = await enqueue(store, acme.id, [T0])
    assert await store.settle([]) == set()
    unclaimed = Settlement(m.id, "never-claimed", MessageState.DELIVERED, 1, T0)
    assert await store.settle([(unclaimed, outcome_record(m))]) == set()
    assert await store.get_message(m.id) == m
    assert await store.list_records(m.id) == []


async def test_a_final_settlement_clears_the_lease(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    [m] = await enqueue(store, acme.id, [T0 + 7])
    [leased] = await store.claim("w1", T0 + 7, 60.0, 1)
    expired = MessageState.EXPIRED
    assert await settle_one(store, m, lease_token(leased), expired, 4, T0 + 7, "too old")
    assert await store.get_message(m.id) == replace(
        m, state=MessageState.EXPIRED, attempts=4, last_error="too old"
    )


async def test_get_bodies(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    subs = [submission(sid, acme.id, [message(sid, 0, acme.id)]) for sid in ("a", "b", "c")]
    await store.accept(subs, [])
    a, _, c = subs
    assert await store.get_bodies(["c", "missing", "a", "a"]) == {"a": a.body, "c": c.body}
    assert await store.get_bodies([]) == {}
    many = [f"absent{i}" for i in range(1_200)] + ["b"]  # more ids than one IN (...) list
    assert await store.get_bodies(many) == {"b": subs[1].body}


async def test_records_after_pages_through_the_log(store: Store) -> None:
    assert await store.last_record_seq() == 0
    acme = await store.create_tenant("acme", T0)
    records = [
        Record(RecordType.DELIVERY, T0 + i, acme.id, id=f"m{i}", num_attempts=1) for i in range(5)
    ]
    await store.add_records(records[:3])
    await store.add_records(records[3:])

    pages: list[list[tuple[int, dict[str, object]]]] = []
    seq = 0
    while page := await store.records_after(seq, 2):
        pages.append(page)
        seq = page[-1][0]
    assert [len(page) for page in pages] == [2, 2, 1]
    seqs = [s for page in pages for s, _ in page]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [data for page in pages for _, data in page] == [r.to_json() for r in records]
    assert await store.records_after(seq, 10) == []
    assert await store.last_record_seq() == seqs[-1]
    assert [data for _, data in await store.records_after(seqs[2], 10)] == [
        r.to_json() for r in records[3:]
    ]


async def test_smtp_users_are_listed_by_tenant_and_removed_by_name(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    second = await store.add_smtp_user(SmtpUser(acme.id, "acme-b", "$h2", T0 + 1))
    first = await store.add_smtp_user(SmtpUser(acme.id, "acme-a", "$h1", T0))
    other = await store.add_smtp_user(SmtpUser(beta.id, "beta-a", "$h3", T0))
    assert await store.list_smtp_users(acme.id) == [first, second]
    assert await store.list_smtp_users(beta.id) == [other]

    assert await store.remove_smtp_user("acme-a") is True
    assert await store.remove_smtp_user("acme-a") is False
    assert await store.get_smtp_user("acme-a") is None
    assert await store.list_smtp_users(acme.id) == [second]
    assert await store.list_smtp_users(beta.id) == [other]


async def test_suppressions_are_paged_by_address_and_removed(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    for address in ("carol@example.com", "Alice@Example.com", "bob@example.com"):
        await store.add_suppression(Suppression(acme.id, address, "bounce", T0))
    await store.add_suppression(Suppression(beta.id, "alice@example.com", "complaint", T0))

    first = await store.list_suppressions(acme.id, "", 2)
    assert first == [
        Suppression(acme.id, "alice@example.com", "bounce", T0),
        Suppression(acme.id, "bob@example.com", "bounce", T0),
    ]
    rest = await store.list_suppressions(acme.id, first[-1].address, 2)
    assert [s.address for s in rest] == ["carol@example.com"]
    assert await store.list_suppressions(acme.id, rest[-1].address, 2) == []

    assert await store.remove_suppression(acme.id, "ALICE@example.com") is True
    assert await store.remove_suppression(acme.id, "alice@example.com") is False
    assert await store.suppressed(acme.id, ["alice@example.com"]) == set()
    assert await store.suppressed(beta.id, ["alice@example.com"]) == {"alice@example.com"}


async def test_suppressions_are_filtered_by_reason_address_and_time(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    rows = [
        ("ann@a.example", "bounce: 5.1.1 InvalidRecipient", T0),
        ("bob@a.example", "complaint: abuse", T0 + 10),
        ("ann@b.example", "unsubscribe", T0 + 20),
        ("anna@sub.a.example", "bounce: 5.7.1 SpamBlock", T0 + 30),
        ("x_y%z@a.example", "manual", T0 + 40),
    ]
    for address, reason, at in rows:
        await store.add_suppression(Suppression(acme.id, address, reason, at))
    await store.add_suppression(Suppression(beta.id, "ann@a.example", "bounce: other", T0))

    async def listed(where: SuppressionFilter, after: str = "", limit: int = 10) -> list[str]:
        return [s.address for s in await store.list_suppressions(acme.id, after, limit, where)]

    assert await listed(SuppressionFilter(reason="bounce")) == [
        "ann@a.example",
        "anna@sub.a.example",
    ]
    assert await listed(SuppressionFilter(domain="a.example")) == [
        "ann@a.example",
        "bob@a.example",
        "x_y%z@a.example",
    ]
    assert await listed(SuppressionFilter(address_prefix="ann")) == [
        "ann@a.example",
        "ann@b.example",
        "anna@sub.a.example",
    ]
    assert await listed(SuppressionFilter(address_prefix="x_y%")) == ["x_y%z@a.example"]
    assert await listed(SuppressionFilter(address_prefix="x%")) == []
    assert await listed(SuppressionFilter(since=T0 + 10, until=T0 + 30)) == [
        "ann@b.example",
        "bob@a.example",
    ]
    both = SuppressionFilter(reason="bounce", address_prefix="ann", since=T0 + 1)
    assert await listed(both) == ["anna@sub.a.example"]
    assert await listed(SuppressionFilter(domain="a.example"), after="bob@a.example") == [
        "x_y%z@a.example"
    ]
    assert await listed(SuppressionFilter(domain="a.example"), limit=1) == ["ann@a.example"]
    assert await store.list_suppressions(beta.id, "", 10, SuppressionFilter(reason="bounce")) == [
        Suppression(beta.id, "ann@a.example", "bounce: other", T0)
    ]


async def test_new_suppressions_are_added_and_existing_ones_kept(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    await store.add_suppression(Suppression(acme.id, "old@example.com", "bounce", T0))
    await store.add_suppression(Suppression(beta.id, "new@example.com", "complaint", T0))
    batch = [
        Suppression(acme.id, "old@example.com", "import", T0 + 5),
        Suppression(acme.id, "New@example.com", "import", T0 + 5),
        Suppression(acme.id, "new@example.com", "again", T0 + 6),
        Suppression(acme.id, "third@example.com", "import", T0 + 5),
    ]

    assert await store.add_new_suppressions(batch) == 2
    assert await store.add_new_suppressions([]) == 0
    assert await store.list_suppressions(acme.id, "", 10) == [
        Suppression(acme.id, "new@example.com", "import", T0 + 5),
        Suppression(acme.id, "old@example.com", "bounce", T0),
        Suppression(acme.id, "third@example.com", "import", T0 + 5),
    ]
    assert await store.list_suppressions(beta.id, "", 10) == [
        Suppression(beta.id, "new@example.com", "complaint", T0)
    ]


async def test_a_removed_domain_is_gone_and_its_name_free(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    await store.add_domain(SendingDomain(acme.id, "acme.example", "s1", "rsa", b"k", "P", T0))
    kept = await store.add_domain(SendingDomain(acme.id, "b.example", "s1", "rsa", b"k", "P", T0))

    assert await store.remove_domain("acme.example") is True
    assert await store.remove_domain("acme.example") is False
    assert await store.get_domain("acme.example") is None
    assert await store.list_domains(acme.id) == [kept]
    moved = await store.add_domain(
        SendingDomain(beta.id, "acme.example", "s2", "ed25519", b"k2", "Q", T0)
    )
    assert await store.get_domain("acme.example") == moved


async def test_tenant_messages_in_states_oldest_first(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    older = message("a", 0, acme.id, created_at=T0)
    newer = message("b", 0, acme.id, created_at=T0 + 5, due_at=T0 - 5)  # claimed first
    later = message("c", 0, acme.id, created_at=T0 + 9)
    await store.accept(
        [
            submission("c", acme.id, [later]),
            submission("b", acme.id, [newer]),
            submission("a", acme.id, [older]),
            submission("x", beta.id, [message("x", 0, beta.id)]),
        ],
        [],
    )
    await shunt_all(store, [newer], [T0 + 1])
    queued = {MessageState.QUEUED}
    both = {MessageState.QUEUED, MessageState.SHUNTED}
    assert [m.id for m in await store.tenant_messages_in(acme.id, both, 10)] == [
        "a-0",
        "b-0",
        "c-0",
    ]
    assert [m.id for m in await store.tenant_messages_in(acme.id, both, 2)] == ["a-0", "b-0"]
    assert [m.id for m in await store.tenant_messages_in(acme.id, queued, 10)] == ["a-0", "c-0"]
    assert await store.tenant_messages_in(acme.id, set(), 10) == []
    assert [m.id for m in await store.tenant_messages_in(beta.id, both, 10)] == ["x-0"]


@pytest.mark.parametrize("state", [MessageState.QUEUED, MessageState.LEASED, MessageState.SHUNTED])
async def test_a_tenant_with_messages_to_deliver_is_not_removed(
    store: Store, state: MessageState
) -> None:
    acme = await store.create_tenant("acme", T0)
    await store.add_domain(SendingDomain(acme.id, "acme.example", "s1", "rsa", b"k", "P", T0))
    [pending] = await enqueue(store, acme.id, [T0])
    if state is MessageState.LEASED:
        await store.claim("w1", T0, 60.0, 10)
    if state is MessageState.SHUNTED:
        await shunt_all(store, [pending], [T0 + 1])
    with pytest.raises(InUse) as refused:
        await store.remove_tenant(acme.id)
    assert refused.value.pending == 1
    assert await store.get_tenant("acme") == acme
    assert await store.get_domain("acme.example") is not None
    stored = await store.get_message(pending.id)
    assert stored is not None and stored.state is state


async def test_removing_a_tenant_takes_what_it_owns_but_its_records(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    for tenant in (acme, beta):
        name = tenant.name
        await store.add_domain(SendingDomain(tenant.id, f"{name}.example", "s", "rsa", b"", "", T0))
        await store.add_smtp_user(SmtpUser(tenant.id, f"{name}-relay", "$h", T0))
        await store.add_suppression(Suppression(tenant.id, f"x@{name}.example", "bounce", T0))
        await store.add_tracking_domain(TrackingDomain(tenant.id, f"t.{name}.example", True, T0))
        await store.claim_idempotency_key(claim_of(tenant.id, "k", "h", "t"), 0.0, 0.0)
        await store.put_tenant_overrides(TenantOverrides(tenant.id, pool="warm", updated_at=T0))
        await store.add_api_key(api_key(tenant.id, f"{name}0000"))
    done = message("a", 0, acme.id)
    kept = message("b", 0, beta.id)
    await store.accept(
        [submission("a", acme.id, [done]), submission("b", beta.id, [kept])],
        [reception(done), reception(kept)],
    )
    claimed = await store.claim("w1", T0, 60.0, 10)
    await settle_claimed(store, claimed, done.id, MessageState.DELIVERED, T0)
    await settle_claimed(store, claimed, kept.id, MessageState.DELIVERED, T0)

    assert await store.remove_tenant(acme.id) is True
    assert await store.get_tenant("acme") is None
    assert await store.list_tenants() == [beta]
    assert await store.get_domain("acme.example") is None
    assert await store.get_smtp_user("acme-relay") is None
    assert await store.list_suppressions(acme.id, "", 10) == []
    assert await store.list_tracking_domains(acme.id) == []
    assert await store.get_tracking_domain("t.acme.example") is None
    assert await store.release_idempotency_key(acme.id, "k", "t") is False
    assert await store.get_tenant_overrides(acme.id) is None
    assert await store.get_api_key("acme0000") is None
    assert await store.get_message(done.id) is None
    assert await store.get_body("a") is None
    assert [r["type"] for r in await store.list_records(done.id)] == ["Reception", "Delivery"]
    assert await store.remove_tenant(acme.id) is False

    assert await store.get_domain("beta.example") is not None
    assert await store.get_smtp_user("beta-relay") is not None
    assert len(await store.list_suppressions(beta.id, "", 10)) == 1
    assert [d.name for d in await store.list_tracking_domains(None)] == ["t.beta.example"]
    assert [o.tenant_id for o in await store.list_tenant_overrides()] == [beta.id]
    assert await store.get_api_key("beta0000") is not None
    assert await store.get_message(kept.id) is not None
    assert await store.get_body("b") is not None
    assert await store.create_tenant("acme", T0 + 1) != acme


async def test_tracking_domains_are_added_listed_and_removed(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    click = await store.add_tracking_domain(
        TrackingDomain(acme.id, "click.acme.example", False, T0)
    )
    assert click.id != 0 and click == TrackingDomain(
        acme.id, "click.acme.example", False, T0, click.id
    )
    links = await store.add_tracking_domain(TrackingDomain(acme.id, "links.acme.example", True, T0))
    other = await store.add_tracking_domain(TrackingDomain(beta.id, "go.beta.example", True, T0))
    assert await store.get_tracking_domain("links.acme.example") == links
    assert await store.get_tracking_domain("nowhere.example") is None
    assert await store.list_tracking_domains(acme.id) == [click, links]
    assert await store.list_tracking_domains(beta.id) == [other]
    assert await store.list_tracking_domains(None) == [click, other, links]

    with pytest.raises(Conflict):
        await store.add_tracking_domain(TrackingDomain(beta.id, "click.acme.example", False, T0))
    with pytest.raises(NotFound):
        await store.add_tracking_domain(TrackingDomain(beta.id + 100, "x.example", False, T0))
    assert await store.list_tracking_domains(beta.id) == [other]

    assert await store.remove_tracking_domain("click.acme.example") is True
    assert await store.remove_tracking_domain("click.acme.example") is False
    assert await store.list_tracking_domains(acme.id) == [links]
    again = await store.add_tracking_domain(
        TrackingDomain(beta.id, "click.acme.example", False, T0)
    )
    assert again.tenant_id == beta.id


async def test_a_tenant_has_one_default_tracking_domain_at_most(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    for tenant_id, name, default in [
        (acme.id, "a1.example", True),
        (acme.id, "a2.example", False),
        (beta.id, "b1.example", True),
    ]:
        await store.add_tracking_domain(TrackingDomain(tenant_id, name, default, T0))

    async def defaults() -> list[str]:
        return [d.name for d in await store.list_tracking_domains(None) if d.is_default]

    assert await defaults() == ["a1.example", "b1.example"]
    assert await store.set_default_tracking_domain("a2.example") is True
    assert await defaults() == ["a2.example", "b1.example"]
    assert await store.set_default_tracking_domain("a2.example") is True
    assert await defaults() == ["a2.example", "b1.example"]
    assert await store.set_default_tracking_domain("none.example") is False
    await store.add_tracking_domain(TrackingDomain(acme.id, "a3.example", True, T0))
    assert await defaults() == ["a3.example", "b1.example"]
    with pytest.raises(Conflict):
        await store.add_tracking_domain(TrackingDomain(acme.id, "a1.example", True, T0))
    assert await defaults() == ["a3.example", "b1.example"], "a refused add changes no default"


# The scheduler's part of the store: queues, claims by queue, suspensions, warmup, status.


async def enqueue_in(
    store: Store, tenant_id: int, queue: str, items: list[tuple[float, int]], tag: str = "q"
) -> list[QueuedMessage]:
    """One submission of one message per (due time, priority) in ``queue``; the messages."""
    msgs = [
        replace(
            message(f"{tag}{i}", 0, tenant_id, due_at=due, queue=queue),
            priority=priority,
            domain=queue.rpartition("@")[2],
        )
        for i, (due, priority) in enumerate(items)
    ]
    await store.accept([submission(m.submission_id, tenant_id, [m]) for m in msgs], [])
    return msgs


async def test_accept_bumps_every_queue_it_adds_mail_to(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    assert await store.queues_changed(0) == []
    a = replace(message("s1", 1, acme.id, queue="news:acme@a.example"), campaign="news")
    a = replace(a, domain="a.example")
    b = replace(message("s1", 2, acme.id, queue="acme@b.example"), domain="b.example")
    b = replace(b, campaign="")
    muted = replace(
        message("s1", 3, acme.id, queue="acme@c.example"), state=MessageState.SUPPRESSED
    )
    await store.accept([submission("s1", acme.id, [a, b, muted])], [])
    first = await store.queues_changed(0)
    bump = first[0].bump
    assert bump > 0
    assert first == [
        QueueInfo("acme@b.example", acme.id, "", "b.example", bump),
        QueueInfo("news:acme@a.example", acme.id, "news", "a.example", bump),
    ]

    await enqueue_in(store, acme.id, "news:acme@a.example", [(T0, 0)], tag="s2-")
    [changed] = await store.queues_changed(bump)
    assert changed.bump > bump
    assert await store.queues_changed(changed.bump) == []
    assert [q.name for q in await store.queues_changed(0)] == [
        "acme@b.example",
        "news:acme@a.example",
    ]


async def test_claim_queue_takes_due_mail_of_one_queue_priority_first(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    queue = "acme@a.example"
    msgs = await enqueue_in(
        store, acme.id, queue, [(T0 + 3, 0), (T0 + 1, 0), (T0 + 2, 9), (T0 + 50, 9), (T0, 5)]
    )
    others = await enqueue_in(store, acme.id, "acme@b.example", [(T0, 9)], tag="other")
    now = T0 + 10

    first = await claim_queue(store, queue, "w1", now, 60.0, 3)
    assert [m.id for m in first] == [msgs[2].id, msgs[4].id, msgs[1].id]
    assert [m.priority for m in first] == [9, 5, 0]
    assert all(m.state is MessageState.LEASED and m.lease_owner == "w1" for m in first)
    assert all(m.lease_expires == now + 60.0 for m in first)
    assert len({lease_token(m) for m in first}) == 1

    second = await claim_queue(store, queue, "w1", now, 60.0, 10)
    assert [m.id for m in second] == [msgs[0].id], "not due and leased messages stay"
    assert lease_token(second[0]) != lease_token(first[0])
    assert await claim_queue(store, queue, "w1", now, 60.0, 10) == []
    assert await store.get_message(others[0].id) == others[0]
    assert await claim_queue(store, "acme@nowhere.example", "w1", now, 60.0, 10) == []


async def test_queue_next_due_and_depths(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    assert await store.queue_next_due("acme@a.example") is None
    assert await store.queue_depths() == {}
    await enqueue_in(store, acme.id, "acme@a.example", [(T0 + 5, 0), (T0 + 2, 0), (T0 + 9, 9)])
    await enqueue_in(store, acme.id, "acme@b.example", [(T0 + 7, 0)], tag="b")
    assert await store.queue_next_due("acme@a.example") == T0 + 2
    assert await store.queue_depths() == {
        "acme@a.example": (3, T0 + 2),
        "acme@b.example": (1, T0 + 7),
    }
    await claim_queue(store, "acme@a.example", "w1", T0 + 3, 60.0, 1)
    assert await store.queue_next_due("acme@a.example") == T0 + 5, "leased ones do not count"
    assert (await store.queue_depths())["acme@a.example"] == (2, T0 + 5)


async def test_reap_leases_returns_expired_leases_to_their_queues(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    [a] = await enqueue_in(store, acme.id, "acme@a.example", [(T0, 0)], tag="a")
    [b] = await enqueue_in(store, acme.id, "acme@b.example", [(T0 + 1, 0)], tag="b")
    [c] = await enqueue_in(store, acme.id, "acme@c.example", [(T0, 0)], tag="c")
    [leased_a] = await claim_queue(store, "acme@a.example", "w1", T0, 10.0, 5)
    [leased_b] = await claim_queue(store, "acme@b.example", "w1", T0 + 1, 10.0, 5)
    await claim_queue(store, "acme@c.example", "w1", T0, 1000.0, 5)
    settlement = Settlement(b.id, lease_token(leased_b), MessageState.QUEUED, 1, T0 + 500)
    await store.settle([(settlement, outcome_record(b))])
    [leased_b] = await claim_queue(store, "acme@b.example", "w1", T0 + 500, 10.0, 5)

    assert await store.reap_leases(T0 + 9) == []
    assert await store.reap_leases(T0 + 10) == ["acme@a.example"]
    back = await store.get_message(a.id)
    assert back is not None and back.state is MessageState.QUEUED
    assert (back.lease_owner, back.lease_expires, back.lease_token) == (None, None, None)
    assert back.due_at == T0, "due at min(due_at, now)"
    assert await store.reap_leases(T0 + 510) == ["acme@b.example"]
    back = await store.get_message(b.id)
    assert back is not None and back.due_at == T0 + 500
    assert not await settle_one(
        store, a, lease_token(leased_a), MessageState.DELIVERED, 1, T0, None
    )
    assert await store.renew([(a.id, lease_token(leased_a))], T0 + 600) == 0
    still = await store.get_message(c.id)
    assert still is not None and still.state is MessageState.LEASED
    assert [m.id for m in await claim_queue(store, "acme@a.example", "w2", T0 + 10, 10, 5)] == [
        a.id
    ]


async def test_delay_queue_moves_due_mail_later_with_a_record_each(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    queue = "acme@a.example"
    msgs = await enqueue_in(
        store, acme.id, queue, [(T0, 0), (T0 + 1, 9), (T0 + 2, 0), (T0 + 99, 0)]
    )
    await enqueue_in(store, acme.id, "acme@b.example", [(T0, 0)], tag="b")
    seen: list[QueuedMessage] = []

    def delayed(m: QueuedMessage) -> Record:
        seen.append(m)
        return Record(RecordType.DELAYED, T0 + 5, m.tenant_id, id=m.id, queue=m.queue)

    assert await store.delay_queue(queue, T0 + 5, T0 + 600, 2, delayed) == 2
    assert [m.id for m in seen] == [msgs[1].id, msgs[0].id], "in claim order"
    assert all(m.state is MessageState.QUEUED for m in seen)
    for m in msgs[:2]:
        stored = await store.get_message(m.id)
        assert stored is not None and stored.due_at == T0 + 600
        assert [r["type"] for r in await store.list_records(m.id)] == ["Delayed"]
    assert await store.delay_queue(queue, T0 + 5, T0 + 600, 10, delayed) == 1
    assert await store.list_records(msgs[3].id) == []
    assert await store.queue_next_due(queue) == T0 + 99
    assert await store.queue_next_due("acme@b.example") == T0
    assert await store.delay_queue(queue, T0 + 5, T0 + 600, 10, delayed) == 0

    assert await store.undelay_queue(queue, T0 + 600, T0 + 50) == 3
    assert await store.queue_next_due(queue) == T0 + 50
    untouched = await store.get_message(msgs[3].id)
    assert untouched is not None and untouched.due_at == T0 + 99
    assert await store.undelay_queue(queue, T0 + 600, T0 + 60) == 0


async def claim_queue(
    store: Store, queue: str, owner: str, now: float, lease_seconds: float, limit: int
) -> list[QueuedMessage]:
    """``claim_queues`` for one queue: the messages leased."""
    return (await store.claim_queues([(queue, limit)], owner, now, lease_seconds))[queue].messages


async def test_claim_queues_claims_several_queues_under_one_token_and_says_what_is_next(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    a = await enqueue_in(store, acme.id, "acme@a.example", [(T0, 0), (T0 + 1, 0), (T0 + 50, 0)])
    b = await enqueue_in(store, acme.id, "acme@b.example", [(T0, 0)], tag="b")
    claimed = await store.claim_queues(
        [("acme@a.example", 1), ("acme@b.example", 5), ("acme@none.example", 5)], "w1", T0 + 2, 60
    )
    assert [m.id for m in claimed["acme@a.example"].messages] == [a[0].id]
    assert claimed["acme@a.example"].next_due == T0 + 1
    assert [m.id for m in claimed["acme@b.example"].messages] == [b[0].id]
    assert claimed["acme@b.example"].next_due is None
    assert claimed["acme@none.example"].messages == []
    tokens = {m.lease_token for c in claimed.values() for m in c.messages}
    assert len(tokens) == 1


async def test_due_counts_count_up_to_the_cap_and_say_when_the_next_is_due(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    await enqueue_in(store, acme.id, "acme@a.example", [(T0, 0), (T0 + 1, 0), (T0 + 2, 0)])
    await enqueue_in(store, acme.id, "acme@b.example", [(T0 + 99, 0)], tag="b")
    counts = await store.due_counts(["acme@a.example", "acme@b.example", "nobody@x"], T0 + 5, 2)
    assert counts == {
        "acme@a.example": (2, T0),
        "acme@b.example": (0, T0 + 99),
        "nobody@x": (0, None),
    }


def admin_record(text: str) -> Record:
    return Record(RecordType.ADMIN_BOUNCE, T0, None, queue=text)


async def test_suspensions_are_added_listed_while_active_and_removed(store: Store) -> None:
    lane = Suspension(SuspensionScope.LANE, "ip1|mx.example", "blocked", T0, T0 + 60, "admin")
    source = Suspension(SuspensionScope.SOURCE, "ip1", "listed", T0, T0 + 10, "rule-x")
    added = await store.add_suspension(lane, [admin_record("lane")])
    assert added.id != 0 and replace(added, id=0) == lane
    other = await store.add_suspension(source, [])
    assert await store.active_suspensions(T0 + 5) == [added, other]
    assert await store.active_suspensions(T0 + 10) == [added]
    assert await store.active_suspensions(T0 + 60) == []
    assert [r["queue"] for _, r in await store.records_after(0, 10)] == ["lane"]

    again = await store.add_suspension(replace(lane, until=T0 + 90), [])
    assert await store.remove_suspensions("lane", "ip1|other", [admin_record("none")]) == 0
    assert await store.remove_suspensions("lane", "ip1|mx.example", [admin_record("gone")]) == 2
    assert again not in await store.active_suspensions(T0)
    assert await store.active_suspensions(T0) == [other]
    assert [r["queue"] for _, r in await store.records_after(0, 10)] == ["lane", "gone"]


async def test_warmup_counts_add_up_per_source_provider_and_day(store: Store) -> None:
    await store.add_warmup_counts([])
    await store.add_warmup_counts(
        [WarmupCount("ip1", "google", 100, 5, 1, 0), WarmupCount("ip1", "yahoo", 100, 2)]
    )
    await store.add_warmup_counts(
        [WarmupCount("ip1", "google", 100, 3, 0, 1), WarmupCount("ip1", "google", 101, 7)]
    )
    await store.add_warmup_counts([WarmupCount("ip0", "", 99, 1)])
    assert await store.warmup_history(100) == [
        WarmupCount("ip1", "google", 100, 8, 1, 1),
        WarmupCount("ip1", "google", 101, 7, 0, 0),
        WarmupCount("ip1", "yahoo", 100, 2, 0, 0),
    ]
    assert (await store.warmup_history(0))[0] == WarmupCount("ip0", "", 99, 1, 0, 0)


async def test_status_reports_are_replaced_and_listed_by_freshness(store: Store) -> None:
    await store.put_status("node1/1", '{"lanes": 1}', T0)
    await store.put_status("node1/2", '{"lanes": 2}', T0 + 5)
    await store.put_status("node1/1", '{"lanes": 3}', T0 + 10)
    assert await store.list_status(T0) == [
        ("node1/1", '{"lanes": 3}', T0 + 10),
        ("node1/2", '{"lanes": 2}', T0 + 5),
    ]
    assert await store.list_status(T0 + 6) == [("node1/1", '{"lanes": 3}', T0 + 10)]


async def query_plan(store: Store, backend: Backend, sql: str, *params: object) -> str:
    """The backend's plan of ``sql`` (with ``?`` for SQLite, ``$n`` for PostgreSQL)."""
    if backend == "sqlite":
        assert isinstance(store, SqliteStore)
        rows = await store._run(
            lambda conn: conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        )
        return "\n".join(str(row[3]) for row in rows)
    assert isinstance(store, PostgresStore)
    await store._execute("ANALYZE messages")
    return "\n".join(str(row[0]) for row in await store._fetch(f"EXPLAIN {sql}", *params))


async def test_queue_queries_read_only_their_queue_through_the_indexes(
    store: Store, backend: Backend
) -> None:
    acme = await store.create_tenant("acme", T0)
    crowd = [
        replace(message("crowd", n, acme.id, queue=f"acme@d{n % 50}.example"), priority=n % 10)
        for n in range(3000)
    ]
    await store.accept([submission("crowd", acme.id, crowd)], [])
    await enqueue_in(store, acme.id, "acme@a.example", [(T0, 0), (T0, 9)])
    if backend == "sqlite":
        claim_plan = await query_plan(store, backend, f"{SQLITE_CLAIM} LIMIT 5", "q", T0)
        next_due_sql = "SELECT min(due_at) FROM messages WHERE queue = ? AND state = 'queued'"
    else:
        claim_plan = await query_plan(store, backend, POSTGRES_CLAIM, "q", T0, 5)
        next_due_sql = "SELECT min(due_at) FROM messages WHERE queue = $1 AND state = 'queued'"
    assert "messages_queue_priority" in claim_plan, claim_plan
    assert "SCAN messages" not in claim_plan and "Seq Scan" not in claim_plan, claim_plan
    assert "TEMP B-TREE" not in claim_plan and "Sort" not in claim_plan, claim_plan
    due_plan = await query_plan(store, backend, next_due_sql, "acme@a.example")
    assert "messages_queue_due" in due_plan, due_plan
    assert "SCAN messages" not in due_plan and "Seq Scan" not in due_plan, due_plan


def webhook(webhook_id: str, tenant_id: int, *types: str, at: float = T0) -> Webhook:
    return Webhook(
        id=webhook_id,
        tenant_id=tenant_id,
        url=f"https://hooks.example/{webhook_id}",
        record_types=types,
        format=WebhookFormat.SINGLE,
        batch_size=1,
        enabled=True,
        secret_sealed=b"sealed-" + webhook_id.encode(),
        created_at=at,
        updated_at=at,
    )


async def test_query_records_filters_a_tenants_records_and_pages_by_seq(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    news = replace(message("n", 0, acme.id), campaign="news", recipient="Ann@Dest.example")
    other = message("o", 0, acme.id)
    await store.accept(
        [submission("n", acme.id, [news]), submission("o", acme.id, [other])],
        [reception(news), reception(other)],
    )
    await store.add_records(
        [
            Record(RecordType.DELIVERY, T0 + 10, acme.id, id=news.id, recipient=news.recipient),
            Record(RecordType.BOUNCE, T0 + 20, acme.id, id=other.id, recipient=other.recipient),
            Record(RecordType.DELIVERY, T0 + 30, beta.id, id="b-0", recipient=news.recipient),
        ]
    )

    async def ids(query: RecordQuery, limit: int = 100) -> list[tuple[str, str]]:
        found = await store.query_records(acme.id, query, limit)
        assert [seq for seq, _ in found] == sorted(seq for seq, _ in found)
        return [(data["type"], data["id"]) for _, data in found]

    everything = [
        ("Reception", news.id),
        ("Reception", other.id),
        ("Delivery", news.id),
        ("Bounce", other.id),
    ]
    assert await ids(RecordQuery()) == everything
    assert await ids(RecordQuery(types=frozenset({"Delivery", "Bounce"}))) == everything[2:]
    assert await ids(RecordQuery(campaign="news")) == [everything[0], everything[2]]
    assert await ids(RecordQuery(recipient="ann@dest.EXAMPLE")) == [everything[0], everything[2]]
    assert await ids(RecordQuery(message_id=other.id)) == [everything[1], everything[3]]
    assert await ids(RecordQuery(since=T0 + 10, until=T0 + 20)) == [everything[2]]
    first = await store.query_records(acme.id, RecordQuery(), 3)
    assert len(first) == 3
    rest = await store.query_records(acme.id, RecordQuery(after_seq=first[-1][0]), 3)
    assert [(d["type"], d["id"]) for _, d in rest] == everything[3:]
    beta_only = await store.query_records(beta.id, RecordQuery(), 100)
    assert [d["id"] for _, d in beta_only] == ["b-0"]


async def test_webhooks_belong_to_their_tenant(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    first = await store.add_webhook(webhook("wh_a1", acme.id, "Delivery", "Bounce"))
    second = await store.add_webhook(webhook("wh_a2", acme.id, at=T0 + 1))
    theirs = await store.add_webhook(webhook("wh_b1", beta.id))
    with pytest.raises(Conflict):
        await store.add_webhook(webhook("wh_a1", acme.id))
    with pytest.raises(NotFound):
        await store.add_webhook(webhook("wh_x", acme.id + beta.id + 10))

    assert await store.get_webhook(acme.id, "wh_a1") == first
    assert await store.get_webhook(acme.id, "wh_b1") is None
    assert await store.list_webhooks(acme.id) == [first, second]
    assert await store.list_webhooks(beta.id) == [theirs]

    changed = replace(
        first,
        url="https://elsewhere.example/",
        record_types=("Open",),
        format=WebhookFormat.BATCH,
        batch_size=50,
        enabled=False,
        updated_at=T0 + 5,
    )
    assert await store.update_webhook(changed)
    assert await store.get_webhook(acme.id, "wh_a1") == changed
    assert not await store.update_webhook(replace(theirs, tenant_id=acme.id, enabled=False))
    assert (await store.get_webhook(beta.id, "wh_b1")) == theirs
    assert await store.enabled_webhooks() == [second, theirs]

    assert not await store.remove_webhook(acme.id, "wh_b1")
    assert await store.remove_webhook(acme.id, "wh_a2")
    assert await store.list_webhooks(acme.id) == [changed]
    assert await store.remove_tenant(acme.id)
    assert await store.list_webhooks(beta.id) == [theirs]


async def follow(store: Store, page: int, expected: int) -> list[LoggedRecord]:
    """Follow the log from the dispatcher's position, moving it, until ``expected`` records
    came (on PostgreSQL another database's running transaction may hold them back a moment),
    then once more to see that no more come."""
    found: list[LoggedRecord] = []
    position = await store.webhook_position()
    async with asyncio.timeout(10):
        while True:
            records, reached = await store.records_since(position, page)
            if records:
                assert await store.queue_webhook_deliveries(position, reached, [], T0)
                found.extend(records)
                position = reached
            elif len(found) >= expected:
                return found
            else:
                await asyncio.sleep(0.01)


async def test_records_since_follows_the_log_once(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    assert await follow(store, 10, 0) == []
    records = [Record(RecordType.DELIVERY, T0 + i, acme.id, id=f"m{i}") for i in range(5)]
    await store.add_records(records[:2])
    await store.add_records(records[2:])
    followed = await follow(store, 2, 5)
    assert [r.data for r in followed] == [r.to_json() for r in records]
    assert {(r.tenant_id, r.type) for r in followed} == {(acme.id, "Delivery")}
    assert await follow(store, 2, 0) == []
    late = Record(RecordType.BOUNCE, T0 + 9, None, id="m9")
    await store.add_records([late])
    assert [r.data for r in await follow(store, 2, 1)] == [late.to_json()]


async def test_the_log_end_is_where_following_the_log_would_stop(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    start = await store.webhook_position()
    assert await store.log_end(start) == start
    await store.add_records(
        [Record(RecordType.DELIVERY, T0 + i, acme.id, id=f"m{i}") for i in range(3)]
    )
    followed = await follow(store, 10, 3)
    assert len(followed) == 3
    _, reached = await store.records_since(start, 10)
    assert await store.log_end(start) == reached
    assert await store.log_end(reached) == reached
    assert await store.records_since(reached, 10) == ([], reached)


async def test_the_dispatch_position_moves_only_from_where_it_was(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    hook = await store.add_webhook(webhook("wh_1", acme.id))
    await store.add_records([Record(RecordType.DELIVERY, T0, acme.id, id="m0")])
    start = await store.webhook_position()
    async with asyncio.timeout(10):
        while True:
            records, reached = await store.records_since(start, 10)
            if records:
                break
            await asyncio.sleep(0.01)
    assert len(records) == 1 and reached > start
    queued = NewWebhookDelivery(hook.id, acme.id, '{"n":1}', 1)
    assert await store.queue_webhook_deliveries(start, reached, [queued], T0)
    assert not await store.queue_webhook_deliveries(start, reached, [queued], T0)
    assert await store.webhook_position() == reached
    assert len(await store.list_webhook_deliveries(acme.id, hook.id, None, 10)) == 1


async def test_webhook_deliveries_are_claimed_once_retried_and_finished(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    a = await store.add_webhook(webhook("wh_a", acme.id))
    b = await store.add_webhook(webhook("wh_b", beta.id))
    off = await store.add_webhook(replace(webhook("wh_off", acme.id), enabled=False))
    position = await store.webhook_position()
    new = [
        NewWebhookDelivery(a.id, acme.id, '{"n":1}', 1),
        NewWebhookDelivery(b.id, beta.id, '{"n":2}', 1),
        NewWebhookDelivery(off.id, acme.id, '{"n":3}', 1),
        NewWebhookDelivery(a.id, acme.id, '[{"n":4},{"n":5}]', 2),
    ]
    assert await store.queue_webhook_deliveries(position, position, new, T0)

    claimed = await store.claim_webhook_deliveries(T0, 30, 10, skip={"wh_b"})
    assert [d.payload for d in claimed] == ['{"n":1}', '[{"n":4},{"n":5}]']
    first, second = claimed
    assert first.lease_token is not None and first.lease_token == second.lease_token
    assert (first.state, first.attempts, first.record_count) == (
        WebhookDeliveryState.PENDING,
        0,
        1,
    )
    assert await store.claim_webhook_deliveries(T0 + 1, 30, 10, skip={"wh_b"}) == []
    [theirs] = await store.claim_webhook_deliveries(T0 + 1, 30, 10, skip=())
    assert theirs.webhook_id == "wh_b"

    assert first.lease_token is not None and second.lease_token is not None
    retry = WebhookAttempt(
        first.id, first.lease_token, WebhookDeliveryState.PENDING, 1, T0 + 60, 500, "HTTP 500", T0
    )
    assert await store.finish_webhook_delivery(retry)
    assert not await store.finish_webhook_delivery(retry)  # the lease is gone
    done = WebhookAttempt(
        second.id, second.lease_token, WebhookDeliveryState.DELIVERED, 1, T0, 200, None, T0 + 2
    )
    assert await store.finish_webhook_delivery(done)
    assert await store.claim_webhook_deliveries(T0 + 59, 30, 10, skip={"wh_b"}) == []
    [again] = await store.claim_webhook_deliveries(T0 + 60, 30, 10, skip={"wh_b"})
    assert (again.id, again.attempts, again.last_status, again.last_error) == (
        first.id,
        1,
        500,
        "HTTP 500",
    )
    # An expired lease is claimed again, under a new token.
    [reclaimed] = await store.claim_webhook_deliveries(T0 + 91, 30, 10, skip={"wh_b"})
    assert reclaimed.id == first.id and reclaimed.lease_token != again.lease_token

    log = await store.list_webhook_deliveries(acme.id, a.id, None, 10)
    assert [d.id for d in log] == [second.id, first.id]
    assert log[0].state is WebhookDeliveryState.DELIVERED and log[0].last_status == 200
    assert [d.id for d in await store.list_webhook_deliveries(acme.id, a.id, second.id, 10)] == [
        first.id
    ]
    assert await store.list_webhook_deliveries(beta.id, a.id, None, 10) == []
    assert await store.purge_webhook_deliveries(T0 + 3) == 1
    assert [d.id for d in await store.list_webhook_deliveries(acme.id, a.id, None, 10)] == [
        first.id
    ]
    assert await store.remove_webhook(acme.id, a.id)
    assert await store.list_webhook_deliveries(acme.id, a.id, None, 10) == []


def api_key(tenant_id: int, prefix: str, *scopes: ApiScope) -> ApiKey:
    return ApiKey(
        tenant_id=tenant_id,
        prefix=prefix,
        name=f"key {prefix}",
        scopes=frozenset(scopes or ApiScope),
        secret_hash=bytes(range(32)),
        created_at=T0,
    )


async def test_api_keys_are_stored_listed_by_tenant_and_revoked(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    first = await store.add_api_key(api_key(acme.id, "aaaaaaaa", ApiScope.SEND))
    second = await store.add_api_key(api_key(acme.id, "bbbbbbbb", ApiScope.READ, ApiScope.MANAGE))
    theirs = await store.add_api_key(api_key(beta.id, "cccccccc"))
    assert first.id and second.id and theirs.id
    assert await store.get_api_key("bbbbbbbb") == second
    assert second.scopes == {ApiScope.READ, ApiScope.MANAGE}
    assert await store.get_api_key("zzzzzzzz") is None
    assert await store.list_api_keys(acme.id) == [first, second]
    assert await store.list_api_keys(beta.id) == [theirs]

    with pytest.raises(Conflict):
        await store.add_api_key(api_key(beta.id, "aaaaaaaa"))
    with pytest.raises(NotFound):
        await store.add_api_key(api_key(9999, "dddddddd"))

    assert await store.revoke_api_key("cccccccc", T0 + 5, tenant_id=acme.id) is None
    assert await store.get_api_key("cccccccc") == theirs
    revoked = await store.revoke_api_key("aaaaaaaa", T0 + 5, tenant_id=acme.id)
    assert revoked == replace(first, revoked_at=T0 + 5)
    assert await store.revoke_api_key("aaaaaaaa", T0 + 9) == revoked
    assert await store.revoke_api_key("cccccccc", T0 + 9) == replace(theirs, revoked_at=T0 + 9)
    assert await store.revoke_api_key("zzzzzzzz", T0 + 9) is None
    assert await store.list_api_keys(acme.id) == [revoked, second]


def spring(tenant_id: int, name: str = "spring") -> Campaign:
    template = CampaignTemplate(
        "news@acme.example", "Hi {{ name }}", html="<p>{{ name }}</p>", headers=(("X-A", "b"),)
    )
    draft = CampaignState.DRAFT
    return Campaign(
        0, tenant_id, name, draft, template, "t.acme.example", "p", "bulk", None, T0, T0
    )


async def test_campaigns_are_stored_per_tenant_and_move_between_states(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    made = await store.add_campaign(spring(acme.id))
    assert made.id > 0
    assert await store.get_campaign(acme.id, made.id) == made
    assert await store.get_campaign(beta.id, made.id) is None
    with pytest.raises(Conflict):
        await store.add_campaign(spring(acme.id))
    other = await store.add_campaign(spring(beta.id))
    assert [c.id for c in await store.list_campaigns(acme.id)] == [made.id]
    scheduled, draft = CampaignState.SCHEDULED, CampaignState.DRAFT
    assert await store.set_campaign_state(beta.id, made.id, scheduled, T0, when={draft}) is None
    moved = await store.set_campaign_state(acme.id, made.id, scheduled, T0 + 1, when={draft})
    assert moved == replace(made, state=scheduled, updated_at=T0 + 1)
    assert await store.set_campaign_state(acme.id, made.id, scheduled, T0, when={draft}) is None
    assert [c.id for c in await store.campaigns_in({scheduled})] == [made.id]
    assert [c.id for c in await store.campaigns_in({draft, scheduled})] == [made.id, other.id]


async def test_campaign_routes_list_the_campaigns_that_set_a_pool_or_tracking_domain(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    await store.add_campaign(spring(acme.id))
    await store.add_campaign(replace(spring(acme.id, "plain"), tracking_domain=None, pool=None))
    await store.add_campaign(replace(spring(beta.id, "pooled"), tracking_domain=None))
    assert await store.campaign_routes() == [
        CampaignRoute(acme.id, "spring", "p", "t.acme.example"),
        CampaignRoute(beta.id, "pooled", "p", None),
    ]


async def test_campaign_recipients_are_taken_in_row_order_marked_and_counted(
    store: Store,
) -> None:
    acme = await store.create_tenant("acme", T0)
    beta = await store.create_tenant("beta", T0)
    made = await store.add_campaign(spring(acme.id))
    assert await store.last_campaign_row(acme.id, made.id) == 0
    rows = [CampaignRecipient(n, f"r{n}@dest.example", {"name": f"N{n}"}) for n in range(1, 6)]
    bad = CampaignRecipient(6, "nope", {}, RecipientStatus.INVALID, None, "no domain")
    await store.add_campaign_recipients(acme.id, made.id, [*rows, bad])
    with pytest.raises(Conflict):
        await store.add_campaign_recipients(acme.id, made.id, rows[:1])
    assert await store.last_campaign_row(acme.id, made.id) == 6
    assert await store.pending_campaign_recipients(beta.id, made.id, 0, 10) == []
    assert await store.pending_campaign_recipients(acme.id, made.id, 0, 2) == rows[:2]
    assert await store.pending_campaign_recipients(acme.id, made.id, 3, 10) == rows[3:]

    m = message("s1", 1, acme.id)
    await store.accept([submission("s1", acme.id, [m])], [reception(m)])
    queued = RecipientStatus.QUEUED
    await store.mark_campaign_recipients(
        acme.id,
        made.id,
        [
            RecipientMark(1, queued, m.id),
            RecipientMark(2, RecipientStatus.SUPPRESSED),
            RecipientMark(3, RecipientStatus.FAILED, reason="bad"),
        ],
    )
    assert await store.pending_campaign_recipients(acme.id, made.id, 0, 10) == rows[3:]
    assert await store.campaign_counts(acme.id, made.id) == {
        "queued": 1,
        "suppressed": 1,
        "failed": 1,
        "pending": 2,
        "invalid": 1,
    }
    assert await store.campaign_counts(beta.id, made.id) == {}
    default = await store.campaign_messages_in(acme.id, "default", {MessageState.QUEUED}, 10)
    assert [x.id for x in default] == [m.id]
    assert await store.campaign_messages_in(beta.id, "default", {MessageState.QUEUED}, 10) == []
    await store.remove_messages([m.id], [])
    assert await store.remove_tenant(acme.id)
    assert await store.get_campaign(acme.id, made.id) is None


def stat_count(tenant_id: int, hour: int, campaign: str, sent: int, **bounces: int) -> StatCount:
    counts = tuple(sent if name == "sent" else 0 for name in METRICS)
    key = StatKey(tenant_id, hour, campaign, "acme.example", "google")
    return StatCount(key, counts, bounces)


async def test_message_facts_name_campaign_sender_and_recipient_domain(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    m = message("s", 0, acme.id)
    await store.accept([submission("s", acme.id, [m])], [])
    facts = MessageFacts("default", "news@acme.example", "dest0.example")
    assert await store.message_facts([m.id, "gone", m.id]) == {m.id: facts}
    assert await store.message_facts([]) == {}


async def test_stats_lease_is_held_by_one_owner_until_it_runs_out(store: Store) -> None:
    start = LogPosition()
    assert await store.lease_stats("a", T0, 30) == start
    assert await store.lease_stats("b", T0 + 10, 30) is None
    assert await store.lease_stats("a", T0 + 20, 30) == start  # renewed to T0 + 50
    assert await store.lease_stats("b", T0 + 49, 30) is None
    assert await store.lease_stats("b", T0 + 50, 30) == start


async def test_apply_stats_moves_the_cursor_with_the_counts_once(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    hour = 1_699_999_200
    first = [stat_count(acme.id, hour, "spring", 2, InvalidRecipient=1)]
    start, ten, twelve = LogPosition(), LogPosition(5, 10), LogPosition(6, 12)
    assert await store.apply_stats(start, ten, first)
    assert not await store.apply_stats(start, ten, first)  # counted already: nothing added
    second = [stat_count(acme.id, hour, "spring", 3, SpamBlock=2)]
    assert await store.apply_stats(ten, twelve, second)
    assert await store.lease_stats("a", T0, 30) == twelve
    totals, bounces = await store.stat_totals(acme.id, StatsQuery())
    assert [t.counts[METRICS.index("sent")] for t in totals] == [5]
    assert sorted((b.category, b.count) for b in bounces) == [
        ("InvalidRecipient", 1),
        ("SpamBlock", 2),
    ]


async def test_stat_totals_group_filter_and_keep_to_the_tenant(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    other = await store.create_tenant("other", T0)
    day = 1_699_920_000  # a day's start
    counts = [
        stat_count(acme.id, day, "spring", 1),
        stat_count(acme.id, day + 3600, "spring", 2, SpamBlock=1),
        stat_count(acme.id, day + 86400, "summer", 4),
        stat_count(other.id, day, "spring", 100, SpamBlock=50),
    ]
    assert await store.apply_stats(LogPosition(), LogPosition(1, 4), counts)
    sent = METRICS.index("sent")

    by_day = StatsQuery(group_by=(Dimension.DAY, Dimension.CAMPAIGN))
    totals, bounces = await store.stat_totals(acme.id, by_day)
    assert sorted((t.group, t.counts[sent]) for t in totals) == [
        ((day, "spring"), 3),
        ((day + 86400, "summer"), 4),
    ]
    assert [(b.group, b.category, b.count) for b in bounces] == [((day, "spring"), "SpamBlock", 1)]
    hours = StatsQuery(group_by=(Dimension.HOUR,), since=day + 1800, until=day + 86400)
    totals, _ = await store.stat_totals(acme.id, hours)
    assert sorted((t.group, t.counts[sent]) for t in totals) == [((day,), 1), ((day + 3600,), 2)]
    summer = StatsQuery(group_by=(Dimension.PROVIDER,), campaign="summer", domain="acme.example")
    totals, _ = await store.stat_totals(acme.id, summer)
    assert [(t.group, t.counts[sent]) for t in totals] == [(("google",), 4)]
    assert (await store.stat_totals(acme.id, StatsQuery(provider="yahoo")))[0][0].counts[sent] == 0
    nobody = await store.create_tenant("nobody", T0)
    assert await store.stat_totals(nobody.id, StatsQuery(group_by=(Dimension.DAY,))) == ([], [])
    assert await store.remove_tenant(acme.id)  # its numbers go with it
    assert await store.stat_totals(acme.id, StatsQuery(group_by=(Dimension.DAY,))) == ([], [])
    assert (await store.stat_totals(other.id, StatsQuery()))[0][0].counts[sent] == 100


DAY0 = 1_699_920_000
"""A day's start."""
GENERATED_QUERIES = [
    StatsQuery(),
    StatsQuery(group_by=(Dimension.PROVIDER, Dimension.HOUR)),
    StatsQuery(group_by=(Dimension.HOUR, Dimension.PROVIDER), since=DAY0 + 5 * 3600),
    StatsQuery(group_by=(Dimension.DAY,), provider="yahoo"),
    StatsQuery(group_by=(Dimension.PROVIDER,), until=DAY0 + 86400 + 7200),
    StatsQuery(group_by=(Dimension.CAMPAIGN, Dimension.DAY)),
    StatsQuery(group_by=(Dimension.DOMAIN, Dimension.PROVIDER, Dimension.HOUR)),
    StatsQuery(group_by=(Dimension.HOUR,), campaign="c1", since=DAY0 + 1800),
    StatsQuery(group_by=(Dimension.PROVIDER,), domain="d0.example"),
]


def generated_counts(tenant_id: int, seed: int) -> list[list[StatCount]]:
    """Batches of random counts over three days, campaigns, domains and providers."""
    rng = random.Random(seed)
    batches = []
    for _ in range(4):
        batch: dict[StatKey, StatCount] = {}
        for _ in range(150):
            key = StatKey(
                tenant_id,
                DAY0 + 3600 * rng.randrange(72),
                f"c{rng.randrange(3)}",
                f"d{rng.randrange(2)}.example",
                rng.choice(("google", "yahoo", "other")),
            )
            counts = tuple(rng.randrange(6) for _ in METRICS)
            bounces = {c: rng.randrange(1, 4) for c in rng.sample(["A", "B", "C"], 2)}
            batch[key] = StatCount(key, counts, bounces)
        batches.append(list(batch.values()))
    return batches


def summed(
    counts: list[StatCount], tenant_id: int, query: StatsQuery
) -> tuple[dict[tuple[object, ...], list[int]], dict[tuple[object, ...], int]]:
    """``query``'s totals and bounces, summed the straightforward way."""
    totals: dict[tuple[object, ...], list[int]] = {}
    bounces: dict[tuple[object, ...], int] = {}
    since = -1 if query.since is None else query.since - query.since % 3600
    until = math.inf if query.until is None else math.ceil(query.until)
    for c in counts:
        k = c.key
        named = {"campaign": k.campaign, "domain": k.domain, "provider": k.provider}
        if k.tenant_id != tenant_id or not since <= k.hour < until:
            continue
        if any(getattr(query, name) not in (None, value) for name, value in named.items()):
            continue
        values = {**named, "hour": k.hour, "day": k.hour - k.hour % 86400}
        group = tuple(values[str(d)] for d in query.group_by)
        into = totals.setdefault(group, [0] * len(METRICS))
        for i, n in enumerate(c.counts):
            into[i] += n
        for category, n in c.bounces.items():
            bounces[(*group, category)] = bounces.get((*group, category), 0) + n
    return totals, bounces


async def test_stat_totals_equal_the_counts_summed_one_by_one(store: Store) -> None:
    acme = await store.create_tenant("acme", T0)
    other = await store.create_tenant("other", T0)
    batches = generated_counts(acme.id, 1) + generated_counts(other.id, 2)
    position = LogPosition()
    for n, batch in enumerate(batches, 1):
        reached = LogPosition(n, n)
        assert await store.apply_stats(position, reached, batch)
        position = reached
    every = [c for batch in batches for c in batch]
    for query in GENERATED_QUERIES:
        totals, bounces = await store.stat_totals(acme.id, query)
        expected_totals, expected_bounces = summed(every, acme.id, query)
        assert {t.group: list(t.counts) for t in totals} == expected_totals, query
        assert {(*b.group, b.category): b.count for b in bounces} == expected_bounces, query


async def test_a_tenants_record_query_reads_its_records_through_the_index(
    store: Store, backend: Backend
) -> None:
    big = await store.create_tenant("big", T0)
    small = await store.create_tenant("small", T0)
    owners = [small if n % 150 == 0 else big for n in range(3000)]
    await store.add_records(
        [Record(RecordType.DELIVERY, T0 + n, t.id, id=f"m{n}") for n, t in enumerate(owners)]
    )
    query = RecordQuery(types=frozenset({"Delivery"}), since=T0, after_seq=100)
    if backend == "sqlite":
        sql, args = record_query(
            small.id, query, 50, lambda: "?", lambda name: f"json_extract(data, '$.{name}')"
        )
    else:
        count = itertools.count(1)
        sql, args = record_query(
            small.id, query, 50, lambda: f"${next(count)}", lambda n: f"(data->>'{n}')"
        )
        assert isinstance(store, PostgresStore)
        await store._execute("ANALYZE records")
    plan = await query_plan(store, backend, sql, *args)
    assert "records_tenant" in plan, plan
    assert "SCAN records" not in plan and "Seq Scan" not in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
