"""The fallback limiter: shared limits while Redis answers, per-process ones while not.

Owns ``FallbackLimiter``, the ``Limiter`` the engine gets when ``redis.url``
is set. Each operation goes to the shared limiter; when that raises
``LimiterUnavailable`` (Redis unreachable, or slower than
``redis.timeout_seconds``) the operation is answered by the in-process
limiter instead, and the following ones too, until ``redis.retry_seconds``
have passed and Redis is tried again.

Logs: one warning when an outage starts, one info line when Redis answers
again; nothing in between.

Invariants: never raises ``LimiterUnavailable``; an operation waits at most
one Redis timeout. Limits taken during an outage are kept by this process
alone (a slot taken in Redis before it went away expires there by its ttl).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from config import redacted_url
from config.schema import RedisSettings
from engine.clock import Clock
from engine.limits import Grant, Limiter, LimiterUnavailable
from engine.limits.throttle import ThrottleSpec

log = logging.getLogger(__name__)
T = TypeVar("T")


class FallbackLimiter:
    """``shared`` while it answers, ``local`` for ``retry_seconds`` after it failed."""

    def __init__(
        self, shared: Limiter, local: Limiter, settings: RedisSettings, clock: Clock
    ) -> None:
        self._shared = shared
        self._local = local
        self._clock = clock
        self._where = redacted_url(settings.url)
        self._retry_seconds = settings.retry_seconds
        self._local_until: float | None = None
        """While set, the outage is on; before this instant Redis is not tried."""

    @property
    def shared(self) -> bool:
        """Whether the last answer came from the shared limiter."""
        return self._local_until is None

    async def throttle(self, key: str, spec: ThrottleSpec, now: float, wanted: int = 1) -> Grant:
        return await self._either(lambda limiter: limiter.throttle(key, spec, now, wanted))

    async def acquire_slot(self, key: str, limit: int, holder: str, now: float, ttl: float) -> bool:
        return await self._either(lambda each: each.acquire_slot(key, limit, holder, now, ttl))

    async def release_slot(self, key: str, holder: str) -> None:
        await self._either(lambda limiter: limiter.release_slot(key, holder))

    async def renew_slots(self, slots: Sequence[tuple[str, str]], now: float, ttl: float) -> None:
        await self._either(lambda limiter: limiter.renew_slots(slots, now, ttl))

    async def slots_in_use(self, key: str, now: float) -> int:
        return await self._either(lambda limiter: limiter.slots_in_use(key, now))

    async def take_within_cap(self, key: str, cap: int, wanted: int, ttl: float) -> int:
        return await self._either(lambda limiter: limiter.take_within_cap(key, cap, wanted, ttl))

    async def add(self, key: str, amount: int, ttl: float) -> int:
        return await self._either(lambda limiter: limiter.add(key, amount, ttl))

    async def raise_to(self, key: str, value: int, ttl: float) -> None:
        await self._either(lambda limiter: limiter.raise_to(key, value, ttl))

    async def counts(self, keys: Sequence[str]) -> list[int]:
        return await self._either(lambda limiter: limiter.counts(keys))

    async def get_state(self, key: str) -> str | None:
        return await self._either(lambda limiter: limiter.get_state(key))

    async def set_state(self, key: str, value: str, ttl: float) -> None:
        await self._either(lambda limiter: limiter.set_state(key, value, ttl))

    async def close(self) -> None:
        await self._shared.close()
        await self._local.close()

    async def _either(self, operation: Callable[[Limiter], Awaitable[T]]) -> T:
        """``operation`` on the shared limiter, or on the local one during an outage."""
        if self._local_until is not None and self._clock.now() < self._local_until:
            return await operation(self._local)
        try:
            result = await operation(self._shared)
        except LimiterUnavailable as exc:
            if self._local_until is None:
                log.warning(
                    "redis unreachable at %s; limits are per process until it is back (%s)",
                    self._where,
                    exc.__cause__ or exc,
                )
            self._local_until = self._clock.now() + self._retry_seconds
            return await operation(self._local)
        if self._local_until is not None:
            self._local_until = None
            log.info("redis is back at %s; limits are shared again", self._where)
        return result
