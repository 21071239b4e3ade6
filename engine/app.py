"""The composition root: builds the engine's services from settings and runs them.

Only here (and in the CLI) are concrete implementations chosen: the store
for ``database.url``, the system clock, the TLS certificate, the listeners.
``Engine.start`` opens everything and returns the bound addresses;
``Engine.stop`` stops accepting, lets sessions finish to the grace deadline,
drains the spool and closes the store.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings, parse_host_port
from engine.auth_throttle import AuthThrottle
from engine.clock import Clock, SystemClock
from engine.record_log import RecordLog
from engine.sealing import load_or_create_secret
from engine.smtp_server import ServerConfig, SmtpServer
from engine.spool import Spool
from engine.store import Store, open_store
from engine.submission import SubmissionHandler
from engine.tls_cert import ensure_self_signed, server_context

log = logging.getLogger(__name__)


def secret_path(settings: Settings) -> Path:
    """Where the engine secret that seals DKIM keys lives."""
    configured = settings.engine.secret_file
    return Path(configured) if configured else Path(settings.engine.data_dir) / "secret.key"


def node_id(settings: Settings) -> str:
    return settings.engine.node_id or socket.gethostname()


@dataclass
class Engine:
    """All services of one engine process."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    store: Store | None = None
    spool: Spool | None = None
    servers: list[SmtpServer] = field(default_factory=list)
    addresses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    _spool_task: asyncio.Task[None] | None = None
    _record_log: RecordLog | None = None

    async def start(self) -> dict[str, list[tuple[str, int]]]:
        """Open the store, migrate, start the listeners; return their addresses."""
        settings = self.settings
        data_dir = Path(settings.engine.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        load_or_create_secret(secret_path(settings))
        self.store = open_store(settings.database.url)
        applied = await self.store.migrate()
        if applied:
            log.info("applied migrations %s", applied)
        self._record_log = RecordLog(settings.records.json_log)
        self.spool = Spool(self.store, self._record_log, settings.database.commit_batch_max)
        self._spool_task = asyncio.create_task(self.spool.run(), name="spool")
        await self._start_submission()
        return self.addresses

    async def _start_submission(self) -> None:
        assert self.store is not None and self.spool is not None
        settings = self.settings
        sub = settings.submission
        cert, key = sub.tls_cert, sub.tls_key
        if not cert:
            data_dir = Path(settings.engine.data_dir)
            cert, key = str(data_dir / "tls" / "cert.pem"), str(data_dir / "tls" / "key.pem")
            ensure_self_signed(Path(cert), Path(key), settings.engine.hostname)
        handler = SubmissionHandler(
            store=self.store,
            spool=self.spool,
            clock=self.clock,
            throttle=AuthThrottle(
                delay_after=sub.auth_failure_delay_after,
                refuse_after=sub.auth_failure_refuse_after,
                window_seconds=sub.auth_failure_window_seconds,
            ),
            hostname=settings.engine.hostname,
            nodeid=node_id(settings),
        )
        config = ServerConfig(
            hostname=settings.engine.hostname,
            max_message_bytes=sub.max_message_bytes,
            max_recipients=sub.max_recipients,
            max_commands=sub.max_commands,
            idle_timeout_seconds=sub.idle_timeout_seconds,
            data_timeout_seconds=sub.data_timeout_seconds,
            tls_context=server_context(Path(cert), Path(key)),
            require_tls_for_auth=True,
            allow_plaintext_auth_on_loopback=sub.allow_plaintext_auth_on_loopback,
            auth_enabled=True,
            max_sessions=sub.max_sessions,
        )
        bound = []
        for text in sub.listen:
            host, port = parse_host_port(text)
            server = SmtpServer(config, handler)
            bound.append(await server.start(host, port))
            self.servers.append(server)
        self.addresses["submission"] = bound

    async def stop(self) -> None:
        """Graceful stop: listeners first, then the spool, then the store."""
        grace = self.settings.engine.shutdown_grace_seconds
        await asyncio.gather(*(s.stop(grace) for s in self.servers))
        self.servers.clear()
        if self.spool is not None and self._spool_task is not None:
            self.spool.close()
            await self._spool_task
        if self._record_log is not None:
            self._record_log.close()
        if self.store is not None:
            await self.store.close()
