"""Shared fixtures: a throw-away PostgreSQL database per test, a key prefix of
its own in Redis per test.

The servers are the local ones at 127.0.0.1:5432 (PostgreSQL, user
``postgres``, trust auth) and 127.0.0.1:6379 (Redis). When one is
unreachable the tests needing it are skipped, except in CI (``CI=true``),
where they fail.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from config.schema import RedisSettings

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def require_server(name: str, url: str) -> None:
    """Skip (fail under ``CI=true``) unless the server at ``url`` accepts connections."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 0
    try:
        with socket.create_connection((host, port), timeout=2.0):
            pass
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The maintenance database URL, once the server is known to accept connections."""
    require_server("PostgreSQL", POSTGRES_ADMIN_URL)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def redis_settings() -> Iterator[RedisSettings]:
    """Settings of the local Redis with a key prefix ``penguin_test_<hex>:`` of this
    test's own; its keys are deleted after the test."""
    require_server("Redis", REDIS_URL)
    settings = RedisSettings(url=REDIS_URL, key_prefix=f"penguin_test_{secrets.token_hex(6)}:")
    yield settings
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{settings.key_prefix}*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
async def postgres_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh, empty database ``penguin_test_<hex>``, dropped after the test."""
    name = f"penguin_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(postgres_admin_url)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(postgres_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
