"""The engine's built-in roles as services (``engine.service.Service``).

``SubmissionRole``: the SMTP listeners, one per listening socket, and the
spool they commit to; it listens until stopped, then lets the sessions
finish to the grace deadline and drains the spool. ``DeliveryRole``: the
delivery service, woken by the store's announcements and by the sibling
processes' pipe; when it stops, in-flight attempts finish to the deadline,
then the deliverer's idle connections close. The admin listener is an
``engine.runtime.http_serving.HttpService``. ``TrackingRole``: the tracking
edge's HTTP listener, the flusher that moves its journal to the store and,
with a certificate directory, the periodic look for changed certificates;
when it stops, the listener lets requests finish, the flusher makes a last
attempt and the journal closes (what the store did not get stays in it).
``TrackingFlushRole``: that flusher alone, in another process than the edge's,
so that judging hits and writing records take nothing from the serving core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from engine.delivery.service import DeliveryService
from engine.delivery.transport import Deliverer
from engine.runtime.http_serving import HttpService
from engine.service import Address, Health
from engine.smtp.handler import SmtpHandler
from engine.smtp.server import ServerConfig, SmtpServer
from engine.store import Store
from engine.submission.acceptor import Acceptor
from engine.submission.spool import Spool
from tracking_edge.certificates import CertificateDirectory
from tracking_edge.flusher import Flusher
from tracking_edge.journal import Journal, JournalReader, JournalWriter


class SubmissionRole:
    """``Service``: SMTP submission on ``sockets``, committed by ``spool``; ``acceptor``
    is the acceptance path behind it, which HTTP acceptance shares."""

    name = "submission"

    def __init__(
        self,
        config: ServerConfig,
        handler: SmtpHandler,
        spool: Spool,
        sockets: list[socket.socket],
        acceptor: Acceptor,
    ) -> None:
        self._spool = spool
        self.acceptor = acceptor
        self._listeners = [(SmtpServer(config, handler), sock) for sock in sockets]
        self._running = False

    async def start(self) -> list[Address]:
        return [await server.start(sock=sock) for server, sock in self._listeners]

    async def run(self) -> None:
        self._running = True
        try:
            await self._spool.run()
        finally:
            self._running = False

    async def stop(self, grace_seconds: float) -> None:
        await asyncio.gather(*(server.stop(grace_seconds) for server, _ in self._listeners))
        self._spool.close()

    def health(self) -> Health:
        if not self._running:
            return Health(False, "the spool is not running")
        sessions = sum(server.session_count for server, _ in self._listeners)
        return Health(True, f"{sessions} sessions")


class DeliveryRole:
    """``Service``: ``delivery`` through ``deliverer``, woken when ``store`` announces
    new mail and when a byte arrives on ``accepted``, the readable end of the pipe
    sibling processes write to after each acceptance."""

    name = "delivery"

    def __init__(
        self,
        delivery: DeliveryService,
        deliverer: Deliverer,
        store: Store,
        accepted: int | None = None,
    ) -> None:
        self._delivery = delivery
        self._deliverer = deliverer
        self._store = store
        self._accepted = accepted
        self._watch: asyncio.Task[None] | None = None
        self._running = False

    async def start(self) -> list[Address]:
        self._watch = asyncio.create_task(
            self._store.watch_accepted(self._delivery.wake), name="watch accepted"
        )
        if self._accepted is not None:
            asyncio.get_running_loop().add_reader(self._accepted, self._woken)
        return []

    async def run(self) -> None:
        self._running = True
        try:
            await self._delivery.run()
        finally:
            self._running = False
            await self._close()

    async def stop(self, grace_seconds: float) -> None:
        self._delivery.stop()

    def health(self) -> Health:
        return Health(True) if self._running else Health(False, "not delivering")

    def wake(self) -> None:
        """New work may be due (``DeliveryService.wake``)."""
        self._delivery.wake()

    def _woken(self) -> None:
        assert self._accepted is not None
        try:
            os.read(self._accepted, 4096)
        except BlockingIOError:
            return  # a sibling took the bytes; it wakes its own delivery
        self._delivery.wake()

    async def _close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self._accepted is not None:
            asyncio.get_running_loop().remove_reader(self._accepted)
        await self._deliverer.close()


class TrackingRole:
    """``Service``: the tracking edge served by ``http``, appending to ``journal``; with a
    ``flusher``, the journal is moved to the store here too (else another process's
    ``TrackingFlushRole`` does it); ``certificates`` looked at every ``check_seconds``."""

    name = "tracking"

    def __init__(
        self,
        http: HttpService,
        flusher: Flusher | None,
        journal: Journal | JournalWriter,
        certificates: CertificateDirectory | None = None,
        check_seconds: float = 30.0,
    ) -> None:
        self._http = http
        self._flusher = flusher
        self._journal = journal
        self._certificates = certificates
        self._check_seconds = check_seconds
        self._stopped = asyncio.Event()

    async def start(self) -> list[Address]:
        return await self._http.start()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._http.run(), name="tracking http")
                if self._flusher is not None:
                    group.create_task(self._flusher.run(), name="tracking flusher")
                if self._certificates is not None:
                    group.create_task(self._watch_certificates(), name="tracking certificates")
        finally:
            self._journal.close()

    async def stop(self, grace_seconds: float) -> None:
        await self._http.stop(grace_seconds)
        if self._flusher is not None:
            self._flusher.stop()
        self._stopped.set()

    def health(self) -> Health:
        health = self._http.health()
        if health.ok and self._flusher is not None and self._flusher.failing:
            return Health(True, "serving; records wait in the journal, the store fails")
        return health

    def reload(self) -> None:
        """Load changed certificates now (SIGHUP)."""
        if self._certificates is not None:
            self._certificates.reload()

    async def _watch_certificates(self) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._check_seconds)
            self.reload()


class TrackingFlushRole:
    """``Service``: ``flusher`` moving the journal another process's tracking edge appends
    to (read through ``reader``) to the store, until stopped; then the reader closes."""

    name = "tracking-flush"

    def __init__(self, flusher: Flusher, reader: JournalReader) -> None:
        self._flusher = flusher
        self._reader = reader
        self._running = False

    async def start(self) -> list[Address]:
        return []

    async def run(self) -> None:
        self._running = True
        try:
            await self._flusher.run()
        finally:
            self._running = False
            self._reader.close()

    async def stop(self, grace_seconds: float) -> None:
        self._flusher.stop()

    def health(self) -> Health:
        if not self._running:
            return Health(False, "not flushing")
        if self._flusher.failing:
            return Health(True, "records wait in the journal, the store fails")
        return Health(True)
