"""The composition root: builds the engine's services from settings and runs them.

Only here (and in the CLI) are concrete implementations chosen: the store
for ``database.url``, the system clock, the TLS certificate, the listeners,
the SMTP deliverer. A process runs one or both roles: ``submission`` (the
SMTP listener, the spool and the admin HTTP listener) and ``delivery``
(claiming and delivering). Several processes may share one store; the
workers ``engine.runtime.runner`` forks get their listening sockets, whether they
serve the admin listener, and the pipe that wakes a sibling's delivery after
each acceptance from the supervisor (``bind_listeners``, ``accepted_pipe``).
A process that accepts without delivering also announces new mail through
the store, and each delivering process watches for it (PostgreSQL
``NOTIFY``/``LISTEN``; other processes on SQLite find it at their next poll).

``Engine.start`` opens everything and returns the bound addresses;
``Engine.stop`` stops accepting, lets sessions and attempts finish to the
grace deadline, drains the writers and closes the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path

from admin_api.app import create_app
from admin_api.server import HttpServer
from config import ConfigError, Settings, parse_host_port
from config.schema import DeliverySettings
from engine.clock import Clock, SystemClock
from engine.delivery.bounce_classify import BounceClassifier
from engine.delivery.service import DeliveryService
from engine.dkim.signing_keys import SigningKeys
from engine.records import metrics
from engine.records.log import RecordLog
from engine.runtime.preflight import operator_rules, tls_paths
from engine.sealing import Sealer, load_or_create_secret, secret_path
from engine.smtp.server import LISTEN_BACKLOG, ServerConfig, SmtpServer
from engine.smtp.tls_cert import ensure_self_signed, server_context
from engine.store import Store, open_store
from engine.submission.auth_throttle import AuthThrottle
from engine.submission.handler import SubmissionHandler
from engine.submission.spool import Spool
from smtp_out.deliverer import SmtpDeliverer
from smtp_out.dns import MxResolver
from smtp_out.session import ClientSettings, TlsMode

log = logging.getLogger(__name__)


class Role(enum.StrEnum):
    ALL = "all"
    SUBMISSION = "submission"
    DELIVERY = "delivery"

    @property
    def submits(self) -> bool:
        return self is not Role.DELIVERY

    @property
    def delivers(self) -> bool:
        return self is not Role.SUBMISSION


def node_id(settings: Settings) -> str:
    return settings.engine.node_id or socket.gethostname()


def client_settings(delivery: DeliverySettings) -> ClientSettings:
    """The SMTP client's settings from the ``[delivery]`` table."""
    return ClientSettings(
        connect_timeout_seconds=delivery.connect_timeout_seconds,
        greeting_timeout_seconds=delivery.greeting_timeout_seconds,
        ehlo_timeout_seconds=delivery.ehlo_timeout_seconds,
        command_timeout_seconds=delivery.command_timeout_seconds,
        data_timeout_seconds=delivery.data_timeout_seconds,
        connection_limit=delivery.connection_limit,
        idle_timeout_seconds=delivery.idle_timeout_seconds,
        max_waiters=delivery.max_waiters,
        wait_timeout_seconds=delivery.wait_timeout_seconds,
        tls=TlsMode(delivery.tls),
        broken_tls_memory_seconds=delivery.broken_tls_memory_seconds,
        max_addresses_per_attempt=delivery.max_addresses_per_attempt,
    )


def bounce_classifier(settings: Settings, config_file: str) -> BounceClassifier:
    """The classifier with the operator's rules first; a bad rule file is a config error."""
    return BounceClassifier(operator_rules(settings, config_file))


def accepted_pipe() -> tuple[int, int]:
    """A non-blocking pipe for ``Engine.accepted_pipe``, made before the workers fork."""
    readable, writable = os.pipe()
    os.set_blocking(readable, False)
    os.set_blocking(writable, False)
    return readable, writable


def _signal(writable: int) -> None:
    with contextlib.suppress(BlockingIOError):  # a full pipe already says it
        os.write(writable, b"\0")


