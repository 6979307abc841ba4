"""Migrations on both databases (SQLite and PostgreSQL): they make exactly the code's tables,
their baselines go down and up again, databases made by `create_all` before migrations are
adopted, and processes migrating one database at once do it once.

The drift test is the one a developer meets: change a Table without a migration and it
fails naming the difference (`python -m eventmart.platform.migrations.revision` drafts the
migration).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, inspect

from eventmart.platform.db import Database
from eventmart.platform.infra import Platform
from eventmart.platform.migrations import (
    REGISTRY,
    VERSION_TABLE,
    MigrationError,
    Migrations,
    current_revisions,
    drift,
)
from eventmart.platform.settings import Settings
from eventmart.services import SERVICE_INDEX, build_service

DATABASES = [*SERVICE_INDEX, REGISTRY]


@pytest.fixture
def code_platform(settings: Settings) -> Iterator[Platform]:
    """A platform to compose services with, for their `store.metadata` (nothing connects)."""
    platform = Platform(settings)
    yield platform
    platform.close()


def code_schema(name: str, platform: Platform) -> tuple[MetaData, list[str]]:
    """The code's tables for one database and the migration branches that database has."""
    if name == REGISTRY:
        from eventmart.platform.schemas.sql import metadata

        return metadata, [REGISTRY]
    store = build_service(name, platform).store
    assert store is not None
    return store.metadata, list(store.migrations.branches)


def _described(differences: list[object]) -> str:
    return "\n  ".join(repr(d) for d in differences)


@pytest.mark.parametrize("name", DATABASES)
def test_migrations_make_exactly_the_code_tables(
    name: str, database: Database, code_platform: Platform
) -> None:
    metadata, branches = code_schema(name, code_platform)
    migrations = Migrations(database, branches)
    outcome = migrations.upgrade()
    assert outcome.before == ()
    assert outcome.after == migrations.heads()
    with database.read() as conn:
        differences = drift(conn, metadata)
        tables = set(inspect(conn).get_table_names())
    assert not differences, (
        f"{name}: the code's tables differ from what its migrations make on "
        f"{database.engine.dialect.name}; add a migration to "
        f"platform/migrations/versions/{branches[-1]}/ "
        f"(python -m eventmart.platform.migrations.revision {branches[-1]} '...'):\n  "
        + _described(differences)
    )
    assert tables == set(metadata.tables)  # the version table is declared in the metadata
    assert migrations.upgrade().changed is False  # a second run has nothing to do


@pytest.mark.parametrize("name", ["ordering", "readside", REGISTRY])
def test_baselines_downgrade_to_nothing_and_upgrade_again(
    name: str, database: Database, code_platform: Platform
) -> None:
    metadata, branches = code_schema(name, code_platform)
    migrations = Migrations(database, branches)
    migrations.upgrade()
    down = migrations.downgrade("base")
    assert down.after == ()
    with database.read() as conn:
        assert set(inspect(conn).get_table_names()) == {VERSION_TABLE}
    again = migrations.upgrade()
    assert again.before == () and again.after == migrations.heads()
    with database.read() as conn:
        assert drift(conn, metadata) == []


def test_one_branch_goes_down_alone(database: Database, code_platform: Platform) -> None:
    metadata, branches = code_schema("catalog", code_platform)
    migrations = Migrations(database, branches)
    migrations.upgrade()
    assert migrations.downgrade("catalog@base").after == ("chassis_0002",)
    with database.read() as conn:
        assert "products" not in inspect(conn).get_table_names()
        assert "outbox" in inspect(conn).get_table_names()
    migrations.upgrade()
    with database.read() as conn:
        assert drift(conn, metadata) == []


@pytest.mark.parametrize("name", ["notification", "readside", REGISTRY])
def test_a_database_made_before_migrations_is_stamped_with_its_baselines(
    name: str,
    database: Database,
    code_platform: Platform,
    caplog: pytest.LogCaptureFixture,
) -> None:
    metadata, branches = code_schema(name, code_platform)
    migrations = Migrations(database, branches)
    # What `create_all` made before migrations is what the baselines create: build that,
    # then take the version table away.
    for base in migrations.baselines():
        migrations.upgrade(base)
    with database.transaction() as conn:
        conn.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
    with caplog.at_level(logging.WARNING, logger="eventmart.platform.migrations"):
        outcome = migrations.upgrade()
    assert outcome.before == ()
    assert outcome.stamped == tuple(sorted(migrations.baselines()))
    assert outcome.after == migrations.heads()
    assert "created before migrations" in caplog.text
    with database.read() as conn:
        assert drift(conn, metadata) == []
    assert migrations.status().up_to_date


def test_a_half_made_database_is_refused_not_stamped(
    database: Database, code_platform: Platform
) -> None:
    metadata, branches = code_schema("shipping", code_platform)
    metadata.create_all(database.engine, tables=[metadata.tables["shipments"]])
    with pytest.raises(MigrationError, match="cancelled_orders"):
        Migrations(database, branches).upgrade()
    with database.read() as conn:
        assert current_revisions(conn) == ()


# --- several processes at once -------------------------------------------------------

_WORKER = """
import sys, time
from eventmart.platform.db import Database
from eventmart.platform.migrations import Migrations
url, start, branches = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
db = Database(url)
migrations = Migrations(db, branches)
_ = migrations.script  # load the scripts before the start, so the runs overlap
time.sleep(max(0.0, start - time.time()))
outcome = migrations.upgrade()
print("changed" if outcome.changed else "unchanged", ",".join(outcome.after))
db.dispose()
"""


@pytest.mark.multiprocess
def test_processes_migrating_at_once_migrate_once(
    database: Database, code_platform: Platform, tmp_path: Path
) -> None:
    metadata, branches = code_schema("ordering", code_platform)
    if database.is_sqlite:
        Path(database.url.removeprefix("sqlite:///")).touch()
    workers = 3
    start = time.time() + 3.0  # after every interpreter has started and imported
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, database.url, str(start), *branches],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(workers)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    outcomes = sorted(out.split()[0] for out, _err in results)
    assert outcomes == ["changed"] + ["unchanged"] * (workers - 1)
    heads = ",".join(Migrations(database, branches).heads())
    assert {out.split()[1] for out, _err in results} == {heads}
    with database.read() as conn:
        assert drift(conn, metadata) == []
