"""Backends for the contract suites: each port's suite runs once per adapter.

The distributed profile adds its adapters here (one `params` entry each), and the very
same tests must pass against them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventmart.platform.bus import Bus
from eventmart.platform.bus.sqlite_log import SqliteLog
from eventmart.platform.db import Database

BUS_BACKENDS = ["sqlite"]
DB_BACKENDS = ["sqlite"]

BusFactory = Callable[..., Bus]


@pytest.fixture(params=BUS_BACKENDS)
def bus_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_bus(bus_backend: str, tmp_path: Path) -> Iterator[BusFactory]:
    """Builds buses that share one log: `make_bus(session_timeout_s=1.0)`."""
    made: list[Bus] = []

    def factory(**options: float) -> Bus:
        if bus_backend == "sqlite":
            bus: Bus = SqliteLog(
                tmp_path / "bus.db",
                default_partitions=int(options.get("partitions", 8)),
                session_timeout_s=options.get("session_timeout_s", 2.0),
                heartbeat_interval_s=options.get("heartbeat_interval_s", 0.2),
                poll_interval_s=0.01,
            )
        else:  # pragma: no cover - added with the distributed adapters
            raise AssertionError(f"unknown bus backend {bus_backend}")
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        bus.close()


@pytest.fixture
def bus(make_bus: BusFactory) -> Bus:
    return make_bus()


@pytest.fixture(params=DB_BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(db_backend: str, tmp_path: Path) -> Iterator[Database]:
    if db_backend == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'service.db'}")
    else:  # pragma: no cover - added with the distributed adapters
        raise AssertionError(f"unknown database backend {db_backend}")
    yield db
    db.dispose()
