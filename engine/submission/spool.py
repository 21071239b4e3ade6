"""The spool: durable acceptance of submissions, group-committed.

Sessions hand a submission and its records to ``Spool.commit`` and wait for
the store to commit them (``engine.store.group_commit``); ``commit_all`` does
the same for the several submissions of one HTTP request (one per recipient
when each is rendered apart), all stored in one transaction, with the
request's idempotency key and the receipt it got (``acceptance.receipt``). Records without a
submission (Rejection) ride along in the next batch without a waiter. Each
batch is written with one store call that stores it unless one of its recipients
is suppressed (``Store.accept_unless_suppressed``: the lookup costs no trip of its
own); only then is it written again, those recipients' messages suppressed
(``engine.submission.acceptance.suppress``). The JSON record log is written after
the commit, so it never shows a record the store does not have.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine.model import IdempotencyKey, Submission
from engine.records.log import RecordLog
from engine.records.record import Record
from engine.store import Store
from engine.store.group_commit import GroupCommit
from engine.submission.acceptance import receipt, suppress


@dataclass(slots=True)
class _Accepted:
    """One item of a batch: what a caller commits, and what the write stored."""

    submissions: Sequence[Submission]
    records: Sequence[Record]
    idempotency_key: IdempotencyKey | None = None
    """Stored with the receipt of ``stored`` as its response."""
    stored: Sequence[Submission] = ()


class Spool:
    def __init__(self, store: Store, record_log: RecordLog, batch_max: int) -> None:
        self._store = store
        self._record_log = record_log
        self._writer: GroupCommit[_Accepted] = GroupCommit("spool", self._write, batch_max)
        self.on_accepted: list[Callable[[], None]] = []
        """Called after each commit that stored submissions (wakes delivery)."""

    async def commit(self, submission: Submission, records: Sequence[Record]) -> Submission:
        """Store durably; returns once committed, the submission as stored (its
        suppressed recipients not queued)."""
        return (await self.commit_all([submission], records))[0]

    async def commit_all(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_key: IdempotencyKey | None = None,
    ) -> Sequence[Submission]:
        """Store ``submissions`` durably in one transaction, with ``idempotency_key``
        (its response made the receipt of what was stored); the submissions as stored."""
        item = _Accepted(submissions, records, idempotency_key)
        await self._writer.commit(item)
        return item.stored

    def add_records(self, records: Sequence[Record]) -> None:
        """Queue records for the next batch; no waiting."""
        self._writer.add(_Accepted((), records))

    async def run(self) -> None:
        await self._writer.run()

    def close(self) -> None:
        self._writer.close()

    async def _write(self, batch: list[_Accepted]) -> None:
        submissions, records, keys = _planned(batch, {})
        suppressed = await self._store.accept_unless_suppressed(submissions, records, keys)
        if suppressed:
            submissions, records, keys = _planned(batch, suppressed)
            await self._store.accept(submissions, records, keys)
        self._record_log.write(records)
        if submissions:
            for callback in self.on_accepted:
                callback()


def _planned(
    batch: list[_Accepted], suppressed: dict[int, set[str]]
) -> tuple[list[Submission], list[Record], list[IdempotencyKey]]:
    """What the batch stores when ``suppressed`` (lower-cased, by tenant) are the
    suppressed recipients: its submissions, records and answered keys; each item's
    ``stored`` set."""
    submissions: list[Submission] = []
    records: list[Record] = []
    keys: list[IdempotencyKey] = []
    for item in batch:
        kept = list(item.records)
        stored = []
        for submission in item.submissions:
            hit = suppressed.get(submission.tenant_id)
            if hit:
                submission, kept = suppress(submission, kept, hit)
            stored.append(submission)
        item.stored = stored
        submissions.extend(stored)
        records.extend(kept)
        if item.idempotency_key is not None:
            response = json.dumps(receipt(stored), separators=(",", ":"))
            keys.append(replace(item.idempotency_key, response=response))
    return submissions, records, keys