def tls_files(settings: Settings) -> tuple[Path, Path]:
    """The submission certificate and key; a self-signed pair is made when none is set."""
    cert, key = tls_paths(settings)
    if not settings.submission.tls_cert:
        ensure_self_signed(cert, key, settings.engine.hostname)
    return cert, key


def bind_listeners(settings: Settings, config_file: str) -> list[socket.socket]:
    """Bound, listening, non-blocking TCP sockets for ``submission.listen``; an address
    that cannot be bound is a ``ConfigError`` naming it."""
    sockets: list[socket.socket] = []
    try:
        for text in settings.submission.listen:
            host, port = parse_host_port(text)
            try:
                sockets.extend(_listening_sockets(host, port))
            except OSError as exc:
                problem = f"cannot listen on {text}: {exc.strerror or exc}"
                raise ConfigError(config_file, "submission.listen", problem) from exc
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def prepare(settings: Settings, *, certificate: bool) -> None:
    """What a first start creates: the data directory, the secret, the schema and, for
    submission, the certificate. Done once before several engine processes start."""
    engine_secret(settings)
    store = await migrated_store(settings)
    await store.close()
    if certificate:
        tls_files(settings)


def engine_secret(settings: Settings) -> bytes:
    """The engine secret, made (with the data directory) at the first start."""
    Path(settings.engine.data_dir).mkdir(parents=True, exist_ok=True)
    return load_or_create_secret(secret_path(settings.engine))


async def migrated_store(settings: Settings) -> Store:
    """The store of ``database.url``, its pending migrations applied."""
    store = open_store(settings.database_url(), settings.database.pool_size)
    try:
        applied = await store.migrate()
    except BaseException:
        await store.close()
        raise
    if applied:
        log.info("applied migrations %s", applied)
    return store


