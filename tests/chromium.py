"""Playwright driving Debian's Chromium, for every browser test (a pytest plugin, loaded
from tests/conftest.py). Playwright never downloads a browser: it launches
/usr/bin/chromium, which `make test` installs.

Both fixtures live for one test module: Playwright's synchronous API keeps an asyncio loop
running in the main thread while it is open, and tests of other modules that start a loop
of their own (`asyncio.run`) must not find it there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run `make stack-deps` (it installs Debian's chromium)"
    )
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()
