"""Fixtures shared by every suite."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventmart.platform.settings import Settings

# The session-scoped `engines` fixture: real Kafka, PostgreSQL, Cassandra and Temporal.
pytest_plugins = ["tests.engines", "tests.chromium"]


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names that no other test uses (topics, groups), so suites can share a real broker."""
    return lambda base: f"{base}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield Settings(
        data_dir=tmp_path / "data",
        environment="test",
        session_timeout_s=2.0,
        heartbeat_interval_s=0.3,
        retry_backoff_initial_s=0.01,
        retry_backoff_max_s=0.05,
        retry_max_attempts=3,
    )
