"""Operations: the operator's hands on the running system, one service behind the CLI and the API.

Owns ``Operations``: suspending and resuming a lane, source, tenant or
campaign (``penguin suspend`` / ``resume`` / ``suspensions``, stored with an
AdminAction record each; every delivering process reloads them within
``[scheduler] refresh_seconds``); inspecting the queue (counts by queue and
state, a queue's waiting messages, one message or submission with its
records, the shunted ones) and acting on it (requeue shunted messages, delete
queued or shunted ones, each with its record, as Postfix's ``postsuper``);
and the lanes and sources as the delivering processes last reported them
(``penguin lanes`` / ``ips``, from the store's status reports; a tenant sees
the sources its mail goes out from, ``tenant_ips``).

In: names and ids as an operator types them. Out: model values and report
rows; failures as the ``ProvisioningError`` tree (``Unknown`` for what does
not exist, ``Invalid`` for what cannot be done, with the ``field`` at fault).

Invariants: every change is one store call with its records; requeueing every
shunted message handles each once, even while more are shunted meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config import Settings
from engine.clock import Clock, SystemClock
from engine.delivery.queue_admin import REMOVABLE, REQUEUEABLE, removal_record, requeue_record
from engine.delivery.settling import RecordContext
from engine.durations import parse_duration
from engine.model import MessageState, QueueCount, QueuedMessage, Suspension, SuspensionScope
from engine.provisioning.errors import Invalid, Unknown, translated
from engine.records.record import Record
from engine.scheduler.routing import tenant_sources
from engine.scheduler.shaping import Shaping
from engine.scheduler.status import lane_rows, source_rows
from engine.scheduler.suspensions import (
    ADMIN_ORIGIN,
    BadTarget,
    describe,
    resume_record,
    scoped_target,
    suspension_record,
    tenant_of,
)
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.scheduler.warmup import WarmupPolicy, plans_from_settings, utc_day
from engine.scheduler.warmup_ledger import HISTORY_DAYS as WARMUP_HISTORY_DAYS
from engine.store import Store

PAGE = 1000
"""Shunted messages requeued per transaction when all of them are."""
STATUS_FRESH_SECONDS = 30.0
"""Status reports older than this come from processes that stopped; they are left out."""


@dataclass(frozen=True, slots=True)
class MessageDetails:
    """A message and its records, oldest first."""

    message: QueuedMessage
    records: list[dict[str, Any]]


class Operations:
    """The operator's actions on ``store``; ``nodeid`` names this node in their records."""

    def __init__(
        self, store: Store, settings: Settings, *, nodeid: str, clock: Clock | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self._nodeid = nodeid
        self._clock = clock or SystemClock()

    # Suspensions.

    async def suspend(
        self, scope: str, target: str, *, reason: str, duration: str, provider: str = ""
    ) -> Suspension:
        """Suspend ``scope`` (lane, source, tenant, campaign) ``target`` for ``duration``
        (``90s``, ``2h``...) because of ``reason``; stored with an AdminAction record."""
        kind, stored = self._scope_target(scope, target, provider)
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise Invalid(str(exc), field="duration") from None
        reason = reason.strip()
        if not reason:
            raise Invalid("say why", field="reason")
        tenant_id = await self._tenant_id(kind, stored)
        now = self._clock.now()
        wanted = Suspension(kind, stored, reason, now, now + seconds, ADMIN_ORIGIN)
        record = suspension_record(wanted, nodeid=self._nodeid, tenant_id=tenant_id)
        with translated(describe(kind, stored)):
            return await self._store.add_suspension(wanted, [record])

    async def resume(self, scope: str, target: str, *, provider: str = "") -> int:
        """Lift the suspensions of ``scope`` ``target``; how many. ``Unknown`` when none."""
        kind, stored = self._scope_target(scope, target, provider)
        tenant_id = await self._tenant_id(kind, stored)
        now = self._clock.now()
        record = resume_record(kind, stored, now=now, nodeid=self._nodeid, tenant_id=tenant_id)
        with translated(describe(kind, stored)):
            removed = await self._store.remove_suspensions(kind.value, stored, [record])
        if not removed:
            raise Unknown(f"{describe(kind, stored)} is not suspended")
        return removed

    async def suspensions(self) -> list[Suspension]:
        """The suspensions in force now, operators' and backoff rules'."""
        with translated("suspensions"):
            return await self._store.active_suspensions(self._clock.now())

    def _scope_target(self, scope: str, target: str, provider: str) -> tuple[SuspensionScope, str]:
        """The scope and stored target named; a source must be configured."""
        try:
            kind, stored = scoped_target(scope, target, provider)
        except BadTarget as exc:
            raise Invalid(str(exc), field="target") from None
        if kind in (SuspensionScope.LANE, SuspensionScope.SOURCE, SuspensionScope.SOURCE_PROVIDER):
            source = stored.partition("|")[0]
            if source not in self._settings.sources:
                known = ", ".join(sorted(self._settings.sources))
                raise Invalid(f"unknown source {source!r} (configured: {known})", field="target")
        return kind, stored

    async def _tenant_id(self, scope: SuspensionScope, target: str) -> int | None:
        """The id of the tenant a tenant or campaign target names (which must exist)."""
        name = tenant_of(scope, target)
        return await self._existing_tenant_id(name) if name else None

    async def _existing_tenant_id(self, name: str) -> int:
        """The id of the tenant named ``name``; ``Unknown`` when there is none."""
        with translated(f"tenant {name!r}"):
            tenant = await self._store.get_tenant(name)
        if tenant is None:
            raise Unknown(f"no tenant {name!r}")
        return tenant.id

    # The queue.

    async def queue_summary(self, tenant: str | None = None) -> list[QueueCount]:
        """Messages by scheduled queue and state, with the next due time and last error;
        every tenant's, or only those of the tenant named ``tenant`` (which must exist)."""
        tenant_id = None if tenant is None else await self._existing_tenant_id(tenant)
        with translated("queue"):
            return await self._store.queue_summary(tenant_id)

    async def queue_messages(self, queue: str, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` messages waiting in ``queue``, the soonest due first."""
        with translated(f"queue {queue!r}"):
            return await self._store.queue_messages(queue, limit)

    async def messages(self, message_or_submission: str) -> list[MessageDetails]:
        """The message of that id, or the messages of that submission, with their records."""
        messages = await self._found(message_or_submission)
        with translated(message_or_submission):
            return [MessageDetails(m, await self._store.list_records(m.id)) for m in messages]

    async def shunted(self, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` shunted messages, the longest parked first."""
        with translated("shunted messages"):
            return await self._store.list_shunted(limit)

    async def requeue(self, message_or_submission: str | None) -> list[str]:
        """Queue the shunted message (or the submission's shunted messages) again, due now;
        every shunted message with None. The ids requeued."""
        now = self._clock.now()
        records = _AdminRecords(self._store, self._nodeid, now)
        with translated("shunted messages"):
            if message_or_submission is None:
                requeued = await self._requeue_all(records, now)
            else:
                chosen = await self._chosen(message_or_submission, REQUEUEABLE, "shunted")
                batch = [await records.requeue(m) for m in chosen]
                requeued = await self._store.requeue_shunted([m.id for m in chosen], now, batch)
        if requeued:
            self._store.announce_accepted()
        return requeued

    async def delete(self, message_or_submission: str) -> list[str]:
        """Remove the queued or shunted message (or the submission's), each with an
        AdminBounce record; the ids removed."""
        chosen = await self._chosen(message_or_submission, REMOVABLE, "queued or shunted")
        with translated(message_or_submission):
            return await self.remove(chosen)

    async def remove(self, messages: Sequence[QueuedMessage], *, why: str = "") -> list[str]:
        """Remove those of ``messages`` still queued or shunted, each with an AdminBounce
        record (saying ``why``, when given); the ids removed (a campaign's cancel,
        ``delete``)."""
        records = _AdminRecords(self._store, self._nodeid, self._clock.now())
        batch = [await records.removal(m, why) for m in messages]
        return await self._store.remove_messages([m.id for m in messages], batch)

    async def _requeue_all(self, records: _AdminRecords, now: float) -> list[str]:
        """Requeue, a page at a time, every message shunted before ``now``, each once.

        Every page requeues at least one message not requeued before, or ends the loop.
        """
        requeued: dict[str, None] = {}
        while True:
            listed = await self._store.list_shunted(PAGE)
            page = [m for m in listed if m.due_at <= now and m.id not in requeued]
            batch = [await records.requeue(m) for m in page]
            done = await self._store.requeue_shunted([m.id for m in page], now, batch)
            if not done:
                return list(requeued)
            requeued.update(dict.fromkeys(done))

    async def _found(self, message_or_submission: str) -> list[QueuedMessage]:
        with translated(message_or_submission):
            message = await self._store.get_message(message_or_submission)
            if message is not None:
                return [message]
            messages = await self._store.list_submission(message_or_submission)
        if not messages:
            raise Unknown(f"no message or submission {message_or_submission!r}")
        return messages

    async def _chosen(
        self, message_or_submission: str, states: frozenset[MessageState], wanted: str
    ) -> list[QueuedMessage]:
        """The messages in ``states`` of a message id or a submission id."""
        messages = await self._found(message_or_submission)
        chosen = [m for m in messages if m.state in states]
        if not chosen:
            found = ", ".join(sorted({m.state.value for m in messages}))
            raise Invalid(f"{message_or_submission}: nothing {wanted} (found: {found})")
        return chosen

    # Lanes and sources, as the delivering processes report them.

    async def lanes(self) -> list[dict[str, Any]]:
        """Each lane active lately: connections, limit, in flight, rate, backoff level,
        queued, next due (``engine.scheduler.status.lane_rows``)."""
        with translated("lanes"):
            reports = await self._reports()
            return lane_rows(reports, await self._store.queue_depths())

    async def ips(self) -> list[dict[str, Any]]:
        """Each source and provider: warmup plan and day, sent today and cap, state
        (``engine.scheduler.status.source_rows``)."""
        now = self._clock.now()
        today = utc_day(now)
        settings = self._settings
        plans = plans_from_settings(settings)
        with translated("sources"):
            history = await self._store.warmup_history(today - WARMUP_HISTORY_DAYS)
            reports = await self._reports()
            suspensions = await self._store.active_suspensions(now)
        return source_rows(
            sources={
                name: plans[source.warmup] if source.warmup else None
                for name, source in settings.sources.items()
            },
            providers=Shaping.load(settings.scheduler.shaping_files).providers,
            history=history,
            today=today,
            policy=WarmupPolicy.from_settings(settings),
            reports=reports,
            suspensions=suspensions,
            now=now,
        )

    async def tenant_ips(self, tenant: str) -> list[dict[str, Any]]:
        """The rows of ``ips`` of the sources ``tenant``'s mail goes out from: its
        pool's and its campaigns' pools' (with the store's settings in force); the
        tenant must exist."""
        await self._existing_tenant_id(tenant)
        book = TenantSettingsBook(self._settings)
        with translated("sources"):
            await book.refresh(self._store)
        sources = tenant_sources(book.routing, tenant)
        return [row for row in await self.ips() if row["source"] in sources]

    async def _reports(self) -> list[dict[str, Any]]:
        since = self._clock.now() - STATUS_FRESH_SECONDS
        return [json.loads(data) for _, data, _ in await self._store.list_status(since)]


class _AdminRecords:
    """The records of an operator's actions at ``now``, with each tenant's name."""

    def __init__(self, store: Store, nodeid: str, now: float) -> None:
        self._store = store
        self._now = now
        self._nodeid = nodeid
        self._tenants: dict[int, str] = {}

    async def requeue(self, message: QueuedMessage) -> Record:
        return requeue_record(message, now=self._now, context=await self._context(message))

    async def removal(self, message: QueuedMessage, why: str = "") -> Record:
        context = await self._context(message)
        return removal_record(message, now=self._now, context=context, why=why)

    async def _context(self, message: QueuedMessage) -> RecordContext:
        name = self._tenants.get(message.tenant_id)
        if name is None:
            tenant = await self._store.get_tenant_by_id(message.tenant_id)
            name = self._tenants[message.tenant_id] = tenant.name if tenant else ""
        return RecordContext(self._nodeid, name)
