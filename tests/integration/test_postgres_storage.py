"""PostgreSQL only: how a message's rows are written and found: bodies in their row,
records as the JSON written, settlements by the message's id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from engine.model import MessageState, QueuedMessage, Settlement
from engine.store.postgres import SETTLE_SQL, PostgresStore, columns_of
from engine.store.rows import record_row, settled_row
from tests.integration.test_store_contract import (
    T0,
    claim_queue,
    lease_token,
    message,
    outcome_record,
    reception,
    submission,
)

pytestmark = pytest.mark.postgres

QUEUE = "default:acme@example.com"
"""``message``'s queue."""


async def _accept(
    store: PostgresStore, count: int, body: bytes | None = None
) -> list[QueuedMessage]:
    """``count`` messages of tenant acme accepted, one a submission (of ``body``, if given)."""
    tenant = await store.create_tenant("acme", T0)
    messages = [message(f"s{n}", n, tenant.id) for n in range(count)]
    submissions = [submission(m.submission_id, tenant.id, [m]) for m in messages]
    if body is not None:
        submissions = [replace(s, body=body) for s in submissions]
    await store.accept(submissions, [reception(m) for m in messages])
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
    [accepted] = await _accept(pg_store, 1)
    written = reception(accepted).to_json_line()
    conn = await asyncpg.connect(postgres_url)
    try:
        kept = await conn.fetchval("SELECT data::text FROM records")
    finally:
        await conn.close()
    assert kept == written
    assert [r["id"] for r in await pg_store.list_records(accepted.id)] == [accepted.id]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``plan`` and every node under it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_a_settlement_reads_only_its_own_messages_row_however_large_its_claim(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    await _accept(pg_store, 300)
    claimed = await claim_queue(pg_store, QUEUE, "w1", T0, 60.0, 300)
    assert len(claimed) == 300 and len({lease_token(m) for m in claimed}) == 1
    settled = [
        (Settlement(m.id, lease_token(m), MessageState.DELIVERED, 1, T0), outcome_record(m))
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
