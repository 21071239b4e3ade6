"""The ``stats`` service: keeps the rollup counters from the record log.

It reads the log in batches after its position (``Store.records_since``, as
the webhook dispatcher does: on PostgreSQL no record committed late is
passed by), sums each batch (``Tally``, with ``Store.message_facts`` for the
campaign and sender) and applies the sums with the new position in one
transaction (``Store.apply_stats``, which refuses when the position moved):
a crash between or inside batches neither loses records nor counts one twice.
Several delivering processes may run it; a lease in the cursor row
(``Store.lease_stats``) lets one apply at a time, and the cursor check keeps
the counts right should two overlap at a lease's end.

``read_stats`` is how the API (``GET /v1/stats``) and the CLI (``penguin
stats``) read the rollup: one query, the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from engine.clock import Clock
from engine.service import Address, Health
from engine.stats.counts import Tally
from engine.stats.report import StatsQuery, StatsRow, stats_rows
from engine.store import LogPosition, Store, StoreError

log = logging.getLogger(__name__)

BATCH = 5000
"""Records read and applied per transaction."""
IDLE_SECONDS = 1.0
"""How long the service waits before reading the log again once it has caught up."""
LEASE_SECONDS = 30.0


async def read_stats(store: Store, tenant_id: int, query: StatsQuery) -> list[StatsRow]:
    """The tenant's stats rows for ``query``."""
    totals, bounces = await store.stat_totals(tenant_id, query)
    return stats_rows(query, totals, bounces)


class StatsRollup:
    """Follows the record log into the stats rollup (``engine.service.Service``)."""

    name = "stats"

    def __init__(
        self,
        store: Store,
        provider_of: Callable[[str], str],
        clock: Clock,
        owner: str,
        *,
        batch: int = BATCH,
        idle_seconds: float = IDLE_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._store = store
        self._provider_of = provider_of
        self._clock = clock
        self._owner = owner
        self._batch = batch
        self._idle = idle_seconds
        self._lease = lease_seconds
        self._known: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._error = ""
        self.position: LogPosition | None = None
        """The log position this process counted to, or saw counted to."""
        self.applied = 0
        """Records this process read and applied."""

    async def step(self) -> int:
        """Apply one batch if this process holds the lease; how many records it read
        (0: nothing new, or another process applies)."""
        store = self._store
        position = await store.lease_stats(self._owner, self._clock.now(), self._lease)
        if position is None:
            return 0
        records, reached = await store.records_since(position, self._batch)
        self.position = position
        if not records:
            return 0
        ids = [r.data["id"] for r in records if r.data.get("id")]
        facts = await store.message_facts(ids)
        tally = Tally(self._provider_of, self._known)
        for record in records:
            tally.add(record.tenant_id, record.data, facts.get(record.data.get("id") or ""))
        if not await store.apply_stats(position, reached, tally.counts()):
            log.warning("stats: records after %s were counted by another process", position)
            return 0
        self.position = reached
        self.applied += len(records)
        return len(records)

    async def catch_up(self) -> int:
        """Apply batches until the log is counted to its end; how many records."""
        total = 0
        while read := await self.step():
            total += read
        return total

    async def start(self) -> list[Address]:
        return []

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                read = await self.step()
                self._error = ""
            except StoreError as exc:
                if str(exc) != self._error:
                    log.error("stats not counted, trying again: %s", exc)
                self._error, read = str(exc), 0
            if read < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._idle)

    async def stop(self, grace_seconds: float) -> None:
        self._stopping.set()

    def health(self) -> Health:
        if self._error:
            return Health(False, self._error)
        seq = None if self.position is None else self.position.seq
        return Health(True, f"counted to record {seq}")
