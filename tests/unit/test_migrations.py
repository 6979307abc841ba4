"""Migrations on SQLite: the guards around them, the CLI, and the revision drafting tool.
Both databases' drift, round-trip, adoption and concurrency tests are in
tests/contract/test_migrations.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect
from typer.testing import CliRunner

import eventmart.platform.migrations as migrations_module
import eventmart.platform.migrations.revision as revision_module
from eventmart.cli import app
from eventmart.platform.db import Database
from eventmart.platform.infra import Platform
from eventmart.platform.migrations import (
    CHASSIS,
    REGISTRY,
    VERSION_TABLE,
    MigrationError,
    Migrations,
    branches,
    drift,
)
from eventmart.platform.settings import Settings
from eventmart.platform.store import ServiceStore
from eventmart.services import SERVICE_INDEX, build_service


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'service.db'}")
    yield database
    database.dispose()


def tables(db: Database) -> set[str]:
    with db.read() as conn:
        return set(inspect(conn).get_table_names())


def test_every_branch_has_a_baseline_that_lists_what_it_creates(tmp_path: Path) -> None:
    assert {CHASSIS, REGISTRY} <= set(branches())
    for branch in branches():
        db = Database(f"sqlite:///{tmp_path / f'{branch}.db'}")
        migrations = Migrations(db, [branch])
        (base, listed), *others = migrations.baselines().items()
        assert not others, f"{branch} has more than one first revision"
        assert base == f"{branch}_0001"
        migrations.upgrade(base)
        assert tables(db) - {VERSION_TABLE} == set(listed), branch
        db.dispose()


def test_services_with_tables_have_their_own_branch(settings: Settings) -> None:
    platform = Platform(settings)
    chassis = set(ServiceStore(platform.database("scratch")).metadata.tables)
    for name in SERVICE_INDEX:
        store = build_service(name, platform).store
        assert store is not None
        own = set(store.metadata.tables) - chassis
        assert (store.branch == name) == bool(own), (name, store.branch, own)
    platform.close()


def test_a_table_added_without_a_migration_stops_the_service(db: Database) -> None:
    store = ServiceStore(db, migrations="payment")
    Table("payments", store.metadata, Column("order_id", String(64), primary_key=True))
    Table("refunds", store.metadata, Column("refund_id", String(64), primary_key=True))
    with pytest.raises(MigrationError, match=r"no table refunds: add a migration .*payment/"):
        store.create()


def test_drift_names_a_column_added_without_a_migration(db: Database) -> None:
    store = ServiceStore(db)
    store.create()
    with db.read() as conn:
        assert drift(conn, store.metadata) == []
    store.outbox.table.append_column(Column("priority", Integer, nullable=True))
    with db.read() as conn:
        found = drift(conn, store.metadata)
    assert [(d[0], d[3].name) for d in found] == [("add_column", "priority")]


def test_a_store_without_a_branch_gets_the_chassis_and_its_own_tables(db: Database) -> None:
    store = ServiceStore(db)
    Table("effects", store.metadata, Column("id", String(10), primary_key=True))
    store.create()
    store.create()  # idempotent, like every start
    assert tables(db) == set(store.metadata.tables)
    assert store.migrations.status().current == ("chassis_0002",)


def test_an_unknown_branch_is_refused(db: Database) -> None:
    with pytest.raises(MigrationError, match="no migrations for nosuch"):
        ServiceStore(db, migrations="nosuch")


def test_status_does_not_create_the_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'later.db'}")
    status = Migrations(db, [CHASSIS]).status()
    assert status.current is None and not status.up_to_date
    assert status.heads == ("chassis_0002",)
    assert not (tmp_path / "later.db").exists()


# --- the CLI --------------------------------------------------------------------------


def test_migrate_upgrades_every_database_and_status_compares_with_head(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--profile", "embedded"]
    status = runner.invoke(app, ["migrate", "--status", *args], terminal_width=200)
    assert status.exit_code == 1, status.output  # a deploy script sees work to do
    assert status.output.count("not created") == len(SERVICE_INDEX) + 1
    assert "run `eventmart migrate`" in status.output
    assert not data.exists() or not list(data.glob("*.db"))

    done = runner.invoke(app, ["migrate", *args], terminal_width=200)
    assert done.exit_code == 0, done.output
    assert done.output.count("upgraded from empty") == len(SERVICE_INDEX) + 1
    assert "ordering_0001" in done.output and "registry_0001" in done.output
    assert {p.name for p in data.glob("*.db")} == {
        *(f"{n}.db" for n in SERVICE_INDEX if n != "readside"),
        "views.db",
        "registry.db",
    }

    status = runner.invoke(app, ["migrate", "--status", *args], terminal_width=200)
    assert status.exit_code == 0, status.output
    assert status.output.count("up to date") == len(SERVICE_INDEX) + 1, status.output


def test_migrate_stamps_a_data_dir_made_before_migrations(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, profile="embedded")
    platform = Platform(settings)
    store = build_service("catalog", platform).store
    assert store is not None
    # The code before migrations made what the baselines make, without a version table.
    for base in store.migrations.baselines():
        store.migrations.upgrade(base)
    with store.db.transaction() as conn:
        conn.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
    platform.close()
    args = ["--data-dir", str(data), "--profile", "embedded", "--service", "catalog"]
    done = CliRunner().invoke(app, ["migrate", *args], terminal_width=200)
    assert done.exit_code == 0, done.output
    assert "stamped catalog_0001" in done.output, done.output
    assert "made before" in done.output


def test_migrate_refuses_an_unknown_service(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["migrate", "--service", "nosuch", "--data-dir", str(tmp_path)])
    assert done.exit_code != 0
    assert "registry" in done.output


# --- drafting a revision ----------------------------------------------------------------


def test_a_drafted_revision_follows_the_branch_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "versions"
    shutil.copytree(migrations_module.VERSIONS, versions)
    monkeypatch.setattr(migrations_module, "VERSIONS", versions)
    monkeypatch.setattr(revision_module, "VERSIONS", versions)
    path = revision_module.new_revision("catalog", "nothing yet")
    assert path.parent == versions / "catalog"
    assert path.name == "catalog_0002_nothing_yet.py"
    text = path.read_text()
    assert "down_revision: str | Sequence[str] | None = 'catalog_0001'" in text
    # The code and the migrations agree, so the draft has nothing to do (on SQLite too,
    # where the outbox's PostgreSQL-only index is not expected).
    assert "op." not in text.split("def upgrade")[1]
    db = Database(f"sqlite:///{tmp_path / 'catalog.db'}")
    assert Migrations(db, [CHASSIS, "catalog"]).upgrade().after == (
        "catalog_0002",
        "chassis_0002",
    )
    db.dispose()


def test_a_new_branch_is_drafted_with_a_baseline_listing_its_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "versions"
    shutil.copytree(migrations_module.VERSIONS, versions)
    monkeypatch.setattr(migrations_module, "VERSIONS", versions)
    monkeypatch.setattr(revision_module, "VERSIONS", versions)
    code = MetaData()
    Table("widgets", code, Column("widget_id", String(10), primary_key=True))
    monkeypatch.setattr(revision_module, "target_metadata", lambda *_: (code, {"widgets"}))
    path = revision_module.new_revision("widgets", "baseline")
    assert path == versions / "widgets" / "widgets_0001_baseline.py"
    assert 'TABLES = ("widgets",)' in path.read_text()
    db = Database(f"sqlite:///{tmp_path / 'widgets.db'}")
    migrations = Migrations(db, [CHASSIS, "widgets"])
    assert migrations.baselines()["widgets_0001"] == ("widgets",)
    migrations.upgrade()
    assert "widgets" in tables(db)
    db.dispose()
