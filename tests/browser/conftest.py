"""Browser tests: Playwright for Python driving Debian's Chromium against `eventmart up`.

The shop comes from the system tests' one fixture (`eventmart`, re-exported here, so this
directory gets a shop of its own). Playwright and the browser come from tests/chromium.py.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
)

from tests.system.conftest import eventmart  # noqa: F401 - the one shop fixture

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
FAILED = pytest.StashKey[bool]()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(FAILED, False)
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = context.new_page()
    yield page
    if request.node.stash.get(FAILED, False):  # what the browser showed when it failed
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = request.node.originalname.removeprefix("test_")
        page.screenshot(path=str(SCREENSHOTS / f"{name}-FAILED.png"), full_page=True)


class Screenshots:
    """Numbered full-page screenshots of one test, in test-artifacts/screenshots/."""

    def __init__(self, test_name: str) -> None:
        self.prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob(f"{self.prefix}-*.png"):
            old.unlink()

    def _path(self, step: str) -> Path:
        self.count += 1
        return SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{step}.png"

    def __call__(self, page: Page, step: str) -> Path:
        """The whole page."""
        path = self._path(step)
        page.screenshot(path=str(path), full_page=True)
        return path

    def of(self, locator: Locator, step: str) -> Path:
        """One element (e.g. a chart), at the size it is shown."""
        path = self._path(step)
        locator.screenshot(path=str(path))
        return path


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.node.originalname.removeprefix("test_"))
