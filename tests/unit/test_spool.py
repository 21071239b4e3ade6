import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest

from engine.model import IdempotencyKey, MessageState, QueuedMessage, Submission
from engine.records.log import RecordLog
from engine.records.record import Record, RecordType
from engine.store import Store
from engine.store.group_commit import GroupCommitClosed
from engine.store.rows import recipients_by_tenant
from engine.submission.spool import Spool


class SlowStore:
    """Commits take a moment, as a disk flush does; counts transactions."""

    def __init__(self, fail: bool = False, suppressions: frozenset[str] = frozenset()) -> None:
        self.transactions: list[tuple[list[str], int]] = []
        self.fail = fail
        self.suppressions = suppressions
        self.suppression_queries: list[tuple[int, list[str]]] = []
        self.accepted: list[Submission] = []

    async def accept_unless_suppressed(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_keys: Sequence[IdempotencyKey] = (),
    ) -> dict[int, set[str]]:
        found = {}
        for tenant_id, addresses in recipients_by_tenant(submissions).items():
            self.suppression_queries.append((tenant_id, addresses))
            if hit := set(addresses) & self.suppressions:
                found[tenant_id] = hit
        if not found:
            await self.accept(submissions, records, idempotency_keys)
        return found

    async def accept(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_keys: Sequence[IdempotencyKey] = (),
    ) -> None:
        await asyncio.sleep(0.01)
        if self.fail:
            raise OSError("disk full")
        self.transactions.append(([s.id for s in submissions], len(records)))
        self.accepted.extend(submissions)


def submission(n: int) -> Submission:
    return Submission(id=f"s{n}", tenant_id=1, body=b"x", messages=(), created_at=0.0)


def record(n: int) -> Record:
    return Record(type=RecordType.RECEPTION, timestamp=0.0, id=f"s{n}-1")


async def test_concurrent_commits_share_transactions(tmp_path: Path) -> None:
    store = SlowStore()
    log = RecordLog(str(tmp_path / "records.jsonl"))
    spool = Spool(cast(Store, store), log, batch_max=64)
    writer = asyncio.create_task(spool.run())
    await asyncio.gather(*(spool.commit(submission(n), [record(n)]) for n in range(100)))
    spool.close()
    await writer
    log.close()
    committed = [sid for ids, _ in store.transactions for sid in ids]
    assert sorted(committed) == sorted(f"s{n}" for n in range(100))
    assert len(store.transactions) <= 5
    assert max(len(ids) for ids, _ in store.transactions) <= 64
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 100 and json.loads(lines[0])["type"] == "Reception"


async def test_a_failed_commit_acknowledges_nothing(tmp_path: Path) -> None:
    log = RecordLog(str(tmp_path / "records.jsonl"))
    spool = Spool(cast(Store, SlowStore(fail=True)), log, batch_max=64)
    writer = asyncio.create_task(spool.run())
    results = await asyncio.gather(
        *(spool.commit(submission(n), [record(n)]) for n in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)
    spool.close()
    await writer
    log.close()
    assert (tmp_path / "records.jsonl").read_text() == ""


async def test_records_without_waiters_and_closing(tmp_path: Path) -> None:
    store = SlowStore()
    log = RecordLog("")
    spool = Spool(cast(Store, store), log, batch_max=8)
    writer = asyncio.create_task(spool.run())
    spool.add_records([record(1), record(2)])
    spool.close()
    await writer
    assert store.transactions == [([], 2)]
    with pytest.raises(GroupCommitClosed):
        await spool.commit(submission(3), [])


def addressed(n: int, tenant_id: int, recipient: str) -> tuple[Submission, list[Record]]:
    message = QueuedMessage(
        id=f"s{n}-1",
        submission_id=f"s{n}",
        tenant_id=tenant_id,
        queue="q",
        campaign="",
        sender="news@acme.test",
        recipient=recipient,
        domain=recipient.rpartition("@")[2],
        state=MessageState.QUEUED,
        due_at=0.0,
        created_at=0.0,
    )
    sub = Submission(id=f"s{n}", tenant_id=tenant_id, body=b"x", messages=(message,), created_at=0)
    rec = Record(type=RecordType.RECEPTION, timestamp=0.0, id=message.id, recipient=recipient)
    return sub, [rec]


async def test_suppression_is_checked_once_per_tenant_and_batch(tmp_path: Path) -> None:
    store = SlowStore(suppressions=frozenset({"gone@example.com"}))
    log = RecordLog(str(tmp_path / "records.jsonl"))
    spool = Spool(cast(Store, store), log, batch_max=64)
    recipients = ["a@example.com", "Gone@example.com", "gone@example.com", "b@example.com"]
    items = [addressed(n, 1 + n % 2, rcpt) for n, rcpt in enumerate(recipients)]
    writer = asyncio.create_task(spool.run())
    await asyncio.gather(*(spool.commit(sub, recs) for sub, recs in items))
    spool.close()
    await writer
    log.close()
    assert sorted(store.suppression_queries) == [
        (1, ["a@example.com", "gone@example.com"]),
        (2, ["b@example.com", "gone@example.com"]),
    ]
    assert len(store.transactions) == 1  # written again, its suppressed ones suppressed
    states = {m.recipient: m.state for s in store.accepted for m in s.messages}
    assert states == {
        "a@example.com": MessageState.QUEUED,
        "Gone@example.com": MessageState.SUPPRESSED,
        "gone@example.com": MessageState.SUPPRESSED,
        "b@example.com": MessageState.QUEUED,
    }
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [(r["recipient"], r["type"]) for r in lines if r["type"] == "Suppressed"] == [
        ("Gone@example.com", "Suppressed"),
        ("gone@example.com", "Suppressed"),
    ]


async def test_a_batch_nobody_suppressed_is_written_in_one_store_call(tmp_path: Path) -> None:
    store = SlowStore(suppressions=frozenset({"gone@example.com"}))
    spool = Spool(cast(Store, store), RecordLog(""), batch_max=64)
    items = [addressed(n, 1, f"user{n}@example.com") for n in range(5)]
    writer = asyncio.create_task(spool.run())
    stored = await asyncio.gather(*(spool.commit(sub, recs) for sub, recs in items))
    spool.close()
    await writer
    assert [s.messages[0].state for s in stored] == [MessageState.QUEUED] * 5
    assert len(store.suppression_queries) == len(store.transactions) == 1
