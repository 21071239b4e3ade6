"""The composition root: builds the engine's services from settings and runs them.

Only here (and in the CLI) are concrete implementations chosen: the store
for ``database.url``, the system clock, the TLS certificate, the listeners,
the limiter (in-process, or Redis for ``redis.url``: limits shared by every
process and node), the scheduler, the message transform (signed return
paths, their keys derived from the engine secret), the SMTP deliverer. A
process runs one or more roles, each a service (``engine.service.Service``,
``engine.runtime.roles``): ``submission`` (the SMTP listener and the spool,
with the admin HTTP listener, ``admin``, and campaign expansion,
``campaigns``, in one process per node, and the tracking edge, ``tracking``,
when ``tracking.listen`` is set), ``delivery`` (claiming and delivering; with
``stats``, the rollup of the record log, ``engine.rollup.service``) and
``bounce`` (the bounce listener and intake, ``engine.runtime.bounce``; in role
``all`` too when ``bounce.listen`` is set); ``webhooks`` (records posted to the
tenants' webhooks, ``engine.webhooks``) beside each delivery; role ``tracking`` runs the
tracking edge alone; ``Engine.services`` adds more.
Several processes may share one store; the workers ``engine.runtime.runner``
forks get their listening sockets, whether they serve the admin listener,
and the pipe that wakes a sibling's delivery after each acceptance from the
supervisor (``bind_listeners``, ``accepted_pipe``). A process that accepts
without delivering also announces new mail through the store, and each
delivering process watches for it (PostgreSQL ``NOTIFY``/``LISTEN``; other
processes on SQLite find it at their next poll).

``Engine.start`` opens the store and the limiter and starts the services in
order (delivery, submission, admin, the added ones), returning the bound
addresses; ``Engine.health`` is what the admin listener's ``/healthz`` reports;
``Engine.stop`` stops the services in the reverse order, each given the grace
deadline (listeners stop accepting and let sessions finish, delivery lets
attempts finish), then closes the record log, the store and the limiter.
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
from dataclasses import dataclass, field, replace
from pathlib import Path

from admin_api.app import create_app
from admin_api.send_route import DirectSendRoute
from admin_api.services import ApiServices
from bounce_in.service import BounceService
from config import ConfigError, Settings, parse_host_port
from engine.campaigns.expansion import Expansion, settle_seconds
from engine.clock import Clock, SystemClock
from engine.delivery.bounce_classify import BounceClassifier
from engine.delivery.service import DeliveryService
from engine.delivery.settling import RecordContext, delayed_record
from engine.delivery.transform import MessageTransform, ReturnPathTransform, TransformChain
from engine.dkim.signing_keys import SigningKeys
from engine.limits import Limiter, open_limiter
from engine.model import QueuedMessage, Suspension
from engine.node import node_id
from engine.provisioning import Operations, Provisioning
from engine.provisioning.tracking_domains import TrackingDomains
from engine.provisioning.tracking_refresh import TenantSettingsRefresh, TrackingRefresh
from engine.records import metrics
from engine.records.log import RecordLog
from engine.records.record import Record
from engine.return_path import codec_from_settings
from engine.rollup.service import StatsRollup
from engine.runtime.bounce import bounce_parts, bounce_service
from engine.runtime.http_serving import ADMIN_LIMITS, EDGE_LIMITS, HttpService, listening_socket
from engine.runtime.preflight import operator_rules, operator_token, throttle_spec, tls_paths
from engine.runtime.roles import DeliveryRole, SubmissionRole, TrackingFlushRole, TrackingRole
from engine.scheduler.backoff import BackoffPolicy
from engine.scheduler.lanes import LaneScheduler
from engine.scheduler.shaping import Shaping
from engine.scheduler.sources import SourceRotation
from engine.scheduler.suspensions import suspension_record
from engine.scheduler.tenant_settings import TenantSettingsBook, config_quota_problem
from engine.scheduler.warmup import WarmupPolicy, plans_from_settings
from engine.scheduler.warmup_ledger import WarmupLedger
from engine.sealing import Sealer, load_or_create_secret, secret_path
from engine.service import Address, Health, Service
from engine.smtp.reply import Reply
from engine.smtp.server import LISTEN_BACKLOG, ServerConfig
from engine.smtp.tls_cert import ensure_self_signed, server_context
from engine.store import Store, open_store
from engine.submission.acceptor import Acceptor
from engine.submission.auth_throttle import AuthThrottle
from engine.submission.handler import SubmissionHandler
from engine.submission.quota import TenantQuota
from engine.submission.spool import Spool
from engine.webhooks.client import HttpPoster
from engine.webhooks.sender import WebhookSender
from engine.webhooks.service import WebhookService
from smtp_out.deliverer import SmtpDeliverer
from smtp_out.dns import MxResolver, MxRoute, ResolverConfigurationError, RouteResolver
from smtp_out.dns_lookup import RecordLookup
from tracking_edge.app import TrackingEdge
from tracking_edge.bots import ClickBursts
from tracking_edge.certificates import CertificateDirectory, CertificateError
from tracking_edge.flusher import Flusher
from tracking_edge.hits import HitRecords
from tracking_edge.journal import Journal, JournalReader, JournalWriter
from tracking_edge.rewriting import TrackingTransform
from tracking_edge.tokens import tokens_from_settings

log = logging.getLogger(__name__)


class Role(enum.StrEnum):
    ALL = "all"
    SUBMISSION = "submission"
    DELIVERY = "delivery"
    BOUNCE = "bounce"
    TRACKING = "tracking"

    @property
    def submits(self) -> bool:
        return self in (Role.ALL, Role.SUBMISSION)

    @property
    def delivers(self) -> bool:
        return self in (Role.ALL, Role.DELIVERY)

    @property
    def receives_bounces(self) -> bool:
        """Runs the bounce listener and intake (when ``bounce.listen`` is set)."""
        return self in (Role.ALL, Role.BOUNCE)

    @property
    def tracks(self) -> bool:
        """Serves the tracking edge: role tracking does; the roles that accept do, like the
        admin listener, when ``tracking.listen`` is set (one process of several)."""
        return self in (Role.ALL, Role.SUBMISSION, Role.TRACKING)


def bounce_classifier(settings: Settings, config_file: str) -> BounceClassifier:
    """The classifier with the operator's rules first; a bad rule file is a config error."""
    return BounceClassifier(operator_rules(settings, config_file))


