"""Schema migrations (Alembic) for every durable SQL database: the services' and the registry's.

A database's history is made of *branches*, one folder each under `versions/`:

- `chassis`: the tables every service database has (event store, outbox, relay lease,
  inbox, timers; `platform/store`). A change to them is one migration, applied to every
  service database.
- one per service with tables of its own (`catalog`, `ordering`, ...), applied to that
  service's database only; the read side's database has the chassis branch alone.
- `registry`: the schema registry's database.

Each branch starts with a baseline revision (`<branch>_0001`) that creates its tables with
plain `op.create_table`/`op.create_index`; one Alembic version table per database records
the head of each of its branches. Nothing here needs an alembic.ini: `Migrations` runs
Alembic's commands on the caller's `Database`, through `env.py`, in one transaction that
holds a lock for the whole run — `pg_advisory_xact_lock` on PostgreSQL, the database's
write lock (BEGIN IMMEDIATE) on SQLite — so processes starting together migrate one after
the other and the later ones find nothing to do.

A database made before migrations existed (tables created by `MetaData.create_all`, no
version table) is adopted: when all of a branch's baseline tables are there, the baseline
is stamped (logged), and later revisions run from there.

Read models (readside views, Cassandra) and the trace span store are disposable and
rebuildable; they stay on `create_all` and are not migrated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table, inspect
from sqlalchemy.engine import make_url

from eventmart.platform.db import Database, postgres_database_exists, sqlite_file
from eventmart.platform.errors import EventmartError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions"
CHASSIS = "chassis"
REGISTRY = "registry"
VERSION_TABLE = "alembic_version"
# The key of the PostgreSQL advisory lock that serializes migrations ("evmigr"); advisory
# locks are per database, so one key serves every database.
_PG_LOCK_KEY = 0x65766D69_6772

# What Alembic passes env.py through `Config.attributes`.
_CONNECTION = "connection"
_TARGET_METADATA = "target_metadata"
_INCLUDE_OBJECT = "include_object"

IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]


class MigrationError(EventmartError):
    """A database cannot be brought to the schema this code expects; the message says why."""


def branches() -> list[str]:
    """Every branch with a folder under `versions/`."""
    return sorted(p.name for p in VERSIONS.iterdir() if p.is_dir() and not p.name.startswith("_"))


def has_branch(name: str) -> bool:
    return (VERSIONS / name).is_dir()


def version_table(metadata: MetaData) -> Table:
    """Alembic's version table, declared in `metadata` as Alembic creates it, so a store's
    MetaData names every table of its database the store owns (migrations skip it)."""
    return Table(
        VERSION_TABLE,
        metadata,
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
    )


def schema_filter(dialect: str) -> IncludeObject:
    """An autogenerate filter for `dialect`: it leaves out the version table, and objects
    of the code made for another dialect only (`ddl_if(dialect=...)`, e.g. the outbox's
    PostgreSQL-only index)."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, _other: Any) -> bool:
        if type_ == "table" and name == VERSION_TABLE:
            return False
        ddl_if = None if reflected else getattr(obj, "_ddl_if", None)
        if ddl_if is not None and ddl_if.dialect is not None:
            wanted = (ddl_if.dialect,) if isinstance(ddl_if.dialect, str) else ddl_if.dialect
            return dialect in wanted
        return True

    return include


def drift(conn: Connection, metadata: MetaData) -> list[Any]:
    """What differs between the database's schema and `metadata`, as Alembic's
    autogenerate sees it (tables, columns, types, nullability, indexes, unique and foreign
    keys); [] when the migrations made exactly the code's tables."""
    context = MigrationContext.configure(
        conn,
        opts={
            "version_table": VERSION_TABLE,
            "compare_type": True,
            "include_object": schema_filter(conn.dialect.name),
        },
    )
    return list(compare_metadata(context, metadata))


@dataclass(frozen=True)
class Outcome:
    """What `Migrations.upgrade()` did to one database."""

    before: tuple[str, ...]  # the revisions it had; () for a new or a pre-migration database
    after: tuple[str, ...]
    stamped: tuple[str, ...] = ()  # baselines stamped on a database made before migrations

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class Status:
    current: tuple[str, ...] | None  # None: the database does not exist yet
    heads: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        return self.current is not None and sorted(self.current) == sorted(self.heads)


