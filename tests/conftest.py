"""Shared fixtures: a throw-away PostgreSQL database per test.

The server is the local one at 127.0.0.1:5432 (user ``postgres``, trust
auth). When it is unreachable the PostgreSQL tests are skipped, except in CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The maintenance database URL, once the server is known to accept connections."""
    parts = urlsplit(POSTGRES_ADMIN_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        with socket.create_connection((host, port), timeout=2.0):
            pass
    except OSError as exc:
        reason = f"PostgreSQL is not reachable at {host}:{port}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


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
