"""PostgreSQL only: row-level security per tenant, claims shared by processes, the pool,
and new mail announced to delivery in other processes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from config.loader import parse_settings
from engine.model import (
    ApiKey,
    ApiScope,
    Campaign,
    CampaignRecipient,
    CampaignState,
    CampaignTemplate,
    IdempotencyKey,
    MessageState,
    QueuedMessage,
    SendingDomain,
    SmtpUser,
    Submission,
    Suppression,
    TenantOverrides,
    TrackingDomain,
    Webhook,
    WebhookFormat,
)
from engine.records.record import Record, RecordType
from engine.runtime.app import migrated_store
from engine.stats.counts import METRICS, StatCount, StatKey
from engine.store import LogPosition, NewWebhookDelivery, StoreError
from engine.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

T0 = 1_700_000_000.0
TENANT_TABLES = (
    "messages",
    "records",
    "bodies",
    "sending_domains",
    "suppressions",
    "tracking_domains",
    "smtp_users",
    "api_keys",
    "idempotency_keys",
    "webhooks",
    "webhook_deliveries",
    "tenant_settings",
    "campaigns",
    "campaign_recipients",
    "stat_counts",
    "stat_bounces",
    "stat_provider_counts",
    "stat_provider_bounces",
)
"""Every table holding tenants' rows that the API reads for a tenant: each has a
row-level security policy for ``penguin_tenant``."""


def batch(tenant_id: int, prefix: str, submissions: int, per: int) -> list[Submission]:
    subs = []
    for s in range(submissions):
        sid = f"{prefix}{s}"
        msgs = tuple(
            QueuedMessage(
                id=f"{sid}-{n}",
                submission_id=sid,
                tenant_id=tenant_id,
                queue=f"default:{prefix}@example.com",
                campaign="default",
                sender=f"news@{prefix}.example",
                recipient=f"user{n}@dest.example",
                domain="dest.example",
                state=MessageState.QUEUED,
                due_at=T0 + s,
                created_at=T0,
            )
            for n in range(per)
        )
        subs.append(Submission(sid, tenant_id, b"Subject: hi\r\n\r\nbody\r\n", msgs, T0))
    return subs


async def seed(store: PostgresStore, name: str, submissions: int, per: int) -> int:
    tenant = await store.create_tenant(name, T0)
    await store.add_domain(
        SendingDomain(tenant.id, f"{name}.example", "s1", "rsa-sha256", b"sealed", "MIIB", T0)
    )
    await store.add_suppression(Suppression(tenant.id, f"gone@{name}.example", "bounce", T0))
    await store.add_tracking_domain(TrackingDomain(tenant.id, f"click.{name}.example", True, T0))
    await store.add_smtp_user(SmtpUser(tenant.id, f"{name}-relay", "$hash", T0))
    key = ApiKey(tenant.id, f"{name:x<8}"[:8], "k", frozenset(ApiScope), b"h" * 32, T0)
    await store.add_api_key(key)
    hook = Webhook(
        f"wh_{name}", tenant.id, "https://h.example/", (), WebhookFormat.SINGLE, 1, True, b"s",
        T0, T0,
    )  # fmt: skip
    await store.add_webhook(hook)
    position = await store.webhook_position()
    posting = [NewWebhookDelivery(hook.id, tenant.id, "{}", 1)]
    assert await store.queue_webhook_deliveries(position, position, posting, T0)
    await store.put_tenant_overrides(TenantOverrides(tenant.id, daily_quota=10, updated_at=T0))
    counted = await store.lease_stats(name, T0, 0)
    assert counted is not None
    stat_key = StatKey(tenant.id, int(T0) // 3600 * 3600, "default", f"{name}.example", "other")
    counts = StatCount(stat_key, (1,) * len(METRICS), {"SpamBlock": 1})
    reached = LogPosition(counted.txid, counted.seq + 1)
    assert await store.apply_stats(counted, reached, [counts])
    subs = batch(tenant.id, name, submissions, per)
    records = [
        Record(RecordType.RECEPTION, T0, tenant.id, id=m.id) for s in subs for m in s.messages
    ]
    claim = IdempotencyKey(tenant.id, "k", "h", "", T0, f"t-{name}", pending=True)
    await store.claim_idempotency_key(claim, 0.0, 0.0)
    await store.accept(subs, records, [replace(claim, response="{}")])
    template = CampaignTemplate(f"news@{name}.example", "Hi", text="Hello")
    campaign = await store.add_campaign(
        Campaign(
            0, tenant.id, "spring", CampaignState.DRAFT, template, None, None, None, None, T0, T0
        )
    )
    recipient = CampaignRecipient(1, f"ann@{name}.example", {})
    await store.add_campaign_recipients(tenant.id, campaign.id, [recipient])
    return tenant.id


STATS_ROWS = {
    "stat_counts": 2,
    "stat_bounces": 2,
    "stat_provider_counts": 2,
    "stat_provider_bounces": 2,
}
"""A count of ``seed``'s per hour and per day."""
ONE_EACH = {
    "tracking_domains": 1,
    "smtp_users": 1,
    "api_keys": 1,
    "tenant_settings": 1,
    "campaigns": 1,
    "campaign_recipients": 1,
    "idempotency_keys": 1,
    "webhooks": 1,
    "webhook_deliveries": 1,
}


