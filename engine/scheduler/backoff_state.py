"""Backoff state: the adaptive level of each lane, source, source-provider, tenant
and campaign, kept in the limiter so every process slows down together.

Owns ``BackoffState``, the adapter around the pure rules and levels of
``engine.scheduler.backoff``: a matching reply lowers a target's level
(``reduce``) or suspends it (the scheduler stores the suspension); successes
raise it back step by step. Levels are read through a short local cache.
"""

from __future__ import annotations

from engine.limits import Limiter
from engine.scheduler.backoff import Level, after_success, reduced

LEVEL_TTL_SECONDS = 7 * 86400.0
CACHE_SECONDS = 1.0


class BackoffState:
    """Levels by target key (``lane:SOURCE|SITE``, ``source_provider:SOURCE|PROVIDER``...)."""

    def __init__(self, limiter: Limiter, *, step_after: int, max_level: int) -> None:
        self._limiter = limiter
        self._step_after = step_after
        self._max_level = max_level
        self._cache: dict[str, tuple[Level, float]] = {}

    async def level(self, key: str, now: float) -> Level:
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        raw = await self._limiter.get_state(f"backoff:{key}")
        level = Level.decode(raw) if raw else Level()
        self._cache[key] = (level, now + CACHE_SECONDS)
        return level

    async def reduce(self, key: str, factor: float, now: float) -> Level:
        """One step down for ``key`` (rates and connections times ``factor`` once more)."""
        level = reduced(await self.level(key, now), self._max_level, factor)
        await self._store(key, level, now)
        return level

    async def success(self, key: str, now: float) -> None:
        """A delivery on ``key``'s path: every ``step_after`` of them, one step back up."""
        current = await self.level(key, now)
        if current.level == 0:
            return
        level = after_success(current, self._step_after)
        await self._store(key, level, now)

    def levels(self) -> dict[str, Level]:
        """The levels this process last saw above zero (for ``penguin lanes``)."""
        return {key: level for key, (level, _) in self._cache.items() if level.level}

    async def _store(self, key: str, level: Level, now: float) -> None:
        self._cache[key] = (level, now + CACHE_SECONDS)
        await self._limiter.set_state(f"backoff:{key}", level.encode(), LEVEL_TTL_SECONDS)
