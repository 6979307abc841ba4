"""The transactional outbox and its relay.

A service records the messages it emits in the same local transaction as its state
change (`Outbox.add`); the relay publishes committed rows to the bus in batches, in row
order (so in order per key), and deletes them only after the bus has them. A crash
between publish and delete re-publishes the batch: consumers' inboxes make that harmless.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence

import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)

from eventmart.platform.bus import Producer
from eventmart.platform.db import Database
from eventmart.platform.messages import OutgoingRecord, now_ms

log = logging.getLogger(__name__)

_encode_headers = msgspec.msgpack.Encoder().encode
_decode_headers = msgspec.msgpack.Decoder(tuple[tuple[str, bytes], ...]).decode


class Outbox:
    """Messages waiting to be published, written in the business transaction."""

    def __init__(self, metadata: MetaData) -> None:
        self.table = Table(
            "outbox",
            metadata,
            Column(
                "id",
                BigInteger().with_variant(Integer, "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            Column("topic", String(200), nullable=False),
            Column("key", String(200), nullable=False),
            Column("headers", LargeBinary, nullable=False),
            Column("value", LargeBinary, nullable=False),
            Column("created_at_ms", BigInteger, nullable=False),
        )
        self.leases = Table(
            "outbox_relay_lease",
            metadata,
            Column("name", String(50), primary_key=True),
            Column("owner", String(100), nullable=False),
            Column("expires_ms", BigInteger, nullable=False),
        )
        # Set after a commit that added rows, so the relay in this process wakes at once.
        self.wake = threading.Event()

    def add(self, conn: Connection, records: Sequence[OutgoingRecord]) -> None:
        if not records:
            return
        now = now_ms()
        conn.execute(
            self.table.insert(),
            [
                {
                    "topic": r.topic,
                    "key": r.key,
                    "headers": _encode_headers(r.headers),
                    "value": r.value,
                    "created_at_ms": now,
                }
                for r in records
            ],
        )

    def pending(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(self.table)).scalar() or 0)


class OutboxRelay:
    """Publishes a database's outbox. One relay holds the lease at a time, so rows go out in
    order even when several processes of one service run a relay."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        producer: Producer,
        *,
        batch_size: int = 1000,
        lease_s: float = 10.0,
        idle_wait_s: float = 0.05,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.producer = producer
        self.batch_size = batch_size
        self.lease_ms = int(lease_s * 1000)
        self.idle_wait_s = idle_wait_s
        self.owner = uuid.uuid4().hex
        self.published = 0

    def _hold_lease(self) -> bool:
        leases = self.outbox.leases
        now = now_ms()
        with self.db.transaction() as conn:
            taken = conn.execute(
                update(leases)
                .where(
                    and_(
                        leases.c.name == "relay",
                        or_(leases.c.owner == self.owner, leases.c.expires_ms < now),
                    )
                )
                .values(owner=self.owner, expires_ms=now + self.lease_ms)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(select(leases.c.owner).where(leases.c.name == "relay")).first()
            if exists is None:
                conn.execute(
                    leases.insert().values(
                        name="relay", owner=self.owner, expires_ms=now + self.lease_ms
                    )
                )
                return True
            return False

    def relay_once(self) -> int:
        """Publish one batch; the number of messages published (0: nothing to do)."""
        t = self.outbox.table
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.c.id, t.c.topic, t.c.key, t.c.headers, t.c.value)
                .order_by(t.c.id)
                .limit(self.batch_size)
            ).all()
        if not rows:
            return 0
        self.producer.send(
            [
                OutgoingRecord(topic, key, value, _decode_headers(headers))
                for _, topic, key, headers, value in rows
            ]
        )
        with self.db.transaction() as conn:
            conn.execute(delete(t).where(t.c.id <= rows[-1][0]))
        self.published += len(rows)
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop` is set; waits on the outbox's wake event between batches."""
        while not stop.is_set():
            try:
                if not self._hold_lease():
                    stop.wait(self.lease_ms / 4000)
                    continue
                self.outbox.wake.clear()
                while not stop.is_set() and self.relay_once() == self.batch_size:
                    pass
            except Exception:
                log.exception("outbox relay failed; retrying")
                stop.wait(1.0)
            self.outbox.wake.wait(self.idle_wait_s)
        self._release()

    def _release(self) -> None:
        leases = self.outbox.leases
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    delete(leases).where(
                        and_(leases.c.name == "relay", leases.c.owner == self.owner)
                    )
                )
        except Exception:  # pragma: no cover - best effort at shutdown
            log.warning("could not release the relay lease", exc_info=True)
