"""PostgreSQL only: how a message's rows are written and found: bodies in their row,
records as the JSON written, settlements by the message's id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from engine.delivery.settling import RecordContext, message_record
from engine.model import MessageState, QueuedMessage, Settlement, Submission
from engine.records.record import Record, RecordType
from engine.store.postgres import SETTLE_SQL, PostgresStore, columns_of
from engine.store.rows import record_row, settled_row

pytestmark = pytest.mark.postgres

T0 = 1_700_000_000.0
QUEUE = "default:acme@example.net"
CONTEXT = RecordContext(nodeid="node", tenant="acme")


def _message(n: int, tenant_id: int) -> QueuedMessage:
    return QueuedMessage(
        id=f"m{n}",
        submission_id=f"m{n}",
        tenant_id=tenant_id,
        queue=QUEUE,
        campaign="default",
        sender="news@acme.example",
        recipient=f"user{n}@example.net",
        domain="example.net",
        state=MessageState.QUEUED,
        due_at=T0,
        created_at=T0,
    )


def _record(m: QueuedMessage, kind: RecordType) -> Record:
    return message_record(kind, m, now=T0, context=CONTEXT)


async def _accept(store: PostgresStore, count: int, body: bytes) -> list[QueuedMessage]:
    tenant = await store.create_tenant("acme", T0)
    messages = [_message(n, tenant.id) for n in range(count)]
    await store.accept(
        [Submission(m.id, tenant.id, body, (m,), T0) for m in messages],
        [_record(m, RecordType.RECEPTION) for m in messages],
    )
    return messages


async def test_a_body_of_a_few_kilobytes_is_kept_in_its_row_uncompressed(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    body = b"Subject: hello\r\n\r\n" + b"the same line again and again\r\n" * 200
    assert 4000 < len(body) < 8000
    await _accept(pg_store, 3, body)
    conn = await asyncpg.connect(postgres_url)
    try:
        stored = await conn.fetch("SELECT data, pg_column_compression(data) FROM bodies")
        toasted = await conn.fetchval(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'bodies'"
        )
    finally:
        await conn.close()
    assert [(bytes(row[0]), row[1]) for row in stored] == [(body, None)] * 3
    assert toasted == 0


async def test_a_record_is_kept_as_the_json_text_written(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    [message] = await _accept(pg_store, 1, b"Subject: hi\r\n\r\nhello\r\n")
    written = _record(message, RecordType.RECEPTION).to_json_line()
    conn = await asyncpg.connect(postgres_url)
    try:
        kept = await conn.fetchval("SELECT data::text FROM records")
    finally:
        await conn.close()
    assert kept == written
    assert [r["id"] for r in await pg_store.list_records(message.id)] == [message.id]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``plan`` and every node under it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_a_settlement_reads_only_its_own_messages_row_however_large_its_claim(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    await _accept(pg_store, 300, b"Subject: hi\r\n\r\nhello\r\n")
    claimed = (await pg_store.claim_queues([(QUEUE, 300)], "w1", T0, 60.0))[QUEUE].messages
    assert len(claimed) == 300 and len({m.lease_token for m in claimed}) == 1
    settled = [
        (
            Settlement(m.id, m.lease_token or "", MessageState.DELIVERED, 1, T0),
            _record(m, RecordType.DELIVERY),
        )
        for m in claimed[:10]
    ]
    rows = [settled_row(s) for s, _ in settled]
    logged = [(s.message_id, *record_row(r)) for s, r in settled]
    conn = await asyncpg.connect(postgres_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan TO off")  # as on a table of millions
            explained = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {SETTLE_SQL}",
                *columns_of(rows, 6),
                *columns_of(logged, 6),
            )
        unfinished_only = await conn.fetchval(
            "SELECT pg_get_indexdef('messages_claim'::regclass) LIKE '%WHERE%'"
        )
    finally:
        await conn.close()
    nodes = list(_nodes(json.loads(explained)[0]["Plan"]))
    used = {n["Index Name"] for n in nodes if n.get("Index Name", "").startswith("messages")}
    assert used == {"messages_pkey"}
    reads = [n for n in nodes if n.get("Relation Name") == "messages" and "Scan" in n["Node Type"]]
    assert sum(n["Actual Rows"] * n["Actual Loops"] for n in reads) == 10
    assert not any(n.get("Rows Removed by Filter") for n in reads)
    assert not any(n.get("Rows Removed by Index Recheck") for n in reads)
    assert unfinished_only, "a finished message has no entry in the claim index"
