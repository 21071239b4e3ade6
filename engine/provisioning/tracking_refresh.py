"""Keeping a snapshot of the store fresh: a service the composition root runs.

Snapshots are what processes read from memory instead of asking the store per
message: the tracking domains (``TrackingDomains``: in the delivery role the
rewriting asks ``policy_for``, in the edge role the Host check asks
``tenant_of``) and the tenants' settings (``engine.scheduler.tenant_settings``:
the pool delivery routes by, the priority and quotas acceptance applies).
``SnapshotRefresh`` reads one again from the store every ``refresh_seconds``
and at once on ``reload`` (SIGHUP, ``penguin reload``), so what the CLI or the
API changed is in force within that time, without a restart.

``start`` loads the first snapshot before the service counts as started, so
no mail is handled for want of one; a store that fails then or later
is logged, the snapshot in use stays, and the health says since when it is
stale. One refresh runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Generic, Protocol, TypeVar

from engine.clock import Clock
from engine.provisioning.tracking_domains import TrackingDomains
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.service import Address, Health
from engine.store import Store, StoreError

log = logging.getLogger(__name__)


class Snapshot(Protocol):
    loads: int
    """Snapshots loaded so far."""

    async def refresh(self, store: Store) -> None:
        """Load a new snapshot; ``StoreError`` leaves the one in use."""
        ...


S = TypeVar("S", bound=Snapshot)


class SnapshotRefresh(Generic[S]):
    """Refreshes ``snapshot`` (called ``what`` in logs and health) from ``store`` every
    ``refresh_seconds`` and on ``reload``."""

    def __init__(
        self,
        snapshot: S,
        store: Store,
        refresh_seconds: float,
        clock: Clock,
        *,
        name: str,
        what: str,
    ) -> None:
        self.snapshot = snapshot
        self.name = name
        self._what = what
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
            return Health(False, f"no {self._what} loaded yet: {self._error}")
        if self._error:
            stale = self._clock.now() - self._last_ok
            return Health(False, f"{self._what} {stale:.0f}s old: {self._error}")
        return Health(True, f"{self.snapshot.loads} refreshes")

    async def next_refresh(self) -> None:
        """Return once the next refresh has ended, whether it succeeded or not."""
        async with self._refreshed:
            await self._refreshed.wait()

    async def _refresh(self) -> None:
        try:
            await self.snapshot.refresh(self._store)
        except StoreError as exc:
            if str(exc) != self._error:
                log.error("%s not refreshed, the last ones stay in use: %s", self._what, exc)
            self._error = str(exc)
        else:
            if self._error:
                log.info("%s refreshed again", self._what)
            self._last_ok, self._error = self._clock.now(), ""
        async with self._refreshed:
            self._refreshed.notify_all()


class TrackingRefresh(SnapshotRefresh[TrackingDomains]):
    """Refreshes the tracking domains every ``[tracking] refresh_seconds`` and on ``reload``."""

    def __init__(
        self, domains: TrackingDomains, store: Store, refresh_seconds: float, clock: Clock
    ) -> None:
        super().__init__(
            domains,
            store,
            refresh_seconds,
            clock,
            name="tracking-domains",
            what="tracking domains",
        )

    @property
    def domains(self) -> TrackingDomains:
        return self.snapshot


class TenantSettingsRefresh(SnapshotRefresh[TenantSettingsBook]):
    """Refreshes the tenants' settings every ``[scheduler] refresh_seconds`` and on ``reload``."""

    def __init__(
        self, book: TenantSettingsBook, store: Store, refresh_seconds: float, clock: Clock
    ) -> None:
        super().__init__(
            book, store, refresh_seconds, clock, name="tenant-settings", what="tenant settings"
        )
