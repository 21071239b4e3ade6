"""The scheduled queues a scheduler knows, and when to look at each again. Pure.

Owns ``QueueCatalog``: one entry per scheduled queue (``campaign:tenant@domain``)
with the time it is next worth a look (its earliest due message, the end of
a throttle's wait or a suspension), kept in a heap so that picking the next
queue costs O(log queues) whatever the number of messages behind it. A queue
whose lanes are all full is *parked* on them: it leaves the heap and comes
back when one of them frees a slot (``lane_freed``), so a full lane costs
nothing while it stays full. A queue with nothing queued leaves the heap
until the store says it changed (``learn``).

Invariants: every known queue is in exactly one of three places: the heap
(under its current ``next_check``), parked on lanes, or idle (nothing
queued); among queues due at the same time, the one that waited longest
comes first, so queues sharing a lane take turns.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.model import QueueInfo

Lane = tuple[str, str]
"""(source name, site)."""

NEVER = math.inf


@dataclass(slots=True)
class QueueEntry:
    """One scheduled queue as the scheduler knows it."""

    info: QueueInfo
    next_check: float = NEVER
    site: str | None = None
    """The site its domain resolves to; None until resolved."""
    site_expires: float = 0.0
    parked_on: frozenset[Lane] = field(default_factory=frozenset)
    due_estimate: int | None = None
    """How many of its messages are due, as last counted or claimed; None: unknown
    (counted again before its next claim)."""

    @property
    def name(self) -> str:
        return self.info.name


class QueueCatalog:
    """The known queues, the heap of when to look at them, and the parked ones."""

    def __init__(self) -> None:
        self._entries: dict[str, QueueEntry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._parked: dict[Lane, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> QueueEntry | None:
        return self._entries.get(name)

    def entries(self) -> list[QueueEntry]:
        return list(self._entries.values())

    def learn(self, infos: Iterable[QueueInfo], now: float) -> None:
        """Queues that are new or got messages: worth a look at ``now``."""
        for info in infos:
            entry = self._entries.get(info.name)
            if entry is None:
                entry = self._entries[info.name] = QueueEntry(info)
            else:
                entry.info = info
            entry.due_estimate = None
            self.check_at(entry, now)

    def wake(self, names: Iterable[str], now: float) -> None:
        """Queues the scheduler itself knows changed (leases returned to them)."""
        for name in names:
            entry = self._entries.get(name)
            if entry is not None:
                entry.due_estimate = None
                self.check_at(entry, now)

    def check_at(self, entry: QueueEntry, when: float) -> None:
        """Look at ``entry`` at ``when`` (NEVER: only once the store says it changed)."""
        self._unpark(entry)
        entry.next_check = when
        if when != NEVER:
            heapq.heappush(self._heap, (when, next(self._order), entry.name))

    def next_due(self, now: float) -> QueueEntry | None:
        """The queue to look at now, taken out of the heap; None when none is due."""
        while self._heap and self._heap[0][0] <= now:
            when, _, name = heapq.heappop(self._heap)
            entry = self._entries.get(name)
            if entry is not None and entry.next_check == when and not entry.parked_on:
                entry.next_check = NEVER
                return entry
        return None

    def next_time(self) -> float:
        """When the earliest queue in the heap is due (NEVER when none)."""
        while self._heap:
            when, _, name = self._heap[0]
            entry = self._entries.get(name)
            if entry is not None and entry.next_check == when and not entry.parked_on:
                return when
            heapq.heappop(self._heap)
        return NEVER

    def park(self, entry: QueueEntry, lanes: Iterable[Lane]) -> None:
        """Wait until one of ``lanes`` frees a slot."""
        self._unpark(entry)
        entry.next_check = NEVER
        entry.parked_on = frozenset(lanes)
        for lane in entry.parked_on:
            self._parked.setdefault(lane, set()).add(entry.name)

    def lane_freed(self, lane: Lane, now: float) -> None:
        """``lane`` can take more: the queues parked on it are worth a look now."""
        names = self._parked.pop(lane, None)
        if not names:
            return
        for name in sorted(names):
            entry = self._entries.get(name)
            if entry is not None and lane in entry.parked_on:
                self.check_at(entry, now)

    def parked_count(self, lane: Lane) -> int:
        return len(self._parked.get(lane, ()))

    def _unpark(self, entry: QueueEntry) -> None:
        for lane in entry.parked_on:
            waiting = self._parked.get(lane)
            if waiting is not None:
                waiting.discard(entry.name)
                if not waiting:
                    del self._parked[lane]
        entry.parked_on = frozenset()
