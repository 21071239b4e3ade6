"""The bounce listener's SMTP handler: who may hand us bounces and complaints.

Plugs into ``engine.smtp.server`` (no AUTH). A recipient is accepted only
when it is a return-path address of a tenant's sending domain (local part
shaped like a return-path token, ``b-...``, on ``bounces.<domain>``) or one
of the configured feedback-loop addresses; any other domain is refused
``550 5.7.1`` (never a relay, not even for the tenants' own domains) and any
other local part on a bounce domain ``550 5.1.1``. Each client IP is held to
a connection rate (``421 4.7.0``) and a message rate (``450 4.7.1``) through
the shared limiter. A message is answered ``250`` only once the ``Inbox``
has committed it to the store (group commit); a failed commit is ``451``.
Every refusal becomes a Rejection record (no tenant), stored with the next
commit and written to the record log, as submission's are.

The bounce domains are read from the store and kept for ``DOMAINS_TTL_SECONDS``,
so a domain added is served within that time.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Final

from engine.clock import Clock
from engine.limits import Limiter
from engine.limits.throttle import ThrottleSpec
from engine.model import InboundMessage, SendingDomain
from engine.records.log import RecordLog
from engine.records.record import Record, RecordType
from engine.smtp.handler import Envelope, Session
from engine.smtp.reply import Reply
from engine.store import Store
from engine.store.group_commit import GroupCommit

log = logging.getLogger(__name__)

DOMAINS_TTL_SECONDS: Final = 60.0
TOKEN_LOCAL_PART: Final = re.compile(r"b-[a-z0-9][a-z0-9._=-]{3,250}", re.IGNORECASE)
"""The shape of a return-path token's local part (``engine.return_path``)."""

SENDER_OK: Final = Reply(250, "2.1.0", "Sender ok")
RECIPIENT_OK: Final = Reply(250, "2.1.5", "Recipient ok")
NOT_LOCAL: Final = Reply(550, "5.7.1", "Relaying denied: not a bounce domain of this server")
NO_MAILBOX: Final = Reply(550, "5.1.1", "No such bounce address")
AUTH_UNSUPPORTED: Final = Reply(502, "5.5.1", "AUTH not available")
TOO_MANY_CONNECTIONS: Final = Reply(421, "4.7.0", "Too many connections from your address")
TOO_MANY_MESSAGES: Final = Reply(450, "4.7.1", "Too many messages from your address; try later")
NOT_STORED: Final = Reply(451, "4.3.0", "Message not stored; try again later")
NO_RECIPIENTS: Final = Reply(503, "5.5.1", "Need RCPT command first")


def recipient_refusal(
    address: str, bounce_domains: Collection[str], feedback_addresses: Collection[str]
) -> Reply | None:
    """Why the bounce listener refuses ``address`` (None: accepted). Pure."""
    lowered = address.lower()
    if lowered in feedback_addresses:
        return None
    local, at, domain = lowered.rpartition("@")
    if not at or domain not in bounce_domains:
        return NOT_LOCAL
    return None if TOKEN_LOCAL_PART.fullmatch(local) else NO_MAILBOX


Inbound = InboundMessage | Sequence[Record]
"""What the inbox commits: a message, or records without a message (Rejection)."""


class Inbox:
    """Durable acceptance of inbound messages, group-committed to the store, and the
    listener's records, which ride along in the next batch without a waiter."""

    def __init__(self, store: Store, record_log: RecordLog | None, batch_max: int) -> None:
        self._store = store
        self._record_log = record_log
        self._writer: GroupCommit[Inbound] = GroupCommit("inbox", self._write, batch_max)
        self.on_accepted: list[Callable[[], None]] = []
        """Called after each commit that stored messages (wakes the intake)."""

    async def commit(self, message: InboundMessage) -> None:
        """Store durably; returns once committed, raises when the commit failed."""
        await self._writer.commit(message)

    def add_records(self, records: Sequence[Record]) -> None:
        """Queue records for the next batch; no waiting."""
        self._writer.add(records)

    async def _write(self, batch: list[Inbound]) -> None:
        messages = [item for item in batch if isinstance(item, InboundMessage)]
        records = [r for item in batch if not isinstance(item, InboundMessage) for r in item]
        if messages:
            await self._store.accept_inbound(messages)
            for callback in self.on_accepted:
                callback()
        if records:
            await self._store.add_records(records)
            if self._record_log is not None:
                self._record_log.write(records)

    async def run(self) -> None:
        await self._writer.run()

    def close(self) -> None:
        self._writer.close()


