"""The transactional outbox and its relay.

A service records the messages it emits in the same local transaction as its state
change (`Outbox.add`); the relay publishes committed rows to the bus in batches, in row
order (so in order per key), and deletes them only after the bus has them. A crash
between publish and delete re-publishes the batch: consumers' inboxes make that harmless.

How relays share one database:
- SQLite: one relay at a time holds a lease row and publishes in id order; the others
  wait for it to expire. Relays wake on an in-process event and otherwise poll.
- PostgreSQL: the outbox is sharded by key (`shard` = CRC32 of the key mod SHARDS, set at
  insert). A relay claims a batch in one transaction: it takes transaction-scoped advisory
  locks on the shards of the oldest pending rows (`pg_try_advisory_xact_lock`, skipping
  shards another relay holds), selects their rows in id order `FOR UPDATE SKIP LOCKED`,
  publishes them and deletes exactly those rows before the commit releases the locks. So
  several relays publish at once, and a key, living in one shard, is only ever published
  by one of them at a time, in id order. `Outbox.add` sends `NOTIFY outbox_<database>`
  in the business transaction; relays LISTEN and fall back to polling.
"""

from __future__ import annotations

import logging
import threading
import uuid
import zlib
from collections.abc import Sequence

import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url

from eventmart.platform.bus import Producer
from eventmart.platform.db import Database, DriverStatement, FastInsert
from eventmart.platform.messages import Headers, OutgoingRecord, now_ms

log = logging.getLogger(__name__)

_encode_headers = msgspec.msgpack.Encoder().encode
_decode_headers = msgspec.msgpack.Decoder(Headers).decode

# PostgreSQL: how many shards the outbox is cut into (at most this many relays publish at
# once), and the first key of the relays' advisory locks (the second is the shard).
SHARDS = 16
SHARD_LOCK = 0x6F75_7462  # "outb"


def shard_of(key: str) -> int:
    """The outbox shard of a key (PostgreSQL): CRC32 of its UTF-8 bytes mod SHARDS."""
    return zlib.crc32(key.encode()) % SHARDS


def notify_channel(database: str) -> str:
    """The LISTEN/NOTIFY channel of a database's outbox (at most 63 bytes, like any
    PostgreSQL identifier)."""
    return f"outbox_{database}".encode()[:63].decode(errors="ignore")


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
            # Filled on PostgreSQL only (see the module docstring); NULL on SQLite.
            Column("shard", SmallInteger, nullable=True),
        )
        Index("ix_outbox_shard_id", self.table.c.shard, self.table.c.id).ddl_if(
            dialect="postgresql"
        )
        t = self.table
        # Statements on the hot path are built once and run on the driver
        # (DriverStatement, FastInsert): every unit of work that publishes adds rows,
        # and every relay pass reads and deletes them.
        self.insert = FastInsert(t, ["topic", "key", "headers", "value", "created_at_ms", "shard"])
        self.delete_id = DriverStatement(delete(t).where(t.c.id == bindparam("row_id")))
        self.oldest = DriverStatement(
            select(t.c.id, t.c.topic, t.c.key, t.c.headers, t.c.value)
            .order_by(t.c.id)
            .limit(bindparam("limit"))
        )
        self.notify = DriverStatement(text("SELECT pg_notify(:channel, '')"))
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
        pg = conn.dialect.name == "postgresql"
        self.insert.execute(
            conn,
            [
                (
                    r.topic,
                    r.key,
                    _encode_headers(r.headers),
                    r.value,
                    now,
                    # Relays on PostgreSQL claim by shard; SQLite has one relay at a time.
                    shard_of(r.key) if pg else None,
                )
                for r in records
            ],
        )
        if pg:
            # Delivered to the listening relays when (and only if) this transaction commits.
            channel = notify_channel(conn.engine.url.database or "")
            self.notify.rows(conn, {"channel": channel})

    def delete(self, conn: Connection, ids: Sequence[int]) -> None:
        """Delete exactly these rows (published)."""
        self.delete_id.many(conn, [{"row_id": i} for i in ids])

    def pending(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(self.table)).scalar() or 0)


