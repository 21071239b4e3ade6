"""The dashboard in a real headless Chromium, served by the admin app on a loopback port
over a real store (SQLite and PostgreSQL) holding real tenants, queued mail and
suppressions: signing in with an API key or the operator token, the numbers the page
shows against the API's, and the charts checked from a screenshot's pixels.

The stats the charts draw are counted from real records by the stats rollup, as the
engine counts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from admin_api.app import create_app
from admin_api.services import ApiServices
from config.loader import load_settings
from engine.clock import FakeClock
from engine.model import ApiScope, QueuedMessage, Tenant
from engine.provisioning import Provisioning
from engine.records.record import Record, RecordType
from engine.rollup.service import StatsRollup
from engine.runtime.http_serving import HttpService, listening_socket
from engine.scheduler.shaping import Shaping
from engine.store import Store
from tests.browser.png import decode, hex_colour
from tests.integration.api_support import NODE, OPERATOR_TOKEN, bearer, make_tenant_key
from tests.integration.stats_support import T0, until_counted
from tests.integration.test_store_contract import message, submission

SERIES_COLOURS = {
    "delivery_rate": "#1a7f37",
    "bounce_rate": "#cf222e",
    "complaint_rate": "#8250df",
}
"""The series' colours, as ``admin_api/dashboard/charts.js`` draws them."""
WAIT_SECONDS = 20.0


HOURS = [(10, 9, 1, 1), (10, 10, 0, 0), (10, 6, 4, 2)]
"""acme's traffic, hour after hour: (sent, delivered, bounced, complained)."""


def record(kind: RecordType, m: QueuedMessage, at: float, **fields: Any) -> Record:
    """A record of ``kind`` about message ``m`` at ``at``."""
    return Record(kind, at, m.tenant_id, id=m.id, recipient=m.recipient, **fields)


async def send_hours(store: Store, tenant: Tenant, hours: list[tuple[int, int, int, int]]) -> int:
    """``tenant``'s messages and their records, an hour apart from ``T0``; the number of
    records written."""
    written = 0
    for hour, (sent, delivered, bounced, complained) in enumerate(hours):
        at = T0 + 3600 * hour
        name = f"{tenant.name}-h{hour}"
        queue = f"default:{tenant.name}@example.com"
        mail = [message(name, n, tenant.id, queue=queue, due_at=at) for n in range(sent)]

        receptions = [record(RecordType.RECEPTION, m, at) for m in mail]
        await store.accept([submission(name, tenant.id, mail)], receptions)
        outcomes = [
            *(record(RecordType.DELIVERY, m, at + 60) for m in mail[:delivered]),
            *(
                record(RecordType.BOUNCE, m, at + 60, bounce_classification="InvalidRecipient")
                for m in mail[delivered : delivered + bounced]
            ),
            *(record(RecordType.FEEDBACK, m, at + 60) for m in mail[:complained]),
        ]
        await store.add_records(outcomes)
        written += len(receptions) + len(outcomes)
    return written


SOURCES = """
[sources.s1]
address = "127.0.0.1"
ehlo_hostname = "s1.penguin.test"
warmup = "standard"
[sources.s2]
address = "127.0.0.2"
ehlo_hostname = "s2.penguin.test"
[pools.default]
sources = ["s1", "s2"]
"""
"""Two source IPs in the tenants' pool, one warming up: what the warmup table shows
(the engine's ``default`` source is in no pool of theirs)."""


@pytest.fixture
def api_app(api_services: ApiServices, store_url: str, tmp_path: Path) -> FastAPI:
    """The admin app of ``api_services`` with the sources of ``SOURCES`` configured."""
    config = tmp_path / "penguin.toml"
    config.write_text(
        f'[engine]\ndata_dir = "{tmp_path / "var"}"\nhostname = "mta.penguin.test"\n'
        f'[database]\nurl = "{store_url}"\n{SOURCES}'
    )
    settings = load_settings(config)
    provisioning = Provisioning(api_services.store, settings, nodeid=NODE, clock=api_services.clock)
    return create_app(
        dataclasses.replace(api_services, settings=settings, provisioning=provisioning)
    )


@dataclasses.dataclass
class Served:
    url: str
    api: httpx.AsyncClient

    async def get(self, path: str, token: str, tenant: str | None = None, **params: Any) -> Any:
        headers = bearer(token) | ({"Penguin-Tenant": tenant} if tenant else {})
        response = await self.api.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def served(api_app: FastAPI) -> AsyncIterator[Served]:
    """The admin app served as the engine serves it, on a loopback port bound 0."""
    service = HttpService("admin", api_app, listening_socket("127.0.0.1", 0))
    [(host, port)] = await service.start()
    running = asyncio.create_task(service.run())
    url = f"http://{host}:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as api:
            yield Served(url, api)
    finally:
        await service.stop(5)
        await asyncio.wait_for(running, 10)


@dataclasses.dataclass
class Tenants:
    acme_key: str
    globex_key: str


