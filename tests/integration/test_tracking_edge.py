"""The tracking edge on loopback: pixel, redirects, unsubscribe, refusals, records that
reach the store, and reach it after the store was down."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FakeClock
from engine.model import MessageState, QueuedMessage, Suppression
from engine.records.metrics import REGISTRY
from engine.records.record import Record, RecordType
from engine.runtime.http_serving import HttpService, listening_socket
from engine.store import Store, open_store
from engine.token_keys import derive_key
from tests.harness.conditions import wait_for
from tracking_edge.app import PIXEL, TrackingEdge
from tracking_edge.bots import ClickBursts
from tracking_edge.flusher import Flusher
from tracking_edge.hits import HitRecords
from tracking_edge.journal import Journal
from tracking_edge.tokens import KEY_PURPOSE, TrackingTokens

NOW = 1_764_000_000.0
DOMAIN, OTHER_DOMAIN = "click.acme.test", "t.globex.test"
TENANTS = {DOMAIN: 1, OTHER_DOMAIN: 2}
TOKENS = TrackingTokens({"a": derive_key(b"s" * 32, "a", KEY_PURPOSE)}, "a")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
URL = "https://acme.test/sale?a=1&b=%C3%A9"


def message(
    index: int = 1, tenant_id: int = 1, recipient: str = "Jane@Example.com"
) -> QueuedMessage:
    return QueuedMessage(
        id=f"0192f3a4b5c6d7e8f90a1b2c3d4e-{index}",
        submission_id="0192f3a4b5c6d7e8f90a1b2c3d4e",
        tenant_id=tenant_id,
        queue="spring:acme@example.com",
        campaign="spring",
        sender="news@acme.test",
        recipient=recipient,
        domain="example.com",
        state=MessageState.LEASED,
        due_at=NOW - 3600,
        created_at=NOW - 3600,
    )


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def http_request(
    port: int, method: str, path: str, host: str, headers: dict[str, str], body: bytes
) -> Response:
    """One HTTP/1.1 request on its own connection, read to the close."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return Response(int(status_line.split()[1]), parsed, rest)


class FlakyStore:
    """The real store, made to fail like an unreachable database while ``down``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("the database is unreachable")

    async def add_records(self, records: Sequence[Record]) -> None:
        self._check()
        await self.store.add_records(records)

    async def add_suppression(self, suppression: Suppression) -> None:
        self._check()
        await self.store.add_suppression(suppression)

    async def list_records(self, message_id: str) -> list[dict[str, Any]]:
        self._check()
        return await self.store.list_records(message_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@dataclass
class Edge:
    port: int
    store: Store
    flaky: FlakyStore
    journal: Journal
    flusher: Flusher
    clock: FakeClock

    async def request(
        self,
        method: str,
        path: str,
        host: str = DOMAIN,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        agent = {"User-Agent": BROWSER}
        return await asyncio.to_thread(
            http_request, self.port, method, path, host, {**agent, **(headers or {})}, body
        )

    async def records(self, message_id: str, count: int) -> list[dict[str, Any]]:
        """The message's records once the store has ``count`` of them (10 s deadline)."""
        async with asyncio.timeout(10):
            while True:
                self.flusher.wake()
                found = await self.store.list_records(message_id)
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.02)


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    store = open_store(f"sqlite:{tmp_path / 'penguin.db'}")
    await store.migrate()
    assert (await store.create_tenant("acme", NOW)).id == TENANTS[DOMAIN]
    assert (await store.create_tenant("globex", NOW)).id == TENANTS[OTHER_DOMAIN]
    flaky = FlakyStore(store)
    clock = FakeClock(NOW)
    journal = Journal(tmp_path / "tracking" / "journal")
    app = TrackingEdge(
        tokens=TOKENS, tenant_of=TENANTS.get, journal=journal, store=flaky, clock=clock
    )
    http = HttpService("tracking", app, listening_socket("127.0.0.1", 0), trusted_proxies=[])
    records = HitRecords(scanner_seconds=10, nodeid="edge-test", bursts=ClickBursts())
    flusher = Flusher(journal, flaky, records, interval=0.05, batch_max=100)
    [(_, port)] = await http.start()
    tasks = [asyncio.create_task(http.run()), asyncio.create_task(flusher.run())]
    yield Edge(port, store, flaky, journal, flusher, clock)
    await http.stop(1)
    flusher.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    journal.close()
    await store.close()