def tracking_certificates(settings: Settings, config_file: str) -> CertificateDirectory | None:
    """The certificates of ``tracking.certificate_dir``; None serves plain HTTP."""
    directory = settings.tracking.certificate_dir
    if not directory:
        return None
    try:
        return CertificateDirectory(Path(directory))
    except (CertificateError, OSError) as exc:
        raise ConfigError(config_file, "tracking.certificate_dir", str(exc)) from exc


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


def bind_listeners(
    settings: Settings, config_file: str, key: str = "submission.listen"
) -> list[socket.socket]:
    """Bound, listening, non-blocking TCP sockets for ``submission.listen`` (or
    ``bounce.listen``, as ``key`` says); an address that cannot be bound is a
    ``ConfigError`` naming it."""
    texts = settings.bounce.listen if key == "bounce.listen" else settings.submission.listen
    sockets: list[socket.socket] = []
    try:
        for text in texts:
            host, port = parse_host_port(text)
            try:
                sockets.extend(_listening_sockets(host, port))
            except OSError as exc:
                problem = f"cannot listen on {text}: {exc.strerror or exc}"
                raise ConfigError(config_file, key, problem) from exc
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


def _record_lookup(settings: Settings) -> RecordLookup | None:
    """The admin API's lookups for domain verification, on the ``[dns]`` resolvers;
    None (verification answers 503) when the system resolver configuration is unusable."""
    nameservers = [parse_host_port(ns, default_port=53) for ns in settings.dns.nameservers]
    try:
        return RecordLookup(nameservers, settings.dns.timeout_seconds)
    except ResolverConfigurationError as exc:
        log.warning("domain verification unavailable: %s", exc)
        return None


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


