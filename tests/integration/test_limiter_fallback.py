"""``open_limiter`` and the fallback: Redis down at start, hanging, or going away mid-run.

The limiter answers from the process's own limits without raising, logs one
warning per outage and one line when Redis is back, tries Redis again only
after ``retry_seconds`` (fake clock), and waits at most ``timeout_seconds``
for a Redis that does not answer. A TCP proxy in front of the local Redis
plays the server that goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from config.schema import RedisSettings
from engine.clock import FakeClock
from engine.limits import open_limiter
from engine.limits.fallback import FallbackLimiter
from engine.limits.local import LocalLimiter
from engine.limits.throttle import ThrottleSpec
from tests.harness.tcp_proxy import TcpProxy

NOW = 1_800_000_000.0
SPEC = ThrottleSpec.parse("2/min")
LOGGER = "engine.limits.fallback"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


@pytest.fixture
async def proxy(redis_settings: RedisSettings) -> AsyncIterator[TcpProxy]:
    """A proxy to the local Redis."""
    proxy = TcpProxy(("127.0.0.1", 6379))
    await proxy.start()
    yield proxy
    await proxy.stop()


def test_an_empty_url_keeps_the_limits_in_the_process() -> None:
    assert isinstance(open_limiter(RedisSettings()), LocalLimiter)
    assert isinstance(open_limiter(RedisSettings(url="redis://127.0.0.1:1/0")), FallbackLimiter)


async def test_unreachable_redis_falls_back_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:secret@127.0.0.1:{closed_port()}/0"
    clock = FakeClock(NOW)
    limiter = open_limiter(RedisSettings(url=url, retry_seconds=5), clock)
    caplog.set_level(logging.INFO, LOGGER)
    try:
        assert (await limiter.throttle("rate", SPEC, NOW, 5)).granted == 2
        assert await limiter.acquire_slot("conn", 1, "a", NOW, 60)
        assert not await limiter.acquire_slot("conn", 1, "b", NOW, 60)
        assert await limiter.add("n", 2, 60) == 2
        clock.advance(5)
        assert (await limiter.throttle("rate", SPEC, NOW + 5, 5)).granted == 0
        assert await limiter.counts(["n"]) == [2]
    finally:
        await limiter.close()
    warnings = logged(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        f"redis unreachable at redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}; "
        "limits are per process until it is back"
    )
    assert "secret" not in caplog.text
    assert logged(caplog, logging.INFO) == []


async def test_a_redis_that_does_not_answer_costs_at_most_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    silent = TcpProxy(None)
    await silent.start()
    settings = RedisSettings(url=f"redis://127.0.0.1:{silent.port}/0", timeout_seconds=0.2)
    limiter = open_limiter(settings, FakeClock(NOW))
    caplog.set_level(logging.INFO, LOGGER)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        assert (await limiter.throttle("rate", SPEC, NOW)).granted == 1
        assert loop.time() - started < 0.2 + 0.3
        started = loop.time()
        assert (await limiter.throttle("rate", SPEC, NOW)).granted == 1
        assert loop.time() - started < 0.05, "no second wait before retry_seconds"
    finally:
        await limiter.close()
        await silent.stop()
    assert len(logged(caplog, logging.WARNING)) == 1


async def test_redis_going_away_and_coming_back(
    caplog: pytest.LogCaptureFixture, redis_settings: RedisSettings, proxy: TcpProxy
) -> None:
    settings = dataclasses.replace(
        redis_settings, url=f"redis://127.0.0.1:{proxy.port}/0", retry_seconds=5
    )
    clock = FakeClock(NOW)
    limiter = open_limiter(settings, clock)
    direct = aioredis.Redis.from_url(redis_settings.url, decode_responses=True)
    caplog.set_level(logging.INFO, LOGGER)
    try:
        assert await limiter.acquire_slot("conn", 1, "a", NOW, 600)
        assert await direct.zcard(f"{settings.key_prefix}conn") == 1

        await proxy.stop()
        assert await limiter.acquire_slot("conn", 1, "b", NOW, 600), "answered in the process"
        assert not await limiter.acquire_slot("conn", 1, "c", NOW, 600)
        assert await limiter.get_state("level") is None
        assert len(logged(caplog, logging.WARNING)) == 1

        await proxy.start()
        clock.advance(4.9)
        await limiter.set_state("level", "2", 60)
        assert await direct.get(f"{settings.key_prefix}level") is None, "not tried before 5 s"
        clock.advance(0.1)
        assert not await limiter.acquire_slot("conn", 1, "b", NOW, 600), "a holds it in Redis"
        assert await limiter.get_state("level") is None
        await limiter.set_state("level", "3", 60)
        assert await direct.get(f"{settings.key_prefix}level") == "3"
    finally:
        await limiter.close()
        await direct.aclose()
    assert len(logged(caplog, logging.WARNING)) == 1
    back = logged(caplog, logging.INFO)
    assert back == [f"redis is back at {settings.url}; limits are shared again"]
