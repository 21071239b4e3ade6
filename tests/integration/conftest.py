"""Fixtures of the integration tests: a real, migrated store on each backend, and the
admin API's (``api_support``).

A test (or a module) that asks for ``store`` runs once on SQLite (a file under
the test's temporary directory) and once on PostgreSQL (a database of its own,
``tests.conftest.postgres_url``). ``pg_store`` is a migrated PostgreSQL store
alone, for the tests of what only PostgreSQL does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.store import Store, open_store
from engine.store.migrations import Backend
from engine.store.postgres import PostgresStore
from tests.integration.api_support import (
    api_app,
    api_book,
    api_client,
    api_clock,
    api_services,
)

__all__ = [
    "api_app",
    "api_book",
    "api_client",
    "api_clock",
    "api_services",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The store's backend: each test runs on both."""
    name: Backend = request.param
    return name


@pytest.fixture
def store_url(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of ``backend``."""
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'data' / 'penguin.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def opened_store(store_url: str) -> AsyncIterator[Store]:
    """The store at ``store_url``, opened but not migrated: alone, an empty database;
    beside ``store``, a second connection to its database (as another engine process
    has)."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The store at ``store_url``, migrated; closed after the test."""
    opened = open_store(store_url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    """A migrated ``PostgresStore`` of four connections on a database of its own."""
    store = PostgresStore(postgres_url, pool_size=4)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()
