"""Moves the edge's hits from its journal to the store, in batches, in order.

Every ``interval`` (or sooner, ``wake``) the flusher reads up to ``batch_max``
hits after the journal's committed offset, turns them into records
(``tracking_edge.hits``), suppresses the recipients of unsubscribes (again,
harmlessly, if the edge did already), writes the records in one
``add_records``, commits the offset and counts the events, people and machines
apart, in ``penguin_tracking_events_total``. A batch is made into records once:
when the store fails, the same records are written again on the next try
(with a delay that doubles up to ``MAX_RETRY_SECONDS``), so nothing is lost
or judged twice while the store is down. An unsubscribe for a tenant that no
longer exists is logged and dropped, so it cannot hold up the journal.

At-least-once: a crash between ``add_records`` and the commit writes the
batch again after the restart; the first batch after a start is checked
against the records the store holds for its messages and hits whose event
id is already there are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from engine.model import Suppression
from engine.records import metrics
from engine.records.record import Record
from engine.store import NotFound, Store
from tracking_edge.hits import RECORD_TYPES, HitRecords
from tracking_edge.journal import Entry, Journal, JournalReader
from tracking_edge.tokens import TokenKind

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS: Final = 30.0
UNSUBSCRIBE_REASON: Final = "unsubscribe"
YIELD_EVERY: Final = 100
"""Hits judged between two turns of the event loop."""


@dataclass
class _Batch:
    records: list[Record]
    suppressions: list[Suppression]
    end: int
    """The journal offset after the batch."""


class Flusher:
    """Flushes ``journal`` to ``store``; ``run`` until ``stop``. The records stored are
    then given to ``written`` (the record log)."""

    def __init__(
        self,
        journal: Journal | JournalReader,
        store: Store,
        records: HitRecords,
        *,
        interval: float,
        batch_max: int,
        written: Callable[[Sequence[Record]], None] | None = None,
    ) -> None:
        self._journal = journal
        self._store = store
        self._records = records
        self._interval = interval
        self._batch_max = batch_max
        self._written = written
        self._batch: _Batch | None = None
        self._recovering = True
        self._wake = asyncio.Event()
        self._stopping = False
        self.failing = False
        """Whether the last write to the store failed."""

    def wake(self) -> None:
        """Flush now rather than at the next interval."""
        self._wake.set()

    def stop(self) -> None:
        """End ``run`` after a last flush attempt."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        delay = self._interval
        while True:
            try:
                while await self.flush_once() == self._batch_max:
                    pass
                delay = self._interval
                if self.failing:
                    log.info("tracking records flow to the store again")
                self.failing = False
            except Exception as exc:  # the store's failures: StoreError, OSError, driver errors
                if not self.failing:
                    log.warning("tracking records wait in the journal, the store failed: %s", exc)
                self.failing = True
                delay = min(MAX_RETRY_SECONDS, max(delay * 2, self._interval))
            if self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def flush_once(self) -> int:
        """Write one batch to the store and commit it; the number of hits it held."""
        if self._batch is None:
            entries, end = self._journal.read(self._batch_max)
            if not entries:
                return 0
            self._batch = await self._make_batch(entries, end)
        batch = self._batch
        for suppression in batch.suppressions:
            try:
                await self._store.add_suppression(suppression)
            except NotFound:
                log.warning("unsubscribe for tenant %d, which is gone", suppression.tenant_id)
        if batch.records:
            await self._store.add_records(batch.records)
        self._journal.commit(batch.end)
        self._batch = None
        count_events(batch.records)
        if self._written is not None:
            self._written(batch.records)
        return len(batch.records)

    async def _make_batch(self, entries: list[Entry], end: int) -> _Batch:
        stored = await self._stored(entries)
        records: list[Record] = []
        suppressions: list[Suppression] = []
        for index, entry in enumerate(entries):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let requests through: a batch is long work
            kinds, events = stored.get(entry["m"], (set(), set()))
            if entry["e"] in events:
                continue  # written before a crash, not committed
            record = self._records.record(entry, seen_in_store=entry["k"] in kinds)
            records.append(record)
            if entry["k"] == TokenKind.UNSUBSCRIBE.value:
                address = entry["r"].lower()
                suppressions.append(
                    Suppression(entry["t"], address, UNSUBSCRIBE_REASON, entry["at"])
                )
        self._recovering = False
        return _Batch(records, suppressions, end)

    async def _stored(self, entries: Sequence[Entry]) -> dict[str, tuple[set[str], set[str]]]:
        """For the messages whose records must be looked at: the kinds of hit the store has
        recorded on each, and the event ids of their records. Their recipients (in their
        Reception and delivery records) go to ``HitRecords.recipients``."""
        seen, recipients = self._records.seen, self._records.recipients
        wanted = {
            entry["m"]
            for entry in entries
            if self._recovering
            or (entry["k"], entry["m"]) not in seen
            or entry["m"] not in recipients
        }
        kinds_of = {record_type.value: kind for kind, record_type in RECORD_TYPES.items()}
        stored: dict[str, tuple[set[str], set[str]]] = {}
        for message_id in wanted:
            found = await self._store.list_records(message_id)
            kinds = {kinds_of[r["type"]] for r in found if r.get("type") in kinds_of}
            events = {str(r.get("meta", {}).get("event_id")) for r in found} - {"None"}
            stored[message_id] = (kinds, events)
            recipient = next((r["recipient"] for r in found if r.get("recipient")), "")
            recipients.put(message_id, recipient)
        return stored


def count_events(records: Sequence[Record]) -> None:
    """Count stored hits in ``penguin_tracking_events_total``, people and machines apart."""
    counts: dict[tuple[str, str, str], int] = {}
    for record in records:
        audience = "machine" if record.meta.get("machine") else "human"
        first = "true" if record.meta.get("first") else "false"
        labels = (record.type.value, audience, first)
        counts[labels] = counts.get(labels, 0) + 1
    for labels, count in counts.items():
        metrics.TRACKING_EVENTS.labels(*labels).inc(count)
