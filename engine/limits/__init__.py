"""Limits shared by the delivery processes: throttles (GCRA), connection slots,
counters and backoff state.

Owns the ``Limiter`` seam and its implementations: in-process by default
(``local.LocalLimiter``), Redis when ``redis.url`` is set
(``redis.RedisLimiter``), so every engine process and node keeps to one set
of limits. ``open_limiter`` builds the one the settings name; a Redis limiter
is always wrapped in ``fallback.FallbackLimiter``, which keeps the limits in
the process while Redis is unreachable. The arithmetic of a throttle is pure
(``engine.limits.throttle``); the implementations only keep its state.

What a limiter keeps, by logical key (the caller's, e.g. ``"conn:src1|site"``;
a Redis limiter prefixes it with ``redis.key_prefix``):
- a throttle: the key's GCRA theoretical arrival time;
- slots: holders of a key, each until an expiry instant (``now + ttl``);
- counters: integers that expire ``ttl`` seconds after their creation;
- states: short strings with an expiry (backoff levels and the like).

Rules: ``now`` is always passed in, never read from a clock (counter and
state expiry excepted: they follow the limiter's own clock); each operation
is atomic on its key(s); a throttle spec marked ``local`` is kept in the
process even with Redis.

Errors: ``LimiterUnavailable`` (the shared store cannot be reached in time)
is raised by the Redis limiter only; ``FallbackLimiter`` turns it into an
in-process answer, so the limiter the engine gets never raises it.

May import: the core, ``config``. Never the scheduler, delivery or the edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from config.schema import RedisSettings
from engine.clock import Clock, SystemClock
from engine.limits.throttle import ThrottleSpec


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to a throttle request."""

    granted: int
    """Units taken (0..wanted)."""
    retry_after: float
    """0 when all were granted; else seconds until one more unit passes."""


class LimiterUnavailable(Exception):
    """The shared store of limits could not be reached in time."""


class Limiter(Protocol):
    async def throttle(self, key: str, spec: ThrottleSpec, now: float, wanted: int = 1) -> Grant:
        """Take up to ``wanted`` units of ``key``'s throttle at ``now`` (GCRA, atomic)."""
        ...

    async def acquire_slot(self, key: str, limit: int, holder: str, now: float, ttl: float) -> bool:
        """Take one of ``limit`` slots of ``key`` for ``holder`` until ``now + ttl``
        (expired holders do not count); True when taken or already held (the hold is
        then extended)."""
        ...

    async def release_slot(self, key: str, holder: str) -> None:
        """Give ``holder``'s slot of ``key`` back (nothing when not held)."""
        ...

    async def renew_slots(self, slots: Sequence[tuple[str, str]], now: float, ttl: float) -> None:
        """Extend (key, holder) slots still held to ``now + ttl``."""
        ...

    async def slots_in_use(self, key: str, now: float) -> int:
        """Holders of ``key`` not expired at ``now``."""
        ...

    async def take_within_cap(self, key: str, cap: int, wanted: int, ttl: float) -> int:
        """Add up to ``wanted`` to counter ``key`` without passing ``cap``; return the
        amount added (0..wanted). The counter expires ``ttl`` s after its creation."""
        ...

    async def add(self, key: str, amount: int, ttl: float) -> int:
        """Add to counter ``key`` (created with expiry ``ttl``); return the new value."""
        ...

    async def raise_to(self, key: str, value: int, ttl: float) -> None:
        """Set counter ``key`` to ``value`` unless it is already higher."""
        ...

    async def counts(self, keys: Sequence[str]) -> list[int]:
        """The counters' values, 0 for a missing or expired one."""
        ...

    async def get_state(self, key: str) -> str | None:
        """State ``key``, None when missing or expired."""
        ...

    async def set_state(self, key: str, value: str, ttl: float) -> None:
        """Set state ``key`` to ``value`` for ``ttl`` seconds."""
        ...

    async def close(self) -> None:
        """Release connections; the limiter is not used afterwards."""
        ...


def open_limiter(settings: RedisSettings, clock: Clock | None = None) -> Limiter:
    """The limiter ``settings`` name: in-process when ``url`` is empty, else Redis
    with an in-process fallback. ``clock`` times counter and state expiry in the
    process and the fallback's retry (the system clock by default)."""
    # Imported here: the implementations import this module's seam.
    from engine.limits.fallback import FallbackLimiter
    from engine.limits.local import LocalLimiter
    from engine.limits.redis import RedisLimiter

    clock = clock or SystemClock()
    local = LocalLimiter(clock)
    if not settings.url:
        return local
    shared = RedisLimiter.connect(settings, local)
    return FallbackLimiter(shared, local, settings, clock)


__all__ = ["Grant", "Limiter", "LimiterUnavailable", "open_limiter"]
