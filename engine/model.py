"""The engine's data types: tenants, domains, SMTP users, API keys, queued messages.

Pure values shared by the store, the acceptance path and the CLI. Times are
POSIX seconds (float, UTC). A message is one recipient of one submission.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class MessageState(enum.StrEnum):
    """Where a message is in its life."""

    QUEUED = "queued"
    """Waiting for its due time, then claimable by a delivery worker."""
    LEASED = "leased"
    """Claimed by a worker until ``lease_expires``, which its running attempt keeps
    renewing; claimable again only once it expired (its process died)."""
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"
    """Accepted but never queued: the recipient is on the tenant's suppression list."""
    SHUNTED = "shunted"
    """Parked after an unexpected error; kept for an operator to inspect."""


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class TenantOverrides:
    """What an operator set for a tenant in the store (``penguin tenant set``, the API),
    over its ``[tenants.NAME]`` table of the config: None leaves the config's value.

    ``daily_quota`` counts messages (recipients) accepted per UTC day, 0 for no quota;
    ``rate_quota`` is a throttle spec ``N/period[,max_burst=B]``, ``""`` for none.
    """

    tenant_id: int
    pool: str | None = None
    priority: str | None = None
    daily_quota: int | None = None
    rate_quota: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SendingDomain:
    """A domain a tenant sends from, with its DKIM key.

    ``private_key_sealed`` is the PEM private key encrypted with the engine
    secret (see ``engine.sealing``); it is never printed or logged.
    """

    tenant_id: int
    name: str
    selector: str
    algorithm: str
    private_key_sealed: bytes = field(repr=False)
    public_key_b64: str
    created_at: float
    id: int = 0


@dataclass(frozen=True, slots=True)
class SmtpUser:
    tenant_id: int
    username: str
    password_hash: str = field(repr=False)
    created_at: float
    id: int = 0


class ApiScope(enum.StrEnum):
    """What a tenant's API key may do."""

    SEND = "send"
    """Submit messages."""
    READ = "read"
    """Read messages, records and settings."""
    MANAGE = "manage"
    """Change domains, SMTP users, suppressions, webhooks and API keys."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A tenant's API key, identified by ``prefix`` (the token is
    ``pm_<prefix>_<secret>``). Only the SHA-256 of the secret is kept, never the
    token; a revoked key (``revoked_at`` set) authenticates nothing."""

    tenant_id: int
    prefix: str
    name: str
    scopes: frozenset[ApiScope]
    secret_hash: bytes = field(repr=False)
    created_at: float
    revoked_at: float | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class Suppression:
    tenant_id: int
    address: str
    reason: str
    created_at: float


@dataclass(frozen=True, slots=True)
class SuppressionFilter:
    """Which suppressions ``list_suppressions`` returns; every field set must hold."""

    reason: str = ""
    """The reason starts with this (``bounce``, ``complaint``, ``unsubscribe``, ...)."""
    address_prefix: str = ""
    """The address starts with this (lower-case)."""
    domain: str = ""
    """The address is at this domain (lower-case)."""
    since: float | None = None
    """Suppressed at or after this time."""
    until: float | None = None
    """Suppressed before this time."""


EVERY_SUPPRESSION = SuppressionFilter()
"""The filter every suppression matches."""


@dataclass(frozen=True, slots=True)
class TrackingDomain:
    """A host name a tenant's tracking links and pixels are served on (a CNAME to the
    edge); ``is_default`` for the one its mail uses unless a campaign names another."""

    tenant_id: int
    name: str
    is_default: bool
    created_at: float
    id: int = 0


@dataclass(frozen=True, slots=True)
class TrackingPolicy:
    """How a tenant's (or one campaign's) mail is tracked: on which tracking domain,
    and whether opens, clicks and one-click unsubscribe are on."""

    domain: str
    opens: bool = True
    clicks: bool = True
    unsubscribe: bool = True


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One recipient of a submission, as stored in the queue."""

    id: str
    submission_id: str
    tenant_id: int
    queue: str
    campaign: str
    sender: str
    recipient: str
    domain: str
    state: MessageState
    due_at: float
    created_at: float
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires: float | None = None
    lease_token: str | None = None
    """Names the claim that leased the message; each claim draws a new one."""
    last_error: str | None = None
    priority: int = 0
    """0 (bulk) to 9 (transactional): a queue's claims take higher priorities first."""


