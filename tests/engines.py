"""The distributed engines for a test session: one private `eventmart stack`, started on
first use and stopped when the session ends.

Loaded as a plugin from tests/conftest.py (`pytest_plugins = ["tests.engines"]`). It offers
- the session fixture `engines`: the engines' client addresses (`stack.up`'s answer);
- `start_engines()`, the same for code that is not a fixture (registry backends);
- `postgres_database()`: a fresh, empty PostgreSQL database for one test, dropped after.

The stack runs Kafka, PostgreSQL, Cassandra and Temporal with every port shifted by
PORT_OFFSET, in a folder under /var/tmp: as root PostgreSQL runs as the `postgres` user,
which cannot enter pytest's tmp dirs (mode 0700). An engine that cannot start fails every
test that needs it with the engine's own message: never a skip, which would hide a whole
backend. Nothing starts unless a test asks for an engine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from eventmart import stack
from eventmart.platform.db import ensure_postgres_database
from eventmart.stack.base import process_alive

if TYPE_CHECKING:
    from tests.contract.registry_fixtures import RegistryTarget

# Kafka 29192, PostgreSQL 25533, Cassandra 29142, Temporal 27333: beside tests/stack's
# own stack (offset 20000) and a developer's (offset 0). Two sessions at once on one
# machine need different offsets: EVENTMART_TEST_PORT_OFFSET.
PORT_OFFSET = int(os.environ.get("EVENTMART_TEST_PORT_OFFSET", "20100"))
BASE_DIR = Path("/var/tmp")
FOLDER_PREFIX = "eventmart-engines-"
OWNER_FILE = "owner.pid"  # the pid of the pytest session that started the engines


def stop_orphans(base: Path) -> list[Path]:
    """Stop the engines of earlier sessions that ended without stopping them (pytest
    killed by SIGTERM or SIGKILL never reaches `pytest_sessionfinish`). Left running, they
    hold this session's ports and every distributed test fails with "port in use". A
    folder whose session still runs belongs to that session and is left alone; so is one
    whose engines are all stopped (a failed session keeps its logs there)."""
    stopped = []
    for folder in sorted(base.glob(FOLDER_PREFIX + "*")):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or process_alive(owner):
            continue
        if stack.down(data_dir=folder):
            shutil.rmtree(folder, ignore_errors=True)
            stopped.append(folder)
    return stopped


class _Engines:
    """The session's stack: started at most once; a failure is remembered and repeated."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.folder: Path | None = None
        self.addresses: dict[str, str] | None = None
        self.failure: str | None = None

    def start(self) -> dict[str, str]:
        with self.lock:
            if self.failure is not None:
                pytest.fail(self.failure, pytrace=False)
            if self.addresses is not None:
                return self.addresses
            base = BASE_DIR if BASE_DIR.is_dir() else Path(tempfile.gettempdir())
            for folder in stop_orphans(base):
                warnings.warn(
                    f"stopped the engines an ended test session left running in {folder}",
                    stacklevel=2,
                )
            self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=base))
            self.folder.chmod(0o755)  # searchable by the `postgres` user
            (self.folder / OWNER_FILE).write_text(f"{os.getpid()}\n")
            try:
                self.addresses = stack.up(None, self.folder, port_offset=PORT_OFFSET)
                return self.addresses
            except stack.StackError as error:
                self.failure = (
                    f"the distributed engines did not start (data dir {self.folder}, "
                    f"port offset {PORT_OFFSET}):\n{error}"
                )
            with suppress(stack.StackError):
                stack.down(data_dir=self.folder)  # those that did start
            pytest.fail(self.failure, pytrace=False)

    def stop(self) -> None:
        with self.lock:
            if self.folder is None:
                return
            folder, self.folder = self.folder, None
            self.addresses = None
            stack.down(data_dir=folder)
            if self.failure is None:
                shutil.rmtree(folder, ignore_errors=True)  # kept after a failure: the logs


_ENGINES = _Engines()


def start_engines() -> dict[str, str]:
    """The engines' addresses, starting the stack if this session has not yet."""
    return _ENGINES.start()


@pytest.fixture(scope="session")
def engines() -> Iterator[dict[str, str]]:
    """Client addresses: {"kafka": "127.0.0.1:29192", "postgres": "postgresql://...", ...}."""
    yield start_engines()
    _ENGINES.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Also when only non-fixture code (start_engines) started the stack.
    _ENGINES.stop()


def postgres_server_url() -> str:
    """The SQLAlchemy URL of the session's PostgreSQL server, without a database name."""
    env = stack.settings_environment({"postgres": start_engines()["postgres"]})
    return env["EVENTMART_POSTGRES_URL"]


@contextmanager
def postgres_database(prefix: str = "test") -> Iterator[str]:
    """A new, empty database (unique name) for one test: its SQLAlchemy URL. Dropped
    afterwards, with any connection still open to it (worker processes)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}".lower()
    url = f"{postgres_server_url()}/{name}"
    ensure_postgres_database(url)
    try:
        yield url
    finally:
        admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.dispose()


@contextmanager
def postgres_registry(_tmp_path: Path) -> Iterator[RegistryTarget]:
    """A schema registry backend for tests/contract/registry_fixtures.BACKENDS: the SQL
    registry on a fresh PostgreSQL database."""
    from tests.contract.registry_fixtures import RegistryTarget

    with postgres_database("registry") as url:
        yield RegistryTarget("sql", url)
