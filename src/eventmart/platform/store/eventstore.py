"""The event store: one stream per aggregate, appends with an expected version, snapshots,
and a global position that in-service projections follow.

Every method takes the caller's connection, so appends share the unit of work's
transaction with the outbox and inbox rows of the same change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from eventmart.platform.db import DriverStatement, FastInsert
from eventmart.platform.errors import ConcurrencyError
from eventmart.platform.messages import now_ms


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    data: bytes
    metadata: bytes = b""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    stream_id: str
    version: int
    position: int
    type: str
    data: bytes
    metadata: bytes
    recorded_at_ms: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    stream_id: str
    version: int
    type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Append:
    """One stream's part of a batch append: `expected_version` events are already there."""

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]


class EventStore(ABC):
    """Guarantees: a stream's versions are 1, 2, 3, ... with no gaps; an append whose
    expected version is not the stream's current version raises ConcurrencyError and
    writes nothing; positions grow in commit order, so a reader following positions
    never misses an event committed before the one it last saw."""

    @abstractmethod
    def append(self, conn: Connection, appends: Sequence[Append]) -> list[int]:
        """Append to several streams in the caller's transaction; the new versions."""

    @abstractmethod
    def read_stream(
        self, conn: Connection, stream_id: str, after_version: int = 0
    ) -> list[StoredEvent]: ...

    @abstractmethod
    def read_all(self, conn: Connection, after_position: int, limit: int) -> list[StoredEvent]: ...

    @abstractmethod
    def current_version(self, conn: Connection, stream_id: str) -> int: ...

    @abstractmethod
    def save_snapshot(self, conn: Connection, snapshot: Snapshot) -> None: ...

    @abstractmethod
    def load_snapshot(self, conn: Connection, stream_id: str) -> Snapshot | None: ...


def event_store_tables(metadata: MetaData) -> tuple[Table, Table]:
    events = Table(
        "es_events",
        metadata,
        Column(
            "position",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("stream_id", String(200), nullable=False),
        Column("version", Integer, nullable=False),
        Column("type", String(200), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("metadata", LargeBinary, nullable=False),
        Column("recorded_at_ms", BigInteger, nullable=False),
        UniqueConstraint("stream_id", "version", name="uq_es_stream_version"),
    )
    # Reads by stream use the unique constraint's index: no second one (chassis_0002).
    snapshots = Table(
        "es_snapshots",
        metadata,
        Column("stream_id", String(200), primary_key=True),
        Column("version", Integer, nullable=False),
        Column("type", String(200), nullable=False),
        Column("data", LargeBinary, nullable=False),
    )
    return events, snapshots


class SqlEventStore(EventStore):
    """The event store on SQLAlchemy Core: SQLite and PostgreSQL."""

    # On PostgreSQL, appends take this transaction-scoped advisory lock so positions are
    # handed out in commit order (a sequence alone lets a later position commit first,
    # and a projection would skip the earlier one for good).
    ADVISORY_LOCK = 0x6576_656E  # "even"

    def __init__(self, metadata: MetaData) -> None:
        self.events, self.snapshots = event_store_tables(metadata)
        c = self.events.c
        cols = (c.stream_id, c.version, c.position, c.type, c.data, c.metadata, c.recorded_at_ms)
        # Built once: a statement made per call costs more than the query it runs.
        # The per-message statements run on the driver (DriverStatement).
        self._read_stream = DriverStatement(
            select(*cols)
            .where(and_(c.stream_id == bindparam("sid"), c.version > bindparam("after")))
            .order_by(c.version)
        )
        self._read_all = DriverStatement(
            select(*cols)
            .where(c.position > bindparam("after"))
            .order_by(c.position)
            .limit(bindparam("limit"))
        )
        self._current = DriverStatement(
            select(func.max(c.version)).where(c.stream_id == bindparam("sid"))
        )
        self._currents = (
            select(c.stream_id, func.max(c.version))
            .where(c.stream_id.in_(bindparam("sids", expanding=True)))
            .group_by(c.stream_id)
        )
        s = self.snapshots.c
        self._snapshot = DriverStatement(
            select(s.stream_id, s.version, s.type, s.data).where(s.stream_id == bindparam("sid"))
        )
        self._lock = DriverStatement(text("SELECT pg_advisory_xact_lock(:k)"))
        self._insert = FastInsert(
            self.events, ["stream_id", "version", "type", "data", "metadata", "recorded_at_ms"]
        )

    def append(self, conn: Connection, appends: Sequence[Append]) -> list[int]:
        if not appends:
            return []
        if conn.dialect.name == "postgresql":
            self._lock.rows(conn, {"k": self.ADVISORY_LOCK})
        if len(appends) == 1:  # one aggregate per unit of work: the common case
            sid = appends[0].stream_id
            current = {sid: int(self._current.scalar(conn, {"sid": sid}) or 0)}
        else:
            ids = [a.stream_id for a in appends]
            current = dict(conn.execute(self._currents, {"sids": ids}).all())
        now = now_ms()
        rows: list[tuple[str, int, str, bytes, bytes, int]] = []
        versions: list[int] = []
        for a in appends:
            actual = current.get(a.stream_id, 0)
            if actual != a.expected_version:
                raise ConcurrencyError(a.stream_id, a.expected_version, actual)
            for i, e in enumerate(a.events, start=1):
                rows.append((a.stream_id, actual + i, e.type, e.data, e.metadata, now))
            current[a.stream_id] = actual + len(a.events)
            versions.append(current[a.stream_id])
        if rows:
            try:
                self._insert.execute(conn, rows)
            except IntegrityError as e:
                # Another transaction appended to one of these streams first.
                first = appends[0]
                raise ConcurrencyError(first.stream_id, first.expected_version, -1) from e
        return versions

    def read_stream(
        self, conn: Connection, stream_id: str, after_version: int = 0
    ) -> list[StoredEvent]:
        rows = self._read_stream.rows(conn, {"sid": stream_id, "after": after_version})
        return [StoredEvent(*row) for row in rows]

    def read_all(self, conn: Connection, after_position: int, limit: int) -> list[StoredEvent]:
        rows = self._read_all.rows(conn, {"after": after_position, "limit": limit})
        return [StoredEvent(*row) for row in rows]

    def current_version(self, conn: Connection, stream_id: str) -> int:
        return int(self._current.scalar(conn, {"sid": stream_id}) or 0)

    def save_snapshot(self, conn: Connection, snapshot: Snapshot) -> None:
        s = self.snapshots
        updated = conn.execute(
            s.update()
            .where(and_(s.c.stream_id == snapshot.stream_id, s.c.version < snapshot.version))
            .values(version=snapshot.version, type=snapshot.type, data=snapshot.data)
        ).rowcount
        if not updated:
            exists = conn.execute(
                select(s.c.version).where(s.c.stream_id == snapshot.stream_id)
            ).first()
            if exists is None:
                conn.execute(
                    s.insert().values(
                        stream_id=snapshot.stream_id,
                        version=snapshot.version,
                        type=snapshot.type,
                        data=snapshot.data,
                    )
                )

    def load_snapshot(self, conn: Connection, stream_id: str) -> Snapshot | None:
        row = self._snapshot.first(conn, {"sid": stream_id})
        return Snapshot(*row) if row else None
