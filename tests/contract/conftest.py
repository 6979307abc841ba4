"""Backends for the contract suites: each port's suite runs once per adapter.

- bus: `sqlite` (the embedded log in a tmp file) and `kafka` (KafkaBus on the session's
  Kafka broker; topic and group names from the `unique` fixture keep tests apart);
- database: `sqlite` (a tmp file) and `postgres` (a fresh database per test, dropped after).

The distributed backends use the session's engines (tests/engines.py) and carry the
`distributed` mark: `pytest -m "not distributed"` runs the embedded profile alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventmart.platform.bus import Bus
from eventmart.platform.bus.sqlite_log import SqliteLog
from eventmart.platform.db import Database
from eventmart.platform.settings import Settings
from tests.engines import postgres_database

BUS_BACKENDS = ["sqlite", "kafka"]
DB_BACKENDS = ["sqlite", "postgres"]
DISTRIBUTED = frozenset({"kafka", "postgres"})

BusFactory = Callable[..., Bus]


def _params(backends: list[str]) -> list[object]:
    return [
        pytest.param(b, marks=[pytest.mark.distributed] if b in DISTRIBUTED else [])
        for b in backends
    ]


@pytest.fixture(params=_params(BUS_BACKENDS))
def bus_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_bus(
    bus_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[BusFactory]:
    """Builds buses that share one log: `make_bus(session_timeout_s=1.0)`."""
    made: list[Bus] = []
    # Only a Kafka test starts the engines.
    kafka = request.getfixturevalue("engines")["kafka"] if bus_backend == "kafka" else ""

    def factory(**options: float) -> Bus:
        partitions = int(options.get("partitions", 8))
        session_timeout_s = options.get("session_timeout_s", 2.0)
        heartbeat_interval_s = options.get("heartbeat_interval_s", 0.2)
        if bus_backend == "sqlite":
            bus: Bus = SqliteLog(
                tmp_path / "bus.db",
                default_partitions=partitions,
                session_timeout_s=session_timeout_s,
                heartbeat_interval_s=heartbeat_interval_s,
                poll_interval_s=0.01,
            )
        elif bus_backend == "kafka":
            from eventmart.platform.bus.kafka import KafkaBus

            bus = KafkaBus(
                Settings(
                    profile="distributed",
                    environment="test",
                    data_dir=tmp_path / "data",
                    kafka_bootstrap_servers=kafka,
                    partitions=partitions,
                    session_timeout_s=session_timeout_s,
                    heartbeat_interval_s=heartbeat_interval_s,
                )
            )
        else:
            raise AssertionError(f"unknown bus backend {bus_backend}")
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        bus.close()


@pytest.fixture
def bus(make_bus: BusFactory) -> Bus:
    return make_bus()


@pytest.fixture(params=_params(DB_BACKENDS))
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    if db_backend == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'service.db'}")
        yield db
        db.dispose()
    elif db_backend == "postgres":
        request.getfixturevalue("engines")  # the session's stack, stopped at its end
        with postgres_database("contract") as url:
            db = Database(url)
            yield db
            db.dispose()
    else:
        raise AssertionError(f"unknown database backend {db_backend}")
