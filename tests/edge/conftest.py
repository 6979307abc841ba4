"""Fixtures of the edge tests: the web and the mobile gateway over faked services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge.support import Shop, running_gateway


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """The web BFF (JSON API, storefront pages, ops console)."""
    with running_gateway(tmp_path, "web") as s:
        yield s


@pytest.fixture
def mobile(tmp_path: Path) -> Iterator[Shop]:
    """The mobile BFF."""
    with running_gateway(tmp_path / "mobile", "mobile") as s:
        yield s