async def test_the_open_pixel_is_a_gif_never_cached(edge: Edge) -> None:
    path = path_of(TOKENS.open_url(message(), DOMAIN))
    response = await edge.request("GET", path)
    assert response.status == 200 and response.body == PIXEL and len(PIXEL) == 43
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["cache-control"] == "no-store, no-cache, must-revalidate, private"
    assert response.headers["pragma"] == "no-cache" and response.headers["expires"] == "0"
    head = await edge.request("HEAD", path)
    assert head.status == 200 and head.body == b""


async def test_a_click_redirects_to_the_tokens_url(edge: Edge) -> None:
    path = path_of(TOKENS.click_url(message(), DOMAIN, URL))
    response = await edge.request("GET", path)
    assert response.status == 302 and response.headers["location"] == URL
    assert response.headers["cache-control"] == "private, no-store"
    assert response.body == b""
    head = await edge.request("HEAD", path)
    assert head.status == 302 and head.headers["location"] == URL and head.body == b""


async def test_forged_foreign_and_unknown_requests_get_404(edge: Edge) -> None:
    click = TOKENS.click_url(message(), DOMAIN, URL)
    path = path_of(click)
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    other_tenant = path_of(TOKENS.click_url(message(tenant_id=2), DOMAIN, URL))
    statuses = [
        (await edge.request("GET", forged)).status,
        (await edge.request("GET", path, host=OTHER_DOMAIN)).status,  # tenant B's domain
        (await edge.request("GET", path, host="unknown.test")).status,
        (await edge.request("GET", other_tenant)).status,  # domain A serving tenant B's link
        (await edge.request("GET", "/o/" + path[3:])).status,  # a click token as a pixel
        (await edge.request("GET", "/x/" + path[3:])).status,
        (await edge.request("GET", "/")).status,
        (await edge.request("GET", path + "/more")).status,
    ]
    assert statuses == [404] * 8
    other = (await edge.request("GET", path, host="Click.Acme.Test:8080")).status
    assert other == 302


async def test_other_methods_get_405(edge: Edge) -> None:
    response = await edge.request("POST", path_of(TOKENS.click_url(message(), DOMAIN, URL)))
    assert response.status == 405 and response.headers["allow"] == "GET, HEAD"
    response = await edge.request("PUT", path_of(TOKENS.unsubscribe_url(message(), DOMAIN)))
    assert response.status == 405 and response.headers["allow"] == "GET, HEAD, POST"


def tracking_events(event: str, audience: str, first: str) -> float:
    labels = {"event": event, "audience": audience, "first": first}
    return REGISTRY.get_sample_value("penguin_tracking_events_total", labels) or 0.0


async def test_opens_and_clicks_become_records(edge: Edge) -> None:
    counted = [("Open", "human", "true"), ("Open", "machine", "false"), ("Click", "human", "true")]
    before = [tracking_events(*labels) for labels in counted]
    msg = message(3)
    await edge.request("GET", path_of(TOKENS.open_url(msg, DOMAIN)))
    await edge.request(
        "GET", path_of(TOKENS.open_url(msg, DOMAIN)), headers={"User-Agent": "GoogleImageProxy"}
    )
    await edge.request("GET", path_of(TOKENS.click_url(msg, DOMAIN, URL)))
    found = await edge.records(msg.id, 3)
    assert [r["type"] for r in found] == ["Open", "Open", "Click"]
    first, proxy, click = (r["meta"] for r in found)
    assert first["first"] is True and first["machine"] is False
    assert first["user_agent"] == BROWSER
    assert proxy["first"] is False and proxy["machine"] is True
    assert proxy["machine_reason"] == "google image proxy"
    assert click["url"] == URL and click["first"] is True
    assert found[0]["id"] == msg.id and found[0]["recipient"] is None, "links carry no address"
    assert found[0]["peer_address"]["addr"] == "127.0.0.1"
    assert found[0]["timestamp"].startswith("2025-11-24T")
    after = [tracking_events(*labels) for labels in counted]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]


