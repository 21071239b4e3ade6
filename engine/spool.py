"""The spool: durable acceptance with group commit.

Sessions hand a submission and its records to ``Spool.commit`` and wait; one
writer task takes everything waiting (up to ``batch_max``), commits it to the
store in one transaction, then wakes every waiter. Under load many sessions
share each disk flush, so durability does not cost a flush per message
(the group commit of databases' write-ahead logs). Records without a
submission (Rejection) ride along in the next batch without a waiter.

Invariant: ``commit`` returns only after the store has durably committed;
if the commit fails, every waiter of that batch gets the exception, and
nothing is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from engine.model import Submission
from engine.record_log import RecordLog
from engine.records import Record
from engine.store import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    submission: Submission | None
    records: Sequence[Record]
    done: asyncio.Future[None] | None


class SpoolClosed(Exception):
    """The spool is shutting down and takes nothing more."""


class Spool:
    def __init__(self, store: Store, record_log: RecordLog, batch_max: int) -> None:
        self._store = store
        self._record_log = record_log
        self._batch_max = batch_max
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._closing = False

    async def commit(self, submission: Submission, records: Sequence[Record]) -> None:
        """Store durably; returns once committed."""
        if self._closing:
            raise SpoolClosed
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(submission, records, done))
        self._wakeup.set()
        await done

    def add_records(self, records: Sequence[Record]) -> None:
        """Queue records for the next batch; no waiting, no durability promise."""
        self._pending.append(_Pending(None, records, None))
        self._wakeup.set()

    async def run(self) -> None:
        """The writer loop; returns after ``close`` once everything pending is written."""
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
            await self._write(batch)

    def close(self) -> None:
        """Refuse new commits; ``run`` finishes what is pending and returns."""
        self._closing = True
        self._wakeup.set()

    async def _write(self, batch: list[_Pending]) -> None:
        submissions = [p.submission for p in batch if p.submission is not None]
        records = [r for p in batch for r in p.records]
        try:
            await self._store.accept(submissions, records)
        except Exception as exc:
            log.exception("group commit of %d submissions failed", len(submissions))
            for p in batch:
                if p.done is not None and not p.done.done():
                    p.done.set_exception(exc)
            return
        for p in batch:
            if p.done is not None and not p.done.done():
                p.done.set_result(None)
        self._record_log.write(records)
