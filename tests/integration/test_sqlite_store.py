"""What the SQLite store adds to the contract: writers on one file take turns on a
flock, and only acceptance waits for the disk."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.store.sqlite import SqliteStore
from tests.integration.test_store_contract import T0, enqueue, message, submission

FULL = 2


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(str(tmp_path / "penguin.db"))
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def synchronous_mode(store: SqliteStore) -> int:
    def read(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    return await store._run(read)


async def test_a_writer_waits_for_the_file_writer_lock(sqlite_store: SqliteStore) -> None:
    tenant = await sqlite_store.create_tenant("acme", T0)
    other_process = os.open(f"{sqlite_store.path}-writer.lock", os.O_RDWR)
    try:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        m = message("s1", 1, tenant.id)
        accepting = asyncio.create_task(sqlite_store.accept([submission("s1", tenant.id, [m])], []))
        done, _ = await asyncio.wait([accepting], timeout=0.3)
        assert not done, "the write went ahead while another writer held the lock"
        fcntl.flock(other_process, fcntl.LOCK_UN)
        await asyncio.wait_for(accepting, timeout=10)
    finally:
        os.close(other_process)
    assert await sqlite_store.get_message(m.id) is not None


async def test_claims_renewals_and_settlements_leave_acceptance_durable(
    sqlite_store: SqliteStore,
) -> None:
    tenant = await sqlite_store.create_tenant("acme", T0)
    await enqueue(sqlite_store, tenant.id, [T0, T0])
    assert await synchronous_mode(sqlite_store) == FULL
    claimed = await sqlite_store.claim("w1", T0, 60, 10)
    assert len(claimed) == 2
    assert await synchronous_mode(sqlite_store) == FULL
    assert await sqlite_store.settle([]) == set()
    assert await synchronous_mode(sqlite_store) == FULL
    held = [(m.id, m.lease_token) for m in claimed if m.lease_token is not None]
    assert await sqlite_store.renew(held, T0 + 120) == 2
    assert await synchronous_mode(sqlite_store) == FULL
