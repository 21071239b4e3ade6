"""The SQLite store: the default, embedded implementation of ``Store``.

One file, WAL journal, ``synchronous=FULL`` (a commit is on disk when it
returns), foreign keys on. The stdlib ``sqlite3`` module blocks, so every
call runs on one dedicated thread that owns the only connection; the event
loop awaits it through ``run_in_executor``.

Acceptance commits are on disk when they return; claims, renewals and
settlements commit with ``synchronous = NORMAL`` (WAL: no flush; a process crash loses
nothing, a power cut at most repeats an attempt). Writes take the write lock
up front (``BEGIN IMMEDIATE``) so a transaction never fails half-way on lock
upgrade. Engine processes sharing the file (``engine.processes``, or a
``--role`` split) first queue on an exclusive ``flock`` of
``PATH-writer.lock``: the kernel wakes the next writer the moment the lock is free,
where SQLite's own busy handler polls with sleeps of up to 100 ms. Any other
process on the same file (the CLI next to ``penguin run``) makes us wait up
to the busy timeout, after which the call fails with ``StoreError``.
Constraint failures become ``Conflict`` (a unique name is taken) or
``NotFound`` (unknown tenant).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

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
    DOMAIN_COLUMNS,
    IDEMPOTENCY_HELD,
    INBOUND_COLUMNS,
    INBOUND_FIELDS,
    MESSAGE_COLUMNS,
    MESSAGE_FIELDS,
    RECIPIENT_COLUMNS,
    RECIPIENT_INSERT,
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

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 30.0
_OF_TENANT = " AND (? IS NULL OR tenant_id = ?)"
"""Bound to (tenant_id, tenant_id): rows of that tenant, or of any for None."""
_CHUNK = 500  # bound on "?" parameters in one IN (...) list

_SETTLE_SQL = (
    "UPDATE messages SET state = ?3, attempts = ?4, due_at = ?5, last_error = ?6,"
    " lease_owner = NULL, lease_expires = NULL, lease_token = NULL"
    " WHERE id = ?1 AND state = 'leased' AND lease_token = ?2"
)


CLAIM_QUEUE_SELECT = (
    "SELECT id FROM messages INDEXED BY messages_queue_priority"
    " WHERE queue = ? AND state = 'queued' AND due_at <= ? ORDER BY priority DESC, due_at"
)
"""A queue's due messages in claim order. Named index: without statistics the planner
would take ``messages_queue_due`` and sort every due message of the queue, where this
one stops after the first ``LIMIT`` in priority order."""
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
_QUEUE_DELIVERY_SQL = (
    "INSERT INTO webhook_deliveries (webhook_id, tenant_id, payload, record_count, state,"
    " attempts, next_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
)
_QUEUE_DEPTHS_SQL = (
    "SELECT queue, count(*), min(due_at) FROM messages WHERE state = 'queued' GROUP BY queue"
)


class SqliteStore:
    """``Store`` on a SQLite file at ``path`` (its directory is created)."""

    def __init__(self, path: str) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="penguin-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # The store thread.

    async def _run(self, fn: Callable[[sqlite3.Connection], T], subject: str = "row") -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, subject)

    async def _write(
        self, fn: Callable[[sqlite3.Connection], T], subject: str = "row", *, flush: bool = True
    ) -> T:
        return await self._run(lambda conn: _transaction(conn, fn, flush=flush), subject)

    def _call(self, fn: Callable[[sqlite3.Connection], T], subject: str) -> T:
        try:
            if self._conn is None:
                self._conn = _connect(self.path)
            return fn(self._conn)
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
                raise NotFound(f"{subject}: unknown tenant") from exc
            raise Conflict(f"{subject} already exists") from exc
        except sqlite3.OperationalError as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # Lifecycle.

    async def migrate(self) -> list[int]:
        """Apply pending migrations, one transaction each; return the numbers applied."""
        return await self._run(_migrate)

    async def schema_version(self) -> int:
        return await self._run(_schema_version)

    def announce_accepted(self) -> None:
        """Nothing to carry it: other processes find new mail by polling."""

    async def watch_accepted(self, wake: Callable[[], None]) -> None:
        """Returns at once: SQLite has no notifications between processes."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_connection)
        finally:
            self._executor.shutdown(wait=True)

    # Tenants, domains, users, suppressions.

    async def create_tenant(self, name: str, now: float) -> Tenant:
        def insert(conn: sqlite3.Connection) -> Tenant:
            cur = conn.execute("INSERT INTO tenants (name, created_at) VALUES (?, ?)", (name, now))
            return Tenant(id=_rowid(cur), name=name, created_at=now)

        return await self._write(insert, f"tenant {name!r}")

    async def get_tenant(self, name: str) -> Tenant | None:
        sql = "SELECT id, name, created_at FROM tenants WHERE name = ?"
        return await self._run(lambda conn: _one(conn, Tenant, sql, (name,)))

    async def get_tenant_by_id(self, tenant_id: int) -> Tenant | None:
        sql = "SELECT id, name, created_at FROM tenants WHERE id = ?"
        return await self._run(lambda conn: _one(conn, Tenant, sql, (tenant_id,)))

    async def list_tenants(self) -> list[Tenant]:
        sql = "SELECT id, name, created_at FROM tenants ORDER BY id"
        return await self._run(lambda conn: _all(conn, Tenant, sql, ()))

    async def put_tenant_overrides(self, overrides: TenantOverrides) -> None:
        sql = (
            f"INSERT OR REPLACE INTO tenant_settings ({TENANT_OVERRIDE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?)"
        )
        row = tenant_overrides_row(overrides)
        await self._write(lambda conn: conn.execute(sql, row), "tenant settings")

    async def get_tenant_overrides(self, tenant_id: int) -> TenantOverrides | None:
        sql = f"SELECT {TENANT_OVERRIDE_COLUMNS} FROM tenant_settings WHERE tenant_id = ?"
        return await self._run(lambda conn: _one(conn, TenantOverrides, sql, (tenant_id,)))

    async def list_tenant_overrides(self) -> list[TenantOverrides]:
        sql = f"SELECT {TENANT_OVERRIDE_COLUMNS} FROM tenant_settings ORDER BY tenant_id"
        return await self._run(lambda conn: _all(conn, TenantOverrides, sql, ()))

    async def count_tenant_messages(self, tenant_id: int, since: float) -> int:
        sql = "SELECT count(*) FROM messages WHERE tenant_id = ? AND created_at >= ?"
        row = await self._run(lambda conn: conn.execute(sql, (tenant_id, since)).fetchone())
        return int(row[0])

    async def add_domain(self, domain: SendingDomain) -> SendingDomain:
        def insert(conn: sqlite3.Connection) -> SendingDomain:
            cur = conn.execute(
                "INSERT INTO sending_domains (tenant_id, name, selector, algorithm,"
                " private_key_sealed, public_key_b64, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    domain.tenant_id,
                    domain.name,
                    domain.selector,
                    domain.algorithm,
                    domain.private_key_sealed,
                    domain.public_key_b64,
                    domain.created_at,
                ),
            )
            return replace(domain, id=_rowid(cur))

        return await self._write(insert, f"domain {domain.name!r}")

    async def rotate_domain_key(self, domain: SendingDomain) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE sending_domains SET selector = ?, algorithm = ?, private_key_sealed = ?,"
                " public_key_b64 = ? WHERE name = ? AND tenant_id = ?",
                (
                    domain.selector,
                    domain.algorithm,
                    domain.private_key_sealed,
                    domain.public_key_b64,
                    domain.name,
                    domain.tenant_id,
                ),
            )
            return cur.rowcount == 1

        return await self._write(update, f"domain {domain.name!r}")

    async def get_domain(self, name: str, tenant_id: int | None = None) -> SendingDomain | None:
        sql = f"SELECT {DOMAIN_COLUMNS} FROM sending_domains WHERE name = ?{_OF_TENANT}"
        params = (name, tenant_id, tenant_id)
        return await self._run(lambda conn: _one(conn, SendingDomain, sql, params))

    async def list_domains(self, tenant_id: int) -> list[SendingDomain]:
        sql = f"SELECT {DOMAIN_COLUMNS} FROM sending_domains WHERE tenant_id = ? ORDER BY name"
        return await self._run(lambda conn: _all(conn, SendingDomain, sql, (tenant_id,)))

    async def add_smtp_user(self, user: SmtpUser) -> SmtpUser:
        def insert(conn: sqlite3.Connection) -> SmtpUser:
            cur = conn.execute(
                "INSERT INTO smtp_users (tenant_id, username, password_hash, created_at)"
                " VALUES (?, ?, ?, ?)",
                (user.tenant_id, user.username, user.password_hash, user.created_at),
            )
            return replace(user, id=_rowid(cur))

        return await self._write(insert, f"SMTP user {user.username!r}")

    async def get_smtp_user(self, username: str, tenant_id: int | None = None) -> SmtpUser | None:
        sql = (
            "SELECT id, tenant_id, username, password_hash, created_at"
            f" FROM smtp_users WHERE username = ?{_OF_TENANT}"
        )
        params = (username, tenant_id, tenant_id)
        return await self._run(lambda conn: _one(conn, SmtpUser, sql, params))

    async def add_suppression(self, suppression: Suppression) -> None:
        """Insert or replace (tenant, address); addresses compare case-insensitively."""
        params = (
            suppression.tenant_id,
            suppression.address.lower(),
            suppression.reason,
            suppression.created_at,
        )
        sql = (
            "INSERT INTO suppressions (tenant_id, address, reason, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, address)"
            " DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at"
        )
        await self._write(lambda conn: conn.execute(sql, params), "suppression")

    async def suppressed(self, tenant_id: int, addresses: Sequence[str]) -> set[str]:
        """The subset of ``addresses`` (lower-cased) suppressed for the tenant."""
        wanted = sorted({a.lower() for a in addresses})
        return await self._run(lambda conn: _suppressed_in(conn, tenant_id, wanted))

    # Acceptance and records.

    async def accept(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_keys: Sequence[IdempotencyKey] = (),
    ) -> None:
        """Store bodies, messages, records and idempotency keys in one durable transaction."""
        insert = _acceptance(submissions, records, idempotency_keys)
        await self._write(insert, "submission")

    async def accept_unless_suppressed(
        self,
        submissions: Sequence[Submission],
        records: Sequence[Record],
        idempotency_keys: Sequence[IdempotencyKey] = (),
    ) -> dict[int, set[str]]:
        wanted = recipients_by_tenant(submissions)
        insert = _acceptance(submissions, records, idempotency_keys)

        def insert_unless_suppressed(conn: sqlite3.Connection) -> dict[int, set[str]]:
            found = {t: _suppressed_in(conn, t, addresses) for t, addresses in wanted.items()}
            found = {tenant_id: hit for tenant_id, hit in found.items() if hit}
            if not found:
                insert(conn)
            return found

        return await self._write(insert_unless_suppressed, "submission")

    async def claim_idempotency_key(
        self, claim: IdempotencyKey, expired_before: float, abandoned_before: float
    ) -> IdempotencyKey:
        def upsert(conn: sqlite3.Connection) -> IdempotencyKey:
            params = claim_params(claim, expired_before, abandoned_before)
            if conn.execute(idempotency_claim_sql("?"), params).fetchone() is not None:
                return replace(claim, response="", pending=True)
            row = conn.execute(
                f"SELECT {IDEMPOTENCY_HELD} FROM idempotency_keys WHERE tenant_id = ? AND key = ?",
                (claim.tenant_id, claim.key),
            ).fetchone()
            return idempotency_key_from_row(claim.tenant_id, claim.key, row)

        return await self._write(upsert, "idempotency key", flush=False)

    async def release_idempotency_key(self, tenant_id: int, key: str, claim_token: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            sql = (
                "DELETE FROM idempotency_keys"
                " WHERE tenant_id = ? AND key = ? AND claim_token = ? AND pending"
            )
            return conn.execute(sql, (tenant_id, key, claim_token)).rowcount > 0

        return await self._write(delete, "idempotency key", flush=False)

    async def sweep_idempotency_keys(self, before: float) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            sql = "DELETE FROM idempotency_keys WHERE created_at < ?"
            return conn.execute(sql, (before,)).rowcount

        return await self._write(delete, "idempotency key")

    async def add_records(self, records: Sequence[Record]) -> None:
        await self._write(lambda conn: _insert_records(conn, records), "record")

    async def list_records(self, message_id: str) -> list[dict[str, Any]]:
        """The JSON objects of a message's records, oldest first."""

        def select(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT data FROM records WHERE message_id = ? ORDER BY seq", (message_id,)
            )
            return [json.loads(row[0]) for row in rows]

        return await self._run(select)

    async def records_after(self, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Records with a sequence number above ``seq``, in order: for following the log."""

        def select(conn: sqlite3.Connection) -> list[tuple[int, dict[str, Any]]]:
            rows = conn.execute(
                "SELECT seq, data FROM records WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            )
            return [(int(row[0]), json.loads(row[1])) for row in rows]

        return await self._run(select)

    async def last_record_seq(self) -> int:
        def select(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0])

        return await self._run(select)

    # Stats rollups.

    async def message_facts(self, message_ids: Sequence[str]) -> dict[str, MessageFacts]:
        wanted = sorted(set(message_ids))

        def select(conn: sqlite3.Connection) -> dict[str, MessageFacts]:
            found: dict[str, MessageFacts] = {}
            for first in range(0, len(wanted), 500):
                chunk = wanted[first : first + 500]
                sql = f"{stats_sql.MESSAGE_FACTS}({', '.join('?' * len(chunk))})"
                found.update(stats_sql.message_facts(row) for row in conn.execute(sql, chunk))
            return found

        return await self._run(select)

    async def lease_stats(self, owner: str, now: float, lease_seconds: float) -> LogPosition | None:
        def lease(conn: sqlite3.Connection) -> LogPosition | None:
            params = stats_sql.lease_params(owner, now, lease_seconds)
            row = conn.execute(stats_sql.LEASE, params).fetchone()
            return None if row is None else LogPosition(int(row[0]), int(row[1]))

        return await self._write(lease, "stats", flush=False)

    async def apply_stats(
        self, expected: LogPosition, reached: LogPosition, counts: Sequence[StatCount]
    ) -> bool:
        moved = stats_sql.cursor_params(expected, reached)

        def apply(conn: sqlite3.Connection) -> bool:
            if conn.execute(stats_sql.MOVE_CURSOR, moved).rowcount != 1:
                return False
            conn.executemany(stats_sql.ADD_COUNTS, stats_sql.count_rows(list(counts)))
            conn.executemany(stats_sql.ADD_BOUNCES, stats_sql.bounce_rows(list(counts)))
            conn.executemany(
                stats_sql.ADD_PROVIDER_COUNTS, stats_sql.provider_count_rows(list(counts))
            )
            conn.executemany(
                stats_sql.ADD_PROVIDER_BOUNCES, stats_sql.provider_bounce_rows(list(counts))
            )
            return True

        return await self._write(apply, "stats", flush=False)

    async def stat_totals(
        self, tenant_id: int, query: StatsQuery
    ) -> tuple[list[StatTotal], list[BounceTotal]]:
        totals_sql, bounces_sql, params = stats_sql.totals_sql(query, cast="")

        def select(conn: sqlite3.Connection) -> tuple[list[StatTotal], list[BounceTotal]]:
            totals = conn.execute(totals_sql, (tenant_id, *params)).fetchall()
            bounces = conn.execute(bounces_sql, (tenant_id, *params)).fetchall()
            return stats_sql.totals_of(query, totals, bounces)

        return await self._run(select)

    # The queue.

    async def claim(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueuedMessage]:
        """Lease up to ``limit`` due messages to ``owner`` under a new token, oldest due first."""
        sql = (
            "UPDATE messages SET state = 'leased', lease_owner = ?, lease_expires = ?,"
            " lease_token = ?"
            " WHERE id IN (SELECT id FROM messages"
            "  WHERE (state = 'queued' AND due_at <= ?)"
            "   OR (state = 'leased' AND lease_expires <= ?)"
            "  ORDER BY due_at LIMIT ?)"
            f" RETURNING {MESSAGE_COLUMNS}"
        )
        params = (owner, now + lease_seconds, new_lease_token(), now, now, limit)

        def update(conn: sqlite3.Connection) -> list[QueuedMessage]:
            claimed = [_message(row) for row in conn.execute(sql, params).fetchall()]
            return sorted(claimed, key=lambda m: (m.due_at, m.id))

        return await self._write(update, flush=False)

    async def due_counts(
        self, queues: Sequence[str], now: float, cap: int
    ) -> dict[str, tuple[int, float | None]]:
        """Due queued messages per queue, up to ``cap`` each, and the next due time."""
        count = (
            "SELECT count(*) FROM (SELECT 1 FROM messages"
            " WHERE queue = ? AND state = 'queued' AND due_at <= ? LIMIT ?)"
        )
        first = "SELECT min(due_at) FROM messages WHERE queue = ? AND state = 'queued'"

        def select(conn: sqlite3.Connection) -> dict[str, tuple[int, float | None]]:
            found: dict[str, tuple[int, float | None]] = {}
            for queue in queues:
                due = conn.execute(first, (queue,)).fetchone()[0]
                counted = conn.execute(count, (queue, now, cap)).fetchone()[0] if due else 0
                found[queue] = (int(counted), None if due is None else float(due))
            return found

        return await self._run(select)

    async def claim_queues(
        self, wanted: Sequence[tuple[str, int]], owner: str, now: float, lease_seconds: float
    ) -> dict[str, ClaimedQueue]:
        """Lease due messages of each queue, highest priority first, in one transaction."""
        sql = (
            "UPDATE messages SET state = 'leased', lease_owner = ?, lease_expires = ?,"
            " lease_token = ?"
            f" WHERE id IN ({CLAIM_QUEUE_SELECT} LIMIT ?)"
            f" RETURNING {MESSAGE_COLUMNS}"
        )
        next_due = "SELECT min(due_at) FROM messages WHERE queue = ? AND state = 'queued'"
        lease = (owner, now + lease_seconds, new_lease_token())

        def update(conn: sqlite3.Connection) -> dict[str, ClaimedQueue]:
            claimed: dict[str, ClaimedQueue] = {}
            for queue, limit in wanted:
                rows = conn.execute(sql, (*lease, queue, now, limit)).fetchall()
                due = conn.execute(next_due, (queue,)).fetchone()[0]
                claimed[queue] = ClaimedQueue(
                    sorted((_message(row) for row in rows), key=claim_order),
                    None if due is None else float(due),
                )
            return claimed

        return await self._write(update, flush=False)

    async def reap_leases(self, now: float) -> list[str]:
        """Expired leases back to the queue; the queues touched."""
        sql = (
            "UPDATE messages SET state = 'queued', due_at = min(due_at, ?1),"
            " lease_owner = NULL, lease_expires = NULL, lease_token = NULL"
            " WHERE state = 'leased' AND lease_expires <= ?1 RETURNING queue"
        )

        def update(conn: sqlite3.Connection) -> list[str]:
            return sorted({row[0] for row in conn.execute(sql, (now,))})

        return await self._write(update, flush=False)

    async def queues_changed(self, after_bump: int) -> list[QueueInfo]:
        sql = (
            "SELECT name, tenant_id, campaign, domain, bump FROM queues"
            " WHERE bump > ? ORDER BY bump, name"
        )
        return await self._run(lambda conn: _all(conn, QueueInfo, sql, (after_bump,)))

    async def queue_next_due(self, queue: str) -> float | None:
        sql = "SELECT min(due_at) FROM messages WHERE queue = ? AND state = 'queued'"

        def select(conn: sqlite3.Connection) -> float | None:
            due = conn.execute(sql, (queue,)).fetchone()[0]
            return None if due is None else float(due)

        return await self._run(select)

    async def delay_queue(
        self,
        queue: str,
        now: float,
        until: float,
        limit: int,
        record: Callable[[QueuedMessage], Record],
    ) -> int:
        """Up to ``limit`` due messages of ``queue`` due at ``until``, a record each."""
        select = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({CLAIM_QUEUE_SELECT} LIMIT ?)"
        )

        def update(conn: sqlite3.Connection) -> int:
            rows = conn.execute(select, (queue, now, limit))
            due = sorted((_message(row) for row in rows), key=claim_order)
            conn.executemany(
                "UPDATE messages SET due_at = ? WHERE id = ?", [(until, m.id) for m in due]
            )
            _insert_records(conn, [record(m) for m in due])
            return len(due)

        return await self._write(update, "delay", flush=False)

    async def undelay_queue(self, queue: str, until: float, now: float) -> int:
        """The messages of ``queue`` delayed to ``until`` due at ``now``."""
        sql = "UPDATE messages SET due_at = ? WHERE queue = ? AND state = 'queued' AND due_at = ?"
        return await self._write(
            lambda conn: conn.execute(sql, (now, queue, until)).rowcount, "undelay", flush=False
        )

    async def queue_depths(self) -> dict[str, tuple[int, float | None]]:
        def select(conn: sqlite3.Connection) -> dict[str, tuple[int, float | None]]:
            rows = conn.execute(_QUEUE_DEPTHS_SQL)
            return {row[0]: (int(row[1]), row[2]) for row in rows}

        return await self._run(select)

    # Suspensions, warmup counts, engine status.

    async def add_suspension(self, suspension: Suspension, records: Sequence[Record]) -> Suspension:
        def insert(conn: sqlite3.Connection) -> Suspension:
            cur = conn.execute(
                "INSERT INTO suspensions (scope, target, reason, created_at, until, origin)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                suspension_row(suspension),
            )
            _insert_records(conn, records)
            return replace(suspension, id=_rowid(cur))

        return await self._write(insert, "suspension")

    async def active_suspensions(self, now: float) -> list[Suspension]:
        sql = f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE until > ? ORDER BY id"

        def select(conn: sqlite3.Connection) -> list[Suspension]:
            return [suspension_from_row(dict(row)) for row in conn.execute(sql, (now,))]

        return await self._run(select)

    async def remove_suspensions(self, scope: str, target: str, records: Sequence[Record]) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            removed = conn.execute(
                "DELETE FROM suspensions WHERE scope = ? AND target = ?", (scope, target)
            ).rowcount
            if removed:
                _insert_records(conn, records)
            return removed

        return await self._write(delete, "suspension")

    async def add_warmup_counts(self, counts: Sequence[WarmupCount]) -> None:
        sql = (
            "INSERT INTO warmup_days (source, provider, day, sent, deferred, complained)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, provider, day) DO UPDATE SET"
            " sent = sent + excluded.sent, deferred = deferred + excluded.deferred,"
            " complained = complained + excluded.complained"
        )
        rows = [warmup_row(c) for c in counts]
        if rows:
            await self._write(lambda conn: conn.executemany(sql, rows), "warmup", flush=False)

    async def warmup_history(self, since_day: int) -> list[WarmupCount]:
        sql = (
            "SELECT source, provider, day, sent, deferred, complained FROM warmup_days"
            " WHERE day >= ? ORDER BY source, provider, day"
        )
        return await self._run(lambda conn: _all(conn, WarmupCount, sql, (since_day,)))

    async def put_status(self, owner: str, data: str, now: float) -> None:
        sql = (
            "INSERT INTO engine_status (owner, data, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (owner) DO UPDATE SET data = excluded.data,"
            " updated_at = excluded.updated_at"
        )
        await self._write(lambda conn: conn.execute(sql, (owner, data, now)), flush=False)

    async def list_status(self, since: float) -> list[tuple[str, str, float]]:
        sql = (
            "SELECT owner, data, updated_at FROM engine_status WHERE updated_at >= ? ORDER BY owner"
        )

        def select(conn: sqlite3.Connection) -> list[tuple[str, str, float]]:
            return [(row[0], row[1], float(row[2])) for row in conn.execute(sql, (since,))]

        return await self._run(select)

    async def renew(self, leases: Sequence[tuple[str, str]], until: float) -> int:
        """Extend to ``until`` the leases still held of ``leases`` (message id, token),
        each found by its message's id; return how many."""
        wanted = [(until, message_id, token) for message_id, token in sorted(set(leases))]

        def update(conn: sqlite3.Connection) -> int:
            return conn.executemany(
                "UPDATE messages SET lease_expires = ?"
                " WHERE id = ? AND state = 'leased' AND lease_token = ?",
                wanted,
            ).rowcount

        if not wanted:
            return 0
        return await self._write(update, "lease", flush=False)

    async def settle(self, settled: Sequence[tuple[Settlement, Record]]) -> set[str]:
        """Apply attempt results in one transaction, storing the records of those that
        applied; return the ids of their messages."""
        rows = [(settled_row(settlement), record) for settlement, record in settled]

        def update(conn: sqlite3.Connection) -> set[str]:
            applied: set[str] = set()
            records: list[Record] = []
            for row, record in rows:
                if conn.execute(_SETTLE_SQL, row).rowcount == 1:
                    applied.add(row[0])
                    records.append(record)
            _insert_records(conn, records)
            return applied

        return await self._write(update, "settlement", flush=False)

    async def get_body(self, submission_id: str) -> bytes | None:
        def select(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT data FROM bodies WHERE id = ?", (submission_id,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(select)

    async def get_bodies(self, submission_ids: Sequence[str]) -> dict[str, bytes]:
        """Bodies by submission id; missing ids are absent from the result."""
        wanted = sorted(set(submission_ids))

        def select(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk in _chunks(wanted, _CHUNK):
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(f"SELECT id, data FROM bodies WHERE id IN ({marks})", chunk)
                found.update((row[0], bytes(row[1])) for row in rows)
            return found

        return await self._run(select)

    async def get_message(self, message_id: str) -> QueuedMessage | None:
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"

        def select(conn: sqlite3.Connection) -> QueuedMessage | None:
            row = conn.execute(sql, (message_id,)).fetchone()
            return None if row is None else _message(row)

        return await self._run(select)

    async def tenant_message(
        self, tenant_id: int, message_id: str
    ) -> tuple[QueuedMessage, list[dict[str, Any]]] | None:
        def select(conn: sqlite3.Connection) -> tuple[QueuedMessage, list[dict[str, Any]]] | None:
            row = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ? AND tenant_id = ?",
                (message_id, tenant_id),
            ).fetchone()
            if row is None:
                return None
            rows = conn.execute(
                "SELECT data FROM records WHERE message_id = ? AND tenant_id = ? ORDER BY seq",
                (message_id, tenant_id),
            )
            return _message(row), [json.loads(r[0]) for r in rows]

        return await self._run(select)

    async def list_submission(self, submission_id: str) -> list[QueuedMessage]:
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE submission_id = ? ORDER BY id"
        return await self._run(lambda conn: _messages(conn, sql, (submission_id,)))

    async def queue_summary(self, tenant_id: int | None = None) -> list[QueueCount]:
        where, args = ("", ()) if tenant_id is None else (" WHERE tenant_id = ?", (tenant_id,))

        def select(conn: sqlite3.Connection) -> list[QueueCount]:
            rows = conn.execute(
                "SELECT queue, state, count(*), min(due_at), max(last_error) FROM messages"
                f"{where} GROUP BY queue, state ORDER BY queue, state",
                args,
            )
            return [
                QueueCount(queue, MessageState(state), count, due, error)
                for queue, state, count, due, error in rows
            ]

        return await self._run(select)

    async def tenant_messages(self, tenant_id: int, limit: int) -> list[QueuedMessage]:
        """A tenant's messages, newest first."""
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ?"
            " ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        return await self._run(lambda conn: _messages(conn, sql, (tenant_id, limit)))

    # Operators' hands on the queue.

    async def queue_messages(self, queue: str, limit: int) -> list[QueuedMessage]:
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE queue = ?"
            " AND state IN ('queued', 'leased') ORDER BY due_at, id LIMIT ?"
        )
        return await self._run(lambda conn: _messages(conn, sql, (queue, limit)))

    async def list_shunted(self, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` shunted messages, the longest parked first."""
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE state = 'shunted'"
            " ORDER BY due_at, id LIMIT ?"
        )
        return await self._run(lambda conn: _messages(conn, sql, (limit,)))

    async def requeue_shunted(
        self, message_ids: Sequence[str], now: float, records: Sequence[Record]
    ) -> list[str]:
        """Queue the shunted ones of ``message_ids`` again, due at ``now``, with their records."""
        wanted = sorted(set(message_ids))

        def update(conn: sqlite3.Connection) -> list[str]:
            done: list[str] = []
            queues: dict[str, tuple[str, int, str, str]] = {}
            for chunk in _chunks(wanted, _CHUNK):
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    "UPDATE messages SET state = 'queued', due_at = ?"
                    f" WHERE state = 'shunted' AND id IN ({marks})"
                    " RETURNING id, queue, tenant_id, campaign, domain",
                    (now, *chunk),
                ).fetchall()
                done += [row[0] for row in rows]
                queues.update({row[1]: tuple(row[1:]) for row in rows})
            _bump_queues(conn, [queues[name] for name in sorted(queues)])
            _insert_records(conn, records_about(records, done))
            return sorted(done)

        return await self._write(update, "requeue")

    async def remove_messages(
        self, message_ids: Sequence[str], records: Sequence[Record]
    ) -> list[str]:
        """Remove the queued or shunted ones of ``message_ids``, and unneeded bodies."""
        wanted = sorted(set(message_ids))

        def delete(conn: sqlite3.Connection) -> list[str]:
            removed: list[str] = []
            submissions: set[str] = set()
            for chunk in _chunks(wanted, _CHUNK):
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    "DELETE FROM messages WHERE state IN ('queued', 'shunted')"
                    f" AND id IN ({marks}) RETURNING id, submission_id",
                    chunk,
                ).fetchall()
                removed += [row[0] for row in rows]
                submissions.update(row[1] for row in rows)
            for chunk in _chunks(sorted(submissions), _CHUNK):
                marks = ", ".join("?" * len(chunk))
                conn.execute(
                    f"DELETE FROM bodies WHERE id IN ({marks}) AND NOT EXISTS"
                    " (SELECT 1 FROM messages WHERE submission_id = bodies.id)",
                    chunk,
                )
            _insert_records(conn, records_about(records, removed))
            return sorted(removed)

        return await self._write(delete, "removal")

    # Provisioning: listings and removals.

    async def tenant_messages_in(
        self, tenant_id: int, states: Collection[MessageState], limit: int
    ) -> list[QueuedMessage]:
        """Up to ``limit`` of a tenant's messages in ``states``, the oldest first."""
        wanted = sorted(state.value for state in states)
        if not wanted:
            return []
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ?"
            f" AND state IN ({', '.join('?' * len(wanted))}) ORDER BY created_at, id LIMIT ?"
        )
        return await self._run(lambda conn: _messages(conn, sql, (tenant_id, *wanted, limit)))

    async def remove_tenant(self, tenant_id: int) -> bool:
        """Remove the tenant and what it owns but its records; ``InUse`` while it has
        messages to deliver."""
        pending = sorted(state.value for state in PENDING_STATES)

        def delete(conn: sqlite3.Connection) -> bool:
            count = conn.execute(
                "SELECT count(*) FROM messages WHERE tenant_id = ?"
                f" AND state IN ({', '.join('?' * len(pending))})",
                (tenant_id, *pending),
            ).fetchone()[0]
            if count:
                raise InUse(f"{count} messages queued, leased or shunted", count)
            for table in TENANT_OWNED:
                conn.execute(f"DELETE FROM {table} WHERE tenant_id = ?", (tenant_id,))
            return conn.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,)).rowcount == 1

        return await self._write(delete, "tenant")

    async def remove_domain(self, name: str, tenant_id: int | None = None) -> bool:
        sql = f"DELETE FROM sending_domains WHERE name = ?{_OF_TENANT}"
        params = (name, tenant_id, tenant_id)
        return await self._write(lambda conn: conn.execute(sql, params).rowcount == 1, "domain")

    async def list_smtp_users(self, tenant_id: int) -> list[SmtpUser]:
        sql = (
            "SELECT id, tenant_id, username, password_hash, created_at"
            " FROM smtp_users WHERE tenant_id = ? ORDER BY username"
        )
        return await self._run(lambda conn: _all(conn, SmtpUser, sql, (tenant_id,)))

    async def remove_smtp_user(self, username: str, tenant_id: int | None = None) -> bool:
        sql = f"DELETE FROM smtp_users WHERE username = ?{_OF_TENANT}"
        params = (username, tenant_id, tenant_id)
        return await self._write(lambda conn: conn.execute(sql, params).rowcount == 1, "SMTP user")

    async def list_suppressions(
        self,
        tenant_id: int,
        after: str,
        limit: int,
        where: SuppressionFilter = EVERY_SUPPRESSION,
    ) -> list[Suppression]:
        conditions, params = suppression_conditions(where)
        sql = (
            "SELECT tenant_id, address, reason, created_at FROM suppressions"
            " WHERE tenant_id = ? AND address > ?"
            + "".join(f" AND {c}" for c in conditions)
            + " ORDER BY address LIMIT ?"
        )
        bound = (tenant_id, after, *params, limit)
        return await self._run(lambda conn: _all(conn, Suppression, sql, bound))

    async def add_new_suppressions(self, suppressions: Sequence[Suppression]) -> int:
        sql = (
            "INSERT INTO suppressions (tenant_id, address, reason, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, address) DO NOTHING"
        )
        rows = [suppression_row(x) for x in suppressions]

        def insert(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - before

        return await self._write(insert, "suppression")

    async def remove_suppression(self, tenant_id: int, address: str) -> bool:
        sql = "DELETE FROM suppressions WHERE tenant_id = ? AND address = ?"
        params = (tenant_id, address.lower())
        return await self._write(
            lambda conn: conn.execute(sql, params).rowcount == 1, "suppression"
        )

    # Campaigns.

    async def add_campaign(self, campaign: Campaign) -> Campaign:
        def insert(conn: sqlite3.Connection) -> Campaign:
            values = campaign_row(campaign)
            sql = f"{CAMPAIGN_INSERT} VALUES ({', '.join('?' * len(values))})"
            return replace(campaign, id=_rowid(conn.execute(sql, values)))

        return await self._write(insert, f"campaign {campaign.name!r}")

    async def get_campaign(self, tenant_id: int, campaign_id: int) -> Campaign | None:
        sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ? AND tenant_id = ?"
        return await self._run(lambda conn: _campaign(conn, sql, (campaign_id, tenant_id)))

    async def list_campaigns(self, tenant_id: int) -> list[Campaign]:
        sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = ? ORDER BY id DESC"
        return await self._run(lambda conn: _campaigns(conn, sql, (tenant_id,)))

    async def campaigns_in(self, states: Collection[CampaignState]) -> list[Campaign]:
        wanted = sorted(state.value for state in states)
        sql = (
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns"
            f" WHERE state IN ({', '.join('?' * len(wanted))}) ORDER BY id"
        )
        return await self._run(lambda conn: _campaigns(conn, sql, tuple(wanted)))

    async def campaign_routes(self) -> list[CampaignRoute]:
        def read(conn: sqlite3.Connection) -> list[CampaignRoute]:
            return [CampaignRoute(*row) for row in conn.execute(CAMPAIGN_ROUTES_SQL)]

        return await self._run(read)

    async def set_campaign_state(
        self,
        tenant_id: int,
        campaign_id: int,
        state: CampaignState,
        now: float,
        *,
        when: Collection[CampaignState],
    ) -> Campaign | None:
        wanted = sorted(s.value for s in when)
        sql = (
            "UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ? AND tenant_id = ?"
            f" AND state IN ({', '.join('?' * len(wanted))}) RETURNING {CAMPAIGN_COLUMNS}"
        )
        params = (state.value, now, campaign_id, tenant_id, *wanted)
        return await self._write(lambda conn: _campaign(conn, sql, params), "campaign")

    async def add_campaign_recipients(
        self, tenant_id: int, campaign_id: int, recipients: Sequence[CampaignRecipient]
    ) -> None:
        rows = recipient_rows(campaign_id, tenant_id, recipients)
        sql = f"{RECIPIENT_INSERT} VALUES (?, ?, ?, ?, ?, ?, ?)"
        await self._write(lambda conn: conn.executemany(sql, rows), "campaign recipient")

    async def last_campaign_row(self, tenant_id: int, campaign_id: int) -> int:
        sql = (
            "SELECT coalesce(max(row_no), 0) FROM campaign_recipients"
            " WHERE campaign_id = ? AND tenant_id = ?"
        )
        return await self._run(
            lambda conn: int(conn.execute(sql, (campaign_id, tenant_id)).fetchone()[0])
        )

    async def pending_campaign_recipients(
        self, tenant_id: int, campaign_id: int, after_row: int, limit: int
    ) -> list[CampaignRecipient]:
        sql = (
            f"SELECT {RECIPIENT_COLUMNS} FROM campaign_recipients"
            " INDEXED BY campaign_recipients_pending"
            " WHERE campaign_id = ? AND status = 'pending' AND row_no > ? AND tenant_id = ?"
            " ORDER BY row_no LIMIT ?"
        )
        params = (campaign_id, after_row, tenant_id, limit)

        def select(conn: sqlite3.Connection) -> list[CampaignRecipient]:
            cursor = conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [recipient_from_row(dict(zip(names, r, strict=True))) for r in cursor]

        return await self._run(select)

    async def mark_campaign_recipients(
        self, tenant_id: int, campaign_id: int, marks: Sequence[RecipientMark]
    ) -> None:
        sql = (
            "UPDATE campaign_recipients SET status = ?, message_id = ?, reason = ?"
            " WHERE campaign_id = ? AND row_no = ? AND tenant_id = ?"
        )
        rows = [
            (m.status.value, m.message_id, m.reason, campaign_id, m.row, tenant_id) for m in marks
        ]
        await self._write(lambda conn: conn.executemany(sql, rows), "campaign recipient")

    async def campaign_counts(self, tenant_id: int, campaign_id: int) -> dict[str, int]:
        sql = (
            "SELECT status, count(*) FROM campaign_recipients"
            " WHERE campaign_id = ? AND tenant_id = ? GROUP BY status"
        )

        def select(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(sql, (campaign_id, tenant_id))
            return {str(status): int(count) for status, count in rows}

        return await self._run(select)

    async def campaign_messages_in(
        self, tenant_id: int, campaign: str, states: Collection[MessageState], limit: int
    ) -> list[QueuedMessage]:
        wanted = sorted(state.value for state in states)
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ? AND campaign = ?"
            f" AND state IN ({', '.join('?' * len(wanted))}) ORDER BY created_at, id LIMIT ?"
        )
        params = (tenant_id, campaign, *wanted, limit)
        return await self._run(lambda conn: _messages(conn, sql, params))

    # Inbound bounces and complaints.

    async def accept_inbound(self, messages: Sequence[InboundMessage]) -> None:
        rows = [inbound_row(m) for m in messages]
        sql = (
            f"INSERT INTO inbound ({INBOUND_COLUMNS})"
            f" VALUES ({', '.join('?' * len(INBOUND_FIELDS))})"
        )
        await self._write(lambda conn: conn.executemany(sql, rows), "inbound message")

    async def claim_inbound(
        self, now: float, lease_seconds: float, limit: int
    ) -> list[InboundMessage]:
        sql = (
            f"UPDATE inbound SET lease_expires = ? WHERE id IN (SELECT id FROM inbound"
            f" WHERE state = 'pending' AND (lease_expires IS NULL OR lease_expires <= ?)"
            f" ORDER BY received_at LIMIT ?) RETURNING {INBOUND_COLUMNS}"
        )

        def update(conn: sqlite3.Connection) -> list[InboundMessage]:
            rows = conn.execute(sql, (now + lease_seconds, now, limit)).fetchall()
            found = [inbound_from_row(dict(zip(row.keys(), row, strict=True))) for row in rows]
            return sorted(found, key=lambda m: m.received_at)

        return await self._write(update, flush=False)

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
        mark = (
            "UPDATE inbound SET state = ?, reason = ?, processed_at = ?, lease_expires = NULL"
            " WHERE id = ? AND state = 'pending'"
        )
        suppress = (
            "INSERT INTO suppressions (tenant_id, address, reason, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, address) DO NOTHING"
        )
        soft = (
            "INSERT INTO soft_bounces (inbound_id, tenant_id, address, at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (inbound_id, address) DO NOTHING"
        )

        def update(conn: sqlite3.Connection) -> bool:
            if conn.execute(mark, (state.value, reason, now, inbound_id)).rowcount != 1:
                return False
            _insert_records(conn, records)
            conn.executemany(
                suppress,
                [(x.tenant_id, x.address.lower(), x.reason, x.created_at) for x in suppressions],
            )
            conn.executemany(
                soft, [(x.inbound_id, x.tenant_id, x.address.lower(), x.at) for x in soft_bounces]
            )
            return True

        return await self._write(update, "inbound result")

    async def soft_bounce_count(self, tenant_id: int, address: str, since: float) -> int:
        sql = "SELECT count(*) FROM soft_bounces WHERE tenant_id = ? AND address = ? AND at >= ?"
        params = (tenant_id, address.lower(), since)
        return await self._run(lambda conn: int(conn.execute(sql, params).fetchone()[0]))

    async def list_inbound(self, state: InboundState, limit: int) -> list[InboundMessage]:
        sql = (
            f"SELECT {INBOUND_COLUMNS} FROM inbound WHERE state = ?"
            " ORDER BY received_at DESC, id DESC LIMIT ?"
        )

        def select(conn: sqlite3.Connection) -> list[InboundMessage]:
            rows = conn.execute(sql, (state.value, limit))
            return [inbound_from_row(dict(zip(row.keys(), row, strict=True))) for row in rows]

        return await self._run(select)

    # Tracking domains.

    async def add_tracking_domain(self, domain: TrackingDomain) -> TrackingDomain:
        def insert(conn: sqlite3.Connection) -> TrackingDomain:
            if domain.is_default:
                conn.execute(
                    "UPDATE tracking_domains SET is_default = 0 WHERE tenant_id = ?",
                    (domain.tenant_id,),
                )
            cur = conn.execute(
                "INSERT INTO tracking_domains (tenant_id, name, is_default, created_at)"
                " VALUES (?, ?, ?, ?)",
                (domain.tenant_id, domain.name, int(domain.is_default), domain.created_at),
            )
            return replace(domain, id=_rowid(cur))

        return await self._write(insert, f"tracking domain {domain.name!r}")

    async def get_tracking_domain(
        self, name: str, tenant_id: int | None = None
    ) -> TrackingDomain | None:
        sql = f"SELECT {TRACKING_DOMAIN_COLUMNS} FROM tracking_domains WHERE name = ?{_OF_TENANT}"
        params = (name, tenant_id, tenant_id)
        found = await self._run(lambda conn: _tracking_domains(conn, sql, params))
        return found[0] if found else None

    async def list_tracking_domains(self, tenant_id: int | None) -> list[TrackingDomain]:
        sql = f"SELECT {TRACKING_DOMAIN_COLUMNS} FROM tracking_domains"
        if tenant_id is None:
            return await self._run(lambda conn: _tracking_domains(conn, sql + " ORDER BY name"))
        sql += " WHERE tenant_id = ? ORDER BY name"
        return await self._run(lambda conn: _tracking_domains(conn, sql, (tenant_id,)))

    async def set_default_tracking_domain(self, name: str) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT tenant_id FROM tracking_domains WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "UPDATE tracking_domains SET is_default = 0 WHERE tenant_id = ? AND name != ?",
                (row[0], name),
            )
            conn.execute("UPDATE tracking_domains SET is_default = 1 WHERE name = ?", (name,))
            return True

        return await self._write(update, f"tracking domain {name!r}")

    async def remove_tracking_domain(self, name: str, tenant_id: int | None = None) -> bool:
        sql = f"DELETE FROM tracking_domains WHERE name = ?{_OF_TENANT}"
        params = (name, tenant_id, tenant_id)
        return await self._write(
            lambda conn: conn.execute(sql, params).rowcount == 1, "tracking domain"
        )

    # A tenant's records.

    async def query_records(
        self, tenant_id: int, query: RecordQuery, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        sql, args = record_query(
            tenant_id, query, limit, lambda: "?", lambda name: f"json_extract(data, '$.{name}')"
        )

        def select(conn: sqlite3.Connection) -> list[tuple[int, dict[str, Any]]]:
            rows = conn.execute(sql, args)
            return [(int(row[0]), json.loads(row[1])) for row in rows]

        return await self._run(select)

    # Webhooks.

    async def add_webhook(self, webhook: Webhook) -> Webhook:
        sql = (
            f"INSERT INTO webhooks ({WEBHOOK_COLUMNS})"
            f" VALUES ({', '.join('?' * len(WEBHOOK_FIELDS))})"
        )
        await self._write(lambda conn: conn.execute(sql, webhook_row(webhook)), "webhook")
        return webhook

    async def get_webhook(self, tenant_id: int, webhook_id: str) -> Webhook | None:
        sql = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ? AND id = ?"
        found = await self._run(lambda conn: _webhooks(conn, sql, (tenant_id, webhook_id)))
        return found[0] if found else None

    async def list_webhooks(self, tenant_id: int) -> list[Webhook]:
        sql = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ? ORDER BY created_at, id"
        return await self._run(lambda conn: _webhooks(conn, sql, (tenant_id,)))

    async def update_webhook(self, webhook: Webhook) -> bool:
        row = webhook_row(webhook)
        sql = (
            "UPDATE webhooks SET url = ?, record_types = ?, format = ?, batch_size = ?,"
            " enabled = ?, updated_at = ? WHERE tenant_id = ? AND id = ?"
        )
        params = (*row[2:7], webhook.updated_at, webhook.tenant_id, webhook.id)
        return await self._write(lambda conn: conn.execute(sql, params).rowcount == 1, "webhook")

    async def remove_webhook(self, tenant_id: int, webhook_id: str) -> bool:
        sql = "DELETE FROM webhooks WHERE tenant_id = ? AND id = ?"
        return await self._write(
            lambda conn: conn.execute(sql, (tenant_id, webhook_id)).rowcount == 1, "webhook"
        )

    async def list_webhook_deliveries(
        self, tenant_id: int, webhook_id: str, before_id: int | None, limit: int
    ) -> list[WebhookDelivery]:
        sql = (
            f"SELECT {WEBHOOK_DELIVERY_COLUMNS} FROM webhook_deliveries"
            " WHERE tenant_id = ? AND webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
        )
        before = before_id if before_id is not None else 2**63 - 1
        params = (tenant_id, webhook_id, before, limit)
        return await self._run(lambda conn: _webhook_deliveries(conn, sql, params))

    async def enabled_webhooks(self) -> list[Webhook]:
        sql = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE enabled = 1 ORDER BY id"
        return await self._run(lambda conn: _webhooks(conn, sql, ()))

    async def webhook_position(self) -> LogPosition:
        sql = "SELECT txid, seq FROM webhook_cursor WHERE id = 1"
        row = await self._run(lambda conn: conn.execute(sql).fetchone())
        return LogPosition(int(row[0]), int(row[1]))

    async def records_since(
        self, position: LogPosition, limit: int
    ) -> tuple[list[LoggedRecord], LogPosition]:
        """By seq: one writer at a time, so records commit in seq order."""
        sql = "SELECT seq, tenant_id, type, data FROM records WHERE seq > ? ORDER BY seq LIMIT ?"

        def select(conn: sqlite3.Connection) -> list[LoggedRecord]:
            rows = conn.execute(sql, (position.seq, limit))
            return [LoggedRecord(row[0], row[1], row[2], json.loads(row[3])) for row in rows]

        found = await self._run(select)
        return found, LogPosition(0, found[-1].seq) if found else position

    async def log_end(self, position: LogPosition) -> LogPosition:
        sql = "SELECT max(seq) FROM records"
        row = await self._run(lambda conn: conn.execute(sql).fetchone())
        last = 0 if row[0] is None else int(row[0])
        return LogPosition(0, last) if last > position.seq else position

    async def queue_webhook_deliveries(
        self,
        expected: LogPosition,
        reached: LogPosition,
        deliveries: Sequence[NewWebhookDelivery],
        now: float,
    ) -> bool:
        rows = [
            (d.webhook_id, d.tenant_id, d.payload, d.record_count, now, now, now)
            for d in deliveries
        ]

        def update(conn: sqlite3.Connection) -> bool:
            moved = conn.execute(
                "UPDATE webhook_cursor SET txid = ?, seq = ? WHERE id = 1 AND txid = ? AND seq = ?",
                (reached.txid, reached.seq, expected.txid, expected.seq),
            )
            if moved.rowcount != 1:
                return False
            conn.executemany(_QUEUE_DELIVERY_SQL, rows)
            return True

        return await self._write(update, "webhook delivery", flush=False)

    async def claim_webhook_deliveries(
        self, now: float, lease_seconds: float, limit: int, skip: Collection[str]
    ) -> list[WebhookDelivery]:
        skipped = sorted(skip)
        sql = (
            "UPDATE webhook_deliveries SET lease_token = ?, lease_expires = ?"
            " WHERE id IN (SELECT d.id FROM webhook_deliveries d"
            "  JOIN webhooks w ON w.id = d.webhook_id"
            "  WHERE d.state = 'pending' AND d.next_at <= ?"
            "  AND (d.lease_expires IS NULL OR d.lease_expires <= ?) AND w.enabled = 1"
            f"  AND d.webhook_id NOT IN ({', '.join('?' * len(skipped))})"
            f"  ORDER BY d.next_at, d.id LIMIT ?) RETURNING {WEBHOOK_DELIVERY_COLUMNS}"
        )
        params = (new_lease_token(), now + lease_seconds, now, now, *skipped, limit)

        def update(conn: sqlite3.Connection) -> list[WebhookDelivery]:
            found = _webhook_deliveries(conn, sql, params)
            return sorted(found, key=lambda d: (d.next_at, d.id))

        return await self._write(update, "webhook delivery", flush=False)

    async def finish_webhook_delivery(self, attempt: WebhookAttempt) -> bool:
        sql = (
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?,"
            " last_status = ?, last_error = ?, updated_at = ?,"
            " lease_token = NULL, lease_expires = NULL"
            " WHERE id = ? AND state = 'pending' AND lease_token = ?"
        )
        a = attempt
        params = (
            a.state.value, a.attempts, a.next_at, a.status, a.error, a.at,
            a.delivery_id, a.lease_token,
        )  # fmt: skip
        return await self._write(
            lambda conn: conn.execute(sql, params).rowcount == 1, "webhook delivery", flush=False
        )

    async def purge_webhook_deliveries(self, before: float) -> int:
        sql = "DELETE FROM webhook_deliveries WHERE state != 'pending' AND updated_at < ?"
        return await self._write(
            lambda conn: conn.execute(sql, (before,)).rowcount, "webhook delivery", flush=False
        )

    # API keys.

    async def add_api_key(self, key: ApiKey) -> ApiKey:
        def insert(conn: sqlite3.Connection) -> ApiKey:
            cur = conn.execute(
                "INSERT INTO api_keys (tenant_id, prefix, name, scopes, secret_hash,"
                " created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                api_key_row(key),
            )
            return replace(key, id=_rowid(cur))

        return await self._write(insert, f"API key {key.prefix!r}")

    async def get_api_key(self, prefix: str) -> ApiKey | None:
        sql = f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE prefix = ?"
        return await self._run(lambda conn: _api_key(conn, sql, (prefix,)))

    async def list_api_keys(self, tenant_id: int) -> list[ApiKey]:
        sql = f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY id"
        return await self._run(
            lambda conn: [api_key_from_row(row) for row in conn.execute(sql, (tenant_id,))]
        )

    async def revoke_api_key(
        self, prefix: str, now: float, tenant_id: int | None = None
    ) -> ApiKey | None:
        mine = "" if tenant_id is None else " AND tenant_id = ?"
        params: tuple[object, ...] = (prefix,) if tenant_id is None else (prefix, tenant_id)

        def revoke(conn: sqlite3.Connection) -> ApiKey | None:
            conn.execute(
                f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE prefix = ?{mine}",
                (now, *params),
            )
            sql = f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE prefix = ?{mine}"
            return _api_key(conn, sql, params)

        return await self._write(revoke, "API key")


class _Connection(sqlite3.Connection):
    """A connection that also holds the file's writer lock descriptor."""

    writer_lock_fd: int = -1

    def close(self) -> None:
        super().close()
        if self.writer_lock_fd >= 0:
            os.close(self.writer_lock_fd)
            self.writer_lock_fd = -1


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, factory=_Connection
    )
    try:
        conn.writer_lock_fd = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _acceptance(
    submissions: Sequence[Submission],
    records: Sequence[Record],
    idempotency_keys: Sequence[IdempotencyKey],
) -> Callable[[sqlite3.Connection], None]:
    """What ``accept`` does in its transaction: bodies, messages, records, queues, keys."""
    bodies = [(s.id, s.tenant_id, s.body, s.created_at) for s in submissions]
    messages = [message_row(m) for s in submissions for m in s.messages]

    def insert(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO bodies (id, tenant_id, data, created_at) VALUES (?, ?, ?, ?)", bodies
        )
        conn.executemany(
            f"INSERT INTO messages ({MESSAGE_COLUMNS})"
            f" VALUES ({', '.join('?' * len(MESSAGE_FIELDS))})",
            messages,
        )
        _insert_records(conn, records)
        _bump_queues(conn, queue_rows(submissions))
        _answer_claims(conn, idempotency_keys)

    return insert


def _suppressed_in(conn: sqlite3.Connection, tenant_id: int, wanted: Sequence[str]) -> set[str]:
    """Which of ``wanted`` (lower-cased) the tenant has suppressed."""
    found: set[str] = set()
    for chunk in _chunks(wanted, _CHUNK):
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT address FROM suppressions WHERE tenant_id = ? AND address IN ({marks})"
        found.update(row[0] for row in conn.execute(sql, (tenant_id, *chunk)))
    return found


def _answer_claims(conn: sqlite3.Connection, keys: Sequence[IdempotencyKey]) -> None:
    """Fill in the responses of the pending claims ``keys``; ``ClaimLost`` when one is
    no longer pending under its token (the transaction is then rolled back)."""
    sql = (
        "UPDATE idempotency_keys SET response = ?, pending = false"
        " WHERE tenant_id = ? AND key = ? AND claim_token = ? AND pending"
    )
    for k in keys:
        if conn.execute(sql, (k.response, k.tenant_id, k.key, k.claim_token)).rowcount != 1:
            raise ClaimLost(f"idempotency key {k.key!r} is no longer claimed")


def _transaction(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], *, flush: bool = True
) -> T:
    """``fn`` in a write transaction. ``flush=False`` commits without waiting for the disk
    (``synchronous = NORMAL`` for this commit: safe from a process crash, not a power cut)."""
    lock_fd = conn.writer_lock_fd if isinstance(conn, _Connection) else -1
    if lock_fd >= 0:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    if not flush:
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        if not flush:
            conn.execute("PRAGMA synchronous = FULL")
        if lock_fd >= 0:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
    return result


def _migrate(conn: sqlite3.Connection) -> list[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for number, sql in migration_files("sqlite"):
        if number in done:
            continue
        if _transaction(conn, functools.partial(_apply_migration, number=number, sql=sql)):
            applied.append(number)
    return applied


def _apply_migration(conn: sqlite3.Connection, number: int, sql: str) -> bool:
    """Apply one migration unless another process did it first (we hold the write lock)."""
    exists = conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (number,))
    if exists.fetchone() is not None:
        return False
    for statement in _statements(sql):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at)"
        " VALUES (?, (julianday('now') - 2440587.5) * 86400.0)",
        (number,),
    )
    return True


def _schema_version(conn: sqlite3.Connection) -> int:
    table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if table is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (``executescript`` would commit first)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    leftover = [ln for ln in buffer.splitlines() if ln.strip() and not ln.lstrip().startswith("--")]
    if leftover:
        raise StoreError(f"incomplete SQL statement in migration: {leftover[0]!r}")


def _bump_queues(conn: sqlite3.Connection, rows: Sequence[tuple[str, int, str, str]]) -> None:
    """Upsert the queues (name, tenant_id, campaign, domain) that got queued messages,
    with a bump above every other."""
    if not rows:
        return
    bump = conn.execute("SELECT coalesce(max(bump), 0) + 1 FROM queues").fetchone()[0]
    conn.executemany(
        "INSERT INTO queues (name, tenant_id, campaign, domain, bump) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET tenant_id = excluded.tenant_id,"
        " campaign = excluded.campaign, domain = excluded.domain, bump = excluded.bump",
        [(*row, bump) for row in rows],
    )


def _insert_records(conn: sqlite3.Connection, records: Sequence[Record]) -> None:
    conn.executemany(
        "INSERT INTO records (tenant_id, message_id, type, timestamp, data) VALUES (?, ?, ?, ?, ?)",
        [record_row(r) for r in records],
    )


def _message(row: sqlite3.Row) -> QueuedMessage:
    return message_from_row(dict(zip(row.keys(), row, strict=True)))


def _messages(
    conn: sqlite3.Connection, sql: str, params: tuple[object, ...]
) -> list[QueuedMessage]:
    return [_message(row) for row in conn.execute(sql, params)]


def _one(
    conn: sqlite3.Connection, cls: Callable[..., T], sql: str, params: tuple[object, ...]
) -> T | None:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else cls(**dict(zip(row.keys(), row, strict=True)))


def _all(
    conn: sqlite3.Connection, cls: Callable[..., T], sql: str, params: tuple[object, ...]
) -> list[T]:
    return [cls(**dict(zip(row.keys(), row, strict=True))) for row in conn.execute(sql, params)]


def _tracking_domains(
    conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()
) -> list[TrackingDomain]:
    return [tracking_domain_from_row(row) for row in conn.execute(sql, params)]


def _webhooks(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Webhook]:
    return [webhook_from_row(row) for row in conn.execute(sql, params)]


def _webhook_deliveries(
    conn: sqlite3.Connection, sql: str, params: tuple[object, ...]
) -> list[WebhookDelivery]:
    return [webhook_delivery_from_row(dict(row)) for row in conn.execute(sql, params)]


def _api_key(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> ApiKey | None:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else api_key_from_row(row)


def _campaigns(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Campaign]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [campaign_from_row(dict(zip(names, row, strict=True))) for row in cursor]


def _campaign(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> Campaign | None:
    found = _campaigns(conn, sql, params)
    return found[0] if found else None


def _rowid(cur: sqlite3.Cursor) -> int:
    if cur.lastrowid is None:
        raise StoreError("insert returned no row id")
    return cur.lastrowid


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
