"""Keeping a ``TrackingDomains`` snapshot fresh: a service the composition root runs.

In the delivery role (the rewriting asks ``policy_for``) and the edge role
(the Host check asks ``tenant_of``) the snapshot is read again from the store
every ``[tracking] refresh_seconds`` and at once on ``reload`` (SIGHUP,
``penguin reload``), so a tracking domain added, removed or made the default
with the CLI or the API is in force within that time, without a restart.

``start`` loads the first snapshot before the service counts as started, so
no mail leaves untracked for want of one; a store that fails then or later
is logged, the snapshot in use stays, and the health says since when it is
stale. One refresh runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from engine.clock import Clock
from engine.provisioning.tracking_domains import TrackingDomains
from engine.service import Address, Health
from engine.store import Store, StoreError

log = logging.getLogger(__name__)


class TrackingRefresh:
    """Refreshes ``domains`` from ``store`` every ``refresh_seconds`` and on ``reload``."""

    name = "tracking-domains"

    def __init__(
        self, domains: TrackingDomains, store: Store, refresh_seconds: float, clock: Clock
    ) -> None:
        self.domains = domains
        self._store = store
        self._every = refresh_seconds
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._refreshed = asyncio.Condition()
        self._last_ok: float | None = None
        self._error = ""

    async def start(self) -> list[Address]:
        await self._refresh()
        return []

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._every)
            self._wake.clear()
            if not self._stopping.is_set():
                await self._refresh()

    def reload(self) -> None:
        """Refresh now (without waiting for it)."""
        self._wake.set()

    async def stop(self, grace_seconds: float) -> None:
        self._stopping.set()
        self._wake.set()

    def health(self) -> Health:
        if self._last_ok is None:
            return Health(False, f"no tracking domains loaded yet: {self._error}")
        if self._error:
            stale = self._clock.now() - self._last_ok
            return Health(False, f"tracking domains {stale:.0f}s old: {self._error}")
        return Health(True, f"{self.domains.loads} refreshes")

    async def next_refresh(self) -> None:
        """Return once the next refresh has ended, whether it succeeded or not."""
        async with self._refreshed:
            await self._refreshed.wait()

    async def _refresh(self) -> None:
        try:
            await self.domains.refresh(self._store)
        except StoreError as exc:
            if str(exc) != self._error:
                log.error("tracking domains not refreshed, the last ones stay in use: %s", exc)
            self._error = str(exc)
        else:
            if self._error:
                log.info("tracking domains refreshed again")
            self._last_ok, self._error = self._clock.now(), ""
        async with self._refreshed:
            self._refreshed.notify_all()
