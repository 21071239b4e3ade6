"""Test support for the admin API: the app on a real store, a client on it, tenant keys.

Fixtures (registered for every test under ``tests/integration`` by its
``conftest.py``):

- ``store`` (``conftest.py``): a migrated store, SQLite and PostgreSQL (each test
  runs on both);
- ``api_clock``: a ``FakeClock`` the services read time from;
- ``api_book``: the tenants' settings book the services read (quotas, routing);
- ``api_services``: ``ApiServices`` on that store, with the acceptance path
  (``Acceptor``, with the quotas of ``api_book``) on a running submission spool,
  an in-process limiter on the fake clock, the operator token ``OPERATOR_TOKEN``
  and a key rate generous enough not to get in the way;
- ``api_app``: ``create_app(api_services)``;
- ``api_client``: an ``httpx.AsyncClient`` on the app (``ASGITransport``,
  peer 127.0.0.1).

Helpers: ``await make_tenant_key(services, "acme", scopes)`` makes the
tenant (if needed) and a key, returning ``(tenant, "pm_...")``;
``bearer(token)`` and ``as_operator(tenant)`` are the request headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from admin_api.app import create_app
from admin_api.auth import TENANT_HEADER
from admin_api.services import ApiServices
from config import Settings
from config.schema import EngineSettings
from engine.clock import FakeClock
from engine.limits.local import LocalLimiter
from engine.limits.throttle import ThrottleSpec
from engine.model import ApiScope, Tenant
from engine.provisioning import Provisioning, Unknown
from engine.records.log import RecordLog
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.store import Store
from engine.submission.acceptor import Acceptor
from engine.submission.quota import TenantQuota
from engine.submission.spool import Spool

OPERATOR_TOKEN = "operator-token-for-the-tests-8d1f0c"
NODE = "node-test"
ROOMY_RATE = ThrottleSpec.parse("1000/s,max_burst=100000")
"""The key rate of ``api_services``: no test meets it by accident."""


def api_settings(data_dir: Path, database_url: str) -> Settings:
    """Settings for an API test: data under ``data_dir``, the store at ``database_url``."""
    settings = Settings()
    engine = EngineSettings(data_dir=str(data_dir), hostname="mta.penguin.test")
    database = dataclasses.replace(settings.database, url=database_url)
    return dataclasses.replace(settings, engine=engine, database=database)


@pytest.fixture
def api_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api_book() -> TenantSettingsBook:
    """The tenants' settings the services' quotas and routing read (none set: no quota)."""
    return TenantSettingsBook(Settings())


@contextlib.asynccontextmanager
async def services_on(
    store: Store, store_url: str, clock: FakeClock, book: TenantSettingsBook, data_dir: Path
) -> AsyncIterator[ApiServices]:
    """``ApiServices`` on ``store`` (opened from ``store_url``) as ``api_services`` has
    them, with its spool running until the block ends; data under ``data_dir``."""
    settings = api_settings(data_dir, store_url)
    record_log = RecordLog(str(data_dir / "records.jsonl"))
    spool = Spool(store, record_log, settings.database.commit_batch_max)
    limiter = LocalLimiter(clock)
    quota = TenantQuota(limiter, book)
    acceptor = Acceptor(
        store=store,
        spool=spool,
        clock=clock,
        settings=settings,
        tenant_settings=book,
        quota=quota,
    )
    services = ApiServices(
        store=store,
        provisioning=Provisioning(store, settings, nodeid=NODE, clock=clock),
        settings=settings,
        clock=clock,
        limiter=limiter,
        key_rate=ROOMY_RATE,
        nodeid=NODE,
        operator_token=OPERATOR_TOKEN,
        acceptor=acceptor,
        quota=quota,
    )
    spooling = asyncio.create_task(spool.run(), name="spool")
    try:
        yield services
    finally:
        spool.close()
        await spooling
        record_log.close()


@pytest.fixture
async def api_services(
    store: Store, store_url: str, api_clock: FakeClock, api_book: TenantSettingsBook, tmp_path: Path
) -> AsyncIterator[ApiServices]:
    async with services_on(store, store_url, api_clock, api_book, tmp_path / "var") as services:
        yield services


@pytest.fixture
def api_app(api_services: ApiServices) -> FastAPI:
    return create_app(api_services)


@contextlib.asynccontextmanager
async def client_of(
    app: FastAPI, peer: tuple[str, int] = ("127.0.0.1", 40000)
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on ``app`` seen as coming from ``peer``."""
    transport = httpx.ASGITransport(app=app, client=peer)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        yield client


@pytest.fixture
async def api_client(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(api_app) as client:
        yield client


async def make_tenant_key(
    services: ApiServices,
    tenant: str,
    scopes: Collection[ApiScope] = frozenset(ApiScope),
    name: str = "test key",
) -> tuple[Tenant, str]:
    """Tenant ``tenant`` (made if needed) and the token of a new key of it with ``scopes``."""
    try:
        owner = await services.provisioning.tenant(tenant)
    except Unknown:
        owner = await services.provisioning.create_tenant(tenant)
    made = await services.provisioning.create_api_key(owner.name, scopes, name)
    return owner, made.token


def bearer(token: str) -> dict[str, str]:
    """The headers sending ``token`` (a key, or the operator token)."""
    return {"Authorization": f"Bearer {token}"}


def as_operator(tenant: str) -> dict[str, str]:
    """The headers of the operator acting for ``tenant``."""
    return {**bearer(OPERATOR_TOKEN), TENANT_HEADER: tenant}


def error_of(response: httpx.Response) -> dict[str, object]:
    """The error object of an error response (after checking its shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, object] = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    return error