class BounceDomains:
    """The return-path domains of every tenant's sending domains, refreshed from the store."""

    def __init__(
        self,
        load: Callable[[], Awaitable[list[SendingDomain]]],
        return_path_domain: Callable[[str], str],
        clock: Clock,
    ) -> None:
        self._load = load
        self._return_path_domain = return_path_domain
        self._clock = clock
        self._domains: frozenset[str] = frozenset()
        self._expires = float("-inf")

    async def current(self) -> frozenset[str]:
        now = self._clock.now()
        if now >= self._expires:
            domains = await self._load()
            self._domains = frozenset(self._return_path_domain(d.name).lower() for d in domains)
            self._expires = now + DOMAINS_TTL_SECONDS
        return self._domains


class BounceHandler:
    """``SmtpHandler`` of the bounce listener."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        domains: BounceDomains,
        feedback_addresses: Collection[str],
        limiter: Limiter,
        connection_rate: ThrottleSpec,
        message_rate: ThrottleSpec,
        clock: Clock,
        nodeid: str,
    ) -> None:
        self._inbox = inbox
        self._domains = domains
        self._feedback = frozenset(a.lower() for a in feedback_addresses)
        self._limiter = limiter
        self._connection_rate = connection_rate
        self._message_rate = message_rate
        self._clock = clock
        self._nodeid = nodeid

    async def on_connect(self, session: Session) -> Reply | None:
        key = f"bounce_in:connections:{session.peer_host}"
        grant = await self._limiter.throttle(key, self._connection_rate, self._clock.now())
        return None if grant.granted else TOO_MANY_CONNECTIONS

    async def on_auth(self, session: Session, username: str, password: str) -> Reply:
        return AUTH_UNSUPPORTED

    async def on_mail(self, session: Session, envelope: Envelope, address: str) -> Reply:
        key = f"bounce_in:messages:{session.peer_host}"
        grant = await self._limiter.throttle(key, self._message_rate, self._clock.now())
        return SENDER_OK if grant.granted else TOO_MANY_MESSAGES

    async def on_rcpt(self, session: Session, envelope: Envelope, address: str) -> Reply:
        domains = await self._domains.current()
        return recipient_refusal(address, domains, self._feedback) or RECIPIENT_OK

    async def on_data(self, session: Session, envelope: Envelope, body: bytes) -> Reply:
        if envelope.mail_from is None or not envelope.rcpt_tos:
            return NO_RECIPIENTS
        now = self._clock.now()
        message = InboundMessage(
            id=f"in-{int(now)}-{secrets.token_hex(6)}",
            received_at=now,
            peer=session.peer_host,
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=body,
        )
        try:
            await self._inbox.commit(message)
        except Exception:
            log.exception("inbound %s from %s not stored", message.id, session.peer_host)
            return NOT_STORED
        log.info(
            "inbound id=%s peer=%s rcpt=%s size=%d",
            message.id,
            session.peer_host,
            ",".join(envelope.rcpt_tos),
            len(body),
        )
        return Reply(250, "2.0.0", f"Ok: queued as {message.id}")

    async def on_rejection(
        self,
        session: Session,
        command: str,
        reply: Reply,
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        log.info(
            "inbound refused session=%s peer=%s command=%s recipient=%s reply=%s",
            session.id,
            session.peer_host,
            command,
            recipient,
            reply,
        )
        record = Record(
            type=RecordType.REJECTION,
            timestamp=self._clock.now(),
            sender=sender,
            recipient=recipient,
            response=reply,
            command=command,
            peer_address=(session.ehlo_name or "", session.peer_host),
            meta={"listener": "bounce"},
            reception_protocol="ESMTP",
            nodeid=self._nodeid,
            session_id=session.id,
        )
        self._inbox.add_records([record])
