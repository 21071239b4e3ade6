"""The spool: durable acceptance of submissions, group-committed.

Sessions hand a submission and its records to ``Spool.commit`` and wait for
the store to commit them (``engine.store.group_commit``). Records without a
submission (Rejection) ride along in the next batch without a waiter. Each
batch asks the store once per tenant which recipients are suppressed
(``engine.submission.acceptance.suppress``), not once per message. The JSON record log
is written after the commit, so it never shows a record the store does not
have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.model import Submission
from engine.records.log import RecordLog
from engine.records.record import Record
from engine.store import Store
from engine.store.group_commit import GroupCommit
from engine.submission.acceptance import suppress

Accepted = tuple[Submission | None, Sequence[Record]]


class Spool:
    def __init__(self, store: Store, record_log: RecordLog, batch_max: int) -> None:
        self._store = store
        self._record_log = record_log
        self._writer: GroupCommit[Accepted] = GroupCommit("spool", self._write, batch_max)
        self.on_accepted: list[Callable[[], None]] = []
        """Called after each commit that stored submissions (wakes delivery)."""

    async def commit(self, submission: Submission, records: Sequence[Record]) -> None:
        """Store durably; returns once committed."""
        await self._writer.commit((submission, records))

    def add_records(self, records: Sequence[Record]) -> None:
        """Queue records for the next batch; no waiting."""
        self._writer.add((None, records))

    async def run(self) -> None:
        await self._writer.run()

    def close(self) -> None:
        self._writer.close()

    async def _write(self, batch: list[Accepted]) -> None:
        recipients: dict[int, set[str]] = {}
        for submission, _ in batch:
            if submission is not None:
                wanted = recipients.setdefault(submission.tenant_id, set())
                wanted.update(m.recipient for m in submission.messages)
        suppressed = {
            tenant_id: await self._store.suppressed(tenant_id, sorted(addresses))
            for tenant_id, addresses in recipients.items()
        }
        submissions: list[Submission] = []
        records: list[Record] = []
        for submission, submission_records in batch:
            if submission is None:
                records.extend(submission_records)
                continue
            submission, kept = suppress(
                submission, submission_records, suppressed[submission.tenant_id]
            )
            submissions.append(submission)
            records.extend(kept)
        await self._store.accept(submissions, records)
        self._record_log.write(records)
        if submissions:
            for callback in self.on_accepted:
                callback()
