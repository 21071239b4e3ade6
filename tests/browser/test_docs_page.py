"""The docs page in a real headless Chromium, served by the admin app on a loopback port
over a real store (SQLite and PostgreSQL): every operation rendered under the page's
Content-Security-Policy, and "try it" sending requests with a tenant's key and with the
operator token, the credential kept in the session and out of every URL, the
responses shown as text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from admin_api.services import ApiServices
from engine.model import ApiScope
from engine.runtime.http_serving import HttpService, listening_socket
from tests.integration.api_support import OPERATOR_TOKEN, bearer, make_tenant_key

WAIT_SECONDS = 20.0


@pytest.fixture
async def served(api_app: FastAPI) -> AsyncIterator[str]:
    """The admin app served as the engine serves it, on a loopback port bound 0; its URL."""
    service = HttpService("admin", api_app, listening_socket("127.0.0.1", 0))
    [(host, port)] = await service.start()
    running = asyncio.create_task(service.run())
    try:
        yield f"http://{host}:{port}"
    finally:
        await service.stop(5)
        await asyncio.wait_for(running, 10)


class DocsPage:
    """The docs page in ``driver``, its operations found by method and path."""

    def __init__(self, driver: WebDriver, url: str, document: dict[str, Any]) -> None:
        self.driver = driver
        self.url = url
        self.document = document

    def open(self) -> int:
        """Load the page; how many operations it shows once rendered."""
        self.driver.get(f"{self.url}/docs")
        WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#operations > details")
        )
        return len(self.driver.find_elements(By.CSS_SELECTOR, "#operations > details"))

    def sign_in(self, token: str, tenant: str = "") -> None:
        for field, value in (("token", token), ("tenant", tenant)):
            box = self.driver.find_element(By.ID, field)
            box.clear()
            if value:
                box.send_keys(value)

    def stored(self, field: str) -> Any:
        return self.driver.execute_script(
            "return sessionStorage.getItem(arguments[0])", f"penguin-docs-{field}"
        )

    def form(self, method: str, path: str) -> WebElement:
        """The operation's "try it" form, its box opened."""
        box = self.driver.find_element(By.ID, self.document["paths"][path][method]["operationId"])
        if not box.get_attribute("open"):
            box.find_element(By.TAG_NAME, "summary").click()
        return box.find_element(By.CSS_SELECTOR, "form.try")

    def required(self, method: str, path: str) -> list[str]:
        """The parameters the browser will not send the form without."""
        fields = self.form(method, path).find_elements(By.CSS_SELECTOR, "input, select")
        return [str(f.get_attribute("name")) for f in fields if f.get_attribute("required")]

    def send(
        self, method: str, path: str, values: dict[str, str], body: str | None = None
    ) -> tuple[str, str]:
        """Fill the operation's form and send it; the status line and the body shown."""
        form = self.form(method, path)
        for name, value in values.items():
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        if body is not None:
            textarea = form.find_element(By.NAME, "body")
            self.driver.execute_script("arguments[0].value = arguments[1]", textarea, body)
        result = form.find_element(By.CLASS_NAME, "result")
        self.driver.execute_script("arguments[0].textContent = ''", result)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(self.driver, WAIT_SECONDS).until(lambda d: _text(result, ".status"))
        return _text(result, ".status"), _text(result, ".body")


def _text(result: WebElement, selector: str) -> str:
    found = result.find_elements(By.CSS_SELECTOR, selector)
    return str(found[0].get_attribute("textContent")) if found else ""


async def test_try_it_sends_with_a_key_and_with_the_operator_token(
    browser: Chrome, served: str, api_services: ApiServices
) -> None:
    _, key = await make_tenant_key(api_services, "acme", frozenset(ApiScope))
    async with httpx.AsyncClient(base_url=served) as api:
        document = (await api.get("/openapi.json")).json()
        page = DocsPage(browser, served, document)
        operations = sum(len(item) for item in document["paths"].values())
        assert await asyncio.to_thread(page.open) == operations

        await asyncio.to_thread(page.sign_in, key)
        status, body = await asyncio.to_thread(
            page.send,
            "post",
            "/v1/suppressions",
            {},
            '{"address": "ann@example.com", "reason": "<b id=injected>bold</b>"}',
        )
        assert status.startswith("20"), (status, body)
        listed = await api.get("/v1/suppressions", headers=bearer(key))
        [added] = listed.json()["suppressions"]
        assert (added["address"], added["reason"]) == ("ann@example.com", "<b id=injected>bold</b>")

        status, body = await asyncio.to_thread(
            page.send, "get", "/v1/suppressions", {"address_prefix": "ann"}
        )
        assert status == "200 OK" and "<b id=injected>bold</b>" in body
        assert not browser.find_elements(By.ID, "injected")  # shown as text, not as HTML
        assert await asyncio.to_thread(page.stored, "token") == key

        await asyncio.to_thread(page.sign_in, OPERATOR_TOKEN)
        assert await asyncio.to_thread(page.required, "get", "/v1/tenants/{name}") == ["name"]
        status, body = await asyncio.to_thread(
            page.send, "get", "/v1/tenants/{name}", {"name": "acme"}
        )
        assert status == "200 OK" and '"name": "acme"' in body
        status, body = await asyncio.to_thread(page.send, "get", "/v1/suppressions", {})
        assert status.startswith("4") and "Penguin-Tenant" in body  # no tenant named
        await asyncio.to_thread(page.sign_in, OPERATOR_TOKEN, "acme")
        status, body = await asyncio.to_thread(
            page.send, "delete", "/v1/suppressions/{address}", {"address": "ann@example.com"}
        )
        assert status.startswith("20"), (status, body)
        listed = await api.get("/v1/suppressions", headers=bearer(key))
        assert listed.json()["suppressions"] == []

    assert OPERATOR_TOKEN not in browser.current_url and key not in browser.current_url
    logged = browser.get_log("browser")  # type: ignore[no-untyped-call]  # selenium: untyped
    console = [str(entry["message"]) for entry in logged]
    assert not [m for m in console if "Content Security Policy" in m or "Uncaught" in m], console