async def seeded(services: ApiServices) -> Tenants:
    """Two tenants with queued mail, their traffic counted into the stats (acme's
    ``HOURS``, globex one hour) and suppressions: acme 25 addresses, globex 2."""
    acme, acme_key = await make_tenant_key(services, "acme", {ApiScope.READ})
    globex, globex_key = await make_tenant_key(services, "globex", {ApiScope.READ})
    mail = [message("a", n, acme.id, queue="default:acme@example.com") for n in range(4)]
    theirs = [message("g", n, globex.id, queue="default:globex@example.com") for n in range(7)]
    await services.store.accept(
        [submission("a", acme.id, mail), submission("g", globex.id, theirs)], []
    )
    records = await send_hours(services.store, acme, HOURS)
    records += await send_hours(services.store, globex, [(5, 5, 0, 0)])
    rollup = StatsRollup(services.store, Shaping.load().provider_of, FakeClock(T0), "test")
    await until_counted(rollup, records)
    await services.provisioning.add_suppressions(
        "acme", [(f"user{n:02d}@acme-list.example", "bounce: 5.1.1") for n in range(25)]
    )
    await services.provisioning.add_suppressions(
        "globex", [("someone@globex.example", "manual"), ("other@globex.example", "manual")]
    )
    return Tenants(acme_key, globex_key)


class Dashboard:
    """The page as a user sees it, through WebDriver (blocking calls: run in a thread)."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url

    def sign_in(self, credential: str) -> None:
        self.driver.get(f"{self.url}/dashboard")
        field = self.driver.find_element(By.ID, "credential")
        field.send_keys(credential)
        self.driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
        self.wait_loaded()

    def wait_loaded(self, tenant: str = "") -> None:
        def loaded(driver: WebDriver) -> bool:
            value = driver.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")
            return bool(value) and (not tenant or value == tenant)

        WebDriverWait(self.driver, WAIT_SECONDS).until(loaded)

    def totals(self, section: str) -> dict[str, int]:
        """The numbers of a list of totals, by their ``data-total`` name (read at once)."""
        found: dict[str, str] = self.driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll(`#${arguments[0]}"
            " [data-total]`)].map((e) => [e.dataset.total, e.textContent]));",
            section,
        )
        return {name: int(text) for name, text in found.items()}

    def column(self, table: str, index: int = 0) -> list[str]:
        """The texts of a table's column (read at once: the page may be redrawing it)."""
        texts: list[str] = self.driver.execute_script(
            "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)]"
            ".map((row) => row.cells[arguments[1]].textContent);",
            table,
            index,
        )
        return texts

    def click(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def wait_column(self, table: str, first: str) -> None:
        WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda _: (self.column(table) or [""])[0] == first
        )

    def shown(self, element_id: str) -> bool:
        return self.driver.find_element(By.ID, element_id).is_displayed()

    def errors(self) -> list[str]:
        found = self.driver.find_elements(By.CSS_SELECTOR, ".error")
        return [e.text for e in found if e.text]

    def chart_box(self, series: str) -> dict[str, float]:
        box: dict[str, float] = self.driver.execute_script(
            "const b = document.querySelector(`svg[data-series='${arguments[0]}'] path.series`)"
            ".getBBox(); return {width: b.width, height: b.height};",
            series,
        )
        return box

    def chart_png(self, series: str) -> bytes:
        chart = self.driver.find_element(By.CSS_SELECTOR, f"svg[data-series='{series}']")
        self.driver.execute_script("arguments[0].scrollIntoView()", chart)
        return chart.screenshot_as_png

    def stored_credential(self) -> str | None:
        value: str | None = self.driver.execute_script(
            "return sessionStorage.getItem('penguin.credential')"
        )
        return value


def queue_totals(body: Any) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in body["queues"]:
        totals[row["state"]] = totals.get(row["state"], 0) + row["count"]
    return totals


def stats_totals(body: Any) -> dict[str, int]:
    names = ("sent", "delivered", "deferred", "bounced", "complained")
    return {name: sum(row[name] for row in body["rows"]) for name in names}


