"""Durable timers: a message to emit at a due time, kept in the service's database.

Deadlines survive crashes: the timer row is written in the same transaction as the saga
step that set it, and a due timer becomes an outbox row (in one transaction) the next time
any process of the service polls, however long it was down.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
)

from eventmart.platform.db import DriverStatement, driver_insert
from eventmart.platform.messages import OutgoingRecord, now_ms
from eventmart.platform.store.outbox import Outbox, _decode_headers, _encode_headers


class Timers:
    def __init__(self, metadata: MetaData, outbox: Outbox) -> None:
        self.outbox = outbox
        self.table = Table(
            "timers",
            metadata,
            Column("timer_id", String(200), primary_key=True),
            Column("due_ms", BigInteger, nullable=False, index=True),
            Column("topic", String(200), nullable=False),
            Column("key", String(200), nullable=False),
            Column("headers", LargeBinary, nullable=False),
            Column("value", LargeBinary, nullable=False),
        )
        t = self.table
        # Built once (see Outbox.__init__); a saga sets and clears its deadlines as it
        # handles messages, so those statements run on the driver.
        self._insert = driver_insert(t)
        self._delete = DriverStatement(delete(t).where(t.c.timer_id == bindparam("timer_id")))
        self._delete_ids = delete(t).where(t.c.timer_id.in_(bindparam("ids", expanding=True)))
        self._earliest = DriverStatement(select(func.min(t.c.due_ms)))
        self._due = (
            select(t.c.timer_id, t.c.topic, t.c.key, t.c.headers, t.c.value)
            .where(t.c.due_ms <= bindparam("now"))
            .order_by(t.c.due_ms)
            .limit(bindparam("limit"))
            # Two processes of a service must not fire one timer twice (PostgreSQL;
            # SQLite's write lock already serializes this transaction).
            .with_for_update(skip_locked=True)
        )

    def schedule(
        self, conn: Connection, timer_id: str, due_ms: int, record: OutgoingRecord
    ) -> None:
        """Set (or move) a timer; `timer_id` is chosen by the caller so it can cancel it."""
        self.cancel(conn, timer_id)
        self._insert.run(
            conn,
            {
                "timer_id": timer_id,
                "due_ms": due_ms,
                "topic": record.topic,
                "key": record.key,
                "headers": _encode_headers(record.headers),
                "value": record.value,
            },
        )

    def cancel(self, conn: Connection, timer_id: str) -> None:
        self._delete.run(conn, {"timer_id": timer_id})

    def next_due_ms(self, conn: Connection) -> int | None:
        """When the earliest timer falls due (a cheap read, to skip idle write transactions)."""
        value = self._earliest.scalar(conn)
        return None if value is None else int(value)

    def fire_due(self, conn: Connection, limit: int = 500) -> int:
        """Move due timers to the outbox; the number fired."""
        rows = conn.execute(self._due, {"now": now_ms(), "limit": limit}).all()
        if not rows:
            return 0
        self.outbox.add(
            conn,
            [
                OutgoingRecord(topic, key, value, _decode_headers(h))
                for _, topic, key, h, value in rows
            ],
        )
        conn.execute(self._delete_ids, {"ids": [r[0] for r in rows]})
        return len(rows)