def tenant_settings_book(settings: Settings, config_file: str) -> TenantSettingsBook:
    """The tenants' settings book; a ``ConfigError`` for a rate quota of the config
    that is no throttle spec."""
    problem = config_quota_problem(settings)
    if problem is not None:
        raise ConfigError(config_file, *problem)
    return TenantSettingsBook(settings)


def lane_scheduler(
    *,
    store: Store,
    limiter: Limiter,
    settings: Settings,
    resolver: RouteResolver,
    shaping: Shaping,
    nodeid: str,
    record_log: RecordLog | None = None,
    tenant_settings: TenantSettingsBook | None = None,
) -> LaneScheduler:
    """The production scheduler, its parts built from ``settings``; the records it stores
    itself also go to ``record_log``."""
    plans = plans_from_settings(settings)
    source_plans = {
        name: plans[source.warmup] for name, source in settings.sources.items() if source.warmup
    }
    policy = BackoffPolicy.from_settings(settings)

    async def site_of(domain: str) -> str | None:
        route = await resolver.resolve(domain)
        return route.site if isinstance(route, MxRoute) else None

    def delayed(message: QueuedMessage, reason: Reply, now: float, tenant: str) -> Record:
        return delayed_record(message, reason, now=now, context=RecordContext(nodeid, tenant))

    def suspended(suspension: Suspension, now: float) -> Record:
        return suspension_record(suspension, nodeid=nodeid)

    return LaneScheduler(
        store=store,
        limiter=limiter,
        settings=settings,
        shaping=shaping,
        rules=policy.rules,
        sources=SourceRotation(settings.sources, settings.pools),
        ledger=WarmupLedger(
            store=store,
            limiter=limiter,
            plans=source_plans,
            policy=WarmupPolicy.from_settings(settings),
        ),
        site_of=site_of,
        delayed_record=delayed,
        admin_record=suspended,
        log_records=record_log.write if record_log is not None else lambda records: None,
        tenant_settings=tenant_settings,
    )


