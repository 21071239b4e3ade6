"""The Redis limiter: limits shared by every engine process and node.

Owns ``RedisLimiter`` (``engine.limits.Limiter`` over ``redis.asyncio``).
Each operation is one atomic step in Redis: a Lua script (sent by EVALSHA,
loaded again on NOSCRIPT by redis-py's ``register_script``) or a single
command. ``now`` comes from the caller as an argument, never from Redis's
``TIME``, so processes on one clock and tests on a fake one agree.

Keys (``redis.key_prefix`` + the caller's logical key):
- throttle: a string, the GCRA TAT (``throttle.take`` ported to Lua below),
  expiring once the TAT is reached (an idle key is a full bucket);
- slots: a sorted set, holder -> expiry instant; the set expires after the
  longest hold asked for, so abandoned keys go away;
- counter: an integer with the expiry set at its creation;
- state: a string with an expiry.
Throttles with a ``local`` spec are kept by the ``LocalLimiter`` given at
construction, never in Redis.

Errors: a connection failure, a refusal to write (a replica) or an operation
slower than ``redis.timeout_seconds`` raises ``LimiterUnavailable``; nothing
retries here (the fallback decides what to do).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from config import redacted_url
from config.schema import RedisSettings
from engine.limits import Grant, LimiterUnavailable
from engine.limits.local import LocalLimiter
from engine.limits.throttle import TOLERANCE, ThrottleSpec

T = TypeVar("T")

_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    OSError,
    TimeoutError,
)

# throttle.take; KEYS[1] TAT; ARGV now, interval, max_burst, wanted, TOLERANCE
# -> {granted, retry_after}
_THROTTLE = """
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local burst, wanted = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]))
local start = now
if tat and tat > now then start = tat end
local room = (now + burst * interval - start + tonumber(ARGV[5])) / interval
local granted = math.max(0, math.min(wanted, math.floor(room)))
local new_tat = start + granted * interval
if granted > 0 then
  local ms = math.ceil((new_tat - now) * 1000) + 1
  redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', ms)
end
local retry = 0
if granted < wanted then
  retry = math.max(0, new_tat + interval - (now + burst * interval))
end
return {granted, string.format('%.17g', retry)}
"""

# KEYS[1] slots; ARGV limit, holder, now, ttl -> 1 taken or held, 0 full
_ACQUIRE = """
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%.17g', now + ttl), ARGV[2])
local ms = math.ceil(ttl * 1000)
if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end
return 1
"""

# KEYS slot sets; ARGV now, ttl, then the holder of each key
_RENEW = """
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local ms = math.ceil(ttl * 1000)
for i, key in ipairs(KEYS) do
  local until_ = tonumber(redis.call('ZSCORE', key, ARGV[i + 2]))
  if until_ and until_ > now then
    redis.call('ZADD', key, 'XX', string.format('%.17g', now + ttl), ARGV[i + 2])
    if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
  end
end
return 0
"""

# KEYS[1] counter; ARGV cap, wanted, ttl_ms -> amount added
_TAKE_WITHIN_CAP = """
local value = tonumber(redis.call('GET', KEYS[1])) or 0
local taken = math.max(0, math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - value))
if taken > 0 then
  redis.call('INCRBY', KEYS[1], taken)
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return taken
"""

# KEYS[1] counter; ARGV amount, ttl_ms -> new value
_ADD = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""

# KEYS[1] counter; ARGV value, ttl_ms
_RAISE_TO = """
local value = tonumber(redis.call('GET', KEYS[1]))
if value and value >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def _milliseconds(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


class RedisLimiter:
    """Limits kept in Redis (``engine.limits.Limiter``)."""

    def __init__(
        self, client: aioredis.Redis, settings: RedisSettings, local: LocalLimiter
    ) -> None:
        self._client = client
        self._prefix = settings.key_prefix
        self._timeout = settings.timeout_seconds
        self._local = local
        self.where = redacted_url(settings.url)
        """The server's URL, password hidden, for operators' logs."""
        self._throttle = client.register_script(_THROTTLE)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._take_within_cap = client.register_script(_TAKE_WITHIN_CAP)
        self._add = client.register_script(_ADD)
        self._raise_to = client.register_script(_RAISE_TO)

    @classmethod
    def connect(cls, settings: RedisSettings, local: LocalLimiter) -> RedisLimiter:
        """A limiter on the Redis at ``settings.url`` (connections are opened on first use)."""
        client = aioredis.Redis.from_url(
            settings.url,
            socket_timeout=settings.timeout_seconds,
            socket_connect_timeout=settings.timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        return cls(client, settings, local)

    async def throttle(self, key: str, spec: ThrottleSpec, now: float, wanted: int = 1) -> Grant:
        if spec.local:
            return await self._local.throttle(key, spec, now, wanted)
        args = [now, spec.interval, spec.max_burst, wanted, TOLERANCE]
        granted, retry_after = await self._run(self._throttle(keys=[self._key(key)], args=args))
        return Grant(int(granted), float(retry_after))

    async def acquire_slot(self, key: str, limit: int, holder: str, now: float, ttl: float) -> bool:
        args: list[str | float] = [limit, holder, now, ttl]
        return bool(await self._run(self._acquire(keys=[self._key(key)], args=args)))

    async def release_slot(self, key: str, holder: str) -> None:
        await self._run(self._client.zrem(self._key(key), holder))

    async def renew_slots(self, slots: Sequence[tuple[str, str]], now: float, ttl: float) -> None:
        if slots:
            keys = [self._key(key) for key, _ in slots]
            args: list[str | float] = [now, ttl, *(holder for _, holder in slots)]
            await self._run(self._renew(keys=keys, args=args))

    async def slots_in_use(self, key: str, now: float) -> int:
        return int(await self._run(self._client.zcount(self._key(key), f"({now!r}", "+inf")))

    async def take_within_cap(self, key: str, cap: int, wanted: int, ttl: float) -> int:
        args = [cap, wanted, _milliseconds(ttl)]
        return int(await self._run(self._take_within_cap(keys=[self._key(key)], args=args)))

    async def add(self, key: str, amount: int, ttl: float) -> int:
        args = [amount, _milliseconds(ttl)]
        return int(await self._run(self._add(keys=[self._key(key)], args=args)))

    async def raise_to(self, key: str, value: int, ttl: float) -> None:
        args = [value, _milliseconds(ttl)]
        await self._run(self._raise_to(keys=[self._key(key)], args=args))

    async def counts(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        values = await self._run(self._client.mget([self._key(key) for key in keys]))
        return [int(value or 0) for value in values]

    async def get_state(self, key: str) -> str | None:
        value = await self._run(self._client.get(self._key(key)))
        return None if value is None else str(value)

    async def set_state(self, key: str, value: str, ttl: float) -> None:
        await self._run(self._client.set(self._key(key), value, px=_milliseconds(ttl)))

    async def close(self) -> None:
        await self._client.aclose()

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _run(self, operation: Awaitable[T]) -> T:
        """``operation`` within the timeout, Redis trouble as ``LimiterUnavailable``."""
        try:
            async with asyncio.timeout(self._timeout):
                return await operation
        except _UNAVAILABLE as exc:
            raise LimiterUnavailable(f"redis at {self.where}: {exc or type(exc).__name__}") from exc


__all__ = ["RedisLimiter"]
