"""The PostgreSQL store: ``Store`` on an asyncpg pool, for several engine processes.

The pool is created on first use. The engine connects as the owner of the
tables, so row-level security does not restrict it; code acting for one
tenant uses ``tenant_scope``, which drops to the ``penguin_tenant`` role with
``penguin.tenant_id`` set, and the policies created by the migrations show
it that tenant's rows only.

Delivery workers in any number of processes share the queue: ``claim`` locks
due rows with ``FOR UPDATE SKIP LOCKED``, so no message is leased twice.
``settle`` applies a batch of attempt results and logs their records in one
statement over per-column arrays (``UPDATE ... FROM unnest(...)`` and an
``INSERT`` in a data-modifying CTE), as ``accept`` stores a batch in one; claims,
renewals and settlements do not wait for the WAL flush (only acceptance must be
on disk before its reply). Pooled connections carry no session state, so the
pool does not reset them between uses. Submission
processes announce new mail with ``NOTIFY penguin_accepted``; delivery
processes ``LISTEN`` on a connection of their own and claim at once.
``migrate`` holds an advisory lock, so processes starting together apply
each migration once. Unique violations become ``Conflict``, foreign-key
violations (unknown tenant) ``NotFound``, other server errors
``StoreError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

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
)
from engine.records.record import Record
from engine.stats.counts import MessageFacts, StatCount
from engine.stats.report import BounceTotal, StatsQuery, StatTotal
from engine.store import (
    PENDING_STATES,
    ClaimedQueue,
    ClaimLost,
    Conflict,
    InUse,
    LoggedRecord,
    LogPosition,
    NewWebhookDelivery,
    NotFound,
    RecordQuery,
    StoreError,
    WebhookAttempt,
    stats_sql,
)
from engine.store.migrations import migration_files
from engine.store.rows import (
    API_KEY_COLUMNS,
    CAMPAIGN_COLUMNS,
    CAMPAIGN_INSERT,
    CAMPAIGN_ROUTES_SQL,
    CLAIM_ATTEMPTS,
    DOMAIN_COLUMNS,
    IDEMPOTENCY_HELD,
    INBOUND_COLUMNS,
    INBOUND_FIELDS,
    MESSAGE_COLUMNS,
    MESSAGE_FIELDS,
    RECIPIENT_COLUMNS,
    RECIPIENT_INSERT,
    RECORD_FIELDS,
    SUSPENSION_COLUMNS,
    TENANT_OVERRIDE_COLUMNS,
    TRACKING_DOMAIN_COLUMNS,
    WEBHOOK_COLUMNS,
    WEBHOOK_DELIVERY_COLUMNS,
    WEBHOOK_FIELDS,
    api_key_from_row,
    api_key_row,
    campaign_from_row,
    campaign_row,
    claim_order,
    claim_params,
    idempotency_claim_sql,
    idempotency_key_from_row,
    inbound_from_row,
    inbound_row,
    message_from_row,
    message_row,
    new_lease_token,
    queue_rows,
    recipient_from_row,
    recipient_rows,
    recipients_by_tenant,
    record_query,
    record_row,
    records_about,
    settled_row,
    suppression_conditions,
    suppression_row,
    suspension_from_row,
    suspension_row,
    tenant_overrides_row,
    tracking_domain_from_row,
    warmup_row,
    webhook_delivery_from_row,
    webhook_from_row,
    webhook_row,
)

log = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x70656E6775696E  # b"penguin"
QUEUE_BUMP_LOCK_KEY = 0x70656E6775696F
"""Held from a transaction's queue upsert to its commit: bumps commit in order."""
ACCEPTED_CHANNEL = "penguin_accepted"
"""The ``NOTIFY`` channel of new mail; the payload is empty."""
ANNOUNCE_INTERVAL_SECONDS = 0.05
"""Least time between two notifications; announcements asked meanwhile make one."""
TENANT_ROLE = "penguin_tenant"
TENANT_OWNED = (
    "campaign_recipients",
    "campaigns",
    "webhook_deliveries",
    "webhooks",
    "messages",
    "bodies",
    "suppressions",
    "smtp_users",
    "sending_domains",
    "tracking_domains",
    "soft_bounces",
    "idempotency_keys",
    "tenant_settings",
    "api_keys",
    "stat_counts",
    "stat_bounces",
    "stat_provider_counts",
    "stat_provider_bounces",
)
"""The tables whose rows ``remove_tenant`` deletes with the tenant, children first."""
_LOCK_TENANT = "SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE"
"""Taken before a tenant's default tracking domain changes: one change at a time (mail
accepted for the tenant meanwhile is not held up: its foreign keys need a key share)."""

_NO_FLUSH = "SET LOCAL synchronous_commit TO OFF"
"""Claims, renewals and settlements commit without waiting for the WAL flush (``Store.settle``)."""

CLAIM_QUEUE_SELECT = (
    "SELECT id FROM messages WHERE queue = $1 AND state = 'queued' AND due_at <= $2"
    " ORDER BY priority DESC, due_at LIMIT $3 FOR UPDATE SKIP LOCKED"
)
"""A queue's due messages in claim order (index ``messages_queue_priority``)."""
_CLAIM_QUEUES_SQL = (
    "UPDATE messages SET state = 'leased', lease_owner = $4, lease_expires = $5,"
    " lease_token = $6 WHERE id IN (SELECT due.id FROM unnest($1::text[], $3::int[])"
    "  AS wanted (queue, wanted) CROSS JOIN LATERAL (SELECT id FROM messages"
    "   WHERE queue = wanted.queue AND state = 'queued' AND due_at <= $2"
    "   ORDER BY priority DESC, due_at LIMIT wanted.wanted FOR UPDATE SKIP LOCKED) AS due)"
    f" RETURNING {MESSAGE_COLUMNS}"
)
"""Each queue's due messages in claim order (index ``messages_queue_priority``), leased."""
RECORDS_SINCE_SQL = (
    "SELECT txid, seq, tenant_id, type, data FROM records"
    " WHERE txid IS NOT NULL AND (txid, seq) > ($1, $2)"
    " AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
    " ORDER BY txid, seq LIMIT $3"
)
"""The records after a log position whose transactions ended (index ``records_txid``)."""
LOG_END_SQL = (
    "SELECT txid, seq FROM records WHERE txid IS NOT NULL"
    " AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
    " ORDER BY txid DESC, seq DESC LIMIT 1"
)
"""The last record ``RECORDS_SINCE_SQL`` could return now (index ``records_txid``, backwards)."""
_NEXT_DUE_SQL = (
    "SELECT wanted.queue, (SELECT min(due_at) FROM messages"
    "  WHERE queue = wanted.queue AND state = 'queued')"
    " FROM unnest($1::text[]) AS wanted (queue)"
)

MESSAGE_TYPES = (
    "text",
    "text",
    "bigint",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "double precision",
    "double precision",
    "integer",
    "text",
    "double precision",
    "text",
    "text",
    "integer",
)
"""The column types of ``MESSAGE_FIELDS``, in order."""
RECORD_TYPES = ("bigint", "text", "text", "double precision", "json")
"""The column types of ``RECORD_FIELDS``, in order."""
BODY_FIELDS = ("id", "tenant_id", "data", "created_at")
BODY_TYPES = ("text", "bigint", "bytea", "double precision")
QUEUE_TYPES = ("text", "bigint", "text", "text")
"""The column types of a ``queue_rows`` row: name, tenant_id, campaign, domain."""
SUPPRESSION_TYPES = ("bigint", "text", "text", "double precision")
"""The column types of a ``suppression_row``, in order."""
RECIPIENT_TYPES = ("bigint", "bigint", "bigint", "text", "text", "text", "text")
"""The column types of ``RECIPIENT_INSERT``'s columns, in order."""


def unnest_params(types: Sequence[str], first: int) -> str:
    """``unnest($first::T[], ...)``: rows from one array parameter per column."""
    return "unnest(" + ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types)) + ")"


