"""A service's own database: SQLite on the embedded profile, PostgreSQL on the distributed one.

Write transactions on SQLite start with BEGIN IMMEDIATE, so two processes never deadlock
upgrading a read lock to a write lock; readers never block writers (WAL). Threads of one
process take turns at a write gate first (eventmart.platform.sqlite_gate), so they queue
instead of sleeping in SQLite's busy handler.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, Engine, MetaData, Table, bindparam, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from eventmart.platform.sqlite_gate import write_gate

_READ_ONLY = "eventmart_read_only"
T = TypeVar("T")
_NO_PARAMS: Mapping[str, Any] = {}


class _Keeping(threading.local):
    """Per thread: the SQLite connections it keeps by database and role (see
    `keep_connections`), None when it does not keep any."""

    kept: dict[tuple[Database, str], Connection] | None = None


_keeping = _Keeping()


@contextmanager
def keep_connections() -> Iterator[None]:
    """In this block the current thread keeps one SQLite connection per database (and one
    for reads) from one transaction to the next, closed when the block ends.

    For the long-lived loops of a service (consumers, the outbox relay, timers), which
    run a few transactions per batch: a pool checkout and return cost more than the
    transaction (~28 µs in all against ~11 µs for BEGIN and COMMIT on a kept
    connection). A loop's transactions are strictly one after another, so a kept
    connection is never shared. PostgreSQL connections still come from the pool at
    every transaction, with its pre-ping, so a restarted server is noticed before a
    unit of work starts rather than in the middle of one."""
    if _keeping.kept is not None:
        yield  # already keeping: the outer block closes them
        return
    kept: dict[tuple[Database, str], Connection] = {}
    _keeping.kept = kept
    try:
        yield
    finally:
        _keeping.kept = None
        for conn in kept.values():
            conn.close()


class Database:
    """One database, opened lazily; `transaction()` is the unit of work's connection."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        self._pool_size = pool_size
        self._engine: Engine | None = None
        self._reader: Engine | None = None
        self._lock = threading.Lock()
        self._watch: sqlite3.Connection | None = None
        path = sqlite_file(url)
        self._gate: AbstractContextManager[None] = write_gate(path) if path else nullcontext()

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            engine = create_engine(
                self.url,
                connect_args={"timeout": 60, "check_same_thread": False},
                pool_size=self._pool_size,
                max_overflow=self._pool_size * 2,
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        ensure_postgres_database(self.url)
        return create_engine(
            self.url,
            pool_size=self._pool_size,
            max_overflow=self._pool_size * 2,
            pool_pre_ping=True,
        )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: commits when the block ends, rolls back if it raises."""
        with self._gate, self._connection("writer", self.engine) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction on a consistent snapshot."""
        reader = self._reader
        if reader is None:
            # The engine with the read-only option set once (it shares the pool), instead
            # of a copy of every connection with the option.
            reader = self._reader = self.engine.execution_options(**{_READ_ONLY: True})
        with self._connection("reader", reader) as conn, conn.begin():
            yield conn

    def _connection(self, role: str, engine: Engine) -> AbstractContextManager[Connection]:
        """A connection for one transaction: this thread's kept one for `role` (opened on
        first use) when the thread keeps connections (`keep_connections`), the database
        is SQLite and the kept one is free; else one from the pool, returned after it (a
        transaction inside another takes one from the pool, as before)."""
        kept = _keeping.kept
        if kept is None or not self.is_sqlite:
            return engine.connect()
        conn = kept.get((self, role))
        if conn is None or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = kept[(self, role)] = engine.connect()
        elif conn.in_transaction():
            return engine.connect()
        return nullcontext(conn)  # stays open for the thread's next transaction

    def data_version(self) -> int | None:
        """A number that changes whenever any connection commits to this SQLite database
        (PRAGMA data_version on a dedicated connection: microseconds, no transaction), so
        idle loops can skip their queries; None on PostgreSQL (it has LISTEN/NOTIFY)."""
        if not self.is_sqlite:
            return None
        with self._lock:
            try:
                if self._watch is None:
                    path = sqlite_file(self.url) or ":memory:"
                    self._watch = sqlite3.connect(path, timeout=5, check_same_thread=False)
                return int(self._watch.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return None

    def create_all(self, metadata: MetaData) -> None:
        metadata.create_all(self.engine)

    def dispose(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._reader = None


def sqlite_file(url: str) -> str | None:
    """The file a SQLite URL names (a `file:` URI's path without its query); None for an
    in-memory database or a database that is not SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    path = parsed.database or ""
    if path.startswith("file:"):  # a URI filename: file:/path?mode=ro
        path = path[len("file:") :].partition("?")[0]
    return None if path in ("", ":memory:") else path


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Take over transaction control from the sqlite3 module so BEGIN is ours to emit.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    enable_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def enable_wal(cursor: Any) -> None:
    # Switching a brand-new file to WAL can report "database is locked" at once, without
    # waiting on the busy timeout, when several processes create it together: retry.
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.05)


def _sqlite_on_begin(conn: Connection) -> None:
    # Straight to the driver: SQLAlchemy's execution path costs more than the BEGIN, and
    # every unit of work starts with one.
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")


def ensure_postgres_database(url: str) -> None:
    """Create the database named in `url` if the server does not have it yet."""
    parsed = make_url(url)
    name = parsed.database
    if not name:
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if _pg_database_exists(conn, name):
                return
            try:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            except DBAPIError:
                # Another process starting at the same moment created it first.
                if not _pg_database_exists(conn, name):
                    raise
    finally:
        admin.dispose()


def postgres_database_exists(url: str) -> bool:
    """Whether the server has the database named in `url` (without creating it)."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return _pg_database_exists(conn, parsed.database or "postgres")
    finally:
        admin.dispose()


def _pg_database_exists(conn: Connection, name: str) -> bool:
    found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
    return found.first() is not None


def dialect_insert(conn: Connection, table: Table) -> Any:
    """An INSERT that knows ON CONFLICT (`on_conflict_do_nothing/do_update`), in the
    connection's dialect: the one upsert spelling SQLite and PostgreSQL share."""
    return insert_in(table, conn.dialect.name)


def upsert_statement(conn: Connection, table: Table, update: tuple[str, ...] | None = None) -> Any:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE the `update` columns (every other
    column when None) to the values offered, in the connection's dialect."""
    return _upsert(table, conn.dialect.name, update)


# Statements are immutable, so each is built once per table and dialect: handlers ask for
# them for every message, and building one costs more than SQLAlchemy's cached compile.
# Bounded: test sessions make tables by the hundred.
@functools.lru_cache(maxsize=512)
def insert_in(table: Table, dialect: str) -> Any:
    """`dialect_insert` by the dialect's name."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"eventmart supports SQLite and PostgreSQL, not {dialect}")


@functools.lru_cache(maxsize=512)
def _upsert(table: Table, dialect: str, update: tuple[str, ...] | None) -> Any:
    stmt = insert_in(table, dialect)
    keys = [c.name for c in table.primary_key.columns]
    names = update if update is not None else [c.name for c in table.columns if c.name not in keys]
    changes = {name: stmt.excluded[name] for name in names}
    return stmt.on_conflict_do_update(index_elements=keys, set_=changes)


class _Prepared(NamedTuple):
    sql: str
    order: tuple[str, ...] | None  # parameter names in order for a positional driver
    own: dict[str, Any]  # values of bind parameters the statement carries itself
    names: tuple[str, ...]  # the columns a row holds (a SELECT)

    def bind(self, params: Mapping[str, Any]) -> Any:
        """`params` (with the statement's own values) as the driver takes them."""
        if self.order is None:
            return {**self.own, **params} if self.own else params
        return tuple(params[n] if n in params else self.own[n] for n in self.order)


class DriverStatement:
    """A statement for the per-message hot path: compiled once per dialect, then run
    straight on the DBAPI connection of the caller's transaction.

    SQLAlchemy's execution path (cache key, execution context, parameter and result
    processing) costs ~22-27 µs a statement on SQLite, where the driver runs a primary-key
    SELECT in ~6-12 µs (measured on the development machine); a checkout runs a few
    hundred statements across the shop. The statement is still written with SQLAlchemy
    Core, so one definition serves SQLite and PostgreSQL. What it gives up: no type
    conversion either way, so values must be what the driver speaks (str, int, bytes,
    None) and rows come back as plain tuples; no expanding IN. A driver error is raised as
    SQLAlchemy's exception (an `IntegrityError` stays an `IntegrityError`).
    """

    def __init__(self, stmt: Any) -> None:
        self._make: Callable[[str], Any] = lambda _dialect: stmt
        self._compiled: dict[str, _Prepared] = {}

    @classmethod
    def per_dialect(cls, make: Callable[[str], Any]) -> DriverStatement:
        """A statement spelled per dialect (an upsert): `make(dialect_name)` gives it."""
        driver = cls(None)
        driver._make = make
        return driver

    def prepared(self, conn: Connection) -> _Prepared:
        dialect = conn.dialect
        found = self._compiled.get(dialect.name)
        if found is None:
            stmt = self._make(dialect.name)
            compiled = stmt.compile(dialect=dialect)
            sql = str(compiled)
            if "POSTCOMPILE" in sql:
                raise ValueError(f"an expanding parameter cannot be compiled once: {sql}")
            found = _Prepared(
                sql,
                tuple(compiled.positiontup or ()) if dialect.positional else None,
                {n: b.effective_value for n, b in compiled.binds.items() if not b.required},
                tuple(getattr(stmt, "selected_columns", {}).keys()),
            )
            self._compiled[dialect.name] = found
        return found

    def _call(self, conn: Connection, params: Mapping[str, Any], call: Callable[[Any], T]) -> T:
        prep = self.prepared(conn)
        args = prep.bind(params)
        return _on_driver(conn, prep.sql, args, lambda cur: call(cur.execute(prep.sql, args)))

    def rows(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMS) -> list[Any]:
        return self._call(conn, params, lambda cur: cur.fetchall())

    def first(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMS) -> Any | None:
        return self._call(conn, params, lambda cur: cur.fetchone())

    def mapping(
        self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMS
    ) -> dict[str, Any] | None:
        """The first row as a dict by column name (a SELECT), or None."""
        row = self.first(conn, params)
        return None if row is None else dict(zip(self.prepared(conn).names, row, strict=True))

    def scalar(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMS) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def run(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMS) -> int:
        """Execute a write; the number of rows it changed."""
        return int(self._call(conn, params, lambda cur: cur.rowcount))

    def many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Execute a write once per parameter set, in one driver call."""
        if params:
            prep = self.prepared(conn)
            self.executemany(conn, [prep.bind(p) for p in params])

    def executemany(self, conn: Connection, batch: list[Any]) -> None:
        """Execute a write once per item of `batch`, already as the driver takes them."""
        sql = self.prepared(conn).sql
        _on_driver(conn, sql, batch, lambda cur: cur.executemany(sql, batch))


def column_params(names: Iterable[str]) -> dict[str, Any]:
    """Every named column set from a bind parameter of its own name (an INSERT's VALUES,
    an UPDATE's SET)."""
    return {name: bindparam(name) for name in names}


def driver_insert(table: Table) -> DriverStatement:
    """An INSERT of every column as a DriverStatement, parameters named after them."""
    return DriverStatement(table.insert().values(column_params(table.columns.keys())))


def driver_upsert(table: Table, update: tuple[str, ...] | None = None) -> DriverStatement:
    """`upsert_statement` as a DriverStatement: every column a parameter of its name."""
    values = column_params(table.columns.keys())
    return DriverStatement.per_dialect(lambda d: _upsert(table, d, update).values(values))


def _on_driver(conn: Connection, sql: str, args: Any, call: Callable[[Any], T]) -> T:
    """`call` with a cursor of the transaction's DBAPI connection; driver errors become
    SQLAlchemy's, as `Connection.execute` would raise them."""
    dialect = conn.dialect
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return call(cursor)
    except dialect.loaded_dbapi.Error as e:
        raise DBAPIError.instance(sql, args, e, dialect.loaded_dbapi.Error) from e
    finally:
        cursor.close()


class FastInsert:
    """A plain multi-row INSERT for hot paths, on row tuples in `columns` order: a
    DriverStatement run with the driver's executemany, skipping SQLAlchemy's per-row
    parameter processing (a third of an append's time). Values must already be
    driver-ready (str, int, bytes)."""

    def __init__(
        self, table: Table, columns: Sequence[str], *, sqlite_prefix: str | None = None
    ) -> None:
        self.columns = tuple(columns)
        stmt = table.insert().values(column_params(self.columns))
        if sqlite_prefix:  # e.g. "OR IGNORE"
            stmt = stmt.prefix_with(sqlite_prefix, dialect="sqlite")
        self._statement = DriverStatement(stmt)

    def execute(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        order = self._statement.prepared(conn).order
        if order is None:
            batch: list[Any] = [dict(zip(self.columns, r, strict=True)) for r in rows]
        elif order == self.columns:
            batch = list(rows)
        else:
            raise ValueError(f"unexpected parameter order {order} for {self.columns}")
        self._statement.executemany(conn, batch)
