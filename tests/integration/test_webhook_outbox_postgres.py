"""PostgreSQL only: the webhook tables under row-level security, and the dispatcher's
view of the record log when transactions commit out of seq order."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.model import Webhook, WebhookFormat
from engine.records.record import Record, RecordType
from engine.store import LogPosition, NewWebhookDelivery
from engine.store.postgres import RECORDS_SINCE_SQL, PostgresStore
from engine.store.rows import record_row

pytestmark = pytest.mark.postgres

T0 = 1_700_000_000.0


def hook(webhook_id: str, tenant_id: int) -> Webhook:
    return Webhook(
        webhook_id, tenant_id, "https://h.example/", (), WebhookFormat.SINGLE, 1, True, b"s",
        T0, T0,
    )  # fmt: skip


async def test_tenant_scope_sees_only_its_webhooks_and_deliveries(pg_store: PostgresStore) -> None:
    acme = await pg_store.create_tenant("acme", T0)
    beta = await pg_store.create_tenant("beta", T0)
    await pg_store.add_webhook(hook("wh_a", acme.id))
    await pg_store.add_webhook(hook("wh_b", beta.id))
    position = await pg_store.webhook_position()
    deliveries = [
        NewWebhookDelivery("wh_a", acme.id, "{}", 1),
        NewWebhookDelivery("wh_b", beta.id, "{}", 1),
        NewWebhookDelivery("wh_b", beta.id, "{}", 1),
    ]
    assert await pg_store.queue_webhook_deliveries(position, position, deliveries, T0)
    for tenant, webhooks, sent in [(acme.id, 1, 1), (beta.id, 1, 2)]:
        async with pg_store.tenant_scope(tenant) as conn:
            assert await conn.fetchval("SELECT count(*) FROM webhooks") == webhooks
            assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == sent
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with pg_store.tenant_scope(acme.id) as conn:
            await conn.execute(
                "INSERT INTO webhooks (id, tenant_id, url, record_types, format, batch_size,"
                " enabled, secret_sealed, created_at, updated_at)"
                " VALUES ('wh_x', $1, 'https://x/', '[]', 'single', 1, true, 's', 0, 0)",
                beta.id,
            )


async def test_a_record_committed_late_under_a_smaller_seq_is_not_skipped(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    acme = await pg_store.create_tenant("acme", T0)
    early = Record(RecordType.DELIVERY, T0, acme.id, id="early")
    late = Record(RecordType.DELIVERY, T0 + 1, acme.id, id="late")
    slow = await asyncpg.connect(postgres_url)
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.copy_records_to_table(
            "records",
            records=[record_row(early)],
            columns=("tenant_id", "message_id", "type", "timestamp", "data"),
        )
        await pg_store.add_records([late])  # a bigger seq, committed first
        position = LogPosition()
        records, reached = await pg_store.records_since(position, 10)
        assert records == [] and reached == position
        await transaction.commit()
    finally:
        await slow.close()
    found: list[str] = []
    async with asyncio.timeout(10):
        while len(found) < 2:
            records, position = await pg_store.records_since(position, 10)
            found.extend(r.data["id"] for r in records)
            if not records:
                await asyncio.sleep(0.01)
    assert found == ["early", "late"]


async def test_following_the_log_reads_the_txid_index(pg_store: PostgresStore) -> None:
    acme = await pg_store.create_tenant("acme", T0)
    await pg_store.add_records(
        [Record(RecordType.DELIVERY, T0, acme.id, id=f"m{n}") for n in range(3000)]
    )
    await pg_store._execute("ANALYZE records")
    rows = await pg_store._fetch(f"EXPLAIN {RECORDS_SINCE_SQL}", 0, 2900, 100)
    plan = "\n".join(str(row[0]) for row in rows)
    assert "records_txid" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan
