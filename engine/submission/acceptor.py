"""Acceptor: the one acceptance path, for SMTP submission and HTTP alike.

In: the tenant, its sending domains, an envelope and one or more raw messages
(several when an HTTP request renders each recipient's message apart). Out,
once the spool has committed them (durable): the receipt
(``acceptance.receipt``: an id per queued recipient, the suppressed ones).

Every message goes through the same checks whichever way it came: the
envelope sender on a sending domain of the tenant (or the null sender, whose
recipients must then be on those domains), recipients free of relay tricks
(``address_policy``), a header section that can be signed and a header From
on the tenant's sending domains (``acceptance``); ``X-Campaign`` and
``X-Priority-Class`` name the queue and priority (as the tenants' settings
in force say), the tenant's quotas are taken (``quota``: per RCPT over SMTP,
all of a request's recipients or none over HTTP, ``OverQuota``), and the
tenant's suppressions are applied at commit (``spool``). A refusal raises
``Refused`` with the SMTP reply that says why; a store failure raises
``NotStored``; either gives the recipients back to the day's quota.

Idempotency (HTTP), Stripe's semantics: a request with a key first claims it
in the store, in one atomic statement (``Store.claim_idempotency_key``), which
holds across processes sharing the store. Within ``IDEMPOTENCY_SECONDS`` of the
first claim, a later request with the key is answered with the first one's
receipt when its hash is the same (replay), refused (``IdempotencyMismatch``)
when not, and told to retry (``IdempotencyInProgress``) while the first is
still being accepted. The acceptance's transaction fills in the claim's
response by its token, so a crash cannot queue a request twice; a request that
fails (refused, over quota, not stored) releases its claim, so a retry may go
ahead. A claim left pending longer than ``CLAIM_SECONDS`` was abandoned (its
process died) and may be claimed again. Requests with one key are also
serialised in this process (a lock): the second waits for the first and is
answered with its receipt rather than ``IdempotencyInProgress``, without a
round trip. Expired keys are swept at most once every ``SWEEP_SECONDS``, by the
next request with a key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.schema import Settings
from engine.clock import Clock
from engine.header_section import MalformedHeader
from engine.model import IdempotencyKey, Submission, Tenant
from engine.records import metrics
from engine.records.record import Record
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.smtp.reply import Reply
from engine.store import Store
from engine.store.rows import new_lease_token
from engine.submission.acceptance import (
    HeaderField,
    Reception,
    from_domains,
    new_submission_id,
    parse_header_fields,
    plan_submission,
    receipt,
)
from engine.submission.address_policy import (
    NULL_SENDER,
    null_sender_recipient_problem,
    recipient_problem,
    sender_problem,
)
from engine.submission.quota import QuotaVerdict, TenantQuota
from engine.submission.spool import Spool

log = logging.getLogger(__name__)

HEADER_FROM_REFUSED = Reply(550, "5.7.1", "Header From must use a sending domain of this account")
IDEMPOTENCY_SECONDS = 24 * 3600.0
"""How long an idempotency key answers with its first response."""
CLAIM_SECONDS = 300.0
"""How long a pending claim holds its key. Far longer than any acceptance takes
(checks, the quota's round trips and one group commit, each bounded by seconds):
only a claim whose process died before answering or releasing it gets older."""
SWEEP_SECONDS = 3600.0
"""How often keys older than ``IDEMPOTENCY_SECONDS`` are removed."""


class Refused(Exception):
    """The message is not accepted; ``reply`` says why. ``recipient`` is the index of
    the refused envelope recipient, ``message`` that of the refused message;
    ``header`` is set when its header section is at fault (else the envelope)."""

    def __init__(
        self,
        reply: Reply,
        *,
        recipient: int | None = None,
        message: int = 0,
        header: bool = False,
    ) -> None:
        super().__init__(reply.text)
        self.reply = reply
        self.recipient = recipient
        self.message = message
        self.header = header


class NotStored(Exception):
    """The store did not commit the submission: nothing was accepted."""


class OverQuota(Exception):
    """The tenant's daily or rate quota has no room for the request's recipients."""

    def __init__(self, verdict: QuotaVerdict, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason


class IdempotencyMismatch(Exception):
    """The idempotency key was used within the day by a request with another body."""


class IdempotencyInProgress(Exception):
    """Another request with the idempotency key is being accepted; retry shortly."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One raw message (CRLF line ends) and the envelope recipients it goes to."""

    raw: bytes
    recipients: Sequence[str]
    fields: Sequence[HeaderField] | None = None
    """Its header fields (``parse_header_fields(raw)``) where the sender knows them, as
    for a composed message (``composition.composed_message``); else read from ``raw``."""


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A request's idempotency key and the hash of what it asked."""

    key: str
    request_hash: str


@dataclass(slots=True)
class _KeyLock:
    """Serialises the requests of one idempotency key; dropped when none is left."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


@dataclass(frozen=True, slots=True)
class _Request:
    """One call of ``Acceptor.accept``."""

    tenant: Tenant
    domains: frozenset[str]
    sender: str
    messages: Sequence[Outgoing]
    reception: Reception
    due_at: float | None
    meta: Mapping[str, Any] | None
    counted: bool


class Acceptor:
    """Checks, plans and durably stores submissions; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        spool: Spool,
        clock: Clock,
        settings: Settings | None = None,
        tenant_settings: TenantSettingsBook | None = None,
        quota: TenantQuota | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._spool = spool
        self._clock = clock
        self._settings = settings
        self._tenant_settings = tenant_settings
        self._quota = quota
        self._rng = rng or random.Random()
        self._key_locks: dict[tuple[int, str], _KeyLock] = {}
        self._next_sweep = 0.0

    async def accept(
        self,
        *,
        tenant: Tenant,
        domains: frozenset[str],
        sender: str,
        messages: Sequence[Outgoing],
        reception: Reception,
        due_at: float | None = None,
        meta: Mapping[str, Any] | None = None,
        idempotency: Idempotency | None = None,
        counted: bool = False,
    ) -> dict[str, Any]:
        """Accept ``messages`` from ``sender``; the receipt once they are durable.

        ``counted``: the recipients were admitted to the tenant's quotas already
        (SMTP, per RCPT); otherwise they are admitted here, all or none
        (``OverQuota``). Either way a refusal gives them back."""
        request = _Request(tenant, domains, sender, messages, reception, due_at, meta, counted)
        if idempotency is None:
            return await self._accept(request)
        lock_key = (tenant.id, idempotency.key)
        held = self._key_locks.setdefault(lock_key, _KeyLock())
        held.users += 1
        try:
            async with held.lock:
                return await self._accept_claimed(request, idempotency)
        finally:
            held.users -= 1
            if not held.users:
                del self._key_locks[lock_key]

    async def _accept_claimed(self, request: _Request, idempotency: Idempotency) -> dict[str, Any]:
        """Claim the key, then accept; the stored answer when the key is held."""
        now = self._clock.now()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            await self._store.sweep_idempotency_keys(now - IDEMPOTENCY_SECONDS)
        claim = IdempotencyKey(
            request.tenant.id, idempotency.key, idempotency.request_hash, "", now,
            new_lease_token(), pending=True,
        )  # fmt: skip
        stored = await self._store.claim_idempotency_key(
            claim, now - IDEMPOTENCY_SECONDS, now - CLAIM_SECONDS
        )
        if stored.claim_token != claim.claim_token:
            return stored_answer(stored, idempotency)
        try:
            return await self._accept(request, claim)
        except BaseException:
            await self._release(claim)
            raise

    async def _release(self, claim: IdempotencyKey) -> None:
        """Give the key up after a failed request (an answered key stays)."""
        try:
            await self._store.release_idempotency_key(claim.tenant_id, claim.key, claim.claim_token)
        except Exception:
            log.exception("idempotency key %r not released; free in %ds", claim.key, CLAIM_SECONDS)

    async def _accept(
        self, request: _Request, claim: IdempotencyKey | None = None
    ) -> dict[str, Any]:
        now = self._clock.now()
        count = sum(len(m.recipients) for m in request.messages)
        if not request.counted:
            await self._admit(request.tenant, count, now)
        try:
            return await self._store_all(request, now, claim)
        except (Refused, NotStored):
            if self._quota is not None:
                await self._quota.give_back(request.tenant, count, now)
            raise

    async def _admit(self, tenant: Tenant, count: int, now: float) -> None:
        if self._quota is None:
            return
        verdict = await self._quota.admit(tenant, count, now)
        if not verdict.allowed:
            raise OverQuota(verdict, verdict.reason(tenant.name))

    async def _store_all(
        self, request: _Request, now: float, claim: IdempotencyKey | None
    ) -> dict[str, Any]:
        submissions: list[Submission] = []
        records: list[Record] = []
        for index, message in enumerate(request.messages):
            check_envelope(request.sender, message.recipients, request.domains, index)
            submission, planned = plan_submission(
                tenant=request.tenant,
                sender=request.sender,
                recipients=message.recipients,
                raw=message.raw,
                fields=checked_fields(
                    message.raw, request.sender, request.domains, index, message.fields
                ),
                submission_id=new_submission_id(now, self._rng),
                now=now,
                reception=request.reception,
                settings=self._routing(),
                due_at=request.due_at,
                meta=request.meta,
            )
            submissions.append(submission)
            records.extend(planned)
        try:
            stored_submissions = await self._spool.commit_all(submissions, records, claim)
        except Exception as exc:
            log.exception("submission %s not stored", submissions[0].id if submissions else "-")
            raise NotStored(str(exc)) from exc
        metrics.ACCEPTED.inc(sum(len(s.messages) for s in submissions))
        for submission in submissions:
            log.info(
                "accepted id=%s tenant=%s recipients=%d size=%d protocol=%s",
                submission.id,
                request.tenant.name,
                len(submission.messages),
                len(submission.body),
                request.reception.protocol,
            )
        return receipt(stored_submissions)

    def _routing(self) -> Settings | None:
        """The settings routing reads: the tenants' tables as in force now."""
        if self._tenant_settings is not None:
            return self._tenant_settings.routing
        return self._settings


def stored_answer(stored: IdempotencyKey, idempotency: Idempotency) -> dict[str, Any]:
    """The answer to a request whose key ``stored`` is held by an earlier one:
    ``IdempotencyInProgress`` while that one is not answered yet (whatever it asked:
    it may still fail and free the key), then its receipt, or
    ``IdempotencyMismatch`` when it asked something else."""
    if stored.pending:
        raise IdempotencyInProgress(idempotency.key)
    if stored.request_hash != idempotency.request_hash:
        raise IdempotencyMismatch(idempotency.key)
    answer: dict[str, Any] = json.loads(stored.response)
    return answer


def check_envelope(
    sender: str, recipients: Sequence[str], domains: frozenset[str], message: int = 0
) -> None:
    """Raise ``Refused`` unless the envelope passes submission's address rules."""
    problem = sender_problem(sender, domains)
    if problem is not None:
        raise Refused(problem, message=message)
    for index, recipient in enumerate(recipients):
        if sender == NULL_SENDER:
            problem = null_sender_recipient_problem(recipient, domains)
        else:
            problem = recipient_problem(recipient)
        if problem is not None:
            raise Refused(problem, recipient=index, message=message)


def checked_fields(
    raw: bytes,
    sender: str,
    domains: frozenset[str],
    message: int = 0,
    known: Sequence[HeaderField] | None = None,
) -> Sequence[HeaderField]:
    """The header fields of ``raw`` (``known``, when given, are they); ``Refused`` when
    its header section cannot be signed, or (but for the null sender) its From is not
    on ``domains``."""
    try:
        fields = parse_header_fields(raw) if known is None else known
    except MalformedHeader as exc:
        reply = Reply(550, "5.6.0", f"Malformed header field: {exc}")
        raise Refused(reply, message=message, header=True) from exc
    if sender != NULL_SENDER:
        from_ = from_domains(fields)
        if not from_ or any(d not in domains for d in from_):
            raise Refused(HEADER_FROM_REFUSED, message=message, header=True)
    return fields
