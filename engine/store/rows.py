"""Row shapes shared by both store backends: how values map to table columns.

Pure conversions between the model and the tuples the drivers bind, so the
SQLite and PostgreSQL stores agree on column order by construction; and the
lease tokens both draw for their claims.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from engine.model import (
    ApiKey,
    ApiScope,
    Campaign,
    CampaignRecipient,
    CampaignState,
    CampaignTemplate,
    IdempotencyKey,
    InboundMessage,
    InboundState,
    MessageState,
    QueuedMessage,
    RecipientStatus,
    Settlement,
    Submission,
    Suppression,
    SuppressionFilter,
    Suspension,
    SuspensionScope,
    TenantOverrides,
    TrackingDomain,
    WarmupCount,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryState,
    WebhookFormat,
)
from engine.records.record import Record
from engine.store import RecordQuery

MESSAGE_FIELDS = (
    "id",
    "submission_id",
    "tenant_id",
    "queue",
    "campaign",
    "sender",
    "recipient",
    "domain",
    "state",
    "due_at",
    "created_at",
    "attempts",
    "lease_owner",
    "lease_expires",
    "lease_token",
    "last_error",
    "priority",
)
MESSAGE_COLUMNS = ", ".join(MESSAGE_FIELDS)
LEASE_TOKEN_BYTES = 16
DOMAIN_COLUMNS = (
    "id, tenant_id, name, selector, algorithm, private_key_sealed, public_key_b64, created_at"
)
TRACKING_DOMAIN_COLUMNS = "id, tenant_id, name, is_default, created_at"
SUSPENSION_COLUMNS = "id, scope, target, reason, created_at, until, origin"
TENANT_OVERRIDE_FIELDS = (
    "tenant_id",
    "pool",
    "priority",
    "daily_quota",
    "rate_quota",
    "updated_at",
)
TENANT_OVERRIDE_COLUMNS = ", ".join(TENANT_OVERRIDE_FIELDS)
RECORD_FIELDS = ("tenant_id", "message_id", "type", "timestamp", "data")

SettledRow = tuple[str, str, str, int, float, str | None]
"""One settled message: (id, lease_token, state, attempts, due_at, error)."""


IDEMPOTENCY_HELD = "request_hash, response, created_at, claim_token, pending"
CLAIM_ATTEMPTS = 5
"""How often a claim is tried when the key it found held is gone before it is read."""


def idempotency_claim_sql(mark: str) -> str:
    """The atomic claim of an idempotency key (parameters: tenant, key, hash, now,
    token, expired-before, abandoned-before; ``mark`` is the driver's numbered
    placeholder prefix): insert, or take over an expired key or an abandoned claim;
    returns the token when claimed, no row when the key is held."""
    return (
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response,"
        f" created_at, claim_token, pending) VALUES ({mark}1, {mark}2, {mark}3, '',"
        f" {mark}4, {mark}5, true) ON CONFLICT (tenant_id, key) DO UPDATE SET"
        " request_hash = excluded.request_hash, response = '',"
        " created_at = excluded.created_at, claim_token = excluded.claim_token,"
        f" pending = true WHERE idempotency_keys.created_at < {mark}6"
        f" OR (idempotency_keys.pending AND idempotency_keys.created_at < {mark}7)"
        " RETURNING claim_token"
    )


def claim_params(
    claim: IdempotencyKey, expired_before: float, abandoned_before: float
) -> tuple[object, ...]:
    """The parameters of ``idempotency_claim_sql`` for ``claim``."""
    return (
        claim.tenant_id,
        claim.key,
        claim.request_hash,
        claim.created_at,
        claim.claim_token,
        expired_before,
        abandoned_before,
    )


def idempotency_key_from_row(tenant_id: int, key: str, row: Sequence[Any]) -> IdempotencyKey:
    """An idempotency key from the columns ``IDEMPOTENCY_HELD``."""
    request_hash, response, created_at, claim_token, pending = row
    return IdempotencyKey(
        tenant_id, key, str(request_hash), str(response), float(created_at), str(claim_token),
        bool(pending),
    )  # fmt: skip


def message_row(m: QueuedMessage) -> tuple[object, ...]:
    """A message as bound to ``MESSAGE_FIELDS``."""
    return (
        m.id,
        m.submission_id,
        m.tenant_id,
        m.queue,
        m.campaign,
        m.sender,
        m.recipient,
        m.domain,
        m.state.value,
        m.due_at,
        m.created_at,
        m.attempts,
        m.lease_owner,
        m.lease_expires,
        m.lease_token,
        m.last_error,
        m.priority,
    )


def message_from_row(row: Mapping[str, Any]) -> QueuedMessage:
    """A message from a row selected with ``MESSAGE_COLUMNS``."""
    fields = dict(row)
    fields["state"] = MessageState(fields["state"])
    return QueuedMessage(**fields)


def settled_row(s: Settlement) -> SettledRow:
    return (s.message_id, s.lease_token, s.state.value, s.attempts, s.due_at, s.error)


def record_row(r: Record) -> tuple[object, ...]:
    """A record as bound to ``RECORD_FIELDS``."""
    return (r.tenant_id, r.id, r.type.value, r.timestamp, r.to_json_line())


def new_lease_token() -> str:
    """A token for one claim: random, so no two claims of any process share one."""
    return secrets.token_hex(LEASE_TOKEN_BYTES)


def records_about(records: Sequence[Record], message_ids: Iterable[str]) -> list[Record]:
    """Those of ``records`` about one of ``message_ids``: an operator's action that
    changed nothing leaves no record."""
    wanted = set(message_ids)
    return [r for r in records if r.id in wanted]


def claim_order(m: QueuedMessage) -> tuple[int, float, str]:
    """The order ``claim_queues`` returns a queue's messages in: priority first, then due time."""
    return (-m.priority, m.due_at, m.id)