async def test_tenant_scope_sees_only_its_rows(pg_store: PostgresStore, postgres_url: str) -> None:
    acme = await seed(pg_store, "acme", submissions=2, per=3)
    beta = await seed(pg_store, "beta", submissions=1, per=2)
    expected = {
        acme: {"messages": 6, "records": 6, "bodies": 2, "sending_domains": 1, "suppressions": 1}
        | ONE_EACH
        | STATS_ROWS,
        beta: {"messages": 2, "records": 2, "bodies": 1, "sending_domains": 1, "suppressions": 1}
        | ONE_EACH
        | STATS_ROWS,
    }

    for tenant_id, counts in expected.items():
        async with pg_store.tenant_scope(tenant_id) as conn:
            for table in TENANT_TABLES:
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == counts[table]

    owner = await asyncpg.connect(postgres_url)
    try:
        for table in TENANT_TABLES:
            total = expected[acme][table] + expected[beta][table]
            assert await owner.fetchval(f"SELECT count(*) FROM {table}") == total
    finally:
        await owner.close()

    assert {m.tenant_id for m in await pg_store.tenant_messages(beta, 100)} == {beta}
    assert len(await pg_store.tenant_messages(acme, 100)) == 6


@pytest.fixture
async def tenant_login(postgres_url: str) -> AsyncIterator[str]:
    """The URL of a login role made for the test: a member of ``penguin_tenant`` without
    BYPASSRLS (as a deployment would give the API), dropped afterwards."""
    role = f"penguin_api_{secrets.token_hex(4)}"
    owner = await asyncpg.connect(postgres_url)
    try:
        await owner.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS")
        await owner.execute(f"GRANT penguin_tenant TO {role}")
        parts = urlsplit(postgres_url)
        yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    finally:
        await owner.execute(f"DROP ROLE IF EXISTS {role}")
        await owner.close()


async def test_a_login_role_without_bypassrls_sees_only_its_tenants_rows(
    pg_store: PostgresStore, tenant_login: str
) -> None:
    acme = await seed(pg_store, "acme", submissions=2, per=3)
    beta = await seed(pg_store, "beta", submissions=1, per=2)
    expected = {
        acme: {"messages": 6, "records": 6, "bodies": 2} | ONE_EACH | STATS_ROWS,
        beta: {"messages": 2, "records": 2, "bodies": 1} | ONE_EACH | STATS_ROWS,
    }
    conn = await asyncpg.connect(tenant_login)
    try:
        assert not await conn.fetchval("SELECT rolbypassrls FROM pg_roles WHERE rolname = user")
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = user")
        for tenant_id, counts in expected.items():
            async with conn.transaction():
                await conn.execute(
                    "SELECT set_config('penguin.tenant_id', $1, true)", str(tenant_id)
                )
                for table in TENANT_TABLES:
                    rows = await conn.fetch(f"SELECT tenant_id FROM {table}")
                    assert len(rows) == counts.get(table, 1), table
                    assert {row[0] for row in rows} == {tenant_id}, table
        for table in TENANT_TABLES:  # no tenant set: nothing
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        async with conn.transaction():
            await conn.execute("SELECT set_config('penguin.tenant_id', $1, true)", str(acme))
            assert await conn.execute("UPDATE api_keys SET name = 'x'") == "UPDATE 1"
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO api_keys (tenant_id, prefix, name, scopes, secret_hash,"
                    " created_at) VALUES ($1, 'zzzzzzzz', 'n', 'send', '\\x00', $2)",
                    beta,
                    T0,
                )
    finally:
        await conn.close()
    [theirs] = await pg_store.list_api_keys(beta)
    assert theirs.name == "k"


