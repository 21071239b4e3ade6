"""The SMTP deliverer: one attempt at one message, from its domain to an outcome.

Owns ``SmtpDeliverer``, the production ``engine.delivery.transport.Deliverer``: it
resolves the recipient's domain (``smtp_out.dns``), takes a connection slot
on the lane (the message's source, chosen by the engine's scheduler, x
site, ``smtp_out.pool``), and runs the transaction on a reused or
new session (``smtp_out.client_session``). Traffic shaping
(``engine.scheduler.shaping``) sets each lane's deliveries per connection,
connection limits, connection rate, idle timeout and TLS policy; a message
that carries its lane's shaping (scaled down for backoff by the scheduler)
brings it instead. The connection limits and rate are kept in the limiter
(``engine.limits``), shared by every process and node that uses it.

In: an ``OutboundMessage``. Out: an ``AttemptReport`` with the outcome and
what the records need (site, peer, source, TLS). Never raises for remote
trouble. When our own limits hold the message back (no connection slot in
``wait_timeout_seconds``, too many waiters, a connection rate that frees up
too late) nothing is sent and the outcome is ``DELAYED`` (``451 4.4.5``, the
reason in its text, ``retry_after`` set): no attempt is counted.

Order of trial (RFC 5321 §5.1, Postfix ``smtp_connect.c``):

- an idle session of the lane first, if any;
- then each MX host in order (preference, ties shuffled by the resolver),
  each of its addresses in order, skipping addresses of the other IP family
  than a bound source, at most ``max_addresses_per_attempt`` of them; each
  new connection is first admitted by the pool (shared slots, connection
  rate): refused before any connection, the attempt is delayed; refused
  after a failed one, that failure is the outcome;
- a session- or site-scope failure (refused, timeout, 421, greeting or EHLO
  refusal, TLS failure, dropped connection) moves on to the next address;
  a message- or recipient-scope reply, or delivery, ends the attempt;
- when every address failed, the last failure is the outcome.

DNS: a permanent ``DnsFailure`` (NXDOMAIN, null MX, no address) is a
permanent site-scope outcome classified ``BadDomain``; a temporary one is
transient, ``DNSFailure``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from collections.abc import Iterator

from config.schema import DeliverySettings
from engine.clock import Clock
from engine.delivery.bounce_classify import BounceClassifier
from engine.delivery.outcome import CONNECTION_SCOPES, Outcome, OutcomeKind
from engine.delivery.reply_outcome import outcome_for_reply
from engine.delivery.transport import AttemptReport, OutboundMessage
from engine.limits import Limiter
from engine.scheduler.shaping import Shaping, TlsMode
from engine.scheduler.sources import Source
from engine.smtp.reply import Reply, Stage
from smtp_out.client_session import ClientSession, OpenFailure, Peer, open_session
from smtp_out.connection import ConnectionGauge
from smtp_out.dns import DnsFailure, MxRoute, RouteResolver
from smtp_out.pool import Congested, ConnectionPool, Lane, Slot
from smtp_out.settings import ClientSettings

SWEEP_INTERVAL_SECONDS = 1.0


class SmtpDeliverer:
    """Delivers over SMTP to the recipients' MX hosts, reusing connections per lane."""

    def __init__(
        self,
        *,
        delivery: DeliverySettings,
        resolver: RouteResolver,
        classifier: BounceClassifier,
        clock: Clock,
        shaping: Shaping,
        limiter: Limiter,
    ) -> None:
        self._port = delivery.port
        self._settings = ClientSettings.from_delivery(delivery)
        self._resolver = resolver
        self._classifier = classifier
        self._clock = clock
        self._pool = ConnectionPool(self._settings, shaping, clock, limiter)
        self._gauge = ConnectionGauge()
        self._last_sweep = clock.now()

    @property
    def open_connections(self) -> int:
        """Connections open right now, idle or busy."""
        return self._gauge.value

    def lane_connections(self) -> dict[tuple[str, str], int]:
        """Connections open per lane (source, site), busy or idle."""
        return self._pool.lane_connections()

    @property
    def idle_connections(self) -> int:
        return self._pool.idle_connections

    def window(self, site: str, source: str = "default") -> int:
        """Connections the lane (``source``, ``site``) may have at once now (smaller while
        the site fails)."""
        return self._pool.window((source, site))

    async def deliver(self, message: OutboundMessage) -> AttemptReport:
        await self._sweep()
        route = await self._resolver.resolve(message.domain)
        if isinstance(route, DnsFailure):
            return AttemptReport(outcome=self._dns_outcome(route))
        source = message.source
        lane: Lane = (source.name, route.site)
        slot = await self._pool.checkout(lane, message.shaping)
        if isinstance(slot, Congested):
            return self._delayed(slot, route, source)
        kept: ClientSession | None = None
        try:
            kept, report = await self._attempt(message, route, source, slot)
        finally:
            await self._pool.release(slot, kept)
        return report

    async def close(self) -> None:
        """Close every idle connection; connections in use close when released."""
        await self._pool.close()

    async def sweep(self) -> None:
        """Close idle connections kept longer than ``idle_timeout_seconds``; renew the
        shared slots of the open ones."""
        self._last_sweep = self._clock.now()
        await self._pool.close_idle(expired_only=True)
        await self._pool.renew()

    async def _sweep(self) -> None:
        if self._clock.now() - self._last_sweep >= SWEEP_INTERVAL_SECONDS:
            await self.sweep()

    async def _attempt(
        self,
        message: OutboundMessage,
        route: MxRoute,
        source: Source,
        slot: Slot,
    ) -> tuple[ClientSession | None, AttemptReport]:
        """The session to keep (if any) and the report of the attempt."""
        lane, reused = slot.lane, slot.session
        last: AttemptReport | None = None
        if reused is not None:
            outcome = await self._send(reused, message, lane)
            last = self._report(outcome, route, source, reused.peer, reused)
            if outcome.scope not in CONNECTION_SCOPES:
                return reused, last
            await reused.close()
        for peer in self._peers(route, source):
            refused = await self._pool.admit(slot)
            if refused is not None:
                return None, last or self._delayed(refused, route, source)
            opened = await self._open(peer, source, lane)
            if isinstance(opened, OpenFailure):
                self._pool.record(lane, opened.outcome)
                last = self._report(opened.outcome, route, source, peer)
                continue
            outcome = await self._send(opened, message, lane)
            last = self._report(outcome, route, source, peer, opened)
            if outcome.scope not in CONNECTION_SCOPES:
                return opened, last
            await opened.close()
        if last is None:
            text = f"no MX address reachable from source {source.name} ({source.address})"
            reply = Reply(451, "4.4.4", text, Stage.CONNECT)
            outcome = outcome_for_reply(reply, self._classifier)
            last = self._report(outcome, route, source)
        return None, last

    async def _open(self, peer: Peer, source: Source, lane: Lane) -> ClientSession | OpenFailure:
        """A new session to ``peer`` under the TLS policy of the lane's site."""
        mode = self._pool.limits(lane).enable_tls
        required = mode is TlsMode.REQUIRED
        starttls = required or (
            mode is TlsMode.OPPORTUNISTIC and not self._pool.tls_memory.broken(peer.host)
        )
        opened = await open_session(
            peer,
            source,
            self._settings,
            self._classifier,
            self._gauge,
            starttls=starttls,
            require_tls=required,
        )
        if isinstance(opened, OpenFailure) and opened.tls_broken and mode is TlsMode.OPPORTUNISTIC:
            self._pool.tls_memory.remember(peer.host)
        return opened

    async def _send(self, session: ClientSession, message: OutboundMessage, lane: Lane) -> Outcome:
        try:
            outcome = await session.send(message)
        except BaseException:
            await session.close(polite=False)
            raise
        self._pool.record(lane, outcome)
        return outcome

    def _peers(self, route: MxRoute, source: Source) -> Iterator[Peer]:
        family = _family(source.bind_address[0]) if source.bind_address else None
        peers = (
            Peer(host.name, address, self._port)
            for host in route.hosts
            for address in host.addresses
            if family is None or _family(address) == family
        )
        return itertools.islice(peers, self._settings.max_addresses_per_attempt)

    def _dns_outcome(self, failure: DnsFailure) -> Outcome:
        if failure.permanent:
            reply = Reply(550, "5.1.2", failure.reason, Stage.DNS)
        else:
            reply = Reply(451, "4.4.3", failure.reason, Stage.DNS)
        outcome = outcome_for_reply(reply, self._classifier)
        return dataclasses.replace(outcome, classification=failure.classification)

    def _delayed(self, congested: Congested, route: MxRoute, source: Source) -> AttemptReport:
        """Held back by our own limits: nothing was sent, no attempt counts."""
        reply = Reply(451, "4.4.5", congested.reason, Stage.CONNECT)
        outcome = outcome_for_reply(reply, self._classifier)
        report = self._report(dataclasses.replace(outcome, kind=OutcomeKind.DELAYED), route, source)
        return dataclasses.replace(report, retry_after=congested.retry_after)

    @staticmethod
    def _report(
        outcome: Outcome,
        route: MxRoute,
        source: Source,
        peer: Peer | None = None,
        session: ClientSession | None = None,
    ) -> AttemptReport:
        return AttemptReport(
            outcome=outcome,
            site=route.site,
            peer_name=peer.host if peer else None,
            peer_address=peer.address if peer else None,
            source=source.name,
            source_address=source.address,
            tls_cipher=session.tls_cipher if session else None,
            tls_version=session.tls_version if session else None,
        )


def _family(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None
