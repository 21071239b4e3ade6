import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest

from engine.group_commit import GroupCommitClosed
from engine.model import Submission
from engine.record_log import RecordLog
from engine.records import Record, RecordType
from engine.spool import Spool
from engine.store import Store


class SlowStore:
    """Commits take a moment, as a disk flush does; counts transactions."""

    def __init__(self, fail: bool = False) -> None:
        self.transactions: list[tuple[list[str], int]] = []
        self.fail = fail

    async def accept(self, submissions: Sequence[Submission], records: Sequence[Record]) -> None:
        await asyncio.sleep(0.01)
        if self.fail:
            raise OSError("disk full")
        self.transactions.append(([s.id for s in submissions], len(records)))


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