async def test_tenant_scope_cannot_write_for_another_tenant(pg_store: PostgresStore) -> None:
    acme = await seed(pg_store, "acme", submissions=1, per=1)
    beta = await seed(pg_store, "beta", submissions=1, per=1)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with pg_store.tenant_scope(acme) as conn:
            await conn.execute(
                "INSERT INTO suppressions (tenant_id, address, reason, created_at)"
                " VALUES ($1, 'x@example.com', 'bounce', $2)",
                beta,
                T0,
            )
    async with pg_store.tenant_scope(acme) as conn:
        assert await conn.execute("UPDATE messages SET attempts = 9") == "UPDATE 1"
    [beta_message] = await pg_store.tenant_messages(beta, 10)
    assert beta_message.attempts == 0


async def test_tenant_facing_calls_run_under_row_level_security(pg_store: PostgresStore) -> None:
    acme = await seed(pg_store, "acme", submissions=1, per=1)
    beta = await seed(pg_store, "beta", submissions=1, per=1)
    mixed = [
        Suppression(acme, "new@example.com", "import", T0),
        Suppression(beta, "new@example.com", "import", T0),
    ]
    with pytest.raises(StoreError, match="suppression"):
        await pg_store.add_new_suppressions(mixed)
    assert await pg_store.suppressed(acme, ["new@example.com"]) == set()
    assert await pg_store.suppressed(beta, ["new@example.com"]) == set()


async def test_concurrent_claims_never_lease_a_message_twice(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    await seed(pg_store, "acme", submissions=20, per=3)
    other = PostgresStore(postgres_url, pool_size=4)
    try:
        claimers = [
            (f"{name}-w{i}", s) for i in range(4) for name, s in [("a", pg_store), ("b", other)]
        ]
        leased: list[str] = []
        for _ in range(50):
            rounds = await asyncio.gather(
                *(store.claim(owner, T0 + 100, 60.0, 5) for owner, store in claimers)
            )
            claimed = [m.id for messages in rounds for m in messages]
            if not claimed:
                break
            leased.extend(claimed)
    finally:
        await other.close()

    assert len(leased) == 60
    assert len(set(leased)) == len(leased)


async def test_the_engine_store_has_the_configured_pool_size(postgres_url: str) -> None:
    settings = parse_settings({"database": {"url": postgres_url, "pool_size": 3}})
    store = await migrated_store(settings)
    try:
        assert isinstance(store, PostgresStore)
        assert store.pool_size == 3
    finally:
        await store.close()


async def test_new_mail_announced_through_one_store_wakes_a_watcher_on_another(
    postgres_url: str,
) -> None:
    submitting = PostgresStore(postgres_url, pool_size=2)
    delivering = PostgresStore(postgres_url, pool_size=2)
    delivering.watch_retry_seconds = 0.05
    wakes = asyncio.Queue[None]()
    watch = asyncio.create_task(delivering.watch_accepted(lambda: wakes.put_nowait(None)))
    try:
        async with asyncio.timeout(10):
            await wakes.get()  # listening; this first wake covers anything announced before
            submitting.announce_accepted()
            await wakes.get()
            admin = await asyncpg.connect(postgres_url)
            try:
                terminated = await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
                )
            finally:
                await admin.close()
            assert [row[0] for row in terminated] == [True]
            await wakes.get()  # listening again after the lost connection
            submitting.announce_accepted()
            await wakes.get()
        assert wakes.empty()
        assert not watch.done()
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await submitting.close()
        await delivering.close()
