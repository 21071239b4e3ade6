"""The warmup ledger: what each source sent to each provider, day by day, and what
it may still send today.

Owns ``WarmupLedger``, the adapter around the pure ramp (``engine.scheduler.warmup``):
today's counts live in the limiter (shared by every process when Redis is
configured, ``engine.limits``), the history in the store (``warmup_days``),
where each process adds what it counted every few seconds. Today's cap of a
(source, provider) comes from its plan and its history; a day's counts never
change that day's cap. On start, and on each new day, the limiter's counter
is raised to what the store already holds, so a restart forgets nothing.

Sources without a plan are counted (``penguin ips`` shows them) but never capped.

Invariant: ``take`` never grants past the cap, in one process or many (the
limiter's ``take_within_cap`` is atomic).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from engine.limits import Limiter
from engine.model import WarmupCount
from engine.scheduler.warmup import (
    DayCount,
    WarmupPlan,
    WarmupPolicy,
    WarmupStatus,
    utc_day,
    warmup_status,
)
from engine.store import Store

HISTORY_DAYS = 90
COUNTER_TTL_SECONDS = 3 * 86400.0

Pair = tuple[str, str]
"""(source name, provider); sites of no provider count under the provider ``""``."""


class WarmupLedger:
    """Daily counts and caps per (source, provider)."""

    def __init__(
        self,
        *,
        store: Store,
        limiter: Limiter,
        plans: Mapping[str, WarmupPlan],
        policy: WarmupPolicy,
    ) -> None:
        """``plans``: the plan of each source that has one, by source name."""
        self._store = store
        self._limiter = limiter
        self._plans = dict(plans)
        self._policy = policy
        self._history: dict[Pair, list[DayCount]] = defaultdict(list)
        self._loaded_day: int | None = None
        self._status: dict[Pair, WarmupStatus] = {}
        self._pending: dict[tuple[str, str, int], list[int]] = {}
        self._raised: set[tuple[str, str, int]] = set()

    def plan_of(self, source: str) -> WarmupPlan | None:
        return self._plans.get(source)

    async def refresh(self, now: float) -> None:
        """Store what was counted; reload the history when the day changed."""
        await self.flush()
        await self._load(now)

    async def _load(self, now: float) -> None:
        """The history up to ``now``'s day, read again when the day changed (the
        counts of the day before are stored first)."""
        today = utc_day(now)
        if self._loaded_day != today:
            await self.flush()
            rows = await self._store.warmup_history(today - HISTORY_DAYS)
            history: dict[Pair, list[DayCount]] = defaultdict(list)
            for row in rows:
                history[(row.source, row.provider)].append(
                    DayCount(row.day, row.sent, row.deferred, row.complained)
                )
            self._history = history
            self._status.clear()
            self._loaded_day = today

    def status(self, source: str, provider: str, now: float) -> WarmupStatus | None:
        """Today's ramp day, cap and state of the pair; None when the source has no plan."""
        plan = self._plans.get(source)
        if plan is None:
            return None
        pair = (source, provider)
        found = self._status.get(pair)
        if found is None:
            found = warmup_status(plan, self._history.get(pair, ()), utc_day(now), self._policy)
            self._status[pair] = found
        return found

    async def status_now(self, source: str, provider: str, now: float) -> WarmupStatus | None:
        """``status`` with the history of ``now``'s day loaded."""
        await self._load(now)
        return self.status(source, provider, now)

    async def sent_today(self, source: str, provider: str, now: float) -> int:
        key = await self._counter(source, provider, utc_day(now))
        (count,) = await self._limiter.counts([key])
        return count

    async def remaining(self, source: str, provider: str, now: float) -> int | None:
        """What the pair may still send today; None when it is not capped."""
        status = await self.status_now(source, provider, now)
        if status is None or status.cap is None:
            return None
        return max(0, status.cap - await self.sent_today(source, provider, now))

    async def take(self, source: str, provider: str, wanted: int, now: float) -> int:
        """Count up to ``wanted`` messages as sent today; return how many may go."""
        day = utc_day(now)
        status = await self.status_now(source, provider, now)
        if status is None or status.cap is None:
            granted = wanted
            key = await self._counter(source, provider, day)
            await self._limiter.add(key, wanted, COUNTER_TTL_SECONDS)
        else:
            key = await self._counter(source, provider, day)
            granted = await self._limiter.take_within_cap(
                key, status.cap, wanted, COUNTER_TTL_SECONDS
            )
        if granted:
            self._add(source, provider, day, sent=granted)
        return granted

    async def give_back(self, source: str, provider: str, amount: int, now: float) -> None:
        """Uncount messages taken but not sent after all."""
        if amount <= 0:
            return
        day = utc_day(now)
        await self._limiter.add(
            await self._counter(source, provider, day), -amount, COUNTER_TTL_SECONDS
        )
        self._add(source, provider, day, sent=-amount)

    def note_deferred(self, source: str, provider: str, now: float) -> None:
        self._add(source, provider, utc_day(now), deferred=1)

    def note_complaint(self, source: str, provider: str, now: float) -> None:
        self._add(source, provider, utc_day(now), complained=1)

    async def flush(self) -> None:
        """Add the counts made since the last flush to the store."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        counts = [
            WarmupCount(source, provider, day, sent, deferred, complained)
            for (source, provider, day), (sent, deferred, complained) in sorted(pending.items())
        ]
        try:
            await self._store.add_warmup_counts(counts)
        except Exception:
            for count in counts:
                self._add(
                    count.source,
                    count.provider,
                    count.day,
                    sent=count.sent,
                    deferred=count.deferred,
                    complained=count.complained,
                )
            raise

    async def _counter(self, source: str, provider: str, day: int) -> str:
        """The limiter key of the pair's count on ``day``, raised once to the store's."""
        key = f"warmup:{source}|{provider}|{day}"
        marker = (source, provider, day)
        if marker not in self._raised:
            self._raised.add(marker)
            stored = sum(
                count.sent
                for count in self._history.get((source, provider), ())
                if count.day == day
            )
            if stored:
                await self._limiter.raise_to(key, stored, COUNTER_TTL_SECONDS)
        return key

    def _add(
        self,
        source: str,
        provider: str,
        day: int,
        *,
        sent: int = 0,
        deferred: int = 0,
        complained: int = 0,
    ) -> None:
        counts = self._pending.setdefault((source, provider, day), [0, 0, 0])
        counts[0] += sent
        counts[1] += deferred
        counts[2] += complained
