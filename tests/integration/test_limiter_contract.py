"""One suite for every limiter: the in-process one and the Redis one (local Redis).

Throttle decisions are compared with the pure GCRA of ``engine.limits.throttle``
and bounded over every window (Hypothesis); slots are checked for their limit
under concurrency, expiry by ``now`` and renewal; counters and states for
their caps and expiry. Expiry of counters and states follows the limiter's
clock: a fake one moved by the test in-process, Redis's own (short ttls,
waited for with a deadline) for Redis.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import RedisSettings
from engine.clock import FakeClock
from engine.limits import Grant, Limiter
from engine.limits.local import LocalLimiter
from engine.limits.redis import RedisLimiter
from engine.limits.throttle import ThrottleSpec, take
from tests.harness.conditions import wait_for

NOW = 1_800_000_000.0
_fresh = itertools.count()


@dataclass
class Case:
    limiter: Limiter
    clock: FakeClock
    in_redis: bool

    async def pass_time(self, seconds: float) -> None:
        """Move the limiter's own clock on (Redis's runs by itself)."""
        if not self.in_redis:
            self.clock.advance(seconds)


def fresh(name: str) -> str:
    """A key no other example of this test used."""
    return f"{name}:{next(_fresh)}"


@pytest.fixture(params=["local", "redis"])
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    clock = FakeClock(NOW)
    if request.param == "local":
        yield Case(LocalLimiter(clock), clock, in_redis=False)
        return
    redis_settings: RedisSettings = request.getfixturevalue("redis_settings")
    limiter = RedisLimiter.connect(redis_settings, LocalLimiter(clock))
    try:
        yield Case(limiter, clock, in_redis=True)
    finally:
        await limiter.close()


# -- throttles ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "wanted", "granted", "retry_after"),
    [
        ("10/s", 1, 1, 0.0),
        ("10/s", 10, 10, 0.0),
        ("10/s", 15, 10, 0.1),
        ("10/s,max_burst=2", 5, 2, 0.1),
        ("60/min,max_burst=1", 3, 1, 1.0),
        ("1/h", 2, 1, 3600.0),
        ("5/s", 0, 0, 0.0),
    ],
)
async def test_an_idle_throttle_grants_its_burst(
    case: Case, spec: str, wanted: int, granted: int, retry_after: float
) -> None:
    grant = await case.limiter.throttle("t", ThrottleSpec.parse(spec), NOW, wanted)
    assert grant.granted == granted
    assert grant.retry_after == pytest.approx(retry_after)


async def test_a_throttle_refills_at_its_rate_and_a_refusal_takes_nothing(case: Case) -> None:
    spec = ThrottleSpec.parse("10/s,max_burst=2")
    assert await case.limiter.throttle("t", spec, NOW, 2) == Grant(2, 0.0)
    refused = await case.limiter.throttle("t", spec, NOW + 0.05)
    assert refused.granted == 0
    assert refused.retry_after == pytest.approx(0.05)
    assert (await case.limiter.throttle("t", spec, NOW + 0.1)).granted == 1
    assert (await case.limiter.throttle("t", spec, NOW + 10, 5)).granted == 2
    assert (await case.limiter.throttle("other", spec, NOW + 10, 5)).granted == 2


@given(
    steps=st.lists(
        st.tuples(st.floats(0, 2, allow_nan=False), st.integers(0, 6)), min_size=1, max_size=40
    ),
    limit=st.integers(1, 20),
    period=st.sampled_from([1.0, 2.5, 60.0]),
    burst=st.integers(1, 10),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_throttles_follow_gcra_and_never_pass_burst_plus_rate_in_a_window(
    case: Case, steps: list[tuple[float, int]], limit: int, period: float, burst: int
) -> None:
    spec = ThrottleSpec(limit, period, burst)
    key = fresh("gcra")
    now, tat = NOW, None
    passed: list[tuple[float, int]] = []
    for gap, wanted in steps:
        now += gap
        expected = take(spec, tat, now, wanted)
        if expected.granted:
            tat = expected.tat
        grant = await case.limiter.throttle(key, spec, now, wanted)
        assert grant.granted == expected.granted
        assert grant.retry_after == pytest.approx(expected.retry_after, abs=1e-9)
        passed.append((now, grant.granted))
    for i, (start, _) in enumerate(passed):
        for end, _ in passed[i:]:
            in_window = sum(n for t, n in passed if start <= t <= end)
            assert in_window <= burst + spec.per_second * (end - start) + 1e-6


# -- slots -------------------------------------------------------------------


async def test_slots_are_limited_held_and_released(case: Case) -> None:
    limiter = case.limiter
    assert await limiter.acquire_slot("c", 2, "a", NOW, 60)
    assert await limiter.acquire_slot("c", 2, "b", NOW, 60)
    assert not await limiter.acquire_slot("c", 2, "x", NOW, 60)
    assert await limiter.acquire_slot("c", 2, "a", NOW, 60), "already held"
    assert await limiter.slots_in_use("c", NOW) == 2
    await limiter.release_slot("c", "a")
    await limiter.release_slot("c", "nobody")
    assert await limiter.slots_in_use("c", NOW) == 1
    assert await limiter.acquire_slot("c", 2, "x", NOW, 60)
    assert await limiter.slots_in_use("other", NOW) == 0


async def test_slots_expire_by_now(case: Case) -> None:
    limiter = case.limiter
    assert await limiter.acquire_slot("c", 1, "a", NOW, 10)
    assert await limiter.slots_in_use("c", NOW + 9.9) == 1
    assert not await limiter.acquire_slot("c", 1, "b", NOW + 9.9, 10)
    assert await limiter.slots_in_use("c", NOW + 10) == 0
    assert await limiter.acquire_slot("c", 1, "b", NOW + 10, 10)


async def test_renewal_extends_held_slots_only(case: Case) -> None:
    limiter = case.limiter
    assert await limiter.acquire_slot("c", 5, "a", NOW, 10)
    assert await limiter.acquire_slot("c", 5, "b", NOW, 5)
    assert await limiter.acquire_slot("d", 5, "a", NOW, 10)
    slots = [("c", "a"), ("c", "b"), ("c", "ghost"), ("d", "a")]
    await limiter.renew_slots(slots, NOW + 6, 10)  # b expired at NOW + 5
    assert await limiter.slots_in_use("c", NOW + 15) == 1
    assert await limiter.slots_in_use("d", NOW + 15) == 1
    assert await limiter.slots_in_use("c", NOW + 16) == 0
    await limiter.renew_slots([], NOW, 10)


async def test_concurrent_holders_get_exactly_the_limit(case: Case) -> None:
    taken = await asyncio.gather(
        *(case.limiter.acquire_slot("c", 5, f"h{i}", NOW, 60) for i in range(50))
    )
    assert taken.count(True) == 5
    assert await case.limiter.slots_in_use("c", NOW) == 5


# -- counters and states -----------------------------------------------------


async def test_take_within_cap_never_passes_the_cap(case: Case) -> None:
    taken = [await case.limiter.take_within_cap("w", 10, 4, 60) for _ in range(4)]
    assert taken == [4, 4, 2, 0]
    assert await case.limiter.counts(["w", "missing"]) == [10, 0]
    assert await case.limiter.take_within_cap("w0", 0, 3, 60) == 0
    assert await case.limiter.counts(["w0"]) == [0]


async def test_concurrent_takes_share_the_cap(case: Case) -> None:
    taken = await asyncio.gather(*(case.limiter.take_within_cap("w", 25, 2, 60) for _ in range(30)))
    assert sum(taken) == 25
    assert await case.limiter.counts(["w"]) == [25]


async def test_add_and_raise_to(case: Case) -> None:
    limiter = case.limiter
    assert await limiter.add("n", 3, 60) == 3
    assert await limiter.add("n", 2, 60) == 5
    await limiter.raise_to("n", 4, 60)
    await limiter.raise_to("m", 7, 60)
    assert await limiter.counts(["n", "m"]) == [5, 7]
    await limiter.raise_to("n", 9, 60)
    assert await limiter.counts(["n"]) == [9]
    assert await limiter.counts([]) == []


async def test_counters_expire_ttl_after_their_creation(case: Case) -> None:
    limiter = case.limiter
    await limiter.add("n", 1, 0.5)
    await limiter.add("n", 1, 1000)  # does not move the expiry on
    await limiter.take_within_cap("n", 10, 1, 1000)
    await limiter.raise_to("n", 5, 1000)
    assert await limiter.counts(["n"]) == [5]
    await case.pass_time(0.5)

    async def gone() -> bool:
        return await limiter.counts(["n"]) == [0]

    await wait_for(gone, "the count to expire", seconds=5.0)
    assert await limiter.add("n", 2, 60) == 2


async def test_states_are_kept_until_their_ttl(case: Case) -> None:
    limiter = case.limiter
    assert await limiter.get_state("s") is None
    await limiter.set_state("s", "level=2", 60)
    await limiter.set_state("s", "level=3 factor=0.5", 0.5)
    assert await limiter.get_state("s") == "level=3 factor=0.5"
    await case.pass_time(0.5)

    async def gone() -> bool:
        return await limiter.get_state("s") is None

    await wait_for(gone, "the state to expire", seconds=5.0)


# -- Redis only --------------------------------------------------------------


@pytest.fixture
async def redis_client(redis_settings: RedisSettings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_settings.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_redis_limiters_share_limits_under_the_key_prefix(
    redis_settings: RedisSettings, redis_client: aioredis.Redis
) -> None:
    clock = FakeClock(NOW)
    one = RedisLimiter.connect(redis_settings, LocalLimiter(clock))
    two = RedisLimiter.connect(redis_settings, LocalLimiter(clock))
    try:
        spec = ThrottleSpec.parse("3/min")
        assert (await one.throttle("rate:s|x", spec, NOW, 2)).granted == 2
        assert (await two.throttle("rate:s|x", spec, NOW, 2)).granted == 1
        assert await one.acquire_slot("conn:s|x", 1, "p1", NOW, 60)
        assert not await two.acquire_slot("conn:s|x", 1, "p2", NOW, 60)
        keys = await redis_client.keys(f"{redis_settings.key_prefix}*")
        assert sorted(keys) == [f"{redis_settings.key_prefix}{k}" for k in ("conn:s|x", "rate:s|x")]
    finally:
        await one.close()
        await two.close()


async def test_local_specs_stay_in_the_process(
    redis_settings: RedisSettings, redis_client: aioredis.Redis
) -> None:
    clock = FakeClock(NOW)
    one = RedisLimiter.connect(redis_settings, LocalLimiter(clock))
    two = RedisLimiter.connect(redis_settings, LocalLimiter(clock))
    try:
        spec = ThrottleSpec.parse("local:2/min")
        assert (await one.throttle("rate", spec, NOW, 5)).granted == 2
        assert (await two.throttle("rate", spec, NOW, 5)).granted == 2
        assert (await one.throttle("rate", spec, NOW, 5)).granted == 0
        assert await redis_client.keys(f"{redis_settings.key_prefix}*") == []
    finally:
        await one.close()
        await two.close()


async def test_idle_keys_expire_in_redis(
    redis_settings: RedisSettings, redis_client: aioredis.Redis
) -> None:
    limiter = RedisLimiter.connect(redis_settings, LocalLimiter(FakeClock(NOW)))
    try:
        await limiter.throttle("rate", ThrottleSpec.parse("100/s"), NOW, 3)
        await limiter.acquire_slot("conn", 3, "a", NOW, 30)
        ttls = [
            await redis_client.pttl(f"{redis_settings.key_prefix}{k}") for k in ("rate", "conn")
        ]
        assert 0 < ttls[0] <= 31
        assert 29_000 < ttls[1] <= 30_000
    finally:
        await limiter.close()


async def test_scripts_are_loaded_again_after_a_script_flush(
    redis_settings: RedisSettings, redis_client: aioredis.Redis
) -> None:
    limiter = RedisLimiter.connect(redis_settings, LocalLimiter(FakeClock(NOW)))
    try:
        assert await limiter.add("n", 1, 60) == 1
        await redis_client.script_flush()
        assert await limiter.add("n", 1, 60) == 2
    finally:
        await limiter.close()
