"""The store: one async interface, two implementations.

- ``SqliteStore`` (default): a file under the data directory, WAL mode,
  ``synchronous=FULL``; every call runs on one dedicated thread.
- ``PostgresStore``: asyncpg pool; row-level security isolates tenants;
  delivery claims use ``FOR UPDATE SKIP LOCKED`` so several engine processes
  share one database.

Both run the same contract test suite (``tests/integration/test_store_contract.py``).
Migrations are numbered, forward-only SQL files under ``migrations/<backend>/``.

Invariants: ``accept`` is one transaction and durable when it returns;
a message is claimable when it is ``queued`` and due, or ``leased`` with an
expired lease; each claim leases under a new token, and only that token
renews the lease or settles the message (a fencing token): a holder whose
lease expired and was claimed again changes nothing, and its records are not
stored.

Scheduled queues: ``accept`` upserts a row in ``queues`` for every queue it
adds messages to, with a ``bump`` higher than any before it (one value per
transaction), so ``queues_changed(after)`` tells a scheduler which queues got
mail since it last looked. Bumps become visible in increasing order (SQLite:
one writer; PostgreSQL: the upsert runs under a transaction-scoped advisory
lock, so a smaller bump never commits after a bigger one). A queue's row
outlives its messages. ``claim_queues`` leases from each queue asked, one
queue at a time (the partial indexes ``(queue, priority DESC, due_at)`` and ``(queue, due_at)``
over queued messages), highest priority first; ``reap_leases`` returns
expired leases to their queues.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from config import sqlite_path
from engine.model import (
    EVERY_SUPPRESSION,
    ApiKey,
    Campaign,
    CampaignRecipient,
    CampaignRoute,
    CampaignState,
    IdempotencyKey,
    InboundMessage,
    InboundState,
    MessageState,
    QueueCount,
    QueuedMessage,
    QueueInfo,
    RecipientMark,
    SendingDomain,
    Settlement,
    SmtpUser,
    SoftBounce,
    Submission,
    Suppression,
    SuppressionFilter,
    Suspension,
    Tenant,
    TenantOverrides,
    TrackingDomain,
    WarmupCount,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryState,
)
from engine.records.record import Record
from engine.stats.counts import MessageFacts, StatCount
from engine.stats.report import BounceTotal, StatsQuery, StatTotal


@dataclass(frozen=True, slots=True)
class ClaimedQueue:
    """What ``claim_queues`` leased from one queue, and when its next message is due."""

    messages: list[QueuedMessage]
    next_due: float | None
    """The earliest due time of its messages still queued; None when none is."""


@dataclass(frozen=True, slots=True, order=True)
class LogPosition:
    """Where a follower of the record log stands: every record at or before it was read.

    On SQLite records commit in ``seq`` order, and ``txid`` stays 0. On
    PostgreSQL two transactions may commit out of ``seq`` order, so records
    are followed by (transaction id, seq) and only those of transactions older
    than every running one (below the snapshot's ``xmin``): that set never grows
    behind the follower.
    """

    txid: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """A stored record as a follower of the log reads it."""

    seq: int
    tenant_id: int | None
    type: str
    data: dict[str, Any]
    """The record's JSON object (``Record.to_json``)."""


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """Which of a tenant's records to list (``Store.query_records``): each filter set
    narrows the list; records come by ``seq`` from after ``after_seq``."""

    types: frozenset[str] = frozenset()
    """Record types (``RecordType`` values); empty means every type."""
    campaign: str | None = None
    """The campaign of the record's message (records of removed messages have none)."""
    recipient: str | None = None
    """Compared case-insensitively."""
    message_id: str | None = None
    since: float | None = None
    """Records at or after this time."""
    until: float | None = None
    """Records before this time."""
    after_seq: int = 0


@dataclass(frozen=True, slots=True)
class NewWebhookDelivery:
    """A POST the dispatcher queues in the webhook outbox, due at once."""

    webhook_id: str
    tenant_id: int
    payload: str
    record_count: int


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """The end of one attempt at a claimed webhook delivery (``Store.finish_webhook_delivery``).

    ``state`` PENDING schedules a retry at ``next_at``; DELIVERED and FAILED end it.
    """

    delivery_id: int
    lease_token: str
    state: WebhookDeliveryState
    attempts: int
    next_at: float
    status: int | None
    error: str | None
    at: float


class StoreError(Exception):
    """Base of the store's errors.

    StoreError
     ├── Conflict        (a unique name is taken: tenant, domain, SMTP user,
     │                    tracking domain, API key prefix)
     ├── NotFound        (a named parent does not exist)
     ├── ClaimLost       (an idempotency claim was taken over before its acceptance)
     └── InUse           (a tenant to remove still has messages to deliver)
    """


class Conflict(StoreError):
    pass


class NotFound(StoreError):
    pass


class ClaimLost(StoreError):
    """An idempotency key's claim is no longer pending under its token: it was
    abandoned and claimed again, so the acceptance must not be stored."""


class InUse(StoreError):
    """A tenant still has ``pending`` messages queued, leased or shunted."""

    def __init__(self, message: str, pending: int) -> None:
        super().__init__(message)
        self.pending = pending


class Store(Protocol):
    """What the engine needs from durable storage."""

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the numbers applied."""
        ...

    async def schema_version(self) -> int: ...

    async def close(self) -> None: ...

    # Telling other processes about new mail.
    def announce_accepted(self) -> None:
        """Let delivery in other processes know new messages are queued (no waiting)."""
        ...

    async def watch_accepted(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever a process announces new messages; runs until
        cancelled, or returns at once when the store cannot carry announcements."""
        ...

    # Tenants, domains, users, suppressions.
    async def create_tenant(self, name: str, now: float) -> Tenant: ...

    async def get_tenant(self, name: str) -> Tenant | None: ...

    async def get_tenant_by_id(self, tenant_id: int) -> Tenant | None: ...

    async def list_tenants(self) -> list[Tenant]: ...

    async def put_tenant_overrides(self, overrides: TenantOverrides) -> None:
        """Store the tenant's overrides (replacing any); ``NotFound`` for an unknown tenant."""
        ...

    async def get_tenant_overrides(self, tenant_id: int) -> TenantOverrides | None: ...

    async def list_tenant_overrides(self) -> list[TenantOverrides]:
        """Every tenant's overrides, by tenant id."""
        ...

    async def count_tenant_messages(self, tenant_id: int, since: float) -> int:
        """The tenant's messages (recipients) accepted at or after ``since``, whatever
        their state now."""
        ...

    async def add_domain(self, domain: SendingDomain) -> SendingDomain:
        """Store ``domain`` for its tenant (RLS on PostgreSQL); it with its new id."""
        ...

    async def get_domain(self, name: str, tenant_id: int | None = None) -> SendingDomain | None:
        """The sending domain ``name``; with ``tenant_id``, only that tenant's (on
        PostgreSQL through row-level security too)."""
        ...

    async def rotate_domain_key(self, domain: SendingDomain) -> bool:
        """Replace the DKIM key (selector, algorithm, keys) of ``domain.name``, if it is
        ``domain.tenant_id``'s (RLS on PostgreSQL); False if absent."""
        ...

    async def list_domains(self, tenant_id: int) -> list[SendingDomain]:
        """A tenant's sending domains, by name; isolated by RLS on PostgreSQL."""
        ...

    async def add_smtp_user(self, user: SmtpUser) -> SmtpUser:
        """Store ``user`` for its tenant (RLS on PostgreSQL); it with its new id."""
        ...

    async def get_smtp_user(self, username: str, tenant_id: int | None = None) -> SmtpUser | None:
        """The SMTP user ``username``; with ``tenant_id``, only that tenant's (RLS on
        PostgreSQL)."""
        ...

    async def add_suppression(self, suppression: Suppression) -> None:
        """Insert or replace (tenant, address); addresses compare case-insensitively."""
        ...

    async def suppressed(self, tenant_id: int, addresses: Sequence[str]) -> set[str]:
        """The subset of ``addresses`` (lower-cased) suppressed for the tenant."""
        ...

    # Acceptance and records.
    async def accept(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_keys: Sequence[IdempotencyKey] = (),
    ) -> None:
        """Store bodies, messages and records in one durable transaction, and fill in
        the response of each of ``idempotency_keys``' pending claims (found by tenant,
        key and claim token) in it; ``ClaimLost`` (nothing stored) when a claim is no
        longer pending under its token."""
        ...

    async def accept_unless_suppressed(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_keys: Sequence[IdempotencyKey] = (),
    ) -> dict[int, set[str]]:
        """``accept``, in the same one transaction, when no recipient of ``submissions``
        is suppressed for its tenant: an empty answer. Otherwise nothing is stored, and
        the answer is the suppressed recipients (lower-cased) by tenant id: one trip to
        the store for the acceptance of mail nobody suppressed."""
        ...

    async def claim_idempotency_key(
        self, claim: IdempotencyKey, expired_before: float, abandoned_before: float
    ) -> IdempotencyKey:
        """Claim ``claim.key`` for ``claim`` (pending, under its token) in one atomic
        statement when the tenant has no such key, or when the one it has was claimed
        before ``expired_before`` or is a pending claim from before ``abandoned_before``;
        returns the key as stored: ``claim`` when claimed, else the one held."""
        ...

    async def release_idempotency_key(self, tenant_id: int, key: str, claim_token: str) -> bool:
        """Remove the tenant's pending claim of ``key`` under ``claim_token``; whether
        there was one (an answered key stays)."""
        ...

    async def sweep_idempotency_keys(self, before: float) -> int:
        """Remove idempotency keys claimed before ``before``; returns how many."""
        ...

    async def add_records(self, records: Sequence[Record]) -> None: ...

    async def list_records(self, message_id: str) -> list[dict[str, Any]]:
        """The JSON objects of a message's records, oldest first."""
        ...

    # The queue.
    async def claim(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueuedMessage]:
        """Lease up to ``limit`` due messages to ``owner``, oldest due first.

        The messages carry the ``lease_token`` this claim drew, new for every
        claim. Like ``settle``, it returns without waiting for the disk: a
        claim lost to a power cut only leaves the message queued (no process
        crash loses it).
        """
        ...

    async def due_counts(
        self, queues: Sequence[str], now: float, cap: int
    ) -> dict[str, tuple[int, float | None]]:
        """Per queue: how many queued messages are due at ``now`` (counting no further
        than ``cap``: each count reads at most ``cap`` index entries) and the earliest
        due time of its queued messages (None when none is queued)."""
        ...

    async def claim_queues(
        self, wanted: Sequence[tuple[str, int]], owner: str, now: float, lease_seconds: float
    ) -> dict[str, ClaimedQueue]:
        """For each (queue, limit) of ``wanted``, lease to ``owner`` up to ``limit`` queued
        messages of the queue due at ``now``, highest priority first, then earliest due
        (returned in that order), and say when the queue's next queued message is due;
        one transaction, one new lease token. Commits without waiting for the disk, like
        ``claim``."""
        ...

    async def reap_leases(self, now: float) -> list[str]:
        """Return leased messages whose lease expired at ``now`` to the queue, due at
        ``min(due_at, now)``, their lease cleared; the distinct queues touched, sorted."""
        ...

    async def queues_changed(self, after_bump: int) -> list[QueueInfo]:
        """The queues whose bump is above ``after_bump``, by bump (then name)."""
        ...

    async def queue_next_due(self, queue: str) -> float | None:
        """The earliest due time of ``queue``'s queued messages; None when it has none."""
        ...

    async def delay_queue(
        self,
        queue: str,
        now: float,
        until: float,
        limit: int,
        record: Callable[[QueuedMessage], Record],
    ) -> int:
        """Make up to ``limit`` of ``queue``'s queued messages due at ``now`` due at
        ``until`` instead, storing ``record(message)`` (the message as it was) for each,
        in one transaction; returns how many."""
        ...

    async def undelay_queue(self, queue: str, until: float, now: float) -> int:
        """Make ``queue``'s queued messages due at exactly ``until`` (as ``delay_queue``
        left them) due at ``now``: the wait they were delayed for was lifted early.
        Returns how many."""
        ...

    async def queue_depths(self) -> dict[str, tuple[int, float | None]]:
        """Per queue with queued messages: their count and earliest due time."""
        ...

    # Suspensions, warmup counts, engine status.
    async def add_suspension(self, suspension: Suspension, records: Sequence[Record]) -> Suspension:
        """Store ``suspension`` and ``records`` in one transaction; it with its new id."""
        ...

    async def active_suspensions(self, now: float) -> list[Suspension]:
        """Suspensions whose ``until`` is after ``now``, by id."""
        ...

    async def remove_suspensions(self, scope: str, target: str, records: Sequence[Record]) -> int:
        """Remove every suspension of (``scope``, ``target``), expired or not, and store
        ``records`` when one was removed, in one transaction; returns how many."""
        ...

    async def add_warmup_counts(self, counts: Sequence[WarmupCount]) -> None:
        """Add ``counts`` to the stored ones of the same (source, provider, day)."""
        ...

    async def warmup_history(self, since_day: int) -> list[WarmupCount]:
        """Day counts from ``since_day`` on, by source, provider and day."""
        ...

    async def put_status(self, owner: str, data: str, now: float) -> None:
        """Store ``owner``'s status report ``data`` (JSON text) as of ``now``."""
        ...

    async def list_status(self, since: float) -> list[tuple[str, str, float]]:
        """(owner, data, updated_at) of reports updated at or after ``since``, by owner."""
        ...

    async def renew(self, leases: Sequence[tuple[str, str]], until: float) -> int:
        """Extend to ``until`` the leases still held of ``leases`` (message id, lease
        token); return how many.

        A message claimed again since (under another token) or settled is left
        alone. Commits without waiting for the disk, like ``claim``.
        """
        ...

    async def settle(self, settled: Sequence[tuple[Settlement, Record]]) -> set[str]:
        """Apply attempt results, each with its record, in one transaction.

        A settlement applies only while its message is leased under its
        ``lease_token``; its record is stored only if it applied. Returns the
        ids of the messages whose settlement applied. The commit does not wait
        for the disk (only ``accept`` does): a settlement lost to a power cut
        leaves the lease to expire and the attempt is made again, which keeps
        delivery at least once and costs no flush.
        """
        ...

    async def get_body(self, submission_id: str) -> bytes | None: ...

    async def get_bodies(self, submission_ids: Sequence[str]) -> dict[str, bytes]:
        """Bodies by submission id; missing ids are absent from the result."""
        ...

    async def records_after(self, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Records with a sequence number above ``seq``, in order: for following the log."""
        ...

    async def last_record_seq(self) -> int:
        """The highest record sequence number (0 when there are none)."""
        ...

    # Stats rollups (``engine.stats``).
    async def message_facts(self, message_ids: Sequence[str]) -> dict[str, MessageFacts]:
        """The campaign, sender and recipient domain of those of ``message_ids`` stored,
        by id: what the stats rollup counts the records about them by."""
        ...

    async def lease_stats(self, owner: str, now: float, lease_seconds: float) -> LogPosition | None:
        """Take or renew, for ``owner``, the lease of applying stats (held by one process
        at a time) until ``now + lease_seconds``; the log position counted to, or None
        while another owner's lease runs."""
        ...

    async def apply_stats(
        self, expected: LogPosition, reached: LogPosition, counts: Sequence[StatCount]
    ) -> bool:
        """Add ``counts`` to the rollup and move its position from ``expected`` to
        ``reached`` (``records_since``), in one transaction; False, changing nothing,
        when the position is no longer ``expected`` (the records were counted already)."""
        ...

    async def stat_totals(
        self, tenant_id: int, query: StatsQuery
    ) -> tuple[list[StatTotal], list[BounceTotal]]:
        """The tenant's rollup summed per group of ``query`` (metrics, and bounces by
        category), filtered by it; isolated by RLS on PostgreSQL."""
        ...

    async def get_message(self, message_id: str) -> QueuedMessage | None: ...

    async def list_submission(self, submission_id: str) -> list[QueuedMessage]: ...

    async def tenant_message(
        self, tenant_id: int, message_id: str
    ) -> tuple[QueuedMessage, list[dict[str, Any]]] | None:
        """The tenant's message ``message_id`` with its records' JSON objects, oldest
        first; None when it does not exist or is another tenant's."""
        ...

    async def queue_summary(self, tenant_id: int | None = None) -> list[QueueCount]:
        """Messages by queue and state, every tenant's or only ``tenant_id``'s (isolated
        by RLS on PostgreSQL too)."""
        ...

    async def tenant_messages(self, tenant_id: int, limit: int) -> list[QueuedMessage]:
        """A tenant's messages, newest first; isolated by RLS on PostgreSQL."""
        ...

    # Operators' hands on the queue (Postfix ``postsuper``).
    async def queue_messages(self, queue: str, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` messages waiting in scheduled queue ``queue`` (queued or being
        delivered), the soonest due first."""
        ...

    async def list_shunted(self, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` shunted messages, the longest parked first."""
        ...

    async def requeue_shunted(
        self, message_ids: Sequence[str], now: float, records: Sequence[Record]
    ) -> list[str]:
        """Queue those of ``message_ids`` that are shunted again, due at ``now``, their
        attempts and last error kept, and store the ``records`` about them, in one
        transaction; returns the ids requeued, sorted."""
        ...

    async def remove_messages(
        self, message_ids: Sequence[str], records: Sequence[Record]
    ) -> list[str]:
        """Remove those of ``message_ids`` that are queued or shunted, and the bodies
        no message needs any more, and store the ``records`` about them, in one
        transaction; returns the ids removed, sorted."""
        ...

    # Provisioning: listings and removals (``engine.provisioning``).
    async def tenant_messages_in(
        self, tenant_id: int, states: Collection[MessageState], limit: int
    ) -> list[QueuedMessage]:
        """Up to ``limit`` of a tenant's messages in ``states``, the oldest first."""
        ...

    async def remove_tenant(self, tenant_id: int) -> bool:
        """Remove the tenant with its sending domains, tracking domains, SMTP users, API
        keys, suppressions, stats rollup and finished messages and their bodies, in one
        transaction; its records stay.
        While it has messages queued, leased or shunted, raises ``InUse`` and changes
        nothing. False when there is no such tenant."""
        ...

    async def remove_domain(self, name: str, tenant_id: int | None = None) -> bool:
        """Remove the sending domain ``name`` and its DKIM key (with ``tenant_id``, only
        if it is that tenant's; RLS on PostgreSQL); False if absent."""
        ...

    async def list_smtp_users(self, tenant_id: int) -> list[SmtpUser]:
        """A tenant's SMTP users, by username; isolated by RLS on PostgreSQL."""
        ...

    async def remove_smtp_user(self, username: str, tenant_id: int | None = None) -> bool:
        """Remove the SMTP user ``username`` (with ``tenant_id``, only if it is that
        tenant's; RLS on PostgreSQL); False if absent."""
        ...

    async def list_suppressions(
        self,
        tenant_id: int,
        after: str,
        limit: int,
        where: SuppressionFilter = EVERY_SUPPRESSION,
    ) -> list[Suppression]:
        """Up to ``limit`` of a tenant's suppressions matching ``where`` with an address
        above ``after`` (``""`` for the first page), by address; isolated by RLS on
        PostgreSQL."""
        ...

    async def add_new_suppressions(self, suppressions: Sequence[Suppression]) -> int:
        """Insert those of ``suppressions`` whose (tenant, address) is not suppressed yet
        (an address already suppressed keeps its reason and time), in one transaction;
        how many were inserted. All of one tenant: isolated by RLS on PostgreSQL."""
        ...

    async def remove_suppression(self, tenant_id: int, address: str) -> bool:
        """Remove (tenant, address), the address compared case-insensitively; False if
        absent. Isolated by RLS on PostgreSQL."""
        ...

    # Inbound bounces and complaints (``bounce_in``).
    async def accept_inbound(self, messages: Sequence[InboundMessage]) -> None:
        """Store received messages as ``pending`` in one durable transaction."""
        ...

    async def claim_inbound(
        self, now: float, lease_seconds: float, limit: int
    ) -> list[InboundMessage]:
        """Lease up to ``limit`` pending messages not leased (or whose lease expired at
        ``now``) until ``now + lease_seconds``, the oldest received first."""
        ...

    async def finish_inbound(
        self,
        inbound_id: str,
        state: InboundState,
        reason: str,
        now: float,
        *,
        records: Sequence[Record] = (),
        suppressions: Sequence[Suppression] = (),
        soft_bounces: Sequence[SoftBounce] = (),
    ) -> bool:
        """Mark a pending message ``state`` (done or unmatched, with ``reason``) and store
        its records, suppressions (an address already suppressed keeps its reason) and
        soft bounces, in one transaction. False, storing nothing, when it is no longer
        pending (processed already): processing twice stores once."""
        ...

    async def soft_bounce_count(self, tenant_id: int, address: str, since: float) -> int:
        """Soft bounces stored for (tenant, address) at or after ``since``."""
        ...

    async def list_inbound(self, state: InboundState, limit: int) -> list[InboundMessage]:
        """Up to ``limit`` received messages in ``state``, the newest first."""

    # Tracking domains (``engine.provisioning``).
    async def add_tracking_domain(self, domain: TrackingDomain) -> TrackingDomain:
        """Store ``domain``; it with its new id. When it is the default, the tenant's
        other tracking domains stop being one, in the same transaction. ``Conflict``
        when the name is taken, ``NotFound`` when the tenant is unknown."""
        ...

    async def get_tracking_domain(
        self, name: str, tenant_id: int | None = None
    ) -> TrackingDomain | None:
        """The tracking domain ``name``; with ``tenant_id``, only that tenant's (RLS on
        PostgreSQL)."""
        ...

    async def list_tracking_domains(self, tenant_id: int | None) -> list[TrackingDomain]:
        """A tenant's tracking domains (every tenant's for None), by name; a tenant's
        isolated by RLS on PostgreSQL."""
        ...

    async def set_default_tracking_domain(self, name: str) -> bool:
        """Make ``name`` its tenant's default tracking domain and the tenant's others
        not, in one transaction; False if absent."""
        ...

    async def remove_tracking_domain(self, name: str, tenant_id: int | None = None) -> bool:
        """Remove the tracking domain ``name`` (with ``tenant_id``, only if it is that
        tenant's; RLS on PostgreSQL); False if absent."""
        ...

    # A tenant's records (the admin API; RLS on PostgreSQL).
    async def query_records(
        self, tenant_id: int, query: RecordQuery, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` of the tenant's records matching ``query``, as (seq, JSON object),
        by seq from after ``query.after_seq``."""
        ...

    # Webhooks: a tenant's endpoints (the admin API; RLS on PostgreSQL).
    async def add_webhook(self, webhook: Webhook) -> Webhook:
        """Store ``webhook``; ``Conflict`` when its id is taken, ``NotFound`` for an
        unknown tenant."""
        ...

    async def get_webhook(self, tenant_id: int, webhook_id: str) -> Webhook | None:
        """The tenant's webhook ``webhook_id``; None when absent or another tenant's."""
        ...

    async def list_webhooks(self, tenant_id: int) -> list[Webhook]:
        """The tenant's webhooks, oldest first."""
        ...

    async def update_webhook(self, webhook: Webhook) -> bool:
        """Replace url, record types, format, batch size, enabled and updated_at of the
        webhook ``webhook.id`` of ``webhook.tenant_id``; False when it has none such."""
        ...

    async def remove_webhook(self, tenant_id: int, webhook_id: str) -> bool:
        """Remove the tenant's webhook and its deliveries; False when it has none such."""
        ...

    async def list_webhook_deliveries(
        self, tenant_id: int, webhook_id: str, before_id: int | None, limit: int
    ) -> list[WebhookDelivery]:
        """Up to ``limit`` deliveries of the tenant's webhook with an id below ``before_id``
        (None: from the newest), the newest first."""
        ...

    # The webhook outbox (the dispatcher and the sender; every tenant).
    async def enabled_webhooks(self) -> list[Webhook]:
        """Every tenant's enabled webhooks, by id."""
        ...

    async def webhook_position(self) -> LogPosition:
        """How far the dispatcher has followed the record log."""
        ...

    async def records_since(
        self, position: LogPosition, limit: int
    ) -> tuple[list[LoggedRecord], LogPosition]:
        """Up to ``limit`` records after ``position`` whose transactions ended (a later
        call never finds one behind the position it returned), in log order, and the
        position after the last one (``position`` when none)."""
        ...

    async def log_end(self, position: LogPosition) -> LogPosition:
        """The position after the last record ``records_since`` could return now
        (``position`` when it is already there)."""
        ...

    async def queue_webhook_deliveries(
        self,
        expected: LogPosition,
        reached: LogPosition,
        deliveries: Sequence[NewWebhookDelivery],
        now: float,
    ) -> bool:
        """Queue ``deliveries`` (due at ``now``) and move the dispatcher's position from
        ``expected`` to ``reached``, in one transaction; False, storing nothing, when
        the position is no longer ``expected`` (another process dispatched meanwhile)."""
        ...

    async def claim_webhook_deliveries(
        self, now: float, lease_seconds: float, limit: int, skip: Collection[str]
    ) -> list[WebhookDelivery]:
        """Lease up to ``limit`` pending deliveries due at ``now`` (not leased, or their
        lease expired) of enabled webhooks not in ``skip``, the earliest due first, under
        one new lease token until ``now + lease_seconds``."""
        ...

    async def finish_webhook_delivery(self, attempt: WebhookAttempt) -> bool:
        """Apply ``attempt`` while the delivery is still leased under its token, clearing
        the lease; False, changing nothing, otherwise."""
        ...

    async def purge_webhook_deliveries(self, before: float) -> int:
        """Remove delivered and failed deliveries last updated before ``before``; how many."""

    # API keys (``engine.provisioning``).
    async def add_api_key(self, key: ApiKey) -> ApiKey:
        """Store ``key``; it with its new id. ``Conflict`` when the prefix is taken,
        ``NotFound`` when the tenant is unknown."""
        ...

    async def get_api_key(self, prefix: str) -> ApiKey | None:
        """The key of ``prefix``, revoked or not, whichever tenant's: authentication
        learns the tenant from it."""
        ...

    async def list_api_keys(self, tenant_id: int) -> list[ApiKey]:
        """A tenant's keys, revoked ones too, oldest first; on PostgreSQL under the
        tenant's row-level security."""
        ...

    async def revoke_api_key(
        self, prefix: str, now: float, tenant_id: int | None = None
    ) -> ApiKey | None:
        """Mark the key of ``prefix`` revoked at ``now`` (one revoked already keeps its
        time); the key as it is then, None when there is no such key (of ``tenant_id``
        when given: on PostgreSQL under its row-level security)."""
        ...

    # Campaigns (``engine.campaigns``): a tenant's, on PostgreSQL under its row-level
    # security and filtered by it too.
    async def add_campaign(self, campaign: Campaign) -> Campaign:
        """Store ``campaign``; it with its new id. ``Conflict`` when the tenant has a
        campaign of that name, ``NotFound`` when the tenant is unknown."""
        ...

    async def get_campaign(self, tenant_id: int, campaign_id: int) -> Campaign | None:
        """The tenant's campaign ``campaign_id``; None if absent or another tenant's."""
        ...

    async def list_campaigns(self, tenant_id: int) -> list[Campaign]:
        """The tenant's campaigns, newest first."""
        ...

    async def campaigns_in(self, states: Collection[CampaignState]) -> list[Campaign]:
        """Every tenant's campaigns in ``states``, by id (expansion finds its work)."""
        ...

    async def campaign_routes(self) -> list[CampaignRoute]:
        """Every tenant's campaigns that set a pool or a tracking domain, by id (the
        snapshots routing and link rewriting read)."""
        ...

    async def set_campaign_state(
        self,
        tenant_id: int,
        campaign_id: int,
        state: CampaignState,
        now: float,
        *,
        when: Collection[CampaignState],
    ) -> Campaign | None:
        """Move the tenant's campaign to ``state`` if it is in one of ``when`` (one
        statement: two callers cannot both move it); it as it is then, None when it
        is absent or was in another state."""
        ...

    async def add_campaign_recipients(
        self, tenant_id: int, campaign_id: int, recipients: Sequence[CampaignRecipient]
    ) -> None:
        """Store a batch of recipient rows of the tenant's campaign in one transaction;
        ``Conflict`` when a row number is taken."""
        ...

    async def last_campaign_row(self, tenant_id: int, campaign_id: int) -> int:
        """The highest row number of the campaign's recipients (0 when it has none)."""
        ...

    async def pending_campaign_recipients(
        self, tenant_id: int, campaign_id: int, after_row: int, limit: int
    ) -> list[CampaignRecipient]:
        """Up to ``limit`` pending rows numbered above ``after_row``, by row."""
        ...

    async def mark_campaign_recipients(
        self, tenant_id: int, campaign_id: int, marks: Sequence[RecipientMark]
    ) -> None:
        """Set each row's status, message id and reason, in one transaction."""
        ...

    async def campaign_counts(self, tenant_id: int, campaign_id: int) -> dict[str, int]:
        """The campaign's rows by status (``pending``, ``queued``...); a status no row
        has is absent."""
        ...

    async def campaign_messages_in(
        self, tenant_id: int, campaign: str, states: Collection[MessageState], limit: int
    ) -> list[QueuedMessage]:
        """Up to ``limit`` of the tenant's messages of ``campaign`` in ``states``."""
        ...


PENDING_STATES = frozenset({MessageState.QUEUED, MessageState.LEASED, MessageState.SHUNTED})
"""States of a message not finished: a tenant holding one cannot be removed."""


def open_store(url: str, pool_size: int = 10) -> Store:
    """The store for a ``database.url``: ``sqlite:PATH`` or ``postgresql://...``
    (with at most ``pool_size`` connections)."""
    if url.startswith(("postgresql://", "postgres://")):
        from engine.store.postgres import PostgresStore

        return PostgresStore(url, pool_size)
    path = sqlite_path(url)
    if path is not None:
        from engine.store.sqlite import SqliteStore

        return SqliteStore(path)
    raise ValueError(f"unsupported database url scheme: {url.split(':', 1)[0]!r}")
