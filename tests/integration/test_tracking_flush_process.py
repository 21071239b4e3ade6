"""The tracking edge's records written by another engine process: the edge's process
only appends hits to the journal; the flushing process moves them to the store."""

from __future__ import annotations

import asyncio
import http.client
import time
from pathlib import Path

from config.loader import parse_settings
from engine.clock import FakeClock
from engine.model import MessageState, QueuedMessage
from engine.provisioning import Provisioning
from engine.runtime.app import Engine, Role, engine_secret, migrated_store
from engine.runtime.runner import tracking_flusher
from tracking_edge.tokens import tokens_from_settings

NOW = 1_764_000_000.0
DOMAIN = "click.acme.test"
TARGET = "https://acme.test/spring"


def click(address: tuple[str, int], path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": DOMAIN, "User-Agent": "Firefox/120"})
        response = connection.getresponse()
        return response.status, response.getheader("location") or ""
    finally:
        connection.close()


def message(tenant_id: int) -> QueuedMessage:
    return QueuedMessage(
        id="0192f3a4b5c6-1",
        submission_id="0192f3a4b5c6",
        tenant_id=tenant_id,
        queue="spring:news@acme.test",
        campaign="spring",
        sender="news@acme.test",
        recipient="jane@example.com",
        domain="example.com",
        state=MessageState.LEASED,
        due_at=NOW,
        created_at=NOW,
    )


def test_the_flusher_goes_to_another_worker_than_the_edges() -> None:
    split = [Role.SUBMISSION, Role.DELIVERY]
    assert tracking_flusher(split, 0) == 1
    assert tracking_flusher([Role.TRACKING, Role.TRACKING], 0) == 1
    assert tracking_flusher([Role.SUBMISSION, Role.SUBMISSION, Role.DELIVERY], 0) == 2
    assert tracking_flusher([Role.ALL], 0) == 0
    assert tracking_flusher([Role.DELIVERY], None) is None


async def test_a_click_served_by_one_process_is_recorded_by_another(tmp_path: Path) -> None:
    settings = parse_settings(
        {
            "engine": {"data_dir": str(tmp_path / "var"), "hostname": "mta.penguin.test"},
            "tracking": {"listen": "127.0.0.1:0", "scheme": "http", "flush_interval_seconds": 0.05},
        }
    )
    store = await migrated_store(settings)
    provisioning = Provisioning(store, settings, nodeid="n1", clock=FakeClock(NOW))
    tenant = await provisioning.create_tenant("acme")
    await provisioning.add_tracking_domain("acme", DOMAIN, default=True)
    tokens = tokens_from_settings(settings, engine_secret(settings))
    url = tokens.click_url(message(tenant.id), DOMAIN, TARGET)
    edge = Engine(settings, Role.TRACKING, flush_tracking=False)
    flushing = Engine(settings, Role.TRACKING, serve_tracking=False, flush_tracking=True)
    try:
        [address] = (await edge.start())["tracking"]
        await flushing.start()
        assert [name for name in flushing.health()] == ["tracking-flush"]
        assert "tracking-flush" not in edge.health()
        status, location = await asyncio.to_thread(click, address, "/" + url.split("/", 3)[3])
        assert (status, location) == (302, TARGET)
        deadline = time.monotonic() + 10
        while not (found := await store.list_records("0192f3a4b5c6-1")):
            assert time.monotonic() < deadline, "no record reached the store"
            await asyncio.sleep(0.02)
        assert [(r["type"], r["meta"]["url"]) for r in found] == [("Click", TARGET)]
    finally:
        await flushing.stop()
        await edge.stop()
        await store.close()
