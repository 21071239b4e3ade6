"""The first scheduler: the store's due order, the pool's sources in turn.

``DueOrderScheduler`` asks the store for the due messages, oldest due first
(``Store.claim``: queued and due, or leased with an expired lease), and
sends each from the next source of its pool (``SourceRotation``). It keeps no
state of its own beyond the rotation, so any number of processes can share
one store.
"""

from __future__ import annotations

from engine.scheduler import Dispatch
from engine.scheduler.sources import DEFAULT_POOL, SourceRotation
from engine.store import Store


class DueOrderScheduler:
    """``Scheduler``: what is due, in due order, from the sources of its pool in turn."""

    def __init__(self, store: Store, sources: SourceRotation) -> None:
        if DEFAULT_POOL not in sources:
            raise ValueError(f"no egress pool {DEFAULT_POOL!r}")
        self._store = store
        self._sources = sources

    async def next_batch(
        self, *, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[Dispatch]:
        claimed = await self._store.claim(owner, now, lease_seconds, limit)
        return [Dispatch(message, self._sources.next(DEFAULT_POOL)) for message in claimed]