@dataclass
class Engine:
    """All services of one engine process."""

    settings: Settings
    role: Role = Role.ALL
    config_file: str = "<config>"
    clock: Clock = field(default_factory=SystemClock)
    submission_sockets: list[socket.socket] | None = None
    """Listening sockets bound by a parent process; None binds ``submission.listen``."""
    serve_admin: bool = True
    accepted_pipe: tuple[int, int] | None = None
    """A pipe shared with sibling processes: submission writes a byte after each
    commit, delivery wakes when one arrives (instead of at its next poll)."""
    addresses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    _store: Store | None = None
    _record_log: RecordLog | None = None
    _spool: Spool | None = None
    _servers: list[SmtpServer] = field(default_factory=list)
    _http: HttpServer | None = None
    _delivery: DeliveryService | None = None
    _deliverer: SmtpDeliverer | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _watch: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, list[tuple[str, int]]]:
        """Open the store, migrate, start this role's services; the bound addresses."""
        settings = self.settings
        secret = engine_secret(settings)
        classifier = bounce_classifier(settings, self.config_file)
        self._store = await migrated_store(settings)
        self._record_log = RecordLog(settings.record_log_path())
        if self.role.delivers:
            self._start_delivery(Sealer(secret), classifier)
        if self.role.submits:
            await self._start_submission()
            if self.serve_admin:
                await self._start_admin()
        return self.addresses

    def _start_delivery(self, sealer: Sealer, classifier: BounceClassifier) -> None:
        assert self._store is not None and self._record_log is not None
        settings = self.settings
        resolver = MxResolver(
            [parse_host_port(ns, default_port=53) for ns in settings.dns.nameservers],
            settings.dns.timeout_seconds,
            self.clock,
            random.Random(),
        )
        self._deliverer = SmtpDeliverer(
            delivery=settings.delivery,
            sources=settings.sources,
            pools=settings.pools,
            resolver=resolver,
            classifier=classifier,
            clock=self.clock,
            client=client_settings(settings.delivery),
            providers=settings.providers,
        )
        self._delivery = DeliveryService(
            store=self._store,
            deliverer=self._deliverer,
            keys=SigningKeys(self._store, sealer, self.clock),
            settings=settings,
            clock=self.clock,
            record_log=self._record_log,
            owner=f"{node_id(settings)}:{os.getpid()}",
        )
        self._tasks.append(asyncio.create_task(self._delivery.run(), name="delivery"))
        self._watch = asyncio.create_task(
            self._store.watch_accepted(self._delivery.wake), name="watch accepted"
        )
        if self.accepted_pipe is not None:
            readable = self.accepted_pipe[0]
            asyncio.get_running_loop().add_reader(readable, self._woken, readable)

    async def _start_submission(self) -> None:
        assert self._store is not None and self._record_log is not None
        settings = self.settings
        sub = settings.submission
        self._spool = Spool(self._store, self._record_log, settings.database.commit_batch_max)
        if self._delivery is not None:
            self._spool.on_accepted.append(self._delivery.wake)
        else:
            self._spool.on_accepted.append(self._store.announce_accepted)
        if self.accepted_pipe is not None:
            self._spool.on_accepted.append(functools.partial(_signal, self.accepted_pipe[1]))
        self._tasks.append(asyncio.create_task(self._spool.run(), name="spool"))
        cert, key = tls_files(settings)
        handler = SubmissionHandler(
            store=self._store,
            spool=self._spool,
            clock=self.clock,
            throttle=AuthThrottle(
                delay_after=sub.auth_failure_delay_after,
                refuse_after=sub.auth_failure_refuse_after,
                window_seconds=sub.auth_failure_window_seconds,
                max_delay=sub.auth_failure_max_delay_seconds,
            ),
            hostname=settings.engine.hostname,
            nodeid=node_id(settings),
        )
        config = ServerConfig.from_settings(
            settings.engine.hostname,
            sub,
            tls_context=server_context(cert, key),
            auth_enabled=True,
            require_tls_for_auth=True,
        )
        sockets = self.submission_sockets
        if sockets is None:
            sockets = bind_listeners(settings, self.config_file)
        bound = []
        for sock in sockets:
            server = SmtpServer(config, handler)
            bound.append(await server.start(sock=sock))
            self._servers.append(server)
        self.addresses["submission"] = bound

    def _woken(self, readable: int) -> None:
        try:
            os.read(readable, 4096)
        except BlockingIOError:
            return  # a sibling took the bytes; it wakes its own delivery
        if self._delivery is not None:
            self._delivery.wake()

    async def _start_admin(self) -> None:
        self._http = HttpServer(create_app(metrics.served_registry()))
        text = self.settings.admin.listen
        host, port = parse_host_port(text)
        try:
            self.addresses["admin"] = [await self._http.start(host, port)]
        except OSError as exc:
            problem = f"cannot listen on {text}: {exc.strerror or exc}"
            raise ConfigError(self.config_file, "admin.listen", problem) from exc

    async def wait_for_failure(self) -> str:
        """Returns the name of the first service task that ends by itself (a defect)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).get_name()

    async def stop(self) -> None:
        """Graceful stop: listeners, then delivery (to the grace deadline), writers, store."""
        grace = self.settings.engine.shutdown_grace_seconds
        await asyncio.gather(*(s.stop(grace) for s in self._servers))
        self._servers.clear()
        if self._http is not None:
            await self._http.stop()
        if self._delivery is not None:
            self._delivery.stop()
        if self._spool is not None:
            self._spool.close()
        done, pending = await asyncio.wait(self._tasks, timeout=grace) if self._tasks else ((), ())
        for task in pending:
            task.cancel()
        for task in [*done, *pending]:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("service %s failed", task.get_name())
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self.accepted_pipe is not None and self._delivery is not None:
            asyncio.get_running_loop().remove_reader(self.accepted_pipe[0])
        if self._deliverer is not None:
            await self._deliverer.close()
        if self._record_log is not None:
            self._record_log.close()
        if self._store is not None:
            await self._store.close()