def recipients_by_tenant(submissions: Sequence[Submission]) -> dict[int, list[str]]:
    """The submissions' recipients, lower-cased and sorted, by tenant id: what
    ``accept_unless_suppressed`` looks up."""
    wanted: dict[int, set[str]] = {}
    for submission in submissions:
        addresses = wanted.setdefault(submission.tenant_id, set())
        addresses.update(m.recipient.lower() for m in submission.messages)
    return {tenant_id: sorted(addresses) for tenant_id, addresses in wanted.items()}


def queue_rows(submissions: Sequence[Submission]) -> list[tuple[str, int, str, str]]:
    """(name, tenant_id, campaign, domain) of each queue the submissions queue mail in,
    by name (one order for every writer, so upserts cannot deadlock)."""
    queues = {
        m.queue: (m.queue, m.tenant_id, m.campaign, m.domain)
        for s in submissions
        for m in s.messages
        if m.state is MessageState.QUEUED
    }
    return [queues[name] for name in sorted(queues)]


def suppression_row(s: Suppression) -> tuple[int, str, str, float]:
    """A suppression as bound to (tenant_id, address, reason, created_at)."""
    return (s.tenant_id, s.address.lower(), s.reason, s.created_at)


def suppression_conditions(where: SuppressionFilter) -> tuple[list[str], list[object]]:
    """The SQL conditions of ``where``, with ``?`` for each parameter, and the parameters;
    prefixes and suffixes compared with ``substr`` (no ``LIKE`` escaping, one meaning on
    both databases)."""
    conditions: list[str] = []
    params: list[object] = []
    if where.reason:
        conditions.append("substr(reason, 1, ?) = ?")
        params += [len(where.reason), where.reason]
    if where.address_prefix:
        conditions.append("substr(address, 1, ?) = ?")
        params += [len(where.address_prefix), where.address_prefix.lower()]
    if where.domain:
        at_domain = "@" + where.domain.lower()
        conditions.append("substr(address, length(address) - ? + 1) = ?")
        params += [len(at_domain), at_domain]
    if where.since is not None:
        conditions.append("created_at >= ?")
        params.append(where.since)
    if where.until is not None:
        conditions.append("created_at < ?")
        params.append(where.until)
    return conditions, params


def suspension_row(s: Suspension) -> tuple[object, ...]:
    """A suspension as bound to (scope, target, reason, created_at, until, origin)."""
    return (s.scope.value, s.target, s.reason, s.created_at, s.until, s.origin)


def suspension_from_row(row: Mapping[str, Any]) -> Suspension:
    """A suspension from a row selected with ``SUSPENSION_COLUMNS``."""
    fields = dict(row)
    fields["scope"] = SuspensionScope(fields["scope"])
    return Suspension(**fields)


def warmup_row(c: WarmupCount) -> tuple[str, str, int, int, int, int]:
    """A day count as bound to (source, provider, day, sent, deferred, complained)."""
    return (c.source, c.provider, c.day, c.sent, c.deferred, c.complained)