def webhook_service(
    settings: Settings, store: Store, sealer: Sealer, clock: Clock
) -> WebhookService:
    """The webhooks' dispatcher and sender, posting over the minimal HTTP client."""
    hooks = settings.webhooks
    poster = HttpPoster(timeout=hooks.request_timeout_seconds, allow_private=hooks.allow_private)
    sender = WebhookSender(
        store=store, settings=hooks, sealer=sealer, clock=clock, post=poster.post
    )
    return WebhookService(store=store, settings=hooks, clock=clock, sender=sender)


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
    bounce_sockets: list[socket.socket] | None = None
    """Bounce listening sockets bound by a parent process: this process runs the bounce
    service on them whatever its role. None: the role decides, binding ``bounce.listen``."""
    accepted_pipe: tuple[int, int] | None = None
    """A pipe shared with sibling processes: submission writes a byte after each
    commit, delivery wakes when one arrives (instead of at its next poll)."""
    serve_tracking: bool = True
    """Whether this process serves the tracking edge (one process of several does)."""
    flush_tracking: bool | None = None
    """Whether this process moves the tracking edge's journal to the store: None, where
    the edge is served; True here, beside whatever this process serves (another process of
    the machine serves the edge), so records are judged and written off the edge's core."""
    services: list[Service] = field(default_factory=list)
    """Services this process runs besides its role's, started after them."""
    addresses: dict[str, list[Address]] = field(default_factory=dict)
    _store: Store | None = None
    _record_log: RecordLog | None = None
    _limiter: Limiter | None = None
    _scheduler: LaneScheduler | None = None
    _tracking: TrackingRole | None = None
    _tracking_domains: TrackingRefresh | None = None
    _tenant_settings: TenantSettingsRefresh | None = None
    _started: list[tuple[Service, asyncio.Task[None]]] = field(default_factory=list)

    async def start(self) -> dict[str, list[Address]]:
        """Open the store, migrate, start this role's services; the bound addresses."""
        settings = self.settings
        secret = engine_secret(settings)
        classifier = bounce_classifier(settings, self.config_file)
        self._store = await migrated_store(settings)
        self._record_log = RecordLog(settings.record_log_path())
        self._limiter = open_limiter(settings.redis, self.clock)
        composed: list[Service] = []
        tracks = self.role.tracks and self.serve_tracking and bool(settings.tracking.listen)
        if self.role.delivers or tracks:
            self._tracking_domains = TrackingRefresh(
                TrackingDomains(settings),
                self._store,
                settings.tracking.refresh_seconds,
                self.clock,
            )
            composed.append(self._tracking_domains)
        if self.role.delivers or self.role.submits:
            self._tenant_settings = TenantSettingsRefresh(
                tenant_settings_book(settings, self.config_file),
                self._store,
                settings.scheduler.refresh_seconds,
                self.clock,
            )
            composed.append(self._tenant_settings)
        delivery = self._delivery(secret, classifier) if self.role.delivers else None
        if delivery is not None:
            composed.append(delivery)
            composed.append(self._stats())
            if settings.webhooks.enabled:
                composed.append(webhook_service(settings, self._store, Sealer(secret), self.clock))
        if self.role.submits:
            submission = self._submission(delivery)
            composed.append(submission)
            if self.serve_admin:
                # One expanding process per node: two would take the same rows.
                composed.append(
                    Expansion(
                        store=self._store,
                        acceptor=submission.acceptor,
                        operations=Operations(
                            self._store, settings, nodeid=node_id(settings), clock=self.clock
                        ),
                        clock=self.clock,
                        hostname=settings.engine.hostname,
                        nodeid=node_id(settings),
                        settle_seconds=settle_seconds(settings),
                    )
                )
                composed.append(self._admin(secret, submission.acceptor))
        if self.serves_bounces:
            composed.append(self._bounce(secret, classifier))
        if self.role is Role.TRACKING and not settings.tracking.listen:
            problem = "expected host:port: role tracking serves the tracking edge"
            raise ConfigError(self.config_file, "tracking.listen", problem)
        flushes = tracks if self.flush_tracking is None else self.flush_tracking
        if tracks:
            self._tracking = self._tracking_edge(secret, flushes)
            composed.append(self._tracking)
        elif flushes and settings.tracking.listen:
            composed.append(self._tracking_flush())
        for service in [*composed, *self.services]:
            bound = await service.start()
            self._started.append((service, asyncio.create_task(service.run(), name=service.name)))
            if bound:
                self.addresses[service.name] = bound
        return self.addresses

    @property
    def serves_bounces(self) -> bool:
        """Whether this process runs the bounce listener and intake."""
        if self.bounce_sockets is not None:
            return True
        return self.role.receives_bounces and bool(self.settings.bounce.listen)

    def _bounce(self, secret: bytes, classifier: BounceClassifier) -> BounceService:
        assert self._store is not None and self._limiter is not None
        sockets = self.bounce_sockets
        if sockets is None:
            sockets = bind_listeners(self.settings, self.config_file, "bounce.listen")
        cert, key = tls_files(self.settings)
        return bounce_service(
            self.settings,
            self.config_file,
            store=self._store,
            limiter=self._limiter,
            clock=self.clock,
            record_log=self._record_log,
            parts=bounce_parts(self.settings, secret, classifier),
            tls_context=server_context(cert, key),
            sockets=sockets,
        )

    def reload(self) -> None:
        """Load the shaping and backoff rule files again (SIGHUP); a file that does not
        load is logged with its file and key, and the rules in force are kept. The
        tracking edge loads its changed certificates."""
        if self._tracking is not None:
            self._tracking.reload()
        if self._tracking_domains is not None:
            self._tracking_domains.reload()
        if self._tenant_settings is not None:
            self._tenant_settings.reload()
        if self._scheduler is None:
            return
        scheduling = self.settings.scheduler
        try:
            shaping = Shaping.load(scheduling.shaping_files)
            policy = BackoffPolicy.from_settings(self.settings)
        except ConfigError as exc:
            log.error("reload refused, the rules in force are kept: %s", exc)
            return
        self._scheduler.reload(shaping, policy.rules)
        log.info("reloaded shaping (%s) and backoff rules", ", ".join(shaping.files))

    def health(self) -> dict[str, Health]:
        """The health of each started service, by name."""
        return {service.name: service.health() for service, _ in self._started}

    def _delivery(self, secret: bytes, classifier: BounceClassifier) -> DeliveryRole:
        assert self._store is not None and self._record_log is not None
        assert self._limiter is not None
        settings = self.settings
        resolver = MxResolver(
            [parse_host_port(ns, default_port=53) for ns in settings.dns.nameservers],
            settings.dns.timeout_seconds,
            self.clock,
            random.Random(),
        )
        shaping = Shaping.load(settings.scheduler.shaping_files)
        deliverer = SmtpDeliverer(
            delivery=settings.delivery,
            resolver=resolver,
            classifier=classifier,
            clock=self.clock,
            shaping=shaping,
            limiter=self._limiter,
        )
        self._scheduler = lane_scheduler(
            store=self._store,
            limiter=self._limiter,
            settings=settings,
            resolver=resolver,
            shaping=shaping,
            nodeid=node_id(settings),
            record_log=self._record_log,
            tenant_settings=self._book(),
        )
        delivery = DeliveryService(
            store=self._store,
            scheduler=self._scheduler,
            deliverer=deliverer,
            transform=self._transform(secret),
            keys=SigningKeys(self._store, Sealer(secret), self.clock),
            settings=settings,
            clock=self.clock,
            record_log=self._record_log,
            owner=f"{node_id(settings)}:{os.getpid()}",
        )
        accepted = self.accepted_pipe[0] if self.accepted_pipe is not None else None
        return DeliveryRole(delivery, deliverer, self._store, accepted)

    def _stats(self) -> StatsRollup:
        """The stats rollup: every delivering process runs one, one at a time applies."""
        assert self._store is not None
        shaping = Shaping.load(self.settings.scheduler.shaping_files)
        owner = f"{node_id(self.settings)}:{os.getpid()}"
        return StatsRollup(self._store, shaping.provider_of, self.clock, owner)

    def _submission(self, delivery: DeliveryRole | None) -> SubmissionRole:
        assert self._store is not None and self._record_log is not None
        assert self._limiter is not None
        settings = self.settings
        sub = settings.submission
        spool = Spool(self._store, self._record_log, settings.database.commit_batch_max)
        if delivery is not None:
            spool.on_accepted.append(delivery.wake)
        else:
            spool.on_accepted.append(self._store.announce_accepted)
        if self.accepted_pipe is not None:
            spool.on_accepted.append(functools.partial(_signal, self.accepted_pipe[1]))
        cert, key = tls_files(settings)
        quota = TenantQuota(self._limiter, self._book())
        acceptor = Acceptor(
            store=self._store,
            spool=spool,
            clock=self.clock,
            settings=settings,
            tenant_settings=self._book(),
            quota=quota,
        )
        handler = SubmissionHandler(
            store=self._store,
            spool=spool,
            acceptor=acceptor,
            clock=self.clock,
            throttle=AuthThrottle(
                delay_after=sub.auth_failure_delay_after,
                refuse_after=sub.auth_failure_refuse_after,
                window_seconds=sub.auth_failure_window_seconds,
                max_delay=sub.auth_failure_max_delay_seconds,
            ),
            hostname=settings.engine.hostname,
            nodeid=node_id(settings),
            quota=quota,
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
        return SubmissionRole(config, handler, spool, sockets, acceptor)

    def _admin(self, secret: bytes, acceptor: Acceptor) -> HttpService:
        """The admin API on this process's store, limiter and acceptance path."""
        assert self._store is not None and self._limiter is not None
        settings = self.settings
        services = ApiServices(
            store=self._store,
            provisioning=Provisioning(
                self._store,
                settings,
                nodeid=node_id(settings),
                sealer=Sealer(secret),
                clock=self.clock,
            ),
            settings=settings,
            clock=self.clock,
            limiter=self._limiter,
            key_rate=throttle_spec(settings.admin.key_rate, self.config_file, "admin.key_rate"),
            nodeid=node_id(settings),
            operator_token=operator_token(settings, self.config_file),
            acceptor=acceptor,
            dns=_record_lookup(settings),
            metrics=metrics.served_registry(),
            health=self.health,
            quota=TenantQuota(self._limiter, self._book()),
        )
        text = settings.admin.listen
        try:
            sock = listening_socket(*parse_host_port(text))
        except OSError as exc:
            problem = f"cannot listen on {text}: {exc.strerror or exc}"
            raise ConfigError(self.config_file, "admin.listen", problem) from exc
        return HttpService(
            "admin",
            create_app(services),
            sock,
            limits=replace(ADMIN_LIMITS, connections=settings.admin.max_connections),
            direct=DirectSendRoute(services),
        )

    def _book(self) -> TenantSettingsBook:
        assert self._tenant_settings is not None
        return self._tenant_settings.snapshot

    def _domains(self) -> TrackingDomains:
        assert self._tracking_domains is not None
        return self._tracking_domains.domains

    def _transform(self, secret: bytes) -> MessageTransform:
        """Links rewritten on the tenant's (or campaign's) tracking domain, then the
        reference header and the signed return path."""
        domains = self._domains()
        tracking = TrackingTransform(
            tokens_from_settings(self.settings, secret),
            lambda message: domains.policy_for(message.tenant_id, message.campaign),
        )
        return TransformChain(
            tracking, ReturnPathTransform(codec_from_settings(self.settings, secret))
        )

    def _tracking_edge(self, secret: bytes, flushes: bool) -> TrackingRole:
        """The edge; with ``flushes``, its flusher in this process too."""
        assert self._store is not None
        settings = self.settings
        tracking = settings.tracking
        try:
            sock = listening_socket(*parse_host_port(tracking.listen))
        except OSError as exc:
            problem = f"cannot listen on {tracking.listen}: {exc.strerror or exc}"
            raise ConfigError(self.config_file, "tracking.listen", problem) from exc
        try:
            certificates = tracking_certificates(settings, self.config_file)
            path = self._journal_path()
            journal = Journal(path) if flushes else JournalWriter(path)
        except BaseException:
            sock.close()
            raise
        app = TrackingEdge(
            tokens=tokens_from_settings(settings, secret),
            tenant_of=self._domains().tenant_of,
            journal=journal,
            store=self._store,
            clock=self.clock,
        )
        http = HttpService(
            "tracking",
            app,
            sock,
            ssl_context=certificates.context() if certificates is not None else None,
            trusted_proxies=[] if certificates is not None else tracking.trusted_proxies,
            limits=replace(EDGE_LIMITS, connections=tracking.max_connections),
        )
        flusher = self._flusher(journal) if isinstance(journal, Journal) else None
        return TrackingRole(
            http, flusher, journal, certificates, tracking.certificate_check_seconds
        )

    def _tracking_flush(self) -> TrackingFlushRole:
        """The flusher of the journal another process's edge appends to."""
        reader = JournalReader(self._journal_path())
        return TrackingFlushRole(self._flusher(reader), reader)

    def _journal_path(self) -> Path:
        return Path(self.settings.engine.data_dir) / "tracking" / "journal"

    def _flusher(self, journal: Journal | JournalReader) -> Flusher:
        assert self._store is not None and self._record_log is not None
        tracking = self.settings.tracking
        records = HitRecords(
            scanner_seconds=tracking.scanner_click_seconds,
            nodeid=node_id(self.settings),
            bursts=ClickBursts(),
        )
        return Flusher(
            journal,
            self._store,
            records,
            interval=tracking.flush_interval_seconds,
            batch_max=tracking.flush_batch_max,
            written=self._record_log.write,
        )

    async def wait_for_failure(self) -> str:
        """Returns the name of the first service whose work ends by itself (a defect)."""
        done, _ = await asyncio.wait(
            [task for _, task in self._started], return_when=asyncio.FIRST_COMPLETED
        )
        return next(iter(done)).get_name()

    async def stop(self) -> None:
        """Graceful stop, the services in the reverse order of their start (listeners
        first, delivery last), each given the grace; then the writers and the store."""
        grace = self.settings.engine.shutdown_grace_seconds
        for service, task in reversed(self._started):
            try:
                await service.stop(grace)
            except Exception:
                log.exception("stopping service %s failed", service.name)
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("service %s failed", service.name)
        self._started.clear()
        if self._record_log is not None:
            self._record_log.close()
        if self._limiter is not None:
            await self._limiter.close()
        if self._store is not None:
            await self._store.close()
