"""The delivery service: ask the scheduler, transform, sign, hand to the deliverer, settle.

In: batches of messages leased from the store, each with the source it goes
out from, as the scheduler picks them (``engine.scheduler.Scheduler``;
several processes share one store). Out: one settlement and one record per
attempt, group-committed through ``store.settle``
(``engine.store.group_commit``); the records of the settlements that applied
are then appended to the JSON record log.

A lease lasts while its attempt runs: every third of ``delivery.lease_seconds``
one ``store.renew`` extends the leases of all messages in flight, so only
the messages of a process that died return to the queue. Each claim leases
under a token of its own and a settlement names it, so an attempt whose
lease expired anyway (the process stalled past it) and was claimed by
another process changes nothing; when this process claims one of its own
running messages again, the running attempt adopts the new lease instead of
a second attempt starting.

Each claimed message runs as a task of the service's TaskGroup, at most
``delivery.max_in_flight`` at once. Before signing, the message transform
(``engine.delivery.transform``) gives the body of each copy; while it is not
per-recipient, a submission in a claimed batch is transformed and signed once
and its copies share the result. The copies of a claimed batch are signed
together: one hand-off to each signing thread per batch, not one per copy.
The body is signed with the key of its header From domain if that is a
sending domain of the message's tenant (never another tenant's key); the
transform then gives each message its envelope sender from that sending
domain (a return path of its own). An unexpected error
while handling a message never drops it: the message is parked as
``shunted`` with the error and a record (Mailman's shunt queue). Stopping
lets in-flight attempts finish to a deadline; what is cut off keeps its
lease, which expires, so the message is tried again (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from config import Settings
from engine.clock import Clock
from engine.delivery.settling import (
    RecordContext,
    expire_unattempted,
    is_past_max_age,
    settle_attempt,
    shunt,
)
from engine.delivery.transform import MessageTransform
from engine.delivery.transport import AttemptReport, Deliverer, OutboundMessage
from engine.dkim.keys import DkimPrivateKey
from engine.dkim.signer import DkimSigner
from engine.dkim.signing_keys import SigningKeys
from engine.model import MessageState, QueuedMessage, Settlement
from engine.records import metrics
from engine.records.log import RecordLog
from engine.records.record import Record
from engine.scheduler import Dispatch, Scheduler
from engine.store import Store
from engine.store.group_commit import GroupCommit
from engine.submission.acceptance import message_from_domains

log = logging.getLogger(__name__)

Settled = tuple[Settlement, Record]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A body ready to go out: signed for ``sending_domain``, or unsigned (None)."""

    data: bytes
    sending_domain: str | None


@dataclass(frozen=True, slots=True)
class SignJob:
    """A body to sign with the key of its sending domain."""

    body: bytes
    domain: str
    selector: str
    algorithm: str
    key: DkimPrivateKey
    now: float


Copies = dict[str, Prepared | Exception]
"""The body of each copy of a claimed batch, by ``DeliveryService._copy``."""

QUEUE_GAUGE_SECONDS = 5.0
STATUS_REPORT_SECONDS = 2.0
QUEUE_GAUGE_COST_SHARE = 0.005
"""The queue gauge counts every queued message: it runs at most this share of the time."""
MIN_WAIT_SECONDS = 0.001
HOUSEKEEPING_SECONDS = 1.0
RENEWALS_PER_LEASE = 3


