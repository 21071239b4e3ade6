"""The composition root's services in one process: started, reported on ``/healthz``, stopped.

Real parts: the engine of ``engine.runtime.app`` with its SQLite store, its
SMTP and admin listeners on loopback; the added services are this test's.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from config.loader import parse_settings
from engine.model import ApiScope
from engine.provisioning import Provisioning
from engine.runtime.app import Engine, Role, migrated_store
from engine.service import Address, Health
from tests.integration.stats_support import TOTALS, send_traffic


class StubService:
    """A service whose health the test sets; it records its stop."""

    def __init__(self, name: str, health: Health) -> None:
        self.name = name
        self.state = health
        self.stopped_with: float | None = None
        self._stop = asyncio.Event()

    async def start(self) -> list[Address]:
        return []

    async def run(self) -> None:
        await self._stop.wait()

    async def stop(self, grace_seconds: float) -> None:
        self.stopped_with = grace_seconds
        self._stop.set()

    def health(self) -> Health:
        return self.state


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    settings = parse_settings(
        {
            "engine": {"data_dir": str(tmp_path / "var"), "shutdown_grace_seconds": 5},
            "submission": {"listen": ["127.0.0.1:0"]},
            "admin": {"listen": "127.0.0.1:0"},
            "bounce": {"listen": ["127.0.0.1:0"]},
            "tracking": {"listen": "127.0.0.1:0"},
            "dns": {"nameservers": ["127.0.0.1:9"]},
        }
    )
    engine = Engine(settings, services=[StubService("bounce intake", Health(True))])
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def get(address: Address, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    url = f"http://{address[0]}:{address[1]}{path}"
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


async def test_healthz_reports_every_service_of_the_process(engine: Engine) -> None:
    [admin] = engine.addresses["admin"]
    status, body = await asyncio.to_thread(get, admin, "/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert list(body["services"]) == [
        "tracking-domains",
        "tenant-settings",
        "delivery",
        "stats",
        "webhooks",
        "submission",
        "campaigns",
        "admin",
        "bounce",
        "tracking",
        "bounce intake",
    ]
    assert all(service["ok"] for service in body["services"].values())


async def test_healthz_fails_while_one_service_is_unhealthy(engine: Engine) -> None:
    [admin] = engine.addresses["admin"]
    [stub] = engine.services
    assert isinstance(stub, StubService)
    stub.state = Health(False, "DSN parser queue full")
    status, body = await asyncio.to_thread(get, admin, "/healthz")
    assert status == 503
    assert body["status"] == "failing"
    assert body["services"]["bounce intake"] == {"ok": False, "detail": "DSN parser queue full"}
    assert body["services"]["delivery"]["ok"] is True

    stub.state = Health(True)
    status, body = await asyncio.to_thread(get, admin, "/healthz")
    assert (status, body["status"]) == (200, "ok")


async def test_stop_gives_each_service_the_grace_and_closes_the_listeners(engine: Engine) -> None:
    [submission] = engine.addresses["submission"]
    [stub] = engine.services
    assert isinstance(stub, StubService)
    await engine.stop()
    assert stub.stopped_with == 5
    assert engine.health() == {}
    with pytest.raises(OSError):
        await asyncio.to_thread(smtplib.SMTP, *submission, timeout=5)


async def test_a_service_whose_work_ends_is_reported_as_a_failure(engine: Engine) -> None:
    [stub] = engine.services
    assert isinstance(stub, StubService)
    failure = asyncio.create_task(engine.wait_for_failure())
    await stub.stop(0)
    assert await asyncio.wait_for(failure, 10) == "bounce intake"


async def test_the_admin_listener_serves_the_api_on_the_process_store(tmp_path: Path) -> None:
    token_file = tmp_path / "operator.token"
    token_file.write_text("op-secret\n")
    token_file.chmod(0o600)
    settings = parse_settings(
        {
            "engine": {"data_dir": str(tmp_path / "var"), "shutdown_grace_seconds": 5},
            "submission": {"listen": ["127.0.0.1:0"]},
            "admin": {"listen": "127.0.0.1:0", "operator_token_file": str(token_file)},
            "tracking": {"listen": ""},
            "dns": {"nameservers": ["127.0.0.1:9"]},
        }
    )
    engine = Engine(settings, role=Role.SUBMISSION)
    await engine.start()
    cli_store = await migrated_store(settings)  # as `penguin api-key create` opens it
    try:
        [admin] = engine.addresses["admin"]
        provisioning = Provisioning(cli_store, settings, nodeid="test")
        await provisioning.create_tenant("acme")
        made = await provisioning.create_api_key("acme", {ApiScope.MANAGE})

        as_key = {"Authorization": f"Bearer {made.token}"}
        status, body = await asyncio.to_thread(get, admin, "/v1/api-keys", as_key)
        assert status == 200 and [k["prefix"] for k in body["api_keys"]] == [made.key.prefix]
        as_operator = {"Authorization": "Bearer op-secret", "Penguin-Tenant": "acme"}
        status, body = await asyncio.to_thread(get, admin, "/v1/api-keys", as_operator)
        assert status == 200 and len(body["api_keys"]) == 1
        status, body = await asyncio.to_thread(get, admin, "/v1/api-keys", {})
        assert status == 401 and body["error"]["code"] == "unauthorized"
    finally:
        await cli_store.close()
        await engine.stop()


async def test_the_delivering_process_counts_the_record_log_into_stats(engine: Engine) -> None:
    [admin] = engine.addresses["admin"]
    store = await migrated_store(engine.settings)  # another process's records, as it were
    try:
        provisioning = Provisioning(store, engine.settings, nodeid="test")
        acme = await provisioning.create_tenant("acme")
        made = await provisioning.create_api_key("acme", {ApiScope.READ})
        await send_traffic(store, acme)
    finally:
        await store.close()
    as_key = {"Authorization": f"Bearer {made.token}"}
    async with asyncio.timeout(20):
        while True:
            status, body = await asyncio.to_thread(get, admin, "/v1/stats", as_key)
            assert status == 200
            if body["rows"][0]["expired"]:  # the last record counted is there
                break
            await asyncio.sleep(0.1)
    assert body["rows"] == [TOTALS]
