"""The lane scheduler: scheduled queues to ready lanes, within every limit we keep.

Owns ``LaneScheduler``, the production ``engine.scheduler.Scheduler``
(KumoMTA's model of scheduled and ready queues). Messages wait in the store,
by scheduled queue (``campaign:tenant@domain``). The scheduler keeps a
catalogue of those queues (``catalog.QueueCatalog``), never of their
messages. A pick takes the queues worth a look (with how many messages each
has due: ``Store.due_counts``, one call), works out each one's lanes (each
source of the queue's pool x the site its domain resolves to; the sites of a
pick resolved together) and claims from each queue, in one call for the pick
(``Store.claim_queues``, highest priority first), only as many messages as it
has due and its lanes can take now:

- room: a lane holds at most ``connection_limit x ready_per_connection``
  messages in flight in this process (the ready queue); a queue whose next
  source in turn has a full lane is parked until it frees a slot (a full
  lane keeps its turns, so the pool's weights hold);
- the tenant's pool as in force (``tenant_settings``: the config's, or what an
  operator set in the store);
- suspensions (operators' and backoff rules', ``suspensions.SuspensionBook``)
  of the tenant, campaign, source, source-provider or lane;
- warmup: today's cap of each (source, provider) (``warmup_ledger``); an over-cap
  source's share spills to the pool's other sources, and with none left the
  queue waits for the next day;
- throttles (GCRA, through the limiter, shared by every process with Redis):
  ``max_message_rate`` per lane and ``provider_max_message_rate`` per source
  and provider, both scaled down by the backoff level of the path.

Sources are handed out by the pool's smooth weighted round-robin, skipping
those that cannot take more. A wait on our own limits longer than
``scheduler.delay_record_after_seconds`` moves the queue's due messages to
the wait's end, each with a Delayed record that says why (no attempt is
counted, no retry backoff applies); shorter waits leave them queued.

Feedback (``finished``): the lane's slot is freed, deferrals count against
the day's warmup, and replies that match a backoff rule lower the target's
level or suspend it (stored, with an AdminAction record); deliveries raise
levels back step by step.

Invariants: a claim never takes more than the lanes' room, throttles and caps
allow at that moment; a message is only ever claimed for a lane that is not
suspended; the work of one pick depends on the number of queues looked at,
not on the number of messages queued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config import Settings
from engine.limits import Limiter
from engine.limits.throttle import ThrottleSpec
from engine.model import QueuedMessage, Suspension, SuspensionScope
from engine.records import metrics
from engine.records.record import Record
from engine.scheduler import Dispatch
from engine.scheduler.backoff import Action, BackoffRule, Target, match_rule, scaled, scaled_spec
from engine.scheduler.backoff_state import BackoffState
from engine.scheduler.catalog import NEVER, Lane, QueueCatalog, QueueEntry
from engine.scheduler.routing import pool_of
from engine.scheduler.shaping import LaneShaping, Shaping
from engine.scheduler.sources import Source, SourceRotation
from engine.scheduler.suspensions import SuspensionBook
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.scheduler.warmup import seconds_to_next_day
from engine.scheduler.warmup_ledger import WarmupLedger
from engine.smtp.reply import Reply
from engine.store import ClaimedQueue, Store

log = logging.getLogger(__name__)

SiteOf = Callable[[str], Awaitable[str | None]]
"""The site a destination domain resolves to; None when it does not resolve now."""
SITE_MEMORY_SECONDS = 60.0
DELAY_CHUNK = 1000
DELAY_GRACE_SECONDS = 1.0
"""A queue found blocked for long is looked at again this much later before its
due messages are moved: by then a sibling process that reserved the same shared
limit (warmup count, rate tokens) has claimed its share, which stays with it."""
REQUEUED_KINDS = frozenset({"transient", "delayed"})
"""Outcomes that put the message back in its queue (settled before the feedback)."""
LANE_REPORT_SECONDS = 600.0
"""A lane stays in the report this long after its last dispatch."""
UNSHAPED_RATE = "1000/s"
"""The rate a lane without ``max_message_rate`` is taken to have when backoff scales it."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to claim from one queue in this pick: each source's granted share."""

    entry: QueueEntry
    granted: dict[str, int]
    shapes: Mapping[str, LaneShaping]
    site: str
    provider: str
    pool: str
    tenant: str

    @property
    def wanted(self) -> int:
        return sum(self.granted.values())


