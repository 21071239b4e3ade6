"""Group commit: many waiters share one store transaction.

Callers hand an item to ``GroupCommit.commit`` and wait; one writer task
takes everything waiting (up to ``batch_max``), writes it with one call of
``write`` (one transaction), then wakes every waiter. Under load many
callers share each disk flush, so durability does not cost a flush per
item (the group commit of databases' write-ahead logs). ``add`` queues an
item without waiting for it.

Invariant: ``commit`` returns only after ``write`` has returned for its
batch; if ``write`` raises, every waiter of that batch gets the exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class GroupCommitClosed(Exception):
    """The writer is shutting down and takes nothing more."""


class GroupCommit(Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[list[T]], Awaitable[None]],
        batch_max: int,
    ) -> None:
        self._name = name
        self._write = write
        self._batch_max = batch_max
        self._pending: list[tuple[T, asyncio.Future[None] | None]] = []
        self._wakeup = asyncio.Event()
        self._closing = False

    @property
    def backlog(self) -> int:
        """Items waiting for the next write."""
        return len(self._pending)

    async def commit(self, item: T) -> None:
        """Write ``item`` durably; returns once its batch is written."""
        if self._closing:
            raise GroupCommitClosed(self._name)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        self._wakeup.set()
        await done

    def add(self, item: T) -> None:
        """Queue ``item`` for the next batch; no waiting, no durability promise."""
        self._pending.append((item, None))
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
            await self._write_batch(batch)

    def close(self) -> None:
        """Refuse new commits; ``run`` finishes what is pending and returns."""
        self._closing = True
        self._wakeup.set()

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[None] | None]]) -> None:
        items = [item for item, _ in batch]
        try:
            await self._write(items)
        except Exception as exc:
            log.exception("%s: group commit of %d items failed", self._name, len(items))
            for _, done in batch:
                if done is not None and not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if done is not None and not done.done():
                done.set_result(None)
