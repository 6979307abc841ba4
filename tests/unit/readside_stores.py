"""The read side's view stores for its unit suite: SQL on a tmp SQLite file, Cassandra on
the session's engines.

Cassandra comes from the `engines` fixture (tests/engines.py, the whole stack once per
session) when that plugin is loaded; otherwise this module starts a Cassandra of its own,
once per session, at port offset 20200, and stops it at the end. An engine that cannot
start fails the test with the engine's message: never a skip.

Tests keep apart by emptying: the session has one keyspace of its own, and each test
starts by deleting every row in it (generations included). A keyspace per test would be
cleaner but costs schema changes, seconds each on a busy machine (creating seven tables,
dropping a keyspace), where deleting a test's few rows takes milliseconds.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cassandra.concurrent import execute_concurrent_with_args

from eventmart import stack
from eventmart.readside.cassandra import SCHEMA_TIMEOUT_S, CassandraViewStore, shared_session

FALLBACK_PORT_OFFSET = 20200  # beside tests/engines.py (20100) and tests/stack (20000)
BASE_DIR = Path("/var/tmp")


@dataclass(frozen=True)
class Keyspace:
    host: str
    port: int
    name: str

    @property
    def session(self) -> Any:
        return shared_session([self.host], self.port)


def _address(request: pytest.FixtureRequest) -> Iterator[str]:
    try:
        engines: dict[str, str] = request.getfixturevalue("engines")
    except pytest.FixtureLookupError:
        pass
    else:
        yield engines["cassandra"]
        return
    base = BASE_DIR if BASE_DIR.is_dir() else Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix="eventmart-readside-", dir=base))
    folder.chmod(0o755)
    try:
        addresses = stack.up(["cassandra"], folder, port_offset=FALLBACK_PORT_OFFSET)
    except stack.StackError as error:
        stack.down(data_dir=folder)
        pytest.fail(
            f"Cassandra did not start (data dir {folder}, port offset "
            f"{FALLBACK_PORT_OFFSET}):\n{error}",
            pytrace=False,
        )
    try:
        yield addresses["cassandra"]
    finally:
        stack.down(data_dir=folder)
        shutil.rmtree(folder, ignore_errors=True)


def cassandra_keyspace(request: pytest.FixtureRequest) -> Iterator[Keyspace]:
    """The body of a session fixture: the session's Cassandra and a keyspace name of its
    own (created by the first store), dropped at the end."""
    for address in _address(request):
        host, port = address.rsplit(":", 1)
        keyspace = Keyspace(host, int(port), f"test_views_{uuid.uuid4().hex[:12]}")
        try:
            yield keyspace
        finally:
            try:
                keyspace.session.execute(
                    f"DROP KEYSPACE IF EXISTS {keyspace.name}", timeout=SCHEMA_TIMEOUT_S
                )
            except Exception as e:  # a courtesy: the session's stack goes away anyway
                warnings.warn(f"keyspace {keyspace.name} not dropped: {e}", stacklevel=1)


def empty(keyspace: Keyspace) -> None:
    """Delete every row of every table in the keyspace (no schema change: fast)."""
    session = keyspace.session
    partition_keys: dict[str, list[tuple[int, str]]] = {}
    for c in session.execute(
        "SELECT table_name, column_name, kind, position FROM system_schema.columns "
        "WHERE keyspace_name = %s",
        (keyspace.name,),
    ):
        if c.kind == "partition_key":
            partition_keys.setdefault(c.table_name, []).append((c.position, c.column_name))
    for table, columns in partition_keys.items():
        names = [name for _, name in sorted(columns)]
        found = list(
            session.execute(f"SELECT DISTINCT {', '.join(names)} FROM {keyspace.name}.{table}")
        )
        if found:
            where = " AND ".join(f"{n} = ?" for n in names)
            delete = session.prepare(f"DELETE FROM {keyspace.name}.{table} WHERE {where}")
            execute_concurrent_with_args(session, delete, [tuple(r) for r in found])


@contextmanager
def cassandra_store(keyspace: Keyspace) -> Iterator[CassandraViewStore]:
    """A store on the session's keyspace, emptied first."""
    empty(keyspace)
    store = CassandraViewStore([keyspace.host], keyspace.port, keyspace.name)
    store.create()
    yield store
