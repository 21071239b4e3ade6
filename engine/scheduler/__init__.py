"""Scheduling: which messages to attempt next, and from which source each goes out.

Owns the scheduler seam, ``Scheduler``: asked by the delivery service for
the next batch, it answers with messages leased to that process, each paired
with the source it goes out from (a ``Dispatch``). Also owns the source
(``sources.Source``, an egress address with its EHLO name), the turn-taking
of a pool's sources by weight, skipping unusable ones
(``sources.SourceRotation``), the warmup arithmetic (``warmup``: daily caps
per source and provider from a plan and the sending history), the backoff
rules (``backoff``: which replies mean "slow down", and how far a target is
slowed) and the first scheduler, ``due_order.DueOrderScheduler``: due
messages, oldest due first, from the store's claim, the sources of their
pool in turn. Warmup caps, shaping and priority replace that scheduler here,
behind the same seam.
``routing`` gives a tenant's (or campaign's) pool and a message's priority;
``suspensions`` names what a suspension stops and writes its records.

May import: ``engine.store``, the core, ``config``. Never ``engine.delivery``
(which asks it) nor ``smtp_out`` (which sends from the chosen source).

Invariants: every message of a batch was leased to the asking process by one
claim and carries that claim's lease token; a batch holds at most the number
of messages asked for; each message goes out from a source of its pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.model import QueuedMessage
from engine.scheduler.sources import Source


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One message to attempt now, and the source it goes out from."""

    message: QueuedMessage
    source: Source


class Scheduler(Protocol):
    async def next_batch(
        self, *, owner: str, now: float, lease_seconds: float, limit: int
    ) -> Sequence[Dispatch]:
        """At most ``limit`` messages to attempt at ``now``, leased to ``owner`` for
        ``lease_seconds``; empty when nothing is due."""
        ...