@dataclass(frozen=True, slots=True)
class Submission:
    """One accepted transaction: the body stored once, a message per recipient."""

    id: str
    tenant_id: int
    body: bytes = field(repr=False)
    messages: tuple[QueuedMessage, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A tenant's idempotency key: the hash of the request that first used it and
    the response (JSON text) that request got.

    A key is claimed before its acceptance (``pending``, no response yet, under a
    random ``claim_token``); the acceptance fills in the response by that token."""

    tenant_id: int
    key: str
    request_hash: str
    response: str
    created_at: float
    """When the key was claimed."""
    claim_token: str = ""
    pending: bool = False


@dataclass(frozen=True, slots=True)
class QueueCount:
    """One row of the queue summary."""

    queue: str
    state: MessageState
    count: int
    next_due: float | None = None
    """The earliest due time among these messages."""
    last_error: str | None = None
    """One of their last errors (the reply that made them wait or fail)."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """The end of one delivery attempt for a leased message.

    Applied only while the message is still leased under ``lease_token``: a
    holder whose lease was claimed again changes nothing. ``state`` QUEUED
    returns the message to the queue, due at ``due_at``; a final state
    (delivered, bounced, expired, shunted) ends it.
    """

    message_id: str
    lease_token: str
    state: MessageState
    attempts: int
    due_at: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A scheduled queue as the store lists it: ``bump`` grows each time mail is added."""

    name: str
    tenant_id: int
    campaign: str
    domain: str
    bump: int


class SuspensionScope(enum.StrEnum):
    """What a suspension stops, and the form of its target."""

    LANE = "lane"
    """Target ``SOURCE|SITE``."""
    SOURCE = "source"
    """Target a source name."""
    SOURCE_PROVIDER = "source_provider"
    """Target ``SOURCE|PROVIDER``."""
    TENANT = "tenant"
    """Target a tenant name."""
    CAMPAIGN = "campaign"
    """Target ``TENANT:CAMPAIGN``."""


@dataclass(frozen=True, slots=True)
class Suspension:
    """No mail goes out for ``scope``/``target`` from ``created_at`` until ``until``.

    ``origin`` says who set it: ``"admin"`` or the backoff rule's name.
    """

    scope: SuspensionScope
    target: str
    reason: str
    created_at: float
    until: float
    origin: str
    id: int = 0


@dataclass(frozen=True, slots=True)
class WarmupCount:
    """Messages of one source to one provider on one UTC day (days since the epoch)."""

    source: str
    provider: str
    day: int
    sent: int
    deferred: int = 0
    complained: int = 0


class InboundState(enum.StrEnum):
    """Where a message received on the bounce listener is."""

    PENDING = "pending"
    """Stored raw, waiting to be parsed and acted on."""
    DONE = "done"
    """Attributed to our mail; its records and suppressions are stored."""
    UNMATCHED = "unmatched"
    """Nothing could be attributed; kept with the reason for an operator."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message the bounce listener accepted (a DSN, a complaint, or other mail)."""

    id: str
    received_at: float
    peer: str
    """The client's IP address."""
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes = field(repr=False)
    state: InboundState = InboundState.PENDING
    reason: str = ""
    """Why it is unmatched; empty otherwise."""


@dataclass(frozen=True, slots=True)
class SoftBounce:
    """One soft failure of ``address`` reported by inbound message ``inbound_id``."""

    inbound_id: str
    tenant_id: int
    address: str
    at: float


class WebhookFormat(enum.StrEnum):
    """How a webhook's records are posted."""

    SINGLE = "single"
    """One record per POST: the body is the record's JSON object."""
    BATCH = "batch"
    """Up to the webhook's ``batch_size`` records per POST: a JSON array, in log order."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """A tenant's endpoint that is posted the records of ``record_types`` (all when empty).

    ``secret_sealed`` is the signing secret sealed with the engine secret
    (``engine.sealing``); the tenant sees the secret once, when it is made.
    """

    id: str
    tenant_id: int
    url: str
    record_types: tuple[str, ...]
    format: WebhookFormat
    batch_size: int
    enabled: bool
    secret_sealed: bytes = field(repr=False)
    created_at: float
    updated_at: float


class WebhookDeliveryState(enum.StrEnum):
    """Where one POST of the webhook outbox is."""

    PENDING = "pending"
    """Waiting for ``next_at`` (its first attempt or a retry)."""
    DELIVERED = "delivered"
    """The endpoint answered 2xx."""
    FAILED = "failed"
    """Retried until the retry time ran out; no more attempts."""


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One POST of the webhook outbox: its body, its attempts and how the last one went."""

    id: int
    webhook_id: str
    tenant_id: int
    payload: str = field(repr=False)
    """The JSON body posted (an object, or an array for a batch)."""
    record_count: int
    state: WebhookDeliveryState
    attempts: int
    next_at: float
    created_at: float
    updated_at: float
    last_status: int | None = None
    """The HTTP status of the last attempt; None before one or when none came back."""
    last_error: str | None = None
    lease_token: str | None = None
    lease_expires: float | None = None


class CampaignState(enum.StrEnum):
    """Where a campaign is: ``draft`` takes recipients; ``scheduled`` starts at its
    ``send_at``; ``running`` expands; ``paused`` holds expansion and its queued mail;
    ``cancelled`` and ``done`` are final."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class RecipientStatus(enum.StrEnum):
    """A campaign recipient row's status: pending until expansion accepts it (queued)
    or skips it (suppressed; failed: its message could not be made or accepted).
    Invalid rows are reported at upload and never stored."""

    PENDING = "pending"
    QUEUED = "queued"
    SUPPRESSED = "suppressed"
    INVALID = "invalid"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CampaignTemplate:
    """The message every recipient gets, its fields Jinja2 templates (sandboxed)."""

    sender: str
    """The From address (a sending domain of the tenant); also the envelope sender."""
    subject: str
    html: str | None = None
    text: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Campaign:
    """A tenant's campaign; ``name`` is the campaign of its queues."""

    id: int
    tenant_id: int
    name: str
    state: CampaignState
    template: CampaignTemplate
    tracking_domain: str | None
    pool: str | None
    priority: str | None
    send_at: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class CampaignRoute:
    """The way out a campaign created through the API sets for its mail (None: the
    config's or the tenant's): read by routing and by link rewriting."""

    tenant_id: int
    name: str
    pool: str | None
    tracking_domain: str | None


@dataclass(frozen=True, slots=True)
class CampaignRecipient:
    """One row of a campaign's recipient list (``row`` counts from 1)."""

    row: int
    address: str
    variables: dict[str, Any]
    status: RecipientStatus = RecipientStatus.PENDING
    message_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RecipientMark:
    """What expansion decided for one row."""

    row: int
    status: RecipientStatus
    message_id: str | None = None
    reason: str | None = None