async def test_a_hit_is_recorded_with_the_recipient_of_its_message(edge: Edge) -> None:
    msg = message(5)
    reception = Record(
        RecordType.RECEPTION, NOW - 3600, tenant_id=1, id=msg.id, recipient=msg.recipient
    )
    await edge.store.add_records([reception])
    await edge.request("GET", path_of(TOKENS.click_url(msg, DOMAIN, URL)))
    await edge.request("GET", path_of(TOKENS.open_url(msg, DOMAIN)))
    _, click, opened = await edge.records(msg.id, 3)
    assert "Jane" not in TOKENS.click_url(msg, DOMAIN, URL), "the link carries no address"
    assert click["recipient"] == opened["recipient"] == msg.recipient


async def test_a_click_within_seconds_of_the_send_is_a_scanners(edge: Edge) -> None:
    msg = dataclasses.replace(message(4), due_at=NOW - 2)
    await edge.request("GET", path_of(TOKENS.click_url(msg, DOMAIN, URL)))
    [record] = await edge.records(msg.id, 1)
    assert record["meta"]["machine_reason"] == "clicked within seconds of the send"


async def test_the_unsubscribe_page_confirms_with_a_post(edge: Edge) -> None:
    path = path_of(TOKENS.unsubscribe_url(message(5), DOMAIN))
    page = await edge.request("GET", path)
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b"Jane@Example.com" in page.body and b'method="post"' in page.body
    assert b'name="List-Unsubscribe" value="One-Click"' in page.body
    assert await edge.store.suppressed(1, ["jane@example.com"]) == set()
    assert await edge.store.list_records(message(5).id) == []


async def post_one_click(
    edge: Edge, path: str, body: bytes = b"List-Unsubscribe=One-Click"
) -> Response:
    return await edge.request(
        "POST", path, headers={"Content-Type": "application/x-www-form-urlencoded"}, body=body
    )


async def test_one_click_unsubscribe_suppresses_at_once(edge: Edge) -> None:
    msg = message(6)
    response = await post_one_click(edge, path_of(TOKENS.unsubscribe_url(msg, DOMAIN)))
    assert response.status == 200 and b"unsubscribed" in response.body
    assert await edge.store.suppressed(1, ["jane@example.com"]) == {"jane@example.com"}
    [record] = await edge.records(msg.id, 1)
    assert record["type"] == "Unsubscribe" and record["meta"]["method"] == "one-click"
    assert record["meta"]["machine"] is False


async def test_a_multipart_one_click_post_is_understood(edge: Edge) -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--XyZ--\r\n"
    )
    response = await edge.request(
        "POST",
        path_of(TOKENS.unsubscribe_url(message(7, recipient="bob@example.com"), DOMAIN)),
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
        body=body,
    )
    assert response.status == 200
    assert await edge.store.suppressed(1, ["bob@example.com"]) == {"bob@example.com"}


async def test_a_post_without_one_click_is_refused(edge: Edge) -> None:
    path = path_of(TOKENS.unsubscribe_url(message(8, recipient="carl@example.com"), DOMAIN))
    response = await post_one_click(edge, path, b"something=else")
    assert response.status == 400
    assert await edge.store.suppressed(1, ["carl@example.com"]) == set()


async def test_with_the_store_down_clicks_redirect_and_nothing_is_lost(edge: Edge) -> None:
    msg = message(9, recipient="dora@example.com")
    edge.flaky.down = True
    click = await edge.request("GET", path_of(TOKENS.click_url(msg, DOMAIN, URL)))
    pixel = await edge.request("GET", path_of(TOKENS.open_url(msg, DOMAIN)))
    unsubscribed = await post_one_click(edge, path_of(TOKENS.unsubscribe_url(msg, DOMAIN)))
    assert (click.status, pixel.status, unsubscribed.status) == (302, 200, 200)
    await wait_for(lambda: asyncio.sleep(0, edge.flusher.failing))
    assert await edge.store.list_records(msg.id) == []
    assert await edge.store.suppressed(1, ["dora@example.com"]) == set()

    edge.flaky.down = False
    found = await edge.records(msg.id, 3)
    assert sorted(r["type"] for r in found) == ["Click", "Open", "Unsubscribe"]
    assert await edge.store.suppressed(1, ["dora@example.com"]) == {"dora@example.com"}
    assert edge.journal.committed == 0  # all written: the journal was emptied