INBOUND_FIELDS = ("id", "received_at", "peer", "mail_from", "rcpt_tos", "data", "state", "reason")
INBOUND_COLUMNS = ", ".join(INBOUND_FIELDS)


def inbound_row(message: InboundMessage) -> tuple[Any, ...]:
    """The ``inbound`` row of a received message (``INBOUND_FIELDS`` order)."""
    return (
        message.id,
        message.received_at,
        message.peer,
        message.mail_from,
        json.dumps(list(message.rcpt_tos)),
        message.data,
        message.state.value,
        message.reason,
    )


def inbound_from_row(row: Mapping[str, Any]) -> InboundMessage:
    """A received message from its row (at least ``INBOUND_FIELDS``)."""
    return InboundMessage(
        id=row["id"],
        received_at=row["received_at"],
        peer=row["peer"],
        mail_from=row["mail_from"],
        rcpt_tos=tuple(json.loads(row["rcpt_tos"])),
        data=bytes(row["data"]),
        state=InboundState(row["state"]),
        reason=row["reason"],
    )


def tracking_domain_from_row(row: Mapping[str, Any]) -> TrackingDomain:
    """A tracking domain from a row selected with ``TRACKING_DOMAIN_COLUMNS`` (SQLite
    gives ``is_default`` as 0 or 1)."""
    fields = dict(row)
    fields["is_default"] = bool(fields["is_default"])
    return TrackingDomain(**fields)


WEBHOOK_FIELDS = (
    "id",
    "tenant_id",
    "url",
    "record_types",
    "format",
    "batch_size",
    "enabled",
    "secret_sealed",
    "created_at",
    "updated_at",
)
WEBHOOK_COLUMNS = ", ".join(WEBHOOK_FIELDS)
WEBHOOK_DELIVERY_FIELDS = (
    "id",
    "webhook_id",
    "tenant_id",
    "payload",
    "record_count",
    "state",
    "attempts",
    "next_at",
    "created_at",
    "updated_at",
    "last_status",
    "last_error",
    "lease_token",
    "lease_expires",
)
WEBHOOK_DELIVERY_COLUMNS = ", ".join(WEBHOOK_DELIVERY_FIELDS)


def webhook_row(w: Webhook) -> tuple[object, ...]:
    """A webhook as bound to ``WEBHOOK_FIELDS`` (record types as a JSON array)."""
    return (
        w.id,
        w.tenant_id,
        w.url,
        json.dumps(list(w.record_types)),
        w.format.value,
        w.batch_size,
        w.enabled,
        w.secret_sealed,
        w.created_at,
        w.updated_at,
    )