class OutboxRelay:
    """Publishes a database's outbox, in order per key even when several processes of one
    service run a relay: on SQLite one relay holds the lease at a time; on PostgreSQL
    relays share the work by shard (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        producer: Producer,
        *,
        batch_size: int = 1000,
        lease_s: float = 10.0,
        idle_wait_s: float = 0.05,
        listen_fallback_s: float = 1.0,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.producer = producer
        self.batch_size = batch_size
        self.lease_ms = int(lease_s * 1000)
        self.idle_wait_s = idle_wait_s
        # PostgreSQL, while LISTEN works: how often to look anyway (rows left behind by a
        # relay that died, shards that were busy at the last look).
        self.listen_fallback_s = listen_fallback_s
        self.owner = uuid.uuid4().hex
        self.published = 0
        self._lease_until_ms = 0
        self._data_version = -1

    def _hold_lease(self) -> bool:
        now = now_ms()
        if self._lease_until_ms - now > self.lease_ms * 2 // 3:
            return True  # renewed moments ago: no write transaction needed yet
        leases = self.outbox.leases
        self._lease_until_ms = 0
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
            if not taken:
                exists = conn.execute(
                    select(leases.c.owner).where(leases.c.name == "relay")
                ).first()
                if exists is not None:
                    return False
                conn.execute(
                    leases.insert().values(
                        name="relay", owner=self.owner, expires_ms=now + self.lease_ms
                    )
                )
        self._lease_until_ms = now + self.lease_ms
        return True

    def _changed(self) -> bool:
        """Whether another connection committed to the database since the last look
        (cheap on SQLite; always "maybe" elsewhere)."""
        version = self.db.data_version()
        changed = version is None or version != self._data_version
        self._data_version = -1 if version is None else version
        return changed

    def relay_once(self) -> int:
        """Publish one batch; the number of messages published (0: nothing to do, or on
        PostgreSQL every pending shard is being published by another relay)."""
        if not self.db.is_sqlite:
            return self._relay_shards_once()
        with self.db.read() as conn:
            rows = self.outbox.oldest.rows(conn, {"limit": self.batch_size})
        if not rows:
            return 0
        self.producer.send(
            [
                OutgoingRecord(topic, key, value, _decode_headers(headers))
                for _, topic, key, headers, value in rows
            ]
        )
        with self.db.transaction() as conn:
            # Exactly the rows published (not `id <= last`: SQLite reuses the ids of an
            # emptied table, and a relay that stalled past its lease deletes late).
            self.outbox.delete(conn, [row[0] for row in rows])
        self.published += len(rows)
        return len(rows)

    def _relay_shards_once(self) -> int:
        t = self.outbox.table
        with self.db.transaction() as conn:
            shards = self._lock_shards(conn)
            if not shards:
                return 0
            rows = conn.execute(
                select(t.c.id, t.c.topic, t.c.key, t.c.headers, t.c.value)
                .where(t.c.shard.in_(shards))
                .order_by(t.c.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            self.producer.send(
                [
                    OutgoingRecord(topic, key, value, _decode_headers(headers))
                    for _, topic, key, headers, value in rows
                ]
            )
            # Exactly these rows: a row with a smaller id may commit later (sequences hand
            # out ids before commit) and must stay for the next batch.
            self.outbox.delete(conn, [row[0] for row in rows])
        self.published += len(rows)
        return len(rows)

    def _lock_shards(self, conn: Connection) -> list[int]:
        """Lock, for this transaction, the shards of the oldest pending rows that no other
        relay holds, until they hold a batch; the shards locked."""
        t = self.outbox.table
        oldest = conn.execute(
            select(t.c.shard).order_by(t.c.id).limit(self.batch_size * 4)
        ).scalars()
        pending: dict[int, int] = {}  # shard -> rows among the oldest, oldest shard first
        for shard in oldest:
            pending[shard] = pending.get(shard, 0) + 1
        locked: list[int] = []
        covered = 0
        for shard, count in pending.items():
            got = conn.execute(
                select(func.pg_try_advisory_xact_lock(SHARD_LOCK, shard))
            ).scalar_one()
            if got:
                locked.append(shard)
                covered += count
                if covered >= self.batch_size:
                    break
        return locked

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop` is set; waits on the outbox's wake event between batches."""
        if not self.db.is_sqlite:
            self._run_shared(stop)
            return
        # While this relay publishes, a keeper thread renews its lease: one batch (a slow
        # bus, a producer's first connection) or a long drain can outlast the lease, and
        # another relay must not start meanwhile. A process that stalls stops renewing.
        publishing, done = threading.Event(), threading.Event()
        keeper = threading.Thread(
            target=self._keep_lease, args=(publishing, done), name="relay-lease", daemon=True
        )
        keeper.start()
        try:
            while not stop.is_set():
                try:
                    if not self._hold_lease():
                        stop.wait(self.lease_ms / 4000)
                        continue
                    # Rows come from this process (the wake event) or from another one
                    # (a commit data_version shows); when neither, there is nothing to do.
                    woken = self.outbox.wake.is_set()
                    self.outbox.wake.clear()
                    if woken or self._changed():
                        publishing.set()
                        try:
                            while (
                                not stop.is_set()
                                and self.relay_once() == self.batch_size
                                and self._hold_lease()  # still ours: go on
                            ):
                                pass
                        finally:
                            publishing.clear()
                except Exception:
                    log.exception("outbox relay failed; retrying")
                    stop.wait(1.0)
                self.outbox.wake.wait(self.idle_wait_s)
        finally:
            done.set()
            keeper.join(timeout=5)
            self._release()

    def _keep_lease(self, publishing: threading.Event, done: threading.Event) -> None:
        leases = self.outbox.leases
        while not done.wait(self.lease_ms / 3000):
            if not publishing.is_set():
                continue
            try:
                with self.db.transaction() as conn:
                    conn.execute(
                        update(leases)
                        .where(and_(leases.c.name == "relay", leases.c.owner == self.owner))
                        .values(expires_ms=now_ms() + self.lease_ms)
                    )
            except Exception:
                log.warning("could not renew the relay lease", exc_info=True)

    def _run_shared(self, stop: threading.Event) -> None:
        """PostgreSQL: no lease; drain what this relay can claim, then sleep until a NOTIFY
        (or the in-process wake event) says there is more, or the fallback poll is due."""
        listener = _OutboxListener(self.db.url, self.outbox.wake)
        listener.start()
        try:
            while not stop.is_set():
                try:
                    self.outbox.wake.clear()
                    while not stop.is_set() and self._relay_shards_once():
                        pass
                except Exception:
                    log.exception("outbox relay failed; retrying")
                    stop.wait(1.0)
                wait = self.listen_fallback_s if listener.listening else self.idle_wait_s
                self.outbox.wake.wait(wait)
        finally:
            listener.stop()

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


class _OutboxListener:
    """LISTENs on a PostgreSQL outbox's channel in a daemon thread and sets `wake` on each
    notification. Reconnects after errors; `listening` says whether it is subscribed now."""

    def __init__(self, url: str, wake: threading.Event) -> None:
        parsed = make_url(url)
        self.channel = notify_channel(parsed.database or "")
        # libpq takes the SQLAlchemy URL without the "+driver" part.
        self.conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self.wake = wake
        self.listening = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"listen-{self.channel}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.listening = True
                    self.wake.set()  # rows committed before the LISTEN: look once
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self.wake.set()
            except Exception as e:
                if not self._stop.is_set():
                    log.warning(
                        "outbox listener on %s failed (%s); polling meanwhile", self.channel, e
                    )
                    self._stop.wait(1.0)
            finally:
                self.listening = False
