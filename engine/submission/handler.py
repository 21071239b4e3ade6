"""The submission service: the SMTP handler tenants' clients talk to.

Decides, for ``engine.smtp.server``, who may submit and what: AUTH against
the tenant's SMTP users (scrypt hashes; failures from one client IP slowed,
then refused), MAIL FROM and header From on the tenant's sending domains,
recipients free of relay tricks, and the message handed to the spool; the
``250`` goes out only once the spool has committed. Without AUTH nothing is
relayed (530 5.7.0 for every RCPT): never an open relay.

A null sender (``MAIL FROM:<>``: a delivery status notice from an MTA that
relays through the account) may send only to the tenant's own sending
domains, and its header From is not held to them: a notice's From names the
reporting host (``MAILER-DAEMON@its hostname``). Delivery signs it only when
that From domain is one of the tenant's; the engine itself never answers a
notice with another. Every refusal becomes one Rejection record with the
envelope it refused.

The tenant's quotas (``quota.TenantQuota``) are checked per RCPT, one message
per recipient: over the daily or the rate quota the recipient gets ``452
4.5.3`` naming the quota, a temporary refusal the client answers by keeping
the message for those recipients and trying them again later (RFC 5321
§4.5.3.1.10), while the recipients admitted before go now. Checked at DATA
instead, a message with more recipients than the day has left, or than the
rate's burst, could never pass in one piece. A transaction refused at DATA, or
not stored, gives its recipients back to the day's quota (``acceptor``, told
they were counted).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass

from engine.clock import Clock
from engine.model import Tenant
from engine.records.record import Record, RecordType
from engine.smtp.handler import Envelope, Session
from engine.smtp.reply import Reply
from engine.store import Store
from engine.submission.acceptance import Reception
from engine.submission.acceptor import Acceptor, NotStored, Outgoing, Refused
from engine.submission.address_policy import (
    NULL_SENDER,
    null_sender_recipient_problem,
    recipient_problem,
    sender_problem,
)
from engine.submission.auth_throttle import Admission, AuthThrottle, client_key
from engine.submission.passwords import verify_password_async
from engine.submission.quota import TenantQuota
from engine.submission.spool import Spool

log = logging.getLogger(__name__)

AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_REFUSED = Reply(454, "4.7.0", "Too many failed authentications; try again later")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
CLIENT_REFUSED = Reply(421, "4.7.0", "Too many failed authentications from your address")
SENDER_OK = Reply(250, "2.1.0", "Sender ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient ok")
SPOOL_FAILED = Reply(451, "4.3.0", "Message not stored; try again later")
CREDENTIAL_CACHE_SECONDS = 60.0
ADMISSION_WAIT_SECONDS = 30.0
"""Longest an AUTH waits for attempts in flight to end before it is refused."""


@dataclass(frozen=True, slots=True)
class Account:
    """What a successful AUTH attaches to the session."""

    tenant: Tenant
    username: str
    domains: frozenset[str]


class CredentialCache:
    """Recently verified credentials and their account, so a reconnecting client
    skips scrypt and the store.

    Holds a keyed digest of the password, never the password itself. Entries
    live ``ttl_seconds``, which bounds how long a removed user or a changed
    domain list goes unnoticed.
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: dict[str, tuple[bytes, Account, float]] = {}

    def _digest(self, username: str, password: str) -> bytes:
        data = f"{username}\0{password}".encode()
        return hashlib.blake2b(data, key=self._key, digest_size=32).digest()

    def hit(self, username: str, password: str, now: float) -> Account | None:
        """The account of these credentials if they were verified recently."""
        entry = self._entries.get(username)
        if entry is None or entry[2] < now:
            return None
        if not secrets.compare_digest(entry[0], self._digest(username, password)):
            return None
        return entry[1]

    def remember(self, username: str, password: str, account: Account, now: float) -> None:
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))
        self._entries[username] = (self._digest(username, password), account, now + self._ttl)


