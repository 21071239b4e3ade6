"""The webhooks service: the dispatcher and the sender, in a delivering process.

Its own tasks in its own ``TaskGroup``: one loop dispatches (record log →
outbox) and claims (outbox → POSTs, each a task of the group), each pass
right after the last when it read a full batch of records or claimed POSTs,
else after ``poll_seconds`` (a write or two per poll while mail flows, not
one per record) or as soon as a POST ends; once an hour the delivery log drops what is older than
``keep_log_seconds``. Nothing in mail delivery waits on it: a slow or failing
endpoint only holds its own POSTs (``sender``). With several delivering
processes each runs one; the store keeps them from dispatching a record twice
or claiming one POST twice. ``stop`` takes no new work; the POSTs in flight
have the grace to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from config.schema import WebhookSettings
from engine.clock import Clock
from engine.service import Address, Health
from engine.store import Store
from engine.webhooks.dispatcher import WebhookDispatcher
from engine.webhooks.sender import WebhookSender

log = logging.getLogger(__name__)

DISPATCH_BATCH: Final = 1000
"""Most records read from the log in one pass."""
PURGE_EVERY_SECONDS: Final = 3600.0


class WebhookService:
    """``Service`` ``webhooks``."""

    def __init__(
        self,
        *,
        store: Store,
        settings: WebhookSettings,
        clock: Clock,
        sender: WebhookSender,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self.sender = sender
        self._dispatcher = WebhookDispatcher(store, clock, DISPATCH_BATCH)
        self._stopping = asyncio.Event()
        self._failing: str | None = None
        self._purged_at = 0.0

    @property
    def name(self) -> str:
        return "webhooks"

    async def start(self) -> list[Address]:
        return []

    async def run(self) -> None:
        async with asyncio.TaskGroup() as posts:
            while not self._stopping.is_set():
                busy = await self._pass(posts)
                if busy:
                    continue
                self.sender.freed.clear()
                if self._stopping.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.poll_seconds):
                        await self.sender.freed.wait()

    async def _pass(self, posts: asyncio.TaskGroup) -> bool:
        """One round of dispatching, claiming and purging; whether more work is waiting."""
        try:
            read, _ = await self._dispatcher.dispatch_once()
            claimed = await self.sender.claim()
            for delivery in claimed:
                posts.create_task(self.sender.send(delivery), name=f"webhook-{delivery.id}")
            await self._purge()
        except Exception as exc:  # the store's failures: try again at the next poll
            if self._failing is None:
                log.warning("webhooks wait, the store failed: %s", exc)
            self._failing = str(exc)
            return False
        if self._failing is not None:
            log.info("webhooks flow again")
        self._failing = None
        return read == DISPATCH_BATCH or bool(claimed)

    async def _purge(self) -> None:
        now = self._clock.now()
        if now - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        removed = await self._store.purge_webhook_deliveries(now - self._settings.keep_log_seconds)
        if removed:
            log.info("removed %d old webhook deliveries from the log", removed)

    async def stop(self, grace_seconds: float) -> None:
        self._stopping.set()
        self.sender.freed.set()

    def health(self) -> Health:
        if self._failing is not None:
            return Health(False, f"store failing: {self._failing}")
        return Health(True, f"{self.sender.in_flight} POSTs in flight")
