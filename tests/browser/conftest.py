"""Fixtures of the browser tests: the integration tests' real store and admin API
(``tests/integration``), and a headless Chromium driven through WebDriver.

Chromium and its driver come from Debian's ``chromium`` and ``chromium-driver``
packages (``.ci/run`` installs them). Where either is missing the tests are
skipped saying so, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import NoReturn

import pytest
from selenium import webdriver

# The integration tests' fixtures: the admin API's (its ``__all__``) and the store's.
from tests.integration.conftest import *  # noqa: F403
from tests.integration.conftest import backend, store, store_url

__all__ = ["backend", "store", "store_url"]

WINDOW = (1280, 2400)


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """A headless Chromium (a ``selenium.webdriver.Chrome``), quit after the test."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        _missing(
            "the browser tests need Chromium and its WebDriver: "
            "apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
