"""Scheduling: which messages to attempt next, from which source, within which limits.

Owns the scheduler seam, ``Scheduler``: asked by the delivery service for
the next batch, it answers with messages leased to that process, each paired
with the source it goes out from, the site it goes to and that lane's shaping
(a ``Dispatch``), and it hears back how each dispatch ended (``finished``).
The production scheduler is ``lanes.LaneScheduler`` (scheduled queues to
ready lanes, KumoMTA's model), built of:

- ``catalog``: the scheduled queues and when each is next worth a look;
- ``sources``: sources and pools, taken by weighted turns;
- ``routing``: a tenant's (or campaign's) pool and a message's priority;
- ``shaping``: each lane's limits, from the shipped and the operator's files;
- ``warmup`` (pure ramp) and ``warmup_ledger`` (daily counts and caps);
- ``backoff`` (pure rules and levels) and ``backoff_state`` (levels shared
  through the limiter);
- ``suspensions``: what operators and backoff rules suspend, and its records.

May import: ``engine.store``, ``engine.limits``, the core, ``config``. Never
``engine.delivery`` (which asks it) nor ``smtp_out`` (which sends from the
chosen source).

Invariants: every message of a batch was leased to the asking process by one
claim and carries that claim's lease token; a batch holds at most the number
of messages asked for; each message goes out from a source of its pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.model import QueuedMessage
from engine.records.record import Record
from engine.scheduler.shaping import LaneShaping
from engine.scheduler.sources import DEFAULT_POOL, Source
from engine.smtp.reply import Reply


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One message to attempt now, the source it goes out from, the site it goes to
    and the shaping of that lane (scaled down by backoff)."""

    message: QueuedMessage
    source: Source
    site: str
    shaping: LaneShaping
    pool: str = DEFAULT_POOL
    tenant: str = ""
    """The name of the message's tenant (for its records)."""


class Scheduler(Protocol):
    async def next_batch(
        self, *, owner: str, now: float, lease_seconds: float, limit: int
    ) -> Sequence[Dispatch]:
        """At most ``limit`` messages to attempt at ``now``, leased to ``owner`` for
        ``lease_seconds``; empty when nothing is due."""
        ...

    def next_wakeup(self) -> float:
        """When something is next due (``math.inf`` when nothing is known to be)."""
        ...

    async def report(
        self, now: float, connections: Mapping[tuple[str, str], int]
    ) -> dict[str, Any]:
        """This process's lanes and sources as ``penguin lanes`` and ``penguin ips`` show
        them (JSON-ready), given the connections open per lane."""
        ...

    async def finished(
        self, dispatch: Dispatch, now: float, kind: str = "", reply: Reply | None = None
    ) -> Sequence[Record]:
        """Feedback from one dispatch: how it ended (an ``OutcomeKind`` value and the
        reply; none when it never reached the deliverer). Returns the records it stored
        (for the record log)."""
        ...