async def test_a_tenant_signs_in_and_reads_its_numbers_and_charts(
    browser: Chrome, served: Served, api_services: ApiServices
) -> None:
    tenants = await seeded(api_services)
    key = tenants.acme_key
    page = Dashboard(browser, served.url)
    await asyncio.to_thread(page.sign_in, key)

    assert await asyncio.to_thread(page.errors) == []
    assert key not in browser.current_url
    assert await asyncio.to_thread(page.stored_credential) == key
    assert not await asyncio.to_thread(page.shown, "tenants")
    assert not await asyncio.to_thread(page.shown, "all-queues")

    queue = await served.get("/v1/queue", key)
    shown_queue = await asyncio.to_thread(page.totals, "queue-totals")
    assert {s: n for s, n in shown_queue.items() if n} == queue_totals(queue) == {"queued": 34}
    stats = await served.get("/v1/stats", key, group_by="hour")
    assert len(stats["rows"]) == 3, "the charts need hours of stats: seed records for them"
    assert (
        await asyncio.to_thread(page.totals, "stats-totals")
        == stats_totals(stats)
        == {
            "sent": 30,
            "delivered": 25,
            "deferred": 0,
            "bounced": 5,
            "complained": 3,
        }
    )

    sources = (await served.get("/v1/sources", key))["sources"]
    assert {s["source"] for s in sources} == {"s1", "s2"}  # its pool's; not "default"
    assert await asyncio.to_thread(page.shown, "warmup")
    assert await asyncio.to_thread(page.column, "warmup-table") == [s["source"] for s in sources]
    assert await asyncio.to_thread(page.column, "warmup-table", 4) == [
        str(s["sent_today"]) for s in sources
    ]
    assert await asyncio.to_thread(page.column, "warmup-table", 5) == [
        "no cap" if s["cap"] is None else str(s["cap"]) for s in sources
    ]

    first = await served.get("/v1/suppressions", key, limit=20)
    assert await asyncio.to_thread(page.column, "suppressions-table") == [
        s["address"] for s in first["suppressions"]
    ]
    await asyncio.to_thread(page.click, "suppressions-next")
    await asyncio.to_thread(page.wait_column, "suppressions-table", "user20@acme-list.example")
    rest = await served.get("/v1/suppressions", key, limit=20, cursor=first["next_cursor"])
    assert await asyncio.to_thread(page.column, "suppressions-table") == [
        s["address"] for s in rest["suppressions"]
    ]
    assert len(rest["suppressions"]) == 5
    assert all(s["address"].endswith("@acme-list.example") for s in rest["suppressions"])

    for series, colour in SERIES_COLOURS.items():
        box = await asyncio.to_thread(page.chart_box, series)
        assert box["width"] > 100 and box["height"] > 5, (series, box)
        image = decode(await asyncio.to_thread(page.chart_png, series))
        assert image.width > 200 and image.height > 100
        painted = image.count_near(hex_colour(colour))
        assert painted > 150, f"the {series} chart shows {painted} pixels of its colour"
        others = [hex_colour(c) for s, c in SERIES_COLOURS.items() if s != series]
        assert [image.count_near(other, tolerance=10) for other in others] == [0, 0], series
    logged = browser.get_log("browser")  # type: ignore[no-untyped-call]  # selenium: untyped
    console = [str(entry["message"]) for entry in logged]
    assert not [m for m in console if "Content Security Policy" in m or "Uncaught" in m], console
    whole = decode(browser.get_screenshot_as_png())
    assert len(set(whole.pixels[:: max(1, len(whole.pixels) // 5000)])) > 10, "a blank page"


async def test_the_operator_picks_a_tenant_and_sees_the_sources(
    browser: Chrome, served: Served, api_services: ApiServices
) -> None:
    await seeded(api_services)
    page = Dashboard(browser, served.url)
    await asyncio.to_thread(page.sign_in, OPERATOR_TOKEN)
    assert await asyncio.to_thread(page.shown, "tenants")
    assert await asyncio.to_thread(page.shown, "warmup")
    every = await served.get("/v1/queues", OPERATOR_TOKEN)
    shown_every = await asyncio.to_thread(page.totals, "all-queue-totals")
    assert {s: n for s, n in shown_every.items() if n} == queue_totals(every) == {"queued": 46}

    def choose(name: str) -> None:
        Select(browser.find_element(By.ID, "tenant")).select_by_visible_text(name)

    tenants = await served.get("/v1/tenants", OPERATOR_TOKEN)
    options = await asyncio.to_thread(
        lambda: [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#tenant option")]
    )
    assert options == [t["name"] for t in tenants["tenants"]] == ["acme", "globex"]
    await asyncio.to_thread(choose, "globex")
    await asyncio.to_thread(page.wait_loaded, "globex")
    globex = await served.get("/v1/queue", OPERATOR_TOKEN, tenant="globex")
    shown = await asyncio.to_thread(page.totals, "queue-totals")
    assert {s: n for s, n in shown.items() if n} == queue_totals(globex) == {"queued": 12}
    assert await asyncio.to_thread(page.column, "suppressions-table") == [
        "other@globex.example",
        "someone@globex.example",
    ]
    sources = (await served.get("/v1/sources", OPERATOR_TOKEN, tenant="globex"))["sources"]
    assert {s["source"] for s in sources} == {"s1", "s2"}
    assert await asyncio.to_thread(page.column, "warmup-table") == [s["source"] for s in sources]
    assert await asyncio.to_thread(page.column, "warmup-table", 5) == [
        "no cap" if s["cap"] is None else str(s["cap"]) for s in sources
    ]
    assert any(s["cap"] for s in sources)


async def test_a_refused_key_stays_on_the_sign_in_form(
    browser: Chrome, served: Served, api_services: ApiServices
) -> None:
    def refused() -> str:
        browser.get(f"{served.url}/dashboard")
        browser.find_element(By.ID, "credential").send_keys("pm_not_a_key")
        browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
        WebDriverWait(browser, WAIT_SECONDS).until(
            lambda d: d.find_element(By.ID, "login-error").text
        )
        return browser.find_element(By.ID, "login-error").text

    assert await asyncio.to_thread(refused) == "That key or token was refused."
    assert not await asyncio.to_thread(page_shown, browser, "board")
    assert "pm_not_a_key" not in browser.current_url


def page_shown(driver: WebDriver, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()