def columns_of(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    """``rows`` as one list per column, the parameters of ``unnest_params``."""
    return [[row[i] for row in rows] for i in range(width)]


_INSERT_RECORDS_SQL = (
    f"INSERT INTO records ({', '.join(RECORD_FIELDS)})"
    f" SELECT * FROM {unnest_params(RECORD_TYPES, 1)}"
)
_UPSERT_QUEUES = (
    "INSERT INTO queues (name, tenant_id, campaign, domain, bump)"
    " SELECT queued.*, bump.value FROM {queues} AS queued, bump"
    " ON CONFLICT (name) DO UPDATE SET"
    " tenant_id = excluded.tenant_id, campaign = excluded.campaign,"
    " domain = excluded.domain, bump = excluded.bump"
)
_ACCEPT_FIRST_MESSAGE = 1 + len(BODY_TYPES)
_ACCEPT_FIRST_RECORD = _ACCEPT_FIRST_MESSAGE + len(MESSAGE_TYPES)
_ACCEPT_LOCK = _ACCEPT_FIRST_RECORD + len(RECORD_TYPES)
_ACCEPT_WANTED = _ACCEPT_LOCK + 1 + len(QUEUE_TYPES)


def _accept_sql(*, unless_suppressed: bool) -> str:
    """A whole acceptance in one statement: bodies, messages, records, and the queues
    upserted with one new bump taken under the bump lock (held to the commit, so bumps
    become visible in increasing order). ``unless_suppressed``: the recipients wanted
    (tenant ids and lower-cased addresses, the last two parameters) are looked up
    first; the statement stores nothing when one is suppressed, and returns those."""
    hit, unless = "", ""
    if unless_suppressed:
        hit = (
            "hit AS (SELECT s.tenant_id, s.address FROM suppressions AS s"
            f" JOIN unnest(${_ACCEPT_WANTED}::bigint[], ${_ACCEPT_WANTED + 1}::text[])"
            "  AS wanted (tenant_id, address)"
            "  ON s.tenant_id = wanted.tenant_id AND s.address = wanted.address),"
        )
        unless = " WHERE NOT EXISTS (SELECT FROM hit)"
    stored = (
        f"WITH {hit} stored_bodies AS (INSERT INTO bodies ({', '.join(BODY_FIELDS)})"
        f"  SELECT * FROM {unnest_params(BODY_TYPES, 1)}{unless}),"
        f" stored_messages AS (INSERT INTO messages ({', '.join(MESSAGE_FIELDS)})"
        f"  SELECT * FROM {unnest_params(MESSAGE_TYPES, _ACCEPT_FIRST_MESSAGE)}{unless}),"
        f" stored_records AS (INSERT INTO records ({', '.join(RECORD_FIELDS)})"
        f"  SELECT * FROM {unnest_params(RECORD_TYPES, _ACCEPT_FIRST_RECORD)}{unless}),"
        f" bump AS (SELECT nextval('queue_bump') AS value"
        f"  FROM (SELECT pg_advisory_xact_lock(${_ACCEPT_LOCK})) AS locked{unless})"
    )
    queues = _UPSERT_QUEUES.format(queues=unnest_params(QUEUE_TYPES, _ACCEPT_LOCK + 1))
    if not unless_suppressed:
        return f"{stored} {queues}"
    return f"{stored}, upserted AS ({queues}) SELECT tenant_id, address FROM hit"


_ACCEPT_SQL = _accept_sql(unless_suppressed=False)
_ACCEPT_UNLESS_SUPPRESSED_SQL = _accept_sql(unless_suppressed=True)
_BUMP_QUEUES_SQL = (
    "WITH bump AS (SELECT nextval('queue_bump') AS value"
    " FROM (SELECT pg_advisory_xact_lock($5)) AS locked) "
    + _UPSERT_QUEUES.format(queues=unnest_params(QUEUE_TYPES, 1))
)
SETTLE_SQL = (
    "WITH settled AS (UPDATE messages m SET state = s.state, attempts = s.attempts,"
    "  due_at = s.due_at, last_error = s.error,"
    "  lease_owner = NULL, lease_expires = NULL, lease_token = NULL"
    "  FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[],"
    "   $5::double precision[], $6::text[]) AS s(id, token, state, attempts, due_at, error)"
    "  WHERE m.id = s.id AND m.lease_token = s.token"
    "  RETURNING m.id),"
    f" logged AS (INSERT INTO records ({', '.join(RECORD_FIELDS)})"
    f"  SELECT {', '.join('r.' + f for f in RECORD_FIELDS)}"
    f"  FROM {unnest_params(('text', *RECORD_TYPES), 7)}"
    f"  AS r(settles, {', '.join(RECORD_FIELDS)})"
    "  WHERE r.settles IN (SELECT id FROM settled))"
    " SELECT id FROM settled"
)
"""Settlements applied where the lease still holds, with the records of those that applied.
A message found by its id holds the token only while leased (each way out of the leased
state clears it); a test of the state would let the planner scan every leased message."""


class PostgresStore:
    """``Store`` on the PostgreSQL database at ``url``, at most ``pool_size`` connections."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._announcing: asyncio.Task[None] | None = None
        self._announce_again = False
        self.watch_retry_seconds = 5.0
        """Pause before listening again after losing the connection."""

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.url, min_size=1, max_size=self.pool_size, reset=_keep_session
                    )
        return self._pool

    async def _fetch(self, sql: str, *args: object, subject: str = "row") -> list[Any]:
        pool = await self._get_pool()
        with _translated(subject):
            return list(await pool.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: object, subject: str = "row") -> Any:
        pool = await self._get_pool()
        with _translated(subject):
            return await pool.fetchrow(sql, *args)

    async def _execute(self, sql: str, *args: object, subject: str = "row") -> str:
        pool = await self._get_pool()
        with _translated(subject):
            return str(await pool.execute(sql, *args))

    @contextlib.asynccontextmanager
    async def _unflushed(self, subject: str) -> AsyncIterator[Any]:
        """A connection in a transaction that commits without waiting for the disk
        (claims, leases, settlements: what a crash may lose costs a retry, never mail)."""
        pool = await self._get_pool()
        with _translated(subject):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_NO_FLUSH)
                yield conn

    @contextlib.asynccontextmanager
    async def tenant_scope(self, tenant_id: int) -> AsyncIterator[Any]:
        """A connection in a transaction that sees only ``tenant_id``'s rows (RLS).

        The role and the setting are transaction-local, so the connection goes
        back to the pool as the owner again.
        """
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {TENANT_ROLE}")
            await conn.execute("SELECT set_config('penguin.tenant_id', $1, true)", str(tenant_id))
            yield conn

    @contextlib.asynccontextmanager
    async def _acting_for(self, tenant_id: int | None, subject: str) -> AsyncIterator[Any]:
        """A connection for ``tenant_id`` (``tenant_scope``), or as the owner for None;
        server errors translated."""
        with _translated(subject):
            if tenant_id is None:
                pool = await self._get_pool()
                async with pool.acquire() as conn:
                    yield conn
            else:
                async with self.tenant_scope(tenant_id) as conn:
                    yield conn

    # Lifecycle.

    async def migrate(self) -> list[int]:
        """Apply pending migrations, one transaction each; return the numbers applied."""
        pool = await self._get_pool()
        applied: list[int] = []
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (version integer PRIMARY KEY, applied_at double precision NOT NULL)"
                )
                done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
                for number, sql in migration_files("postgres"):
                    if number in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, applied_at)"
                            " VALUES ($1, extract(epoch FROM clock_timestamp()))",
                            number,
                        )
                    applied.append(number)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        return applied

    async def schema_version(self) -> int:
        exists = await self._fetchrow("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists[0]:
            return 0
        row = await self._fetchrow("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return int(row[0])

    async def close(self) -> None:
        if self._announcing is not None:
            await asyncio.wait({self._announcing})
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # Telling other processes about new mail.

    def announce_accepted(self) -> None:
        """``NOTIFY`` the delivery processes: at once when none was sent in the last
        ``ANNOUNCE_INTERVAL_SECONDS``, else one at the end of that interval for
        every announcement asked meanwhile (a few notifications a second under load)."""
        if self._announcing is not None:
            self._announce_again = True
            return
        self._announcing = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        try:
            again = True
            while again:
                self._announce_again = False
                await self._execute(f"NOTIFY {ACCEPTED_CHANNEL}")
                await asyncio.sleep(ANNOUNCE_INTERVAL_SECONDS)
                again = self._announce_again
        except (StoreError, OSError, asyncpg.InterfaceError) as exc:
            log.warning("announcing new mail failed (delivery polls meanwhile): %s", exc)
        finally:
            self._announcing = None

    async def watch_accepted(self, wake: Callable[[], None]) -> None:
        """``LISTEN`` on a connection of its own; reconnects after losing it, and
        wakes once on each (re)connection for what was announced meanwhile."""
        while True:
            try:
                conn = await asyncpg.connect(self.url)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot listen for new mail (delivery polls meanwhile): %s", exc)
                await asyncio.sleep(self.watch_retry_seconds)
                continue
            try:
                await _listen_until_lost(conn, wake)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("listening for new mail failed: %s", exc)
            finally:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.close(timeout=self.watch_retry_seconds)
            log.warning("lost the connection listening for new mail; reconnecting")
            await asyncio.sleep(self.watch_retry_seconds)

    # Tenants, domains, users, suppressions.

    async def create_tenant(self, name: str, now: float) -> Tenant:
        row = await self._fetchrow(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id",
            name,
            now,
            subject=f"tenant {name!r}",
        )
        return Tenant(id=int(row[0]), name=name, created_at=now)

    async def get_tenant(self, name: str) -> Tenant | None:
        row = await self._fetchrow("SELECT id, name, created_at FROM tenants WHERE name = $1", name)
        return None if row is None else Tenant(**dict(row))

    async def get_tenant_by_id(self, tenant_id: int) -> Tenant | None:
        row = await self._fetchrow(
            "SELECT id, name, created_at FROM tenants WHERE id = $1", tenant_id
        )
        return None if row is None else Tenant(**dict(row))

    async def list_tenants(self) -> list[Tenant]:
        rows = await self._fetch("SELECT id, name, created_at FROM tenants ORDER BY id")
        return [Tenant(**dict(row)) for row in rows]

    async def put_tenant_overrides(self, overrides: TenantOverrides) -> None:
        await self._execute(
            f"INSERT INTO tenant_settings ({TENANT_OVERRIDE_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET"
            " pool = excluded.pool, priority = excluded.priority,"
            " daily_quota = excluded.daily_quota, rate_quota = excluded.rate_quota,"
            " updated_at = excluded.updated_at",
            *tenant_overrides_row(overrides),
            subject="tenant settings",
        )

    async def get_tenant_overrides(self, tenant_id: int) -> TenantOverrides | None:
        row = await self._fetchrow(
            f"SELECT {TENANT_OVERRIDE_COLUMNS} FROM tenant_settings WHERE tenant_id = $1",
            tenant_id,
        )
        return None if row is None else TenantOverrides(**dict(row))

    async def list_tenant_overrides(self) -> list[TenantOverrides]:
        rows = await self._fetch(
            f"SELECT {TENANT_OVERRIDE_COLUMNS} FROM tenant_settings ORDER BY tenant_id"
        )
        return [TenantOverrides(**dict(row)) for row in rows]

    async def count_tenant_messages(self, tenant_id: int, since: float) -> int:
        row = await self._fetchrow(
            "SELECT count(*) FROM messages WHERE tenant_id = $1 AND created_at >= $2",
            tenant_id,
            since,
        )
        return int(row[0])

    async def add_domain(self, domain: SendingDomain) -> SendingDomain:
        async with self._acting_for(domain.tenant_id, f"domain {domain.name!r}") as conn:
            row = await conn.fetchrow(
                "INSERT INTO sending_domains (tenant_id, name, selector, algorithm,"
                " private_key_sealed, public_key_b64, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                domain.tenant_id,
                domain.name,
                domain.selector,
                domain.algorithm,
                domain.private_key_sealed,
                domain.public_key_b64,
                domain.created_at,
            )
        return replace(domain, id=int(row[0]))

    async def rotate_domain_key(self, domain: SendingDomain) -> bool:
        async with self._acting_for(domain.tenant_id, f"domain {domain.name!r}") as conn:
            row = await conn.fetchrow(
                "UPDATE sending_domains SET selector = $1, algorithm = $2,"
                " private_key_sealed = $3, public_key_b64 = $4"
                " WHERE name = $5 AND tenant_id = $6 RETURNING id",
                domain.selector,
                domain.algorithm,
                domain.private_key_sealed,
                domain.public_key_b64,
                domain.name,
                domain.tenant_id,
            )
        return row is not None

    async def get_domain(self, name: str, tenant_id: int | None = None) -> SendingDomain | None:
        async with self._acting_for(tenant_id, "domain") as conn:
            row = await conn.fetchrow(
                f"SELECT {DOMAIN_COLUMNS} FROM sending_domains"
                " WHERE name = $1 AND ($2::bigint IS NULL OR tenant_id = $2)",
                name,
                tenant_id,
            )
        return None if row is None else SendingDomain(**dict(row))

    async def list_domains(self, tenant_id: int) -> list[SendingDomain]:
        async with self._acting_for(tenant_id, "domain") as conn:
            rows = await conn.fetch(
                f"SELECT {DOMAIN_COLUMNS} FROM sending_domains WHERE tenant_id = $1 ORDER BY name",
                tenant_id,
            )
        return [SendingDomain(**dict(row)) for row in rows]

    async def add_smtp_user(self, user: SmtpUser) -> SmtpUser:
        async with self._acting_for(user.tenant_id, f"SMTP user {user.username!r}") as conn:
            row = await conn.fetchrow(
                "INSERT INTO smtp_users (tenant_id, username, password_hash, created_at)"
                " VALUES ($1, $2, $3, $4) RETURNING id",
                user.tenant_id,
                user.username,
                user.password_hash,
                user.created_at,
            )
        return replace(user, id=int(row[0]))

    async def get_smtp_user(self, username: str, tenant_id: int | None = None) -> SmtpUser | None:
        if tenant_id is not None:
            async with self._acting_for(tenant_id, "SMTP user") as conn:
                row = await conn.fetchrow(
                    "SELECT id, tenant_id, username, password_hash, created_at"
                    " FROM smtp_users WHERE username = $1 AND tenant_id = $2",
                    username,
                    tenant_id,
                )
            return None if row is None else SmtpUser(**dict(row))
        row = await self._fetchrow(
            "SELECT id, tenant_id, username, password_hash, created_at"
            " FROM smtp_users WHERE username = $1",
            username,
        )
        return None if row is None else SmtpUser(**dict(row))

    async def add_suppression(self, suppression: Suppression) -> None:
        """Insert or replace (tenant, address); addresses compare case-insensitively."""
        await self._execute(
            "INSERT INTO suppressions (tenant_id, address, reason, created_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, address)"
            " DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at",
            suppression.tenant_id,
            suppression.address.lower(),
            suppression.reason,
            suppression.created_at,
            subject="suppression",
        )

    async def suppressed(self, tenant_id: int, addresses: Sequence[str]) -> set[str]:
        """The subset of ``addresses`` (lower-cased) suppressed for the tenant."""
        rows = await self._fetch(
            "SELECT address FROM suppressions WHERE tenant_id = $1 AND address = ANY($2::text[])",
            tenant_id,
            sorted({a.lower() for a in addresses}),
        )
        return {str(row[0]) for row in rows}

    # Acceptance and records.

    async def accept(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_keys: Sequence[IdempotencyKey] = (),
    ) -> None:
        """Store bodies, messages, records and idempotency keys in one durable transaction
        (one statement when there are no keys)."""
        params = _acceptance_params(submissions, records)
        pool = await self._get_pool()
        with _translated("submission"):
            if not idempotency_keys:
                await pool.execute(_ACCEPT_SQL, *params)
                return
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_ACCEPT_SQL, *params)
                await _answer_claims(conn, idempotency_keys)

    async def accept_unless_suppressed(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_keys: Sequence[IdempotencyKey] = (),
    ) -> dict[int, set[str]]:
        """``accept``'s statement, looking the recipients up first
        (``_accept_sql``): one statement when there are no keys."""
        wanted = [
            (t, a) for t, addresses in recipients_by_tenant(submissions).items() for a in addresses
        ]
        params = (
            *_acceptance_params(submissions, records),
            [tenant_id for tenant_id, _ in wanted],
            [address for _, address in wanted],
        )
        pool = await self._get_pool()
        with _translated("submission"):
            if not idempotency_keys:
                rows = await pool.fetch(_ACCEPT_UNLESS_SUPPRESSED_SQL, *params)
            else:
                async with pool.acquire() as conn, conn.transaction():
                    rows = await conn.fetch(_ACCEPT_UNLESS_SUPPRESSED_SQL, *params)
                    if not rows:
                        await _answer_claims(conn, idempotency_keys)
        found: dict[int, set[str]] = {}
        for tenant_id, address in rows:
            found.setdefault(int(tenant_id), set()).add(str(address))
        return found

    async def claim_idempotency_key(
        self, claim: IdempotencyKey, expired_before: float, abandoned_before: float
    ) -> IdempotencyKey:
        # The upsert and the read of a key held are two statements: the read may find
        # the key released in between, and the claim is tried again.
        for _ in range(CLAIM_ATTEMPTS):
            async with self._acting_for(claim.tenant_id, "idempotency key") as conn:
                await conn.execute(_NO_FLUSH)
                claimed = await conn.fetchval(
                    idempotency_claim_sql("$"),
                    *claim_params(claim, expired_before, abandoned_before),
                )
                if claimed is not None:
                    return replace(claim, response="", pending=True)
                row = await conn.fetchrow(
                    f"SELECT {IDEMPOTENCY_HELD} FROM idempotency_keys"
                    " WHERE tenant_id = $1 AND key = $2",
                    claim.tenant_id,
                    claim.key,
                )
            if row is not None:
                return idempotency_key_from_row(claim.tenant_id, claim.key, row)
        raise StoreError(f"idempotency key {claim.key!r}: claimed and released repeatedly")

    async def release_idempotency_key(self, tenant_id: int, key: str, claim_token: str) -> bool:
        async with self._acting_for(tenant_id, "idempotency key") as conn:
            await conn.execute(_NO_FLUSH)
            status: str = await conn.execute(
                "DELETE FROM idempotency_keys"
                " WHERE tenant_id = $1 AND key = $2 AND claim_token = $3 AND pending",
                tenant_id,
                key,
                claim_token,
            )
        return status != "DELETE 0"

    async def sweep_idempotency_keys(self, before: float) -> int:
        status = await self._execute(
            "DELETE FROM idempotency_keys WHERE created_at < $1", before, subject="idempotency key"
        )
        return int(status.rsplit(" ", 1)[1])

    async def add_records(self, records: Sequence[Record]) -> None:
        pool = await self._get_pool()
        with _translated("record"):
            async with pool.acquire() as conn:
                await _insert_records(conn, records)

    async def list_records(self, message_id: str) -> list[dict[str, Any]]:
        """The JSON objects of a message's records, oldest first."""
        rows = await self._fetch(
            "SELECT data FROM records WHERE message_id = $1 ORDER BY seq", message_id
        )
        return [json.loads(row[0]) for row in rows]

    async def records_after(self, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Records with a sequence number above ``seq``, in order: for following the log."""
        rows = await self._fetch(
            "SELECT seq, data FROM records WHERE seq > $1 ORDER BY seq LIMIT $2", seq, limit
        )
        return [(int(row[0]), json.loads(row[1])) for row in rows]

    async def last_record_seq(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(seq), 0) FROM records")
        return int(rows[0][0])

    # Stats rollups.

    async def message_facts(self, message_ids: Sequence[str]) -> dict[str, MessageFacts]:
        rows = await self._fetch(
            f"{stats_sql.MESSAGE_FACTS}(SELECT unnest($1::text[]))", sorted(set(message_ids))
        )
        return dict(stats_sql.message_facts(row) for row in rows)

    async def lease_stats(self, owner: str, now: float, lease_seconds: float) -> LogPosition | None:
        sql = _numbered([stats_sql.LEASE], 1)
        async with self._unflushed("stats") as conn:
            row = await conn.fetchrow(sql, *stats_sql.lease_params(owner, now, lease_seconds))
        return None if row is None else LogPosition(int(row[0]), int(row[1]))

    async def apply_stats(
        self, expected: LogPosition, reached: LogPosition, counts: Sequence[StatCount]
    ) -> bool:
        moved = stats_sql.cursor_params(expected, reached)
        async with self._unflushed("stats") as conn:
            status = await conn.execute(_numbered([stats_sql.MOVE_CURSOR], 1), *moved)
            if _row_count(status) != 1:
                return False
            for sql, rows in (
                (stats_sql.ADD_COUNTS, stats_sql.count_rows(list(counts))),
                (stats_sql.ADD_BOUNCES, stats_sql.bounce_rows(list(counts))),
                (stats_sql.ADD_PROVIDER_COUNTS, stats_sql.provider_count_rows(list(counts))),
                (stats_sql.ADD_PROVIDER_BOUNCES, stats_sql.provider_bounce_rows(list(counts))),
            ):
                if rows:
                    await conn.executemany(_numbered([sql], 1), rows)
        return True

    async def stat_totals(
        self, tenant_id: int, query: StatsQuery
    ) -> tuple[list[StatTotal], list[BounceTotal]]:
        totals_sql, bounces_sql, params = stats_sql.totals_sql(query, cast="::bigint")
        async with self._acting_for(tenant_id, "stats") as conn:
            totals = await conn.fetch(_numbered([totals_sql], 1), tenant_id, *params)
            bounces = await conn.fetch(_numbered([bounces_sql], 1), tenant_id, *params)
        return stats_sql.totals_of(query, totals, bounces)

    # The queue.

    async def claim(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueuedMessage]:
        """Lease up to ``limit`` due messages to ``owner`` under a new token, oldest due first."""
        async with self._unflushed("claim") as conn:
            rows = await conn.fetch(
                "UPDATE messages SET state = 'leased', lease_owner = $1, lease_expires = $2,"
                " lease_token = $5"
                " WHERE id IN (SELECT id FROM messages"
                "  WHERE (state = 'queued' AND due_at <= $3)"
                "   OR (state = 'leased' AND lease_expires <= $3)"
                "  ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
                f" RETURNING {MESSAGE_COLUMNS}",
                owner,
                now + lease_seconds,
                now,
                limit,
                new_lease_token(),
            )
        return sorted((message_from_row(row) for row in rows), key=lambda m: (m.due_at, m.id))

    async def due_counts(
        self, queues: Sequence[str], now: float, cap: int
    ) -> dict[str, tuple[int, float | None]]:
        """Due queued messages per queue, up to ``cap`` each, and the next due time."""
        rows = await self._fetch(
            "SELECT q, (SELECT count(*) FROM (SELECT 1 FROM messages"
            "  WHERE queue = q AND state = 'queued' AND due_at <= $2 LIMIT $3) AS due),"
            " (SELECT min(due_at) FROM messages WHERE queue = q AND state = 'queued')"
            " FROM unnest($1::text[]) AS q",
            list(queues),
            now,
            cap,
        )
        return {
            str(row[0]): (int(row[1]), None if row[2] is None else float(row[2])) for row in rows
        }

    async def claim_queues(
        self, wanted: Sequence[tuple[str, int]], owner: str, now: float, lease_seconds: float
    ) -> dict[str, ClaimedQueue]:
        """Lease due messages of each queue, highest priority first, in one transaction."""
        token = new_lease_token()
        queues = [queue for queue, _ in wanted]
        claimed: dict[str, list[QueuedMessage]] = {queue: [] for queue in queues}
        async with self._unflushed("claim") as conn:
            rows = await conn.fetch(
                _CLAIM_QUEUES_SQL,
                queues,
                now,
                [limit for _, limit in wanted],
                owner,
                now + lease_seconds,
                token,
            )
            next_due = await conn.fetch(_NEXT_DUE_SQL, queues)
        for row in rows:
            message = message_from_row(row)
            claimed[message.queue].append(message)
        return {
            str(queue): ClaimedQueue(
                sorted(claimed[str(queue)], key=claim_order), None if due is None else float(due)
            )
            for queue, due in next_due
        }

    async def reap_leases(self, now: float) -> list[str]:
        """Expired leases back to the queue; the queues touched."""
        async with self._unflushed("lease") as conn:
            rows = await conn.fetch(
                "UPDATE messages SET state = 'queued', due_at = least(due_at, $1),"
                " lease_owner = NULL, lease_expires = NULL, lease_token = NULL"
                " WHERE id IN (SELECT id FROM messages"
                "  WHERE state = 'leased' AND lease_expires <= $1 FOR UPDATE SKIP LOCKED)"
                " RETURNING queue",
                now,
            )
        return sorted({str(row[0]) for row in rows})

    async def queues_changed(self, after_bump: int) -> list[QueueInfo]:
        rows = await self._fetch(
            "SELECT name, tenant_id, campaign, domain, bump FROM queues"
            " WHERE bump > $1 ORDER BY bump, name",
            after_bump,
        )
        return [QueueInfo(**dict(row)) for row in rows]

    async def queue_next_due(self, queue: str) -> float | None:
        row = await self._fetchrow(
            "SELECT min(due_at) FROM messages WHERE queue = $1 AND state = 'queued'", queue
        )
        return None if row[0] is None else float(row[0])

    async def delay_queue(
        self,
        queue: str,
        now: float,
        until: float,
        limit: int,
        record: Callable[[QueuedMessage], Record],
    ) -> int:
        """Up to ``limit`` due messages of ``queue`` due at ``until``, a record each."""
        async with self._unflushed("delay") as conn:
            rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({CLAIM_QUEUE_SELECT})",
                queue,
                now,
                limit,
            )
            due = sorted((message_from_row(row) for row in rows), key=claim_order)
            await conn.execute(
                "UPDATE messages SET due_at = $1 WHERE id = ANY($2::text[])",
                until,
                [m.id for m in due],
            )
            await _insert_records(conn, [record(m) for m in due])
        return len(due)

    async def undelay_queue(self, queue: str, until: float, now: float) -> int:
        """The messages of ``queue`` delayed to ``until`` due at ``now``."""
        async with self._unflushed("undelay") as conn:
            status = await conn.execute(
                "UPDATE messages SET due_at = $1"
                " WHERE queue = $2 AND state = 'queued' AND due_at = $3",
                now,
                queue,
                until,
            )
        return int(status.split()[-1])

    async def queue_depths(self) -> dict[str, tuple[int, float | None]]:
        rows = await self._fetch(
            "SELECT queue, count(*), min(due_at) FROM messages WHERE state = 'queued'"
            " GROUP BY queue"
        )
        return {str(row[0]): (int(row[1]), row[2]) for row in rows}

    # Suspensions, warmup counts, engine status.

    async def add_suspension(self, suspension: Suspension, records: Sequence[Record]) -> Suspension:
        pool = await self._get_pool()
        with _translated("suspension"):
            async with pool.acquire() as conn, conn.transaction():
                new_id = await conn.fetchval(
                    "INSERT INTO suspensions (scope, target, reason, created_at, until, origin)"
                    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    *suspension_row(suspension),
                )
                await _insert_records(conn, records)
        return replace(suspension, id=int(new_id))

    async def active_suspensions(self, now: float) -> list[Suspension]:
        rows = await self._fetch(
            f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE until > $1 ORDER BY id", now
        )
        return [suspension_from_row(row) for row in rows]

    async def remove_suspensions(self, scope: str, target: str, records: Sequence[Record]) -> int:
        pool = await self._get_pool()
        with _translated("suspension"):
            async with pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    "DELETE FROM suspensions WHERE scope = $1 AND target = $2", scope, target
                )
                removed = _row_count(status)
                if removed:
                    await _insert_records(conn, records)
        return removed

    async def add_warmup_counts(self, counts: Sequence[WarmupCount]) -> None:
        if not counts:
            return
        async with self._unflushed("warmup") as conn:
            await conn.executemany(
                "INSERT INTO warmup_days AS w (source, provider, day, sent, deferred,"
                " complained) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (source, provider, day) DO UPDATE SET"
                " sent = w.sent + excluded.sent, deferred = w.deferred + excluded.deferred,"
                " complained = w.complained + excluded.complained",
                [warmup_row(c) for c in sorted(counts, key=warmup_row)],
            )

    async def warmup_history(self, since_day: int) -> list[WarmupCount]:
        rows = await self._fetch(
            "SELECT source, provider, day, sent, deferred, complained FROM warmup_days"
            " WHERE day >= $1 ORDER BY source, provider, day",
            since_day,
        )
        return [WarmupCount(**dict(row)) for row in rows]

    async def put_status(self, owner: str, data: str, now: float) -> None:
        async with self._unflushed("status") as conn:
            await conn.execute(
                "INSERT INTO engine_status (owner, data, updated_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (owner) DO UPDATE SET data = excluded.data,"
                " updated_at = excluded.updated_at",
                owner,
                data,
                now,
            )

    async def list_status(self, since: float) -> list[tuple[str, str, float]]:
        rows = await self._fetch(
            "SELECT owner, data, updated_at FROM engine_status"
            " WHERE updated_at >= $1 ORDER BY owner",
            since,
        )
        return [(str(row[0]), str(row[1]), float(row[2])) for row in rows]

    async def renew(self, leases: Sequence[tuple[str, str]], until: float) -> int:
        """Extend to ``until`` the leases still held of ``leases`` (message id, token),
        each found by its message's id; return how many."""
        if not leases:
            return 0
        wanted = sorted(set(leases))
        async with self._unflushed("lease") as conn:
            status = await conn.execute(
                "UPDATE messages m SET lease_expires = $1"
                " FROM unnest($2::text[], $3::text[]) AS held (id, token)"
                " WHERE m.id = held.id AND m.lease_token = held.token",  # as SETTLE_SQL
                until,
                *columns_of(wanted, 2),
            )
        return _row_count(status)

    async def settle(self, settled: Sequence[tuple[Settlement, Record]]) -> set[str]:
        """The settlements and the records of those that applied, in one statement over
        per-column arrays (``SETTLE_SQL``); return the ids of their messages."""
        rows = [settled_row(settlement) for settlement, _ in settled]
        logged = [(s.message_id, *record_row(r)) for s, r in settled]
        params = (*columns_of(rows, 6), *columns_of(logged, 1 + len(RECORD_TYPES)))
        async with self._unflushed("settlement") as conn:
            return {str(row[0]) for row in await conn.fetch(SETTLE_SQL, *params)}

    async def get_body(self, submission_id: str) -> bytes | None:
        row = await self._fetchrow("SELECT data FROM bodies WHERE id = $1", submission_id)
        return None if row is None else bytes(row[0])

    async def get_bodies(self, submission_ids: Sequence[str]) -> dict[str, bytes]:
        """Bodies by submission id; missing ids are absent from the result."""
        rows = await self._fetch(
            "SELECT id, data FROM bodies WHERE id = ANY($1::text[])", sorted(set(submission_ids))
        )
        return {str(row[0]): bytes(row[1]) for row in rows}

    async def get_message(self, message_id: str) -> QueuedMessage | None:
        row = await self._fetchrow(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1", message_id
        )
        return None if row is None else message_from_row(row)

    async def tenant_message(
        self, tenant_id: int, message_id: str
    ) -> tuple[QueuedMessage, list[dict[str, Any]]] | None:
        with _translated("message"):
            async with self.tenant_scope(tenant_id) as conn:
                row = await conn.fetchrow(
                    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 AND tenant_id = $2",
                    message_id,
                    tenant_id,
                )
                if row is None:
                    return None
                rows = await conn.fetch(
                    "SELECT data FROM records WHERE message_id = $1 AND tenant_id = $2"
                    " ORDER BY seq",
                    message_id,
                    tenant_id,
                )
        return message_from_row(row), [json.loads(r[0]) for r in rows]

    async def list_submission(self, submission_id: str) -> list[QueuedMessage]:
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE submission_id = $1 ORDER BY id",
            submission_id,
        )
        return [message_from_row(row) for row in rows]

    async def queue_summary(self, tenant_id: int | None = None) -> list[QueueCount]:
        where, args = ("", ()) if tenant_id is None else (" WHERE tenant_id = $1", (tenant_id,))
        async with self._acting_for(tenant_id, "queue") as conn:
            rows = await conn.fetch(
                "SELECT queue, state, count(*), min(due_at), max(last_error) FROM messages"
                f"{where} GROUP BY queue, state ORDER BY queue, state",
                *args,
            )
        return [
            QueueCount(str(row[0]), MessageState(row[1]), int(row[2]), row[3], row[4])
            for row in rows
        ]

    async def tenant_messages(self, tenant_id: int, limit: int) -> list[QueuedMessage]:
        """A tenant's messages, newest first; row-level security does the filtering."""
        with _translated("message"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(
                    f"SELECT {MESSAGE_COLUMNS} FROM messages"
                    " ORDER BY created_at DESC, id DESC LIMIT $1",
                    limit,
                )
        return [message_from_row(row) for row in rows]

    # Operators' hands on the queue.

    async def queue_messages(self, queue: str, limit: int) -> list[QueuedMessage]:
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE queue = $1"
            " AND state IN ('queued', 'leased') ORDER BY due_at, id LIMIT $2",
            queue,
            limit,
        )
        return [message_from_row(row) for row in rows]

    async def list_shunted(self, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` shunted messages, the longest parked first."""
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE state = 'shunted'"
            " ORDER BY due_at, id LIMIT $1",
            limit,
        )
        return [message_from_row(row) for row in rows]

    async def requeue_shunted(
        self, message_ids: Sequence[str], now: float, records: Sequence[Record]
    ) -> list[str]:
        """Queue the shunted ones of ``message_ids`` again, due at ``now``, with their records."""
        pool = await self._get_pool()
        with _translated("requeue"):
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "UPDATE messages SET state = 'queued', due_at = $2"
                    " WHERE state = 'shunted' AND id = ANY($1::text[])"
                    " RETURNING id, queue, tenant_id, campaign, domain",
                    sorted(set(message_ids)),
                    now,
                )
                done = sorted(str(row[0]) for row in rows)
                queues = {row[1]: (row[1], row[2], row[3], row[4]) for row in rows}
                await _bump_queues(conn, [queues[name] for name in sorted(queues)])
                await _insert_records(conn, records_about(records, done))
        return done

    async def remove_messages(
        self, message_ids: Sequence[str], records: Sequence[Record]
    ) -> list[str]:
        """Remove the queued or shunted ones of ``message_ids``, and unneeded bodies."""
        pool = await self._get_pool()
        with _translated("removal"):
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "DELETE FROM messages WHERE state IN ('queued', 'shunted')"
                    " AND id = ANY($1::text[]) RETURNING id, submission_id",
                    sorted(set(message_ids)),
                )
                await conn.execute(
                    "DELETE FROM bodies WHERE id = ANY($1::text[]) AND NOT EXISTS"
                    " (SELECT 1 FROM messages WHERE submission_id = bodies.id)",
                    sorted({str(row[1]) for row in rows}),
                )
                removed = sorted(str(row[0]) for row in rows)
                await _insert_records(conn, records_about(records, removed))
        return removed

    # Provisioning: listings and removals.

    async def tenant_messages_in(
        self, tenant_id: int, states: Collection[MessageState], limit: int
    ) -> list[QueuedMessage]:
        """Up to ``limit`` of a tenant's messages in ``states``, the oldest first."""
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1"
            " AND state = ANY($2::text[]) ORDER BY created_at, id LIMIT $3",
            tenant_id,
            sorted(state.value for state in states),
            limit,
        )
        return [message_from_row(row) for row in rows]

    async def remove_tenant(self, tenant_id: int) -> bool:
        """Remove the tenant and what it owns but its records; ``InUse`` while it has
        messages to deliver.

        The tenant's row is locked first: a submission committing meanwhile either
        came before (and is counted) or waits for the lock and then fails on the
        foreign key.
        """
        pool = await self._get_pool()
        with _translated("tenant"):
            async with pool.acquire() as conn, conn.transaction():
                found = await conn.fetchrow(
                    "SELECT id FROM tenants WHERE id = $1 FOR UPDATE", tenant_id
                )
                if found is None:
                    return False
                count = await conn.fetchval(
                    "SELECT count(*) FROM messages WHERE tenant_id = $1"
                    " AND state = ANY($2::text[])",
                    tenant_id,
                    sorted(state.value for state in PENDING_STATES),
                )
                if count:
                    raise InUse(f"{count} messages queued, leased or shunted", int(count))
                for table in TENANT_OWNED:
                    await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1", tenant_id)
                await conn.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
        return True

    async def remove_domain(self, name: str, tenant_id: int | None = None) -> bool:
        async with self._acting_for(tenant_id, "domain") as conn:
            status = await conn.execute(
                "DELETE FROM sending_domains"
                " WHERE name = $1 AND ($2::bigint IS NULL OR tenant_id = $2)",
                name,
                tenant_id,
            )
        return _row_count(status) == 1

    async def list_smtp_users(self, tenant_id: int) -> list[SmtpUser]:
        async with self._acting_for(tenant_id, "SMTP user") as conn:
            rows = await conn.fetch(
                "SELECT id, tenant_id, username, password_hash, created_at"
                " FROM smtp_users WHERE tenant_id = $1 ORDER BY username",
                tenant_id,
            )
        return [SmtpUser(**dict(row)) for row in rows]

    async def remove_smtp_user(self, username: str, tenant_id: int | None = None) -> bool:
        async with self._acting_for(tenant_id, "SMTP user") as conn:
            status = await conn.execute(
                "DELETE FROM smtp_users"
                " WHERE username = $1 AND ($2::bigint IS NULL OR tenant_id = $2)",
                username,
                tenant_id,
            )
        return _row_count(status) == 1

    async def list_suppressions(
        self,
        tenant_id: int,
        after: str,
        limit: int,
        where: SuppressionFilter = EVERY_SUPPRESSION,
    ) -> list[Suppression]:
        conditions, params = suppression_conditions(where)
        numbered = _numbered([*(f" AND {c}" for c in conditions), " ORDER BY address LIMIT ?"], 3)
        sql = (
            "SELECT tenant_id, address, reason, created_at FROM suppressions"
            " WHERE tenant_id = $1 AND address > $2" + numbered
        )
        async with self._acting_for(tenant_id, "suppression") as conn:
            rows = await conn.fetch(sql, tenant_id, after, *params, limit)
        return [Suppression(**dict(row)) for row in rows]

    async def add_new_suppressions(self, suppressions: Sequence[Suppression]) -> int:
        if not suppressions:
            return 0
        rows = [suppression_row(x) for x in suppressions]
        async with self._acting_for(suppressions[0].tenant_id, "suppression") as conn:
            status = await conn.execute(
                "INSERT INTO suppressions (tenant_id, address, reason, created_at)"
                f" SELECT * FROM {unnest_params(SUPPRESSION_TYPES, 1)}"
                " ON CONFLICT (tenant_id, address) DO NOTHING",
                *columns_of(rows, len(SUPPRESSION_TYPES)),
            )
        return _row_count(status)

    async def remove_suppression(self, tenant_id: int, address: str) -> bool:
        async with self._acting_for(tenant_id, "suppression") as conn:
            status = await conn.execute(
                "DELETE FROM suppressions WHERE tenant_id = $1 AND address = $2",
                tenant_id,
                address.lower(),
            )
        return _row_count(status) == 1

    # Campaigns: under the tenant's row-level security, and filtered by it too.

    async def add_campaign(self, campaign: Campaign) -> Campaign:
        with _translated(f"campaign {campaign.name!r}"):
            async with self.tenant_scope(campaign.tenant_id) as conn:
                row = await conn.fetchrow(
                    f"{CAMPAIGN_INSERT} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    " RETURNING id",
                    *campaign_row(campaign),
                )
        return replace(campaign, id=int(row[0]))

    async def get_campaign(self, tenant_id: int, campaign_id: int) -> Campaign | None:
        sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1 AND tenant_id = $2"
        with _translated("campaign"):
            async with self.tenant_scope(tenant_id) as conn:
                row = await conn.fetchrow(sql, campaign_id, tenant_id)
        return None if row is None else campaign_from_row(row)

    async def list_campaigns(self, tenant_id: int) -> list[Campaign]:
        sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 ORDER BY id DESC"
        with _translated("campaign"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(sql, tenant_id)
        return [campaign_from_row(row) for row in rows]

    async def campaigns_in(self, states: Collection[CampaignState]) -> list[Campaign]:
        rows = await self._fetch(
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE state = ANY($1::text[]) ORDER BY id",
            sorted(state.value for state in states),
            subject="campaign",
        )
        return [campaign_from_row(row) for row in rows]

    async def campaign_routes(self) -> list[CampaignRoute]:
        rows = await self._fetch(CAMPAIGN_ROUTES_SQL, subject="campaign")
        return [CampaignRoute(*row) for row in rows]

    async def set_campaign_state(
        self,
        tenant_id: int,
        campaign_id: int,
        state: CampaignState,
        now: float,
        *,
        when: Collection[CampaignState],
    ) -> Campaign | None:
        sql = (
            "UPDATE campaigns SET state = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4"
            f" AND state = ANY($5::text[]) RETURNING {CAMPAIGN_COLUMNS}"
        )
        wanted = sorted(s.value for s in when)
        with _translated("campaign"):
            async with self.tenant_scope(tenant_id) as conn:
                row = await conn.fetchrow(sql, state.value, now, campaign_id, tenant_id, wanted)
        return None if row is None else campaign_from_row(row)

    async def add_campaign_recipients(
        self, tenant_id: int, campaign_id: int, recipients: Sequence[CampaignRecipient]
    ) -> None:
        """One INSERT from arrays (COPY is refused under row-level security)."""
        rows = recipient_rows(campaign_id, tenant_id, recipients)
        if not rows:
            return
        with _translated("campaign recipient"):
            async with self.tenant_scope(tenant_id) as conn:
                await conn.execute(
                    f"{RECIPIENT_INSERT} SELECT * FROM {unnest_params(RECIPIENT_TYPES, 1)}",
                    *columns_of(rows, len(RECIPIENT_TYPES)),
                )

    async def last_campaign_row(self, tenant_id: int, campaign_id: int) -> int:
        sql = (
            "SELECT coalesce(max(row_no), 0) FROM campaign_recipients"
            " WHERE campaign_id = $1 AND tenant_id = $2"
        )
        with _translated("campaign recipient"):
            async with self.tenant_scope(tenant_id) as conn:
                return int(await conn.fetchval(sql, campaign_id, tenant_id))

    async def pending_campaign_recipients(
        self, tenant_id: int, campaign_id: int, after_row: int, limit: int
    ) -> list[CampaignRecipient]:
        sql = (
            f"SELECT {RECIPIENT_COLUMNS} FROM campaign_recipients"
            " WHERE campaign_id = $1 AND status = 'pending' AND row_no > $2 AND tenant_id = $3"
            " ORDER BY row_no LIMIT $4"
        )
        with _translated("campaign recipient"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(sql, campaign_id, after_row, tenant_id, limit)
        return [recipient_from_row(row) for row in rows]

    async def mark_campaign_recipients(
        self, tenant_id: int, campaign_id: int, marks: Sequence[RecipientMark]
    ) -> None:
        sql = (
            "UPDATE campaign_recipients AS c SET status = m.status, message_id = m.message_id,"
            " reason = m.reason FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])"
            " AS m (row_no, status, message_id, reason)"
            " WHERE c.campaign_id = $5 AND c.row_no = m.row_no AND c.tenant_id = $6"
        )
        with _translated("campaign recipient"):
            async with self.tenant_scope(tenant_id) as conn:
                await conn.execute(
                    sql,
                    [m.row for m in marks],
                    [m.status.value for m in marks],
                    [m.message_id for m in marks],
                    [m.reason for m in marks],
                    campaign_id,
                    tenant_id,
                )

    async def campaign_counts(self, tenant_id: int, campaign_id: int) -> dict[str, int]:
        sql = (
            "SELECT status, count(*) FROM campaign_recipients"
            " WHERE campaign_id = $1 AND tenant_id = $2 GROUP BY status"
        )
        with _translated("campaign"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(sql, campaign_id, tenant_id)
        return {str(status): int(count) for status, count in rows}

    async def campaign_messages_in(
        self, tenant_id: int, campaign: str, states: Collection[MessageState], limit: int
    ) -> list[QueuedMessage]:
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND campaign = $2"
            " AND state = ANY($3::text[]) ORDER BY created_at, id LIMIT $4"
        )
        wanted = sorted(state.value for state in states)
        with _translated("campaign"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(sql, tenant_id, campaign, wanted, limit)
        return [message_from_row(row) for row in rows]

    # Inbound bounces and complaints.

    async def accept_inbound(self, messages: Sequence[InboundMessage]) -> None:
        marks = ", ".join(f"${i}" for i in range(1, len(INBOUND_FIELDS) + 1))
        sql = f"INSERT INTO inbound ({INBOUND_COLUMNS}) VALUES ({marks})"
        pool = await self._get_pool()
        with _translated("inbound message"):
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(sql, [inbound_row(m) for m in messages])

    async def claim_inbound(
        self, now: float, lease_seconds: float, limit: int
    ) -> list[InboundMessage]:
        sql = (
            "UPDATE inbound SET lease_expires = $1 WHERE id IN (SELECT id FROM inbound"
            " WHERE state = 'pending' AND (lease_expires IS NULL OR lease_expires <= $2)"
            " ORDER BY received_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
            f" RETURNING {INBOUND_COLUMNS}"
        )
        async with self._unflushed("inbound message") as conn:
            rows = await conn.fetch(sql, now + lease_seconds, now, limit)
        return sorted((inbound_from_row(row) for row in rows), key=lambda m: m.received_at)

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
        pool = await self._get_pool()
        with _translated("inbound result"):
            async with pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    "UPDATE inbound SET state = $1, reason = $2, processed_at = $3,"
                    " lease_expires = NULL WHERE id = $4 AND state = 'pending'",
                    state.value,
                    reason,
                    now,
                    inbound_id,
                )
                if _row_count(status) != 1:
                    return False
                suppressed = suppressions
                await _insert_records(conn, records)
                await conn.executemany(
                    "INSERT INTO suppressions (tenant_id, address, reason, created_at)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, address) DO NOTHING",
                    [(x.tenant_id, x.address.lower(), x.reason, x.created_at) for x in suppressed],
                )
                await conn.executemany(
                    "INSERT INTO soft_bounces (inbound_id, tenant_id, address, at)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (inbound_id, address) DO NOTHING",
                    [(x.inbound_id, x.tenant_id, x.address.lower(), x.at) for x in soft_bounces],
                )
        return True

    async def soft_bounce_count(self, tenant_id: int, address: str, since: float) -> int:
        row = await self._fetchrow(
            "SELECT count(*) FROM soft_bounces WHERE tenant_id = $1 AND address = $2 AND at >= $3",
            tenant_id,
            address.lower(),
            since,
        )
        return int(row[0])

    async def list_inbound(self, state: InboundState, limit: int) -> list[InboundMessage]:
        rows = await self._fetch(
            f"SELECT {INBOUND_COLUMNS} FROM inbound WHERE state = $1"
            " ORDER BY received_at DESC, id DESC LIMIT $2",
            state.value,
            limit,
        )
        return [inbound_from_row(row) for row in rows]

    # Tracking domains.

    async def add_tracking_domain(self, domain: TrackingDomain) -> TrackingDomain:
        pool = await self._get_pool()
        with _translated(f"tracking domain {domain.name!r}"):
            async with pool.acquire() as conn, conn.transaction():
                if domain.is_default:
                    await conn.execute(_LOCK_TENANT, domain.tenant_id)
                    await conn.execute(
                        "UPDATE tracking_domains SET is_default = false WHERE tenant_id = $1",
                        domain.tenant_id,
                    )
                row = await conn.fetchrow(
                    "INSERT INTO tracking_domains (tenant_id, name, is_default, created_at)"
                    " VALUES ($1, $2, $3, $4) RETURNING id",
                    domain.tenant_id,
                    domain.name,
                    domain.is_default,
                    domain.created_at,
                )
        return replace(domain, id=int(row[0]))

    async def get_tracking_domain(
        self, name: str, tenant_id: int | None = None
    ) -> TrackingDomain | None:
        async with self._acting_for(tenant_id, "tracking domain") as conn:
            row = await conn.fetchrow(
                f"SELECT {TRACKING_DOMAIN_COLUMNS} FROM tracking_domains"
                " WHERE name = $1 AND ($2::bigint IS NULL OR tenant_id = $2)",
                name,
                tenant_id,
            )
        return None if row is None else tracking_domain_from_row(row)

    async def list_tracking_domains(self, tenant_id: int | None) -> list[TrackingDomain]:
        async with self._acting_for(tenant_id, "tracking domain") as conn:
            rows = await conn.fetch(
                f"SELECT {TRACKING_DOMAIN_COLUMNS} FROM tracking_domains"
                " WHERE $1::bigint IS NULL OR tenant_id = $1 ORDER BY name",
                tenant_id,
            )
        return [tracking_domain_from_row(row) for row in rows]

    async def set_default_tracking_domain(self, name: str) -> bool:
        pool = await self._get_pool()
        with _translated(f"tracking domain {name!r}"):
            async with pool.acquire() as conn, conn.transaction():
                tenant_id = await conn.fetchval(
                    "SELECT tenant_id FROM tracking_domains WHERE name = $1", name
                )
                if tenant_id is None:
                    return False
                await conn.execute(_LOCK_TENANT, tenant_id)
                await conn.execute(
                    "UPDATE tracking_domains SET is_default = false"
                    " WHERE tenant_id = $1 AND name != $2",
                    tenant_id,
                    name,
                )
                await conn.execute(
                    "UPDATE tracking_domains SET is_default = true WHERE name = $1", name
                )
        return True

    async def remove_tracking_domain(self, name: str, tenant_id: int | None = None) -> bool:
        async with self._acting_for(tenant_id, "tracking domain") as conn:
            status = await conn.execute(
                "DELETE FROM tracking_domains"
                " WHERE name = $1 AND ($2::bigint IS NULL OR tenant_id = $2)",
                name,
                tenant_id,
            )
        return _row_count(status) == 1

    # A tenant's records.

    async def query_records(
        self, tenant_id: int, query: RecordQuery, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Row-level security and the tenant's condition both keep other tenants' out."""
        count = itertools.count(1)
        sql, args = record_query(
            tenant_id, query, limit, lambda: f"${next(count)}", lambda name: f"(data->>'{name}')"
        )
        with _translated("record"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(sql, *args)
        return [(int(row[0]), json.loads(row[1])) for row in rows]

    # Webhooks.

    async def add_webhook(self, webhook: Webhook) -> Webhook:
        marks = ", ".join(f"${n}" for n in range(1, len(WEBHOOK_FIELDS) + 1))
        with _translated("webhook"):
            async with self.tenant_scope(webhook.tenant_id) as conn:
                await conn.execute(
                    f"INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ({marks})",
                    *webhook_row(webhook),
                )
        return webhook

    async def get_webhook(self, tenant_id: int, webhook_id: str) -> Webhook | None:
        found = await self._tenant_webhooks(
            tenant_id, "WHERE tenant_id = $1 AND id = $2", webhook_id
        )
        return found[0] if found else None

    async def list_webhooks(self, tenant_id: int) -> list[Webhook]:
        return await self._tenant_webhooks(
            tenant_id, "WHERE tenant_id = $1 ORDER BY created_at, id"
        )

    async def _tenant_webhooks(self, tenant_id: int, where: str, *args: object) -> list[Webhook]:
        with _translated("webhook"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(
                    f"SELECT {WEBHOOK_COLUMNS} FROM webhooks {where}", tenant_id, *args
                )
        return [webhook_from_row(row) for row in rows]

    async def update_webhook(self, webhook: Webhook) -> bool:
        row = webhook_row(webhook)
        with _translated("webhook"):
            async with self.tenant_scope(webhook.tenant_id) as conn:
                status = await conn.execute(
                    "UPDATE webhooks SET url = $1, record_types = $2, format = $3,"
                    " batch_size = $4, enabled = $5, updated_at = $6"
                    " WHERE tenant_id = $7 AND id = $8",
                    *row[2:7],
                    webhook.updated_at,
                    webhook.tenant_id,
                    webhook.id,
                )
        return _row_count(status) == 1

    async def remove_webhook(self, tenant_id: int, webhook_id: str) -> bool:
        with _translated("webhook"):
            async with self.tenant_scope(tenant_id) as conn:
                status = await conn.execute(
                    "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2", tenant_id, webhook_id
                )
        return _row_count(status) == 1

    async def list_webhook_deliveries(
        self, tenant_id: int, webhook_id: str, before_id: int | None, limit: int
    ) -> list[WebhookDelivery]:
        before = before_id if before_id is not None else 2**63 - 1
        with _translated("webhook delivery"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(
                    f"SELECT {WEBHOOK_DELIVERY_COLUMNS} FROM webhook_deliveries"
                    " WHERE tenant_id = $1 AND webhook_id = $2 AND id < $3"
                    " ORDER BY id DESC LIMIT $4",
                    tenant_id,
                    webhook_id,
                    before,
                    limit,
                )
        return [webhook_delivery_from_row(row) for row in rows]

    async def enabled_webhooks(self) -> list[Webhook]:
        rows = await self._fetch(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE enabled ORDER BY id", subject="webhook"
        )
        return [webhook_from_row(row) for row in rows]

    async def webhook_position(self) -> LogPosition:
        row = await self._fetchrow("SELECT txid, seq FROM webhook_cursor WHERE id = 1")
        return LogPosition(int(row[0]), int(row[1]))

    async def records_since(
        self, position: LogPosition, limit: int
    ) -> tuple[list[LoggedRecord], LogPosition]:
        """By (txid, seq), only records of transactions below the snapshot's xmin: every
        transaction that could still add one behind them has ended."""
        rows = await self._fetch(
            RECORDS_SINCE_SQL,
            position.txid,
            position.seq,
            limit,
            subject="record",
        )
        found = [LoggedRecord(row[1], row[2], row[3], json.loads(row[4])) for row in rows]
        if not rows:
            return found, position
        return found, LogPosition(int(rows[-1][0]), int(rows[-1][1]))

    async def log_end(self, position: LogPosition) -> LogPosition:
        row = await self._fetchrow(LOG_END_SQL, subject="record")
        if row is None:
            return position
        end = LogPosition(int(row[0]), int(row[1]))
        return end if (end.txid, end.seq) > (position.txid, position.seq) else position

    async def queue_webhook_deliveries(
        self,
        expected: LogPosition,
        reached: LogPosition,
        deliveries: Sequence[NewWebhookDelivery],
        now: float,
    ) -> bool:
        pool = await self._get_pool()
        with _translated("webhook delivery"):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_NO_FLUSH)
                status = await conn.execute(
                    "UPDATE webhook_cursor SET txid = $1, seq = $2"
                    " WHERE id = 1 AND txid = $3 AND seq = $4",
                    reached.txid,
                    reached.seq,
                    expected.txid,
                    expected.seq,
                )
                if _row_count(status) != 1:
                    return False
                if deliveries:
                    await conn.execute(
                        "INSERT INTO webhook_deliveries (webhook_id, tenant_id, payload,"
                        " record_count, state, attempts, next_at, created_at, updated_at)"
                        " SELECT w, t, p, c, 'pending', 0, $5, $5, $5"
                        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[])"
                        " AS d(w, t, p, c)",
                        [d.webhook_id for d in deliveries],
                        [d.tenant_id for d in deliveries],
                        [d.payload for d in deliveries],
                        [d.record_count for d in deliveries],
                        now,
                    )
        return True

    async def claim_webhook_deliveries(
        self, now: float, lease_seconds: float, limit: int, skip: Collection[str]
    ) -> list[WebhookDelivery]:
        async with self._unflushed("webhook delivery") as conn:
            rows = await conn.fetch(
                "UPDATE webhook_deliveries SET lease_token = $1, lease_expires = $2"
                " WHERE id IN (SELECT d.id FROM webhook_deliveries d"
                "  JOIN webhooks w ON w.id = d.webhook_id"
                "  WHERE d.state = 'pending' AND d.next_at <= $3"
                "  AND (d.lease_expires IS NULL OR d.lease_expires <= $3) AND w.enabled"
                "  AND NOT d.webhook_id = ANY($4::text[])"
                "  ORDER BY d.next_at, d.id LIMIT $5 FOR UPDATE OF d SKIP LOCKED)"
                f" RETURNING {WEBHOOK_DELIVERY_COLUMNS}",
                new_lease_token(),
                now + lease_seconds,
                now,
                sorted(skip),
                limit,
            )
        found = [webhook_delivery_from_row(row) for row in rows]
        return sorted(found, key=lambda d: (d.next_at, d.id))

    async def finish_webhook_delivery(self, attempt: WebhookAttempt) -> bool:
        a = attempt
        async with self._unflushed("webhook delivery") as conn:
            status = await conn.execute(
                "UPDATE webhook_deliveries SET state = $1, attempts = $2, next_at = $3,"
                " last_status = $4, last_error = $5, updated_at = $6,"
                " lease_token = NULL, lease_expires = NULL"
                " WHERE id = $7 AND state = 'pending' AND lease_token = $8",
                a.state.value, a.attempts, a.next_at, a.status, a.error, a.at,
                a.delivery_id, a.lease_token,
            )  # fmt: skip
        return _row_count(status) == 1

    async def purge_webhook_deliveries(self, before: float) -> int:
        async with self._unflushed("webhook delivery") as conn:
            status = await conn.execute(
                "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND updated_at < $1",
                before,
            )
        return _row_count(status)

    # API keys.

    async def add_api_key(self, key: ApiKey) -> ApiKey:
        row = await self._fetchrow(
            "INSERT INTO api_keys (tenant_id, prefix, name, scopes, secret_hash,"
            " created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            *api_key_row(key),
            subject=f"API key {key.prefix!r}",
        )
        return replace(key, id=int(row[0]))

    async def get_api_key(self, prefix: str) -> ApiKey | None:
        row = await self._fetchrow(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE prefix = $1", prefix
        )
        return None if row is None else api_key_from_row(row)

    async def list_api_keys(self, tenant_id: int) -> list[ApiKey]:
        """A tenant's keys, under its row-level security and filtered by it too."""
        with _translated("API key"):
            async with self.tenant_scope(tenant_id) as conn:
                rows = await conn.fetch(
                    f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY id",
                    tenant_id,
                )
        return [api_key_from_row(row) for row in rows]

    async def revoke_api_key(
        self, prefix: str, now: float, tenant_id: int | None = None
    ) -> ApiKey | None:
        """Revoke as the owner (operators) or, for ``tenant_id``, under its row-level
        security and filtered by it too."""
        revoke = "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE prefix = $1"
        returning = f" RETURNING {API_KEY_COLUMNS}"
        if tenant_id is None:
            row = await self._fetchrow(revoke + returning, prefix, now, subject="API key")
        else:
            with _translated("API key"):
                async with self.tenant_scope(tenant_id) as conn:
                    mine = f"{revoke} AND tenant_id = $3{returning}"
                    row = await conn.fetchrow(mine, prefix, now, tenant_id)
        return None if row is None else api_key_from_row(row)


async def _listen_until_lost(conn: Any, wake: Callable[[], None]) -> None:
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_lost(_: object) -> None:
        if not lost.done():
            lost.set_result(None)

    conn.add_termination_listener(on_lost)
    await conn.add_listener(ACCEPTED_CHANNEL, lambda *_: wake())
    wake()
    await lost


@contextlib.contextmanager
def _translated(subject: str) -> Iterator[None]:
    """Turn asyncpg's server errors into the store's errors."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"{subject} already exists") from exc
    except asyncpg.ForeignKeyViolationError as exc:
        raise NotFound(f"{subject}: unknown tenant") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"postgresql: {exc}") from exc


async def _keep_session(conn: Any) -> None:
    """A connection back in the pool needs no reset beyond asyncpg's rollback of an open
    transaction: settings are ``SET LOCAL``, locks transaction-scoped, and ``LISTEN``
    has a connection of its own."""


def _acceptance_params(
    submissions: Sequence[Submission], records: Sequence[Record]
) -> tuple[object, ...]:
    """The parameters of ``_accept_sql``'s statement but the recipients wanted."""
    bodies = [(s.id, s.tenant_id, s.body, s.created_at) for s in submissions]
    messages = [message_row(m) for s in submissions for m in s.messages]
    return (
        *columns_of(bodies, len(BODY_TYPES)),
        *columns_of(messages, len(MESSAGE_TYPES)),
        *columns_of([record_row(r) for r in records], len(RECORD_TYPES)),
        QUEUE_BUMP_LOCK_KEY,
        *columns_of(queue_rows(submissions), len(QUEUE_TYPES)),
    )


async def _answer_claims(conn: Any, keys: Sequence[IdempotencyKey]) -> None:
    """Fill in the responses of the pending claims ``keys``; ``ClaimLost`` when one is
    no longer pending under its token (the transaction is then rolled back)."""
    if not keys:
        return
    status: str = await conn.execute(
        "UPDATE idempotency_keys AS k SET response = a.response, pending = false"
        " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])"
        " AS a (tenant_id, key, claim_token, response)"
        " WHERE k.tenant_id = a.tenant_id AND k.key = a.key"
        " AND k.claim_token = a.claim_token AND k.pending",
        [k.tenant_id for k in keys],
        [k.key for k in keys],
        [k.claim_token for k in keys],
        [k.response for k in keys],
    )
    if int(status.rsplit(" ", 1)[1]) != len(keys):
        raise ClaimLost(f"{len(keys)} idempotency keys, not all still claimed")


async def _bump_queues(conn: Any, rows: Sequence[tuple[str, int, str, str]]) -> None:
    """Upsert the queues (name, tenant_id, campaign, domain) that got queued messages
    with one new bump, under the bump lock (held to the commit, so bumps become visible
    in increasing order)."""
    if rows:
        await conn.execute(
            _BUMP_QUEUES_SQL, *columns_of(rows, len(QUEUE_TYPES)), QUEUE_BUMP_LOCK_KEY
        )


async def _insert_records(conn: Any, records: Sequence[Record]) -> None:
    if records:
        rows = [record_row(r) for r in records]
        await conn.execute(_INSERT_RECORDS_SQL, *columns_of(rows, len(RECORD_TYPES)))


def _numbered(parts: Sequence[str], first: int) -> str:
    """``parts`` joined, their ``?`` placeholders numbered ``$first``, ``$first+1``, ..."""
    pieces = "".join(parts).split("?")
    return "".join(f"{p}${first + i}" for i, p in enumerate(pieces[:-1])) + pieces[-1]


def _row_count(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 1``."""
    return int(status.rsplit(" ", 1)[-1])
