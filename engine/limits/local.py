"""The in-process limiter: every limit kept in this process's memory.

Owns ``LocalLimiter``, the default ``Limiter`` (no ``redis.url``), the keeper
of ``local:`` throttles beside Redis, and the stand-in while Redis is away.
Throttles keep one GCRA TAT per key (``throttle.take``);
slots map holders to expiry instants; counters and states carry their expiry
instant, read from the injected clock, and are dropped when read expired.

Invariants: nothing awaits inside an operation, so each one is atomic for the
event loop; no operation fails.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.clock import Clock
from engine.limits import Grant
from engine.limits.throttle import ThrottleSpec, take


class LocalLimiter:
    """Limits kept in this process (``engine.limits.Limiter``)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._states: dict[str, tuple[str, float]] = {}

    async def throttle(self, key: str, spec: ThrottleSpec, now: float, wanted: int = 1) -> Grant:
        taken = take(spec, self._tats.get(key), now, wanted)
        if taken.granted:
            self._tats[key] = taken.tat
        return Grant(taken.granted, taken.retry_after)

    async def acquire_slot(self, key: str, limit: int, holder: str, now: float, ttl: float) -> bool:
        holders = self._live_holders(key, now)
        if holder not in holders and len(holders) >= limit:
            return False
        holders[holder] = now + ttl
        self._slots[key] = holders
        return True

    async def release_slot(self, key: str, holder: str) -> None:
        holders = self._slots.get(key, {})
        holders.pop(holder, None)
        if not holders:
            self._slots.pop(key, None)

    async def renew_slots(self, slots: Sequence[tuple[str, str]], now: float, ttl: float) -> None:
        for key, holder in slots:
            holders = self._slots.get(key, {})
            if holders.get(holder, now) > now:
                holders[holder] = now + ttl

    async def slots_in_use(self, key: str, now: float) -> int:
        return len(self._live_holders(key, now))

    async def take_within_cap(self, key: str, cap: int, wanted: int, ttl: float) -> int:
        value = self._count(key)
        taken = max(0, min(wanted, cap - value))
        if taken:
            self._store_count(key, value + taken, ttl)
        return taken

    async def add(self, key: str, amount: int, ttl: float) -> int:
        value = self._count(key) + amount
        self._store_count(key, value, ttl)
        return value

    async def raise_to(self, key: str, value: int, ttl: float) -> None:
        current = self._count(key)
        if key not in self._counters or current < value:
            self._store_count(key, value, ttl)

    async def counts(self, keys: Sequence[str]) -> list[int]:
        return [self._count(key) for key in keys]

    async def get_state(self, key: str) -> str | None:
        value, expires = self._states.get(key, (None, 0.0))
        if value is not None and expires <= self._clock.now():
            del self._states[key]
            return None
        return value

    async def set_state(self, key: str, value: str, ttl: float) -> None:
        self._states[key] = (value, self._clock.now() + ttl)

    async def close(self) -> None:
        return None

    def _live_holders(self, key: str, now: float) -> dict[str, float]:
        """``key``'s holders, the expired ones dropped."""
        holders = {h: until for h, until in self._slots.get(key, {}).items() if until > now}
        if holders:
            self._slots[key] = holders
        else:
            self._slots.pop(key, None)
        return holders

    def _count(self, key: str) -> int:
        value, expires = self._counters.get(key, (0, 0.0))
        if key in self._counters and expires <= self._clock.now():
            del self._counters[key]
            return 0
        return value

    def _store_count(self, key: str, value: int, ttl: float) -> None:
        """Set the counter, keeping the expiry of a live one (expiry runs from creation)."""
        _, expires = self._counters.get(key, (0, self._clock.now() + ttl))
        self._counters[key] = (value, expires)