class SubmissionHandler:
    """``SmtpHandler`` for tenants' authenticated submission."""

    def __init__(
        self,
        *,
        store: Store,
        spool: Spool,
        acceptor: Acceptor,
        clock: Clock,
        throttle: AuthThrottle,
        hostname: str,
        nodeid: str,
        quota: TenantQuota | None = None,
    ) -> None:
        self._store = store
        self._spool = spool
        self._acceptor = acceptor
        self._clock = clock
        self._throttle = throttle
        self._hostname = hostname
        self._nodeid = nodeid
        self._quota = quota
        self._credentials = CredentialCache(CREDENTIAL_CACHE_SECONDS)
        self._attempt_ended_event = asyncio.Event()

    async def on_connect(self, session: Session) -> Reply | None:
        if self._throttle.refuses(client_key(session.peer_host), self._clock.now()):
            return CLIENT_REFUSED
        return None

    async def on_auth(self, session: Session, username: str, password: str) -> Reply:
        client = client_key(session.peer_host)
        if not await self._admitted(client, username):
            return AUTH_REFUSED
        try:
            account = await self._authenticate(username, password, self._clock.now())
        except BaseException:
            self._throttle.release(client, username)
            self._attempt_ended()
            raise
        if account is None:
            delay = self._throttle.record_failure(client, username, self._clock.now())
            self._attempt_ended()
            log.info("AUTH failed session=%s peer=%s", session.id, session.peer_host)
            try:
                if delay > 0:
                    await asyncio.sleep(delay)
            finally:
                self._throttle.end_turn(username)
                self._attempt_ended()
            return AUTH_FAILED
        self._throttle.record_success(client, username)
        self._attempt_ended()
        session.authenticated_as = username
        session.auth_context = account
        return AUTH_OK

    async def _admitted(self, client: str, username: str) -> bool:
        """Whether the attempt may check its password, holding a throttle slot if so;
        waits while attempts in flight fill the limit or a paced username's turn is taken."""
        admission = self._throttle.admit(client, username, self._clock.now())
        if admission is Admission.WAIT:  # only then is a timer worth arming
            try:
                async with asyncio.timeout(ADMISSION_WAIT_SECONDS):
                    while admission is Admission.WAIT:
                        await self._attempt_ended_event.wait()
                        admission = self._throttle.admit(client, username, self._clock.now())
            except TimeoutError:
                return False
        return admission is Admission.CHECK

    def _attempt_ended(self) -> None:
        """Wake the attempts waiting for a throttle slot."""
        ended, self._attempt_ended_event = self._attempt_ended_event, asyncio.Event()
        ended.set()

    async def _authenticate(self, username: str, password: str, now: float) -> Account | None:
        cached = self._credentials.hit(username, password, now)
        if cached is not None:
            return cached
        user = await self._store.get_smtp_user(username)
        if user is None or not await verify_password_async(password, user.password_hash):
            return None
        tenant = await self._store.get_tenant_by_id(user.tenant_id)
        if tenant is None:
            return None
        domains = await self._store.list_domains(tenant.id)
        account = Account(tenant, username, frozenset(d.name.lower() for d in domains))
        self._credentials.remember(username, password, account, now)
        return account

    async def on_mail(self, session: Session, envelope: Envelope, address: str) -> Reply:
        account = _account(session)
        if account is None:
            return AUTH_REQUIRED
        return sender_problem(address, account.domains) or SENDER_OK

    async def on_rcpt(self, session: Session, envelope: Envelope, address: str) -> Reply:
        account = _account(session)
        if account is None:
            return AUTH_REQUIRED
        if envelope.mail_from == NULL_SENDER:
            problem = null_sender_recipient_problem(address, account.domains)
        else:
            problem = recipient_problem(address)
        return problem or await self._within_quota(account.tenant) or RECIPIENT_OK

    async def _within_quota(self, tenant: Tenant) -> Reply | None:
        """None when one more message of ``tenant`` is within its quotas (and counted);
        else the temporary refusal that names the quota."""
        if self._quota is None:
            return None
        verdict = await self._quota.admit(tenant, 1, self._clock.now())
        if verdict.allowed:
            return None
        wait = "after 00:00 UTC" if verdict.quota == "daily" else f"in {verdict.retry_after:.0f}s"
        return Reply(452, "4.5.3", f"{verdict.reason(tenant.name).capitalize()}; try again {wait}")

    async def on_data(self, session: Session, envelope: Envelope, body: bytes) -> Reply:
        account = _account(session)
        if account is None or envelope.mail_from is None or not envelope.rcpt_tos:
            return AUTH_REQUIRED
        try:
            accepted = await self._acceptor.accept(
                tenant=account.tenant,
                domains=account.domains,
                sender=envelope.mail_from,
                messages=[Outgoing(body, envelope.rcpt_tos)],
                reception=self._reception(session, account),
                counted=True,
            )
        except Refused as exc:
            return exc.reply
        except NotStored:
            return SPOOL_FAILED
        return Reply(250, "2.0.0", f"Ok: queued as {accepted['submission_id']}")

    async def on_rejection(
        self,
        session: Session,
        command: str,
        reply: Reply,
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        account = _account(session)
        record = Record(
            type=RecordType.REJECTION,
            timestamp=self._clock.now(),
            tenant_id=account.tenant.id if account else None,
            sender=sender,
            recipient=recipient,
            response=reply,
            command=command,
            peer_address=(session.ehlo_name or "", session.peer_host),
            meta={"tenant": account.tenant.name} if account else {},
            reception_protocol="ESMTP",
            nodeid=self._nodeid,
            session_id=session.id,
        )
        self._spool.add_records([record])

    def _reception(self, session: Session, account: Account) -> Reception:
        protocol = "ESMTPSA" if session.tls_version else "ESMTPA"
        return Reception(
            protocol=protocol,
            peer_host=session.peer_host,
            ehlo_name=session.ehlo_name or "unknown",
            session_id=session.id,
            username=account.username,
            tls_version=session.tls_version,
            tls_cipher=session.tls_cipher,
            hostname=self._hostname,
            nodeid=self._nodeid,
        )


def _account(session: Session) -> Account | None:
    context = session.auth_context
    return context if isinstance(context, Account) else None