class DelayReason:
    """Why our own limits hold a queue back (the connection limit is the deliverer's)."""

    THROTTLE = "throttle"
    WARMUP = "warmup cap"
    SUSPENDED = "suspension"


class LaneScheduler:
    """``Scheduler``: scheduled queues to ready lanes (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        limiter: Limiter,
        settings: Settings,
        shaping: Shaping,
        rules: Sequence[BackoffRule],
        sources: SourceRotation,
        ledger: WarmupLedger,
        site_of: SiteOf,
        delayed_record: Callable[[QueuedMessage, Reply, float, str], Record],
        admin_record: Callable[[Suspension, float], Record],
        log_records: Callable[[list[Record]], None] = lambda records: None,
        tenant_settings: TenantSettingsBook | None = None,
    ) -> None:
        """``log_records`` gets the records the scheduler stores itself (Delayed), for
        the record log; ``tenant_settings`` the tenants' pools in force (without one,
        the config's)."""
        self._store = store
        self._limiter = limiter
        self._settings = settings
        self._tenant_settings = tenant_settings or TenantSettingsBook(settings)
        self._tuning = settings.scheduler
        self.shaping = shaping
        self.rules = tuple(rules)
        self._sources = sources
        self.ledger = ledger
        self._site_of = site_of
        self._delayed_record = delayed_record
        self._admin_record = admin_record
        self._log_records = log_records
        self.backoff = BackoffState(
            limiter,
            step_after=self._tuning.backoff_step_after,
            max_level=self._tuning.backoff_max_level,
        )
        self.catalog = QueueCatalog()
        self.suspensions = SuspensionBook()
        self._in_flight: dict[Lane, int] = {}
        self._tenants: dict[int, str] = {}
        self._seen_bump = 0
        self._next_refresh = -math.inf
        self._next_changes = -math.inf
        self._unread_changes_at = math.inf
        self._unshaped_rate = ThrottleSpec.parse(UNSHAPED_RATE)
        self._dispatched_at: dict[Lane, float] = {}
        self._blocked_since: dict[str, float] = {}
        """Queues found blocked for long, and when; moved once still blocked after
        ``DELAY_GRACE_SECONDS``."""
        self._pools = tuple(settings.pools)

    # The seam.
    async def next_batch(
        self, *, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[Dispatch]:
        await self._refresh(now)
        entries = await self._due_entries(now, limit)
        plans: list[_Plan] = []
        planned = 0
        for index, entry in enumerate(entries):
            if planned >= limit:
                for later in entries[index:]:
                    self.catalog.check_at(later, now)
                break
            assert entry.due_estimate is not None
            plan = await self._serve(entry, now, min(limit - planned, entry.due_estimate))
            if plan is not None:
                plans.append(plan)
                planned += plan.wanted
        if not plans:
            return []
        claims = await self._store.claim_queues(
            [(plan.entry.name, plan.wanted) for plan in plans], owner, now, lease_seconds
        )
        batch: list[Dispatch] = []
        for plan in plans:
            batch += await self._dispatch(plan, claims[plan.entry.name], now)
        return batch

    async def _due_entries(self, now: float, limit: int) -> list[QueueEntry]:
        """The queues to look at in this pick, each with how many messages it has due
        (counted in one store call for those not known): enough for ``limit`` messages,
        at most ``max_queues_per_pick`` queues."""
        entries: list[QueueEntry] = []
        known = 0
        while known < limit and len(entries) < self._tuning.max_queues_per_pick:
            entry = self.catalog.next_due(now)
            if entry is None:
                break
            entries.append(entry)
            known += entry.due_estimate if entry.due_estimate is not None else 1
        stale = [entry for entry in entries if entry.site is None or entry.site_expires <= now]
        if stale:  # resolved together: one DNS round trip for the pick, not one a queue
            await asyncio.gather(*(self._site(entry, now) for entry in stale))
        unknown = [entry.name for entry in entries if entry.due_estimate is None]
        counts = await self._store.due_counts(unknown, now, limit) if unknown else {}
        ready = []
        for entry in entries:
            if entry.due_estimate is None:
                entry.due_estimate, next_due = counts.get(entry.name, (0, None))
                if not entry.due_estimate:  # nothing due yet: look again when it is
                    entry.due_estimate = None
                    self.catalog.check_at(entry, NEVER if next_due is None else next_due)
                    continue
            ready.append(entry)
        return ready

    def reload(self, shaping: Shaping, rules: Sequence[BackoffRule]) -> None:
        """New shaping and backoff rules, from now on."""
        self.shaping = shaping
        self.rules = tuple(rules)

    def next_wakeup(self) -> float:
        """When a queue is next worth a look, or the store's queue changes are next read
        (the delivery loop may sleep until then)."""
        return min(self.catalog.next_time(), self._unread_changes_at)

    async def finished(
        self, dispatch: Dispatch, now: float, kind: str = "", reply: Reply | None = None
    ) -> list[Record]:
        """Feedback from one dispatch (no ``reply``: it never reached the deliverer)."""
        lane = (dispatch.source.name, dispatch.site)
        left = self._in_flight.get(lane, 0) - 1
        if left > 0:
            self._in_flight[lane] = left
        else:
            self._in_flight.pop(lane, None)
        self.catalog.lane_freed(lane, now)
        if kind in REQUEUED_KINDS:
            entry = self.catalog.get(dispatch.message.queue)
            if entry is not None and entry.next_check == NEVER and not entry.parked_on:
                entry.due_estimate = None
                self.catalog.check_at(entry, now)
        if reply is None:
            return []
        return await self._feedback(dispatch, kind, reply, now)

    # Which lanes a queue feeds, and how much each may take.
    async def _serve(self, entry: QueueEntry, now: float, limit: int) -> _Plan | None:
        """What to claim from the queue now, each source's share reserved on its lane;
        None when nothing (the queue is parked or delayed to its next chance)."""
        info = entry.info
        tenant = await self._tenant(info.tenant_id)
        held = self.suspensions.for_queue(tenant, info.campaign, now)
        if held is not None:
            await self._delay(entry, now, held.until, DelayReason.SUSPENDED, held.reason, tenant)
            return None
        site = await self._site(entry, now)
        provider = self.shaping.provider_of(site)
        pool = pool_of(self._tenant_settings.routing, tenant, info.campaign)
        rooms: dict[str, int] = {}
        warm: dict[str, int | None] = {}
        shapes: dict[str, LaneShaping] = {}
        waits: list[tuple[float, str, str]] = []
        for source in self._sources.sources(pool):
            lane = (source.name, site)
            held = self.suspensions.for_lane(source.name, site, info.domain, provider, now)
            if held is not None:
                waits.append((held.until, DelayReason.SUSPENDED, held.reason))
                continue
            remaining = await self.ledger.remaining(source.name, provider, now)
            if remaining == 0:
                waits.append((now + seconds_to_next_day(now), DelayReason.WARMUP, source.name))
                continue
            shape = await self._lane_shaping(source, site, tenant, info.campaign, now)
            room = shape.connection_limit * self._tuning.ready_per_connection
            rooms[source.name] = room - self._in_flight.get(lane, 0)
            warm[source.name] = remaining
            shapes[source.name] = shape
        if not rooms:
            await self._blocked(entry, now, [], waits, tenant)
            return None
        allotted, waiting_on = self._allot(pool, rooms, warm, limit)
        if not allotted:
            await self._blocked(entry, now, [(waiting_on, site)], waits, tenant)
            return None
        granted, throttled = await self._throttle(allotted, shapes, site, provider, now)
        if not granted:
            until = now + min(throttled) if throttled else now + 1.0
            await self._delay(entry, now, until, DelayReason.THROTTLE, f"rate of {site}", tenant)
            return None
        for name, count in granted.items():
            lane = (name, site)
            self._in_flight[lane] = self._in_flight.get(lane, 0) + count
        self._blocked_since.pop(entry.name, None)
        return _Plan(entry, granted, shapes, site, provider, pool, tenant)

    def _allot(
        self, pool: str, rooms: dict[str, int], warm: dict[str, int | None], limit: int
    ) -> tuple[dict[str, int], str]:
        """Up to ``limit`` messages given to the sources turn by turn (their weights):
        a source whose warmup cap is reached gives its turns to the others; one whose
        lane is full keeps its turn, and the giving stops there (weights hold over time,
        a full lane never pushes its share onto the others). Returns the counts and the
        source whose full lane stopped the giving ("" when none did)."""
        allotted: dict[str, int] = {}
        capped = dict(warm)

        def usable(source: Source) -> bool:
            cap = capped.get(source.name, 0)
            return source.name in rooms and (cap is None or cap > 0)

        for _ in range(limit):
            source = self._sources.peek(pool, usable)
            if source is None:
                break
            name = source.name
            if rooms[name] - allotted.get(name, 0) <= 0:
                return allotted, name
            self._sources.next(pool, usable)
            allotted[name] = allotted.get(name, 0) + 1
            cap = capped[name]
            if cap is not None:
                capped[name] = cap - 1
        return allotted, ""

    async def _throttle(
        self,
        allotted: Mapping[str, int],
        shapes: Mapping[str, LaneShaping],
        site: str,
        provider: str,
        now: float,
    ) -> tuple[dict[str, int], list[float]]:
        """Rate tokens and warmup allowance for each source's share: what may go now,
        and how long the refused shares must wait."""
        granted: dict[str, int] = {}
        waits: list[float] = []
        for name, wanted in allotted.items():
            shape = shapes[name]
            count = wanted
            for key, spec in (
                (f"rate:{name}|{site}", shape.max_message_rate),
                (f"provider_rate:{name}|{provider}", shape.provider_max_message_rate),
            ):
                if spec is None or count == 0 or (key.startswith("provider") and not provider):
                    continue
                grant = await self._limiter.throttle(key, spec, now, count)
                count = grant.granted
                if grant.retry_after:
                    waits.append(grant.retry_after)
            if count:
                count = await self.ledger.take(name, provider, count, now)
            if count:
                granted[name] = count
        return granted, waits

    async def _dispatch(self, plan: _Plan, claimed: ClaimedQueue, now: float) -> list[Dispatch]:
        """The claimed messages of one plan, each with its source; the shares not used
        (the queue had fewer due) go back to their lanes and warmup counts."""
        unused = dict(plan.granted)
        by_name = {source.name: source for source in self._sources.sources(plan.pool)}
        dispatches: list[Dispatch] = []
        for message, name in zip(claimed.messages, _in_turns(plan.granted), strict=False):
            unused[name] -= 1
            self._dispatched_at[(name, plan.site)] = now
            dispatches.append(
                Dispatch(
                    message, by_name[name], plan.site, plan.shapes[name], plan.pool, plan.tenant
                )
            )
        for name, count in unused.items():
            if count:
                lane = (name, plan.site)
                self._in_flight[lane] -= count
                if not self._in_flight[lane]:
                    del self._in_flight[lane]
                self.catalog.lane_freed(lane, now)
                await self.ledger.give_back(name, plan.provider, count, now)
        entry = plan.entry
        if len(claimed.messages) == plan.wanted and entry.due_estimate:
            entry.due_estimate = max(0, entry.due_estimate - plan.wanted) or None
            self.catalog.check_at(entry, now)
        else:
            entry.due_estimate = None
            due = claimed.next_due
            self.catalog.check_at(entry, NEVER if due is None else max(due, now))
        return dispatches

    async def _blocked(
        self,
        entry: QueueEntry,
        now: float,
        full: list[Lane],
        waits: list[tuple[float, str, str]],
        tenant: str,
    ) -> None:
        """No lane of the queue can take a message now: park it on its full lanes, or
        delay it to the end of the shortest wait."""
        if full:
            self.catalog.park(entry, full)
            return
        until, reason, detail = min(waits) if waits else (now + 1.0, DelayReason.SUSPENDED, "")
        await self._delay(entry, now, until, reason, detail, tenant)

    async def _delay(
        self, entry: QueueEntry, now: float, until: float, reason: str, detail: str, tenant: str
    ) -> None:
        """Look at the queue again at ``until``; when that is far, move its due messages
        there, each with a Delayed record."""
        entry.due_estimate = None
        if until - now < self._tuning.delay_record_after_seconds:
            self.catalog.check_at(entry, until)
            return
        since = self._blocked_since.get(entry.name)
        if since is None or now - since > DELAY_GRACE_SECONDS * 30:  # none, or a stale one
            since = self._blocked_since[entry.name] = now
        if now - since < DELAY_GRACE_SECONDS:
            self.catalog.check_at(entry, since + DELAY_GRACE_SECONDS)
            return
        del self._blocked_since[entry.name]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
        text = f"delayed by our own {reason}" + (f" ({detail})" if detail else "")
        reply = Reply(451, "4.4.5", f"{text}; next try at {stamp}")

        written: list[Record] = []

        def record(message: QueuedMessage) -> Record:
            written.append(self._delayed_record(message, reply, now, tenant))
            return written[-1]

        moved = await self._store.delay_queue(entry.name, now, until, DELAY_CHUNK, record)
        if moved:
            self._log_records(written)
        self.catalog.check_at(entry, now + 1.0 if moved == DELAY_CHUNK else until)

    # Shaping of a lane, scaled down by the backoff levels of its path.
    async def _lane_shaping(
        self, source: Source, site: str, tenant: str, campaign: str, now: float
    ) -> LaneShaping:
        shape = self.shaping.for_lane(source.name, site)
        keys = self._level_keys(source.name, site, shape.provider, tenant, campaign)
        levels = [await self.backoff.level(key, now) for key in keys]
        active = [level for level in levels if level.level]
        if not active:
            return shape
        connections = shape.connection_limit
        rate = shape.max_message_rate or self._unshaped_rate
        provider_rate = shape.provider_max_message_rate
        for level in active:
            connections = scaled(connections, level.factor, level)
            rate = scaled_spec(rate, level.factor, level)
            if provider_rate:
                provider_rate = scaled_spec(provider_rate, level.factor, level)
        return dataclasses.replace(
            shape,
            connection_limit=connections,
            max_message_rate=rate,
            provider_max_message_rate=provider_rate,
        )

    @staticmethod
    def _level_keys(source: str, site: str, provider: str, tenant: str, campaign: str) -> list[str]:
        """The backoff targets on a message's path, as ``_rule_key`` names them."""
        keys = [*_lane_keys(source, site, provider), f"tenant:{tenant}"]
        if campaign:
            keys.append(f"campaign:{tenant}:{campaign}")
        return keys

    # Feedback.
    async def _feedback(
        self, dispatch: Dispatch, kind: str, reply: Reply, now: float
    ) -> list[Record]:
        source = dispatch.source.name
        site = dispatch.site
        provider = dispatch.shaping.provider
        if kind == "delayed":
            return []
        if kind == "delivered":
            tenant = await self._tenant(dispatch.message.tenant_id)
            for key in self._level_keys(source, site, provider, tenant, dispatch.message.campaign):
                await self.backoff.success(key, now)
            return []
        if kind == "transient":
            self.ledger.note_deferred(source, provider, now)
        rule = match_rule(self.rules, reply, provider)
        if rule is None:
            return []
        message = dispatch.message
        tenant = await self._tenant(message.tenant_id)
        key = _rule_key(rule, source, site, provider, tenant, message.campaign)
        if rule.action is Action.REDUCE:
            level = await self.backoff.reduce(key, rule.factor, now)
            log.warning("backoff %s: %s at level %d: %s", rule.name, key, level.level, rule.reason)
            return []
        scope, target = key.split(":", 1)
        suspension = Suspension(
            scope=SuspensionScope(scope),
            target=target,
            reason=f"{rule.reason} (rule {rule.name}: {reply})",
            created_at=now,
            until=now + rule.duration_seconds,
            origin=f"backoff:{rule.name}",
        )
        if self.suspensions.for_lane(source, site, message.domain, provider, now) is not None:
            return []
        record = self._admin_record(suspension, now)
        stored = await self._store.add_suspension(suspension, [record])
        self.suspensions.add(stored)
        log.warning("backoff %s: suspended %s %s: %s", rule.name, scope, target, rule.reason)
        return [record]

    # State kept fresh.
    async def _refresh(self, now: float) -> None:
        """Keep the catalogue and the suspensions fresh; paced by real time (``monotonic``),
        whatever the clock the scheduling runs on."""
        ticks = time.monotonic()
        if ticks >= self._next_changes:
            self._next_changes = ticks + self._tuning.changes_poll_seconds
            self._unread_changes_at = math.inf
            await self._read_changes(now)
        else:  # not read this time: the caller must come back for them soon
            self._unread_changes_at = now + (self._next_changes - ticks)
        if ticks < self._next_refresh:
            return
        self._next_refresh = ticks + self._tuning.refresh_seconds
        before = self.suspensions
        self.suspensions = SuspensionBook(await self._store.active_suspensions(now))
        await self._lifted(before, now)
        self.catalog.wake(await self._store.reap_leases(now), now)
        try:
            await self.ledger.refresh(now)
        except Exception:
            log.exception("storing warmup counts failed; kept for the next try")

    async def _lifted(self, before: SuspensionBook, now: float) -> None:
        """Suspensions lifted before their end (``penguin resume``): the mail delayed
        to their end is due now."""
        held = {(str(s.scope), s.target.lower()) for s in self.suspensions.all()}
        for lifted in before.all():
            if lifted.until <= now or (str(lifted.scope), lifted.target.lower()) in held:
                continue
            for entry in self.catalog.entries():
                if not await self._suspends(lifted, entry):
                    continue
                if await self._store.undelay_queue(entry.name, lifted.until, now):
                    entry.due_estimate = None
                    self.catalog.check_at(entry, now)

    async def _suspends(self, suspension: Suspension, entry: QueueEntry) -> bool:
        """Whether ``suspension`` may have delayed the mail of ``entry``'s queue."""
        if suspension.scope is SuspensionScope.TENANT:
            return await self._tenant(entry.info.tenant_id) == suspension.target
        if suspension.scope is SuspensionScope.CAMPAIGN:
            tenant = await self._tenant(entry.info.tenant_id)
            return f"{tenant}:{entry.info.campaign}" == suspension.target
        return True

    async def _read_changes(self, now: float) -> None:
        """Learn the queues that are new or got messages since we last looked (both
        stores make bumps visible in increasing order)."""
        changed = await self._store.queues_changed(self._seen_bump)
        if changed:
            self._seen_bump = changed[-1].bump
            self.catalog.learn(changed, now)

    async def _site(self, entry: QueueEntry, now: float) -> str:
        if entry.site is None or entry.site_expires <= now:
            entry.site = await self._site_of(entry.info.domain) or entry.info.domain
            entry.site_expires = now + SITE_MEMORY_SECONDS
        return entry.site

    async def _tenant(self, tenant_id: int) -> str:
        name = self._tenants.get(tenant_id)
        if name is None:
            tenant = await self._store.get_tenant_by_id(tenant_id)
            name = tenant.name if tenant else str(tenant_id)
            self._tenants[tenant_id] = name
        return name

    async def report(self, now: float, connections: Mapping[Lane, int]) -> dict[str, Any]:
        """This process's view for ``penguin lanes`` / ``penguin ips`` and the metrics:
        each recent lane (in flight, connections, shaping, backoff level, the queues
        feeding it) and each source's count and cap per provider today."""
        recent = now - LANE_REPORT_SECONDS
        self._dispatched_at = {k: t for k, t in self._dispatched_at.items() if t >= recent}
        lanes = set(self._in_flight) | set(connections) | set(self._dispatched_at)
        sites = {site for _, site in lanes}
        queues_by_site: dict[str, list[str]] = {}
        for entry in self.catalog.entries() if sites else ():
            if entry.site in sites:
                queues_by_site.setdefault(entry.site, []).append(entry.name)
        lane_rows = []
        for source_name, site in sorted(lanes):
            shape = self.shaping.for_lane(source_name, site)
            keys = _lane_keys(source_name, site, shape.provider)
            level = max([(await self.backoff.level(key, now)).level for key in keys])
            in_flight = self._in_flight.get((source_name, site), 0)
            lane_rows.append(
                {
                    "source": source_name,
                    "site": site,
                    "provider": shape.provider,
                    "in_flight": in_flight,
                    "connections": connections.get((source_name, site), 0),
                    "connection_limit": shape.connection_limit,
                    "max_message_rate": str(shape.max_message_rate or ""),
                    "backoff_level": level,
                    "parked_queues": self.catalog.parked_count((source_name, site)),
                    "queues": sorted(queues_by_site.get(site, [])),
                }
            )
            metrics.LANE_IN_FLIGHT.labels(source_name, site).set(in_flight)
            metrics.LANE_BACKOFF_LEVEL.labels(source_name, site).set(level)
        source_rows = []
        for source_name in sorted(
            {s.name for pool in self._pools for s in self._sources.sources(pool)}
        ):
            for provider in (*self.shaping.providers, ""):
                sent = await self.ledger.sent_today(source_name, provider, now)
                status = await self.ledger.status_now(source_name, provider, now)
                cap = None if status is None else status.cap
                metrics.SOURCE_SENT_TODAY.labels(source_name, provider or "other").set(sent)
                metrics.SOURCE_DAILY_CAP.labels(source_name, provider or "other").set(
                    -1 if cap is None else cap
                )
                source_rows.append({"source": source_name, "provider": provider, "sent": sent})
        return {"lanes": lane_rows, "sources": source_rows, "time": now}


def _in_turns(counts: Mapping[str, int]) -> list[str]:
    """Each name as many times as counted, spread out (a, b, a, a, b...)."""
    total = sum(counts.values())
    spread = [((i + 0.5) / count, name) for name, count in counts.items() for i in range(count)]
    return [name for _, name in sorted(spread)][:total]


def _lane_keys(source: str, site: str, provider: str) -> list[str]:
    """The backoff targets of a lane itself: the lane, its source, its source for the
    site's provider (the site when it has none)."""
    return [
        f"lane:{source}|{site}",
        f"source:{source}",
        f"source_provider:{source}|{provider or site}",
    ]


def _rule_key(
    rule: BackoffRule, source: str, site: str, provider: str, tenant: str, campaign: str
) -> str:
    """The state key a rule acts on, ``SCOPE:TARGET`` as suspensions name them."""
    if rule.target is Target.LANE:
        return f"lane:{source}|{site}"
    if rule.target is Target.SOURCE:
        return f"source:{source}"
    if rule.target is Target.SOURCE_PROVIDER:
        return f"source_provider:{source}|{provider or site}"
    if rule.target is Target.TENANT:
        return f"tenant:{tenant}"
    return f"campaign:{tenant}:{campaign}"