def webhook_from_row(row: Mapping[str, Any]) -> Webhook:
    """A webhook from a row selected with ``WEBHOOK_COLUMNS``."""
    return Webhook(
        id=row["id"],
        tenant_id=row["tenant_id"],
        url=row["url"],
        record_types=tuple(json.loads(row["record_types"])),
        format=WebhookFormat(row["format"]),
        batch_size=row["batch_size"],
        enabled=bool(row["enabled"]),
        secret_sealed=bytes(row["secret_sealed"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def webhook_delivery_from_row(row: Mapping[str, Any]) -> WebhookDelivery:
    """A delivery from a row selected with ``WEBHOOK_DELIVERY_COLUMNS``."""
    fields = dict(row)
    fields["state"] = WebhookDeliveryState(fields["state"])
    return WebhookDelivery(**fields)


def record_query(
    tenant_id: int,
    query: RecordQuery,
    limit: int,
    mark: Callable[[], str],
    field_of: Callable[[str], str],
) -> tuple[str, list[object]]:
    """The ``SELECT seq, data`` of up to ``limit`` of the tenant's records matching
    ``query`` by seq (index ``records_tenant``), and the values it binds, in order;
    ``mark`` gives the next placeholder, ``field_of`` the SQL of a top-level field of
    the record's JSON."""
    where = [f"tenant_id = {mark()}", f"seq > {mark()}"]
    args: list[object] = [tenant_id, query.after_seq]
    if query.types:
        types = sorted(query.types)
        where.append(f"type IN ({', '.join(mark() for _ in types)})")
        args.extend(types)
    if query.message_id is not None:
        where.append(f"message_id = {mark()}")
        args.append(query.message_id)
    if query.recipient is not None:
        where.append(f"lower({field_of('recipient')}) = {mark()}")
        args.append(query.recipient.lower())
    if query.since is not None:
        where.append(f"timestamp >= {mark()}")
        args.append(query.since)
    if query.until is not None:
        where.append(f"timestamp < {mark()}")
        args.append(query.until)
    if query.campaign is not None:
        where.append(
            "message_id IN (SELECT id FROM messages"
            f" WHERE messages.tenant_id = records.tenant_id AND campaign = {mark()})"
        )
        args.append(query.campaign)
    args.append(limit)
    sql = f"SELECT seq, data FROM records WHERE {' AND '.join(where)} ORDER BY seq LIMIT {mark()}"
    return sql, args


def tenant_overrides_row(o: TenantOverrides) -> tuple[object, ...]:
    return tuple(getattr(o, name) for name in TENANT_OVERRIDE_FIELDS)


API_KEY_COLUMNS = "id, tenant_id, prefix, name, scopes, secret_hash, created_at, revoked_at"


def api_key_row(key: ApiKey) -> tuple[object, ...]:
    """(tenant_id, prefix, name, scopes, secret_hash, created_at, revoked_at): scopes
    stored as one text, sorted and space-separated."""
    scopes = " ".join(sorted(key.scopes))
    return (
        key.tenant_id,
        key.prefix,
        key.name,
        scopes,
        key.secret_hash,
        key.created_at,
        key.revoked_at,
    )


def api_key_from_row(row: Mapping[str, Any]) -> ApiKey:
    """An API key from a row selected with ``API_KEY_COLUMNS``."""
    fields = dict(row)
    fields["scopes"] = frozenset(ApiScope(s) for s in str(fields["scopes"]).split())
    fields["secret_hash"] = bytes(fields["secret_hash"])
    return ApiKey(**fields)


CAMPAIGN_COLUMNS = (
    "id, tenant_id, name, state, template, tracking_domain, pool, priority, send_at,"
    " created_at, updated_at"
)
CAMPAIGN_INSERT = (
    "INSERT INTO campaigns (tenant_id, name, state, template, tracking_domain, pool,"
    " priority, send_at, created_at, updated_at)"
)
CAMPAIGN_ROUTES_SQL = (
    "SELECT tenant_id, name, pool, tracking_domain FROM campaigns"
    " WHERE pool IS NOT NULL OR tracking_domain IS NOT NULL ORDER BY id"
)
RECIPIENT_COLUMNS = "row_no, address, variables, status, message_id, reason"
RECIPIENT_INSERT = (
    "INSERT INTO campaign_recipients (campaign_id, tenant_id, row_no, address, variables, status,"
    " reason)"
)


def campaign_row(campaign: Campaign) -> tuple[object, ...]:
    """The values of ``CAMPAIGN_INSERT``: the template stored as one JSON text."""
    template = campaign.template
    stored = {
        "from": template.sender,
        "subject": template.subject,
        "html": template.html,
        "text": template.text,
        "headers": [list(h) for h in template.headers],
    }
    return (
        campaign.tenant_id,
        campaign.name,
        campaign.state.value,
        json.dumps(stored, separators=(",", ":")),
        campaign.tracking_domain,
        campaign.pool,
        campaign.priority,
        campaign.send_at,
        campaign.created_at,
        campaign.updated_at,
    )


def campaign_from_row(row: Mapping[str, Any]) -> Campaign:
    """A campaign from a row selected with ``CAMPAIGN_COLUMNS``."""
    fields = dict(row)
    stored = json.loads(fields["template"])
    fields["template"] = CampaignTemplate(
        sender=stored["from"],
        subject=stored["subject"],
        html=stored["html"],
        text=stored["text"],
        headers=tuple((str(n), str(v)) for n, v in stored["headers"]),
    )
    fields["state"] = CampaignState(fields["state"])
    return Campaign(**fields)


def recipient_rows(
    campaign_id: int, tenant_id: int, recipients: Sequence[CampaignRecipient]
) -> list[tuple[object, ...]]:
    """The values of ``RECIPIENT_INSERT`` for ``recipients``."""
    return [
        (
            campaign_id,
            tenant_id,
            r.row,
            r.address,
            json.dumps(r.variables, separators=(",", ":")),
            r.status.value,
            r.reason,
        )
        for r in recipients
    ]


def recipient_from_row(row: Mapping[str, Any]) -> CampaignRecipient:
    """A recipient row from a row selected with ``RECIPIENT_COLUMNS``."""
    fields = dict(row)
    fields["row"] = fields.pop("row_no")
    fields["variables"] = json.loads(fields["variables"])
    fields["status"] = RecipientStatus(fields["status"])
    return CampaignRecipient(**fields)
