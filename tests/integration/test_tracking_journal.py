"""The edge's journal on disk and its flusher against a real SQLite store: torn tails,
crashes between the store and the commit, restarts, one owner."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.store import Store, open_store
from tracking_edge.bots import ClickBursts
from tracking_edge.flusher import Flusher
from tracking_edge.hits import HitRecords, hit_entry
from tracking_edge.journal import Entry, Journal, JournalBusy, JournalReader, JournalWriter
from tracking_edge.tokens import TokenClaims, TokenKind

NOW = 1_764_000_000.0


def entry(index: int, kind: TokenKind = TokenKind.OPEN, message: str = "ab-1") -> Entry:
    claims = TokenClaims(kind, message, 1, "jane@example.com", "click.acme.test", 1000)
    return hit_entry(
        claims,
        at=NOW + index,
        address="203.0.113.9",
        user_agent="Mozilla/5.0 (X11) Firefox/120.0",
        method="GET",
        prefetch=False,
        event_id=f"event-{index}",
    )


def flusher(journal: Journal | JournalReader, store: Store) -> Flusher:
    records = HitRecords(scanner_seconds=10, nodeid="n", bursts=ClickBursts())
    return Flusher(journal, store, records, interval=0.05, batch_max=100)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:{tmp_path / 'penguin.db'}")
    await store.migrate()
    await store.create_tenant("acme", NOW)
    yield store
    await store.close()


async def test_entries_survive_a_restart_and_a_torn_tail_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    journal = Journal(path)
    for index in range(3):
        journal.append(entry(index))
    await journal.durable()
    journal.close()
    with path.open("ab") as file:
        file.write(b'0badc0de {"half": ')  # a write cut short by a crash
    journal = Journal(path)
    entries, end = journal.read(10)
    assert [e["e"] for e in entries] == ["event-0", "event-1", "event-2"]
    assert end == path.stat().st_size
    journal.append(entry(3))
    await journal.durable()
    assert [e["e"] for e in journal.read(10)[0]][-1] == "event-3"
    journal.close()


async def test_one_process_owns_a_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    with pytest.raises(JournalBusy):
        Journal(tmp_path / "journal")
    journal.close()
    Journal(tmp_path / "journal").close()


async def test_commit_empties_the_journal_once_all_is_stored(tmp_path: Path, store: Store) -> None:
    journal = Journal(tmp_path / "journal")
    for index in range(5):
        journal.append(entry(index))
    assert await flusher(journal, store).flush_once() == 5
    assert journal.committed == 0 and (tmp_path / "journal").stat().st_size == 0
    assert len(await store.list_records("ab-1")) == 5
    journal.close()


class CrashingJournal(Journal):
    """A journal whose process dies as it would commit."""

    def commit(self, offset: int) -> None:
        raise KeyboardInterrupt("killed between the store and the commit")


async def test_a_crash_before_the_commit_writes_no_record_twice(
    tmp_path: Path, store: Store
) -> None:
    path = tmp_path / "journal"
    journal: Journal = CrashingJournal(path)
    for index in range(4):
        journal.append(entry(index))
    with pytest.raises(KeyboardInterrupt):
        await flusher(journal, store).flush_once()
    journal.close()
    assert len(await store.list_records("ab-1")) == 4

    journal = Journal(path)
    journal.append(entry(4))
    again = flusher(journal, store)
    assert await again.flush_once() == 1
    found = await store.list_records("ab-1")
    assert [r["meta"]["event_id"] for r in found] == [f"event-{i}" for i in range(5)]
    assert [r["meta"]["first"] for r in found] == [True, False, False, False, False]
    journal.close()


async def test_first_or_repeat_is_told_from_the_store_after_a_restart(
    tmp_path: Path, store: Store
) -> None:
    journal = Journal(tmp_path / "journal")
    await flusher(journal, store).flush_once()
    journal.append(entry(0, TokenKind.CLICK, "cd-2"))
    await flusher(journal, store).flush_once()
    journal.append(entry(1, TokenKind.CLICK, "cd-2"))
    journal.append(entry(2, TokenKind.OPEN, "cd-2"))
    await flusher(journal, store).flush_once()  # a new process: its memory is empty
    found = await store.list_records("cd-2")
    assert [(r["type"], r["meta"]["first"]) for r in found] == [
        ("Click", True),
        ("Click", False),
        ("Open", True),
    ]
    journal.close()


async def test_an_offset_past_the_end_means_the_journal_was_emptied(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    (tmp_path / "journal.offset").write_text("999\n")
    journal = Journal(path)
    journal.append(entry(0))
    assert [e["e"] for e in journal.read(10)[0]] == ["event-0"]
    journal.close()


def _append_in_child(path: Path, start: int, count: int) -> None:
    """A separate edge process: appends ``count`` hits through its own writer."""

    async def append() -> None:
        writer = JournalWriter(path)
        for index in range(start, start + count):
            writer.append(entry(index))
            if index % 50 == 0:
                await asyncio.sleep(0)
        await writer.durable()
        writer.close()

    asyncio.run(append())


async def test_a_flusher_in_another_process_loses_no_append_to_the_truncation(
    tmp_path: Path, store: Store
) -> None:
    path = tmp_path / "journal"
    with pytest.raises(JournalBusy):
        writer = JournalWriter(path)
        try:
            JournalWriter(path)
        finally:
            writer.close()
    reader = JournalReader(path)
    with pytest.raises(JournalBusy):
        JournalReader(path)
    child = multiprocessing.get_context("fork").Process(
        target=_append_in_child, args=(path, 0, 3000)
    )
    child.start()
    flush = flusher(reader, store)
    async with asyncio.timeout(30):
        while child.is_alive() or reader.read(1)[0]:
            await flush.flush_once()
            await asyncio.sleep(0)
    assert child.exitcode == 0
    found = await store.list_records("ab-1")
    assert sorted(int(r["meta"]["event_id"][6:]) for r in found) == list(range(3000))
    assert path.stat().st_size == 0 and reader.committed == 0
    reader.close()