class Migrations:
    """The migration history of one database: the branches it carries."""

    def __init__(self, db: Database, branch_names: Sequence[str]) -> None:
        missing = [b for b in branch_names if not has_branch(b)]
        if missing or not branch_names:
            raise MigrationError(
                f"no migrations for {', '.join(missing) or 'an empty branch list'}; "
                f"known: {', '.join(branches())}"
            )
        self.db = db
        self.branches = tuple(branch_names)
        self._script: ScriptDirectory | None = None

    @property
    def script(self) -> ScriptDirectory:
        if self._script is None:
            self._script = ScriptDirectory.from_config(self.config())
        return self._script

    def config(self, conn: Connection | None = None, **attributes: Any) -> Config:
        """An Alembic config for these branches, carrying `conn` to env.py."""
        cfg = Config()
        cfg.set_main_option("script_location", str(HERE))
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option(
            "version_locations", os.pathsep.join(str(VERSIONS / b) for b in self.branches)
        )
        cfg.attributes[_CONNECTION] = conn
        cfg.attributes.update(attributes)
        return cfg

    def heads(self) -> tuple[str, ...]:
        return tuple(sorted(self.script.get_heads()))

    def baselines(self) -> dict[str, tuple[str, ...]]:
        """Each branch's first revision and the tables it creates (its module's `TABLES`)."""
        out: dict[str, tuple[str, ...]] = {}
        for base in self.script.get_bases():
            script = self.script.get_revision(base)
            tables = None if script is None else getattr(script.module, "TABLES", None)
            if tables is None:
                raise MigrationError(
                    f"the first revision {base} lists no TABLES (the tables it creates)"
                )
            out[base] = tuple(tables)
        return out

    # -- running ---------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[Connection]:
        """A transaction on the database holding the migration lock until it ends."""
        with self.db.transaction() as conn:
            # SQLite: the transaction began with BEGIN IMMEDIATE (db.py), which is the lock.
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            yield conn

    def upgrade(self, target: str = "heads") -> Outcome:
        """Bring the database to `target` (every branch's head by default), adopting a
        database made before migrations. Safe to run from several processes at once."""
        with self.locked() as conn:
            before = current_revisions(conn)
            stamped: tuple[str, ...] = ()
            if not before:
                stamped = self._adopt(conn)
                if stamped:
                    command.stamp(self.config(conn), list(stamped))
            command.upgrade(self.config(conn), target)
            after = current_revisions(conn)
        return Outcome(before, after, stamped)

    def downgrade(self, target: str) -> Outcome:
        """Undo revisions down to `target` (e.g. "base", or "<branch>@base")."""
        with self.locked() as conn:
            before = current_revisions(conn)
            command.downgrade(self.config(conn), target)
            after = current_revisions(conn)
        return Outcome(before, after)

    def status(self) -> Status:
        """The database's revisions and the heads, without creating the database."""
        if not _exists(self.db.url):
            return Status(None, self.heads())
        with self.db.read() as conn:
            return Status(current_revisions(conn), self.heads())

    def _adopt(self, conn: Connection) -> tuple[str, ...]:
        """The baselines to stamp on a database without a version table whose tables were
        made by `create_all` (before migrations); () for a new database."""
        existing = set(inspect(conn).get_table_names())
        stamp: list[str] = []
        for base, tables in sorted(self.baselines().items()):
            present = existing.intersection(tables)
            if not present:
                continue
            if len(present) < len(tables):
                absent = ", ".join(sorted(set(tables) - present))
                raise MigrationError(
                    f"{safe_url(self.db.url)} has some of the tables of migration {base} but "
                    f"not {absent}, and no {VERSION_TABLE} table: it was made by neither the "
                    "migrations nor the code that preceded them; repair it by hand"
                )
            stamp.append(base)
        if stamp:
            log.warning(
                "%s was created before migrations (tables, no %s): stamping baseline %s",
                safe_url(self.db.url),
                VERSION_TABLE,
                ", ".join(stamp),
            )
        return tuple(stamp)


def current_revisions(conn: Connection) -> tuple[str, ...]:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return tuple(sorted(context.get_current_heads()))


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def database_name(url: str) -> str:
    """The file (SQLite) or database (PostgreSQL) a URL names, for people to read."""
    name = make_url(url).database or ""
    return Path(name.removeprefix("file:").partition("?")[0]).name or name


def _exists(url: str) -> bool:
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_file(url)
        return path is None or Path(path).exists()  # (in memory: always there)
    return postgres_database_exists(url)


class Environment(Protocol):
    """What env.py gets from Alembic: `alembic.context`, a proxy of the EnvironmentContext."""

    config: Config

    def configure(self, **kw: Any) -> None: ...

    def begin_transaction(self) -> AbstractContextManager[Any]: ...

    def run_migrations(self, **kw: Any) -> None: ...


def run_environment(context: Environment) -> None:
    """What env.py does: run the command on the connection `Migrations` passed, in the
    transaction it holds (Alembic sees it and neither begins nor commits one)."""
    attributes = context.config.attributes
    conn = attributes.get(_CONNECTION)
    if not isinstance(conn, Connection):
        raise MigrationError(
            "eventmart migrations run through eventmart.platform.migrations "
            "(`eventmart migrate`), not the alembic command"
        )
    context.configure(
        connection=conn,
        target_metadata=attributes.get(_TARGET_METADATA),
        version_table=VERSION_TABLE,
        include_object=attributes.get(_INCLUDE_OBJECT) or schema_filter(conn.dialect.name),
        render_as_batch=True,  # ALTERs that SQLite cannot do become table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