class DeliveryService:
    def __init__(
        self,
        *,
        store: Store,
        scheduler: Scheduler,
        deliverer: Deliverer,
        transform: MessageTransform,
        keys: SigningKeys,
        settings: Settings,
        clock: Clock,
        record_log: RecordLog,
        owner: str,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._deliverer = deliverer
        self._transform = transform
        self._keys = keys
        self._signer = DkimSigner()
        self._settings = settings
        self._clock = clock
        self._record_log = record_log
        self._owner = owner
        self._tuning = settings.delivery
        self._rng = rng or random.Random()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self._tuning.max_in_flight)
        self._in_flight = 0
        self._leases: dict[str, str] = {}
        """The lease token of each message in flight, by message id."""
        self._settler: GroupCommit[Settled] = GroupCommit(
            "settle", self._write, settings.database.commit_batch_max
        )
        threads = self._tuning.signing_threads
        self._signing_pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="penguin-dkim") if threads else None
        )

    def wake(self) -> None:
        """New work may be due: claim now rather than at the next poll."""
        self._wakeup.set()

    def stop(self) -> None:
        """Stop claiming; ``run`` returns once in-flight attempts are settled."""
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Claim and deliver until ``stop``."""
        settler = asyncio.create_task(self._settler.run(), name="settle")
        renewer = asyncio.create_task(self._renew_leases(), name="renew leases")
        try:
            async with asyncio.TaskGroup() as attempts:
                attempts.create_task(self._housekeeping(), name="housekeeping")
                await self._claim_loop(attempts)
        finally:
            renewer.cancel()
            await asyncio.wait({renewer})
            self._settler.close()
            await settler
            if self._signing_pool is not None:
                self._signing_pool.shutdown(wait=False)

    async def _claim_loop(self, attempts: asyncio.TaskGroup) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            free = self._tuning.max_in_flight - self._in_flight
            batch: Sequence[Dispatch] = ()
            if free > 0:
                batch = await self._scheduler.next_batch(
                    owner=self._owner,
                    now=self._clock.now(),
                    lease_seconds=self._tuning.lease_seconds,
                    limit=min(free, self._tuning.claim_batch),
                )
            if batch:
                await self._dispatch(batch, attempts)
                continue
            wait = self._tuning.idle_poll_seconds
            due = self._scheduler.next_wakeup() - self._clock.now()
            if free > 0 and due < wait:
                wait = max(due, MIN_WAIT_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    async def _dispatch(self, batch: Sequence[Dispatch], attempts: asyncio.TaskGroup) -> None:
        starting: list[Dispatch] = []
        for dispatch in batch:
            message = dispatch.message
            assert message.lease_token is not None, "a claimed message carries its lease token"
            if message.id not in self._leases:
                starting.append(dispatch)
            else:
                await self._scheduler.finished(dispatch, self._clock.now())
            # One of ours claimed again keeps its running attempt, under the new lease.
            self._leases[message.id] = message.lease_token
        bodies = await self._store.get_bodies(sorted({d.message.submission_id for d in starting}))
        prepared = asyncio.ensure_future(self._prepare(starting, bodies, self._clock.now()))
        for dispatch in starting:
            await self._slots.acquire()
            self._in_flight += 1
            attempts.create_task(self._attempt(dispatch, prepared))

    async def _attempt(self, dispatch: Dispatch, prepared: asyncio.Future[Copies]) -> None:
        message = dispatch.message
        report: AttemptReport | None = None
        try:
            report, settled = await self._attempt_once(dispatch, prepared)
        except Exception as exc:
            log.exception("message %s: unexpected error, parked as shunted", message.id)
            settled = self._shunt(dispatch, exc)
        try:
            await self._settler.commit(settled)
        except Exception:
            log.exception("message %s: settlement not stored; its lease will expire", message.id)
        try:
            await self._feedback(dispatch, report)
        except Exception:
            log.exception("message %s: scheduler feedback failed", message.id)
        finally:
            del self._leases[message.id]
            self._in_flight -= 1
            self._slots.release()
            if self._in_flight == self._tuning.max_in_flight // 2:
                self._wakeup.set()

    async def _feedback(self, dispatch: Dispatch, report: AttemptReport | None) -> None:
        """Tell the scheduler how the dispatch ended; log the records it stored of it."""
        now = self._clock.now()
        if report is None:
            records = await self._scheduler.finished(dispatch, now)
        else:
            outcome = report.outcome
            records = await self._scheduler.finished(dispatch, now, outcome.kind, outcome.reply)
        self._wakeup.set()
        self._record_log.write(list(records))

    async def _attempt_once(
        self, dispatch: Dispatch, prepared: asyncio.Future[Copies]
    ) -> tuple[AttemptReport | None, Settled]:
        message = dispatch.message
        now = self._clock.now()
        context = RecordContext(self._nodeid, dispatch.tenant, dispatch.pool)
        if is_past_max_age(message, now, self._settings.retry):
            metrics.DELIVERIES.labels("expired", "").inc()
            return None, expire_unattempted(
                message, lease_token=self._leases[message.id], now=now, context=context
            )
        outgoing = (await asyncio.shield(prepared))[self._copy(message)]
        if isinstance(outgoing, Exception):
            raise outgoing
        data = outgoing.data
        started = time.perf_counter()
        report = await self._deliverer.deliver(
            OutboundMessage(
                id=message.id,
                sender=self._transform.sender(message, outgoing.sending_domain),
                recipient=message.recipient,
                domain=message.domain,
                source=dispatch.source,
                shaping=dispatch.shaping,
                data=data,
                tenant=context.tenant,
            )
        )
        kind = report.outcome.kind.value
        metrics.ATTEMPT_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.DELIVERIES.labels(kind, report.site or "").inc()
        return report, settle_attempt(
            message,
            report,
            lease_token=self._leases[message.id],
            now=self._clock.now(),
            size=len(data),
            retry=self._settings.retry,
            rng=self._rng,
            context=context,
        )

    def _copy(self, message: QueuedMessage) -> str:
        """What names the body ``message`` shares with other messages of its batch."""
        return message.id if self._transform.per_recipient(message) else message.submission_id

    async def _prepare(
        self, batch: Sequence[Dispatch], bodies: dict[str, bytes], now: float
    ) -> Copies:
        """The body that goes out for each copy of ``batch``, signed by its From
        domain's key (unsigned if that domain is not one of the tenant's sending
        domains), or the error that stopped it."""
        copies: Copies = {}
        signing: list[tuple[str, SignJob]] = []
        seen: set[str] = set()
        for dispatch in batch:
            message = dispatch.message
            copy = self._copy(message)
            if copy in seen:
                continue
            seen.add(copy)
            outgoing: Prepared | SignJob | Exception
            try:
                body = bodies.get(message.submission_id)
                if body is None:
                    raise LookupError(f"body of submission {message.submission_id} is missing")
                outgoing = await self._unsigned_or_job(
                    self._transform.body(message, body), message.tenant_id, now
                )
            except Exception as exc:
                outgoing = exc
            if isinstance(outgoing, SignJob):
                signing.append((copy, outgoing))
            else:
                copies[copy] = outgoing
        signed = await self._sign_all([job for _, job in signing])
        for (copy, job), data in zip(signing, signed, strict=True):
            copies[copy] = data if isinstance(data, Exception) else Prepared(data, job.domain)
        return copies

    async def _unsigned_or_job(self, body: bytes, tenant_id: int, now: float) -> Prepared | SignJob:
        """``body`` unsigned if its From domain is not one of the tenant's sending
        domains, else what signing it takes."""
        domains = message_from_domains(body)
        domain = await self._keys.domain(domains[0]) if domains else None
        if domain is None or domain.tenant_id != tenant_id:
            log.warning("no DKIM key of the tenant for From domain %s; sending unsigned", domains)
            return Prepared(body, None)
        key = self._keys.private_key(domain)
        return SignJob(body, domain.name, domain.selector, domain.algorithm, key, now)

    async def _sign_all(self, jobs: list[SignJob]) -> list[bytes | Exception]:
        """Each job's signed body, or the error signing it raised: on the event loop
        without signing threads, else split between the threads, one hand-off each."""
        if not jobs:
            return []
        if self._signing_pool is None:
            return self._sign_each(jobs)
        loop = asyncio.get_running_loop()
        shares = min(self._tuning.signing_threads, len(jobs))
        size = -(-len(jobs) // shares)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._signing_pool, self._sign_each, jobs[i : i + size])
                for i in range(0, len(jobs), size)
            )
        )
        return [signed for part in parts for signed in part]

    def _sign_each(self, jobs: list[SignJob]) -> list[bytes | Exception]:
        signed: list[bytes | Exception] = []
        for job in jobs:
            started = time.perf_counter()
            try:
                signed.append(
                    self._signer.sign(
                        job.body, job.domain, job.selector, job.algorithm, job.key, now=job.now
                    )
                )
            except Exception as exc:
                signed.append(exc)
                continue
            metrics.DKIM_SIGN_SECONDS.observe(time.perf_counter() - started)
        return signed

    def _shunt(self, dispatch: Dispatch, exc: Exception) -> Settled:
        message = dispatch.message
        return shunt(
            message,
            lease_token=self._leases[message.id],
            now=self._clock.now(),
            error=f"{type(exc).__name__}: {exc}",
            context=RecordContext(self._nodeid, dispatch.tenant, dispatch.pool),
        )

    @property
    def _nodeid(self) -> str:
        return self._owner.partition(":")[0]

    async def _write(self, batch: list[Settled]) -> None:
        applied = await self._store.settle(batch)
        self._record_log.write([r for s, r in batch if s.message_id in applied])
        for settlement, _ in batch:
            if settlement.message_id not in applied:
                log.warning(
                    "message %s: its lease was claimed again; this attempt's result is dropped",
                    settlement.message_id,
                )

    async def _renew_leases(self) -> None:
        """Until cancelled: every third of a lease, extend the leases of the messages
        in flight, all in one store call."""
        lease = self._tuning.lease_seconds
        while True:
            await asyncio.sleep(lease / RENEWALS_PER_LEASE)
            held = list(self._leases.items())
            if not held:
                continue
            try:
                await self._store.renew(held, self._clock.now() + lease)
            except Exception:
                log.exception("renewing the leases of %d messages failed", len(self._leases))

    async def _housekeeping(self) -> None:
        """Every second: close idle connections; every few seconds: the status report
        (``store.put_status``) and the queue gauge."""
        next_gauge = next_report = 0.0
        while not self._stopping.is_set():
            try:
                await self._deliverer.sweep()
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + STATUS_REPORT_SECONDS
                    await self._report()
                if time.monotonic() >= next_gauge:
                    started = time.monotonic()
                    await self._gauge_queue()
                    cost = time.monotonic() - started
                    next_gauge = started + max(QUEUE_GAUGE_SECONDS, cost / QUEUE_GAUGE_COST_SHARE)
            except Exception:
                log.exception("housekeeping failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HOUSEKEEPING_SECONDS)

    async def _report(self) -> None:
        """Publish this process's lanes and sources for ``penguin lanes`` / ``ips``."""
        now = self._clock.now()
        report = await self._scheduler.report(now, self._deliverer.lane_connections())
        await self._store.put_status(self._owner, json.dumps(report), now)

    async def _gauge_queue(self) -> None:
        counts: dict[str, int] = {}
        for row in await self._store.queue_summary():
            counts[row.state.value] = counts.get(row.state.value, 0) + row.count
        for state in MessageState:
            metrics.QUEUE_DEPTH.labels(state.value).set(counts.get(state.value, 0))
