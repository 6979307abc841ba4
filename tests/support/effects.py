"""The service database the bus workers share: eventmart's inbox plus what the tests read.

- `effects`: one row per message a worker handled for the first time (claimed in the inbox
  in the same transaction), so "no lost, no doubled effect" is a query;
- `batches`: per polled batch, how many records came and how many were new (the rest
  were redeliveries the inbox dropped);
- `assignments`: each worker's partitions as it last saw them after a poll;
- `milestones`: named points a worker reached (for tests that stage a failure).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text, func, select

from eventmart.platform.bus import Record, TopicPartition
from eventmart.platform.db import Database
from eventmart.platform.messages import now_ms
from eventmart.platform.store import ServiceStore
from tests.support.records import id_of, seq_of


def _id() -> Column[int]:
    return Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )


class EffectsStore:
    """The workers' shared database (one service's database, several processes)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.store = ServiceStore(db)
        md = self.store.metadata
        self.effects = Table(
            "effects",
            md,
            _id(),
            Column("message_id", String(100), nullable=False),
            Column("worker", String(50), nullable=False),
            Column("topic", String(200), nullable=False),
            Column("partition", Integer, nullable=False),
            Column("record_offset", BigInteger, nullable=False),
            Column("key", String(100), nullable=False),
            Column("seq", Integer, nullable=False),
        )
        self.batches = Table(
            "batches",
            md,
            _id(),
            Column("worker", String(50), nullable=False),
            Column("delivered", Integer, nullable=False),
            Column("new", Integer, nullable=False),
        )
        self.assignments = Table(
            "assignments",
            md,
            Column("worker", String(50), primary_key=True),
            Column("partitions", Text, nullable=False),
            Column("at_ms", BigInteger, nullable=False),
        )
        self.milestones = Table(
            "milestones",
            md,
            _id(),
            Column("worker", String(50), nullable=False),
            Column("name", String(50), nullable=False),
        )

    def create(self) -> None:
        self.store.create()

    # -- the worker's side ------------------------------------------------------------
    def handle(self, consumer_name: str, worker: str, records: Sequence[Record]) -> int:
        """Claim the records' ids and write one effect per new id, in one transaction;
        the number of new ones."""
        with self.db.transaction() as conn:
            new = self.store.inbox.claim(conn, consumer_name, [id_of(r) for r in records])
            rows = []
            for r in records:
                mid = id_of(r)
                if mid in new:
                    new.discard(mid)  # a batch could hold one message twice
                    rows.append(
                        {
                            "message_id": mid,
                            "worker": worker,
                            "topic": r.topic,
                            "partition": r.partition,
                            "record_offset": r.offset,
                            "key": r.key,
                            "seq": seq_of(r),
                        }
                    )
            if rows:
                conn.execute(self.effects.insert(), rows)
            conn.execute(
                self.batches.insert().values(worker=worker, delivered=len(records), new=len(rows))
            )
        return len(rows)

    def report_assignment(self, worker: str, partitions: set[TopicPartition]) -> None:
        value = json.dumps(sorted(tp.partition for tp in partitions))
        t = self.assignments
        with self.db.transaction() as conn:
            conn.execute(t.delete().where(t.c.worker == worker))
            conn.execute(t.insert().values(worker=worker, partitions=value, at_ms=now_ms()))

    def milestone(self, worker: str, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(self.milestones.insert().values(worker=worker, name=name))

    # -- the test's side --------------------------------------------------------------
    def effect_count(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(self.effects)).scalar_one())

    def effects_per_message(self) -> Counter[str]:
        with self.db.read() as conn:
            return Counter(conn.execute(select(self.effects.c.message_id)).scalars())

    def effect_rows(self) -> list[tuple[int, str, int, str, int]]:
        """(id, worker, partition, key, seq) in the order the effects committed."""
        e = self.effects.c
        with self.db.read() as conn:
            rows = conn.execute(select(e.id, e.worker, e.partition, e.key, e.seq).order_by(e.id))
            return [tuple(r) for r in rows]

    def partitions_by_worker(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for _, worker, partition, _, _ in self.effect_rows():
            out.setdefault(worker, set()).add(partition)
        return out

    def assignment_of(self) -> dict[str, set[int]]:
        """Each worker's partitions, as last reported."""
        t = self.assignments.c
        with self.db.read() as conn:
            rows = conn.execute(select(t.worker, t.partitions)).all()
        return {worker: set(json.loads(parts)) for worker, parts in rows}

    def deliveries(self) -> tuple[int, int]:
        """(records delivered, of which new) over all batches of all workers."""
        b = self.batches.c
        with self.db.read() as conn:
            delivered, new = conn.execute(select(func.sum(b.delivered), func.sum(b.new))).one()
        return int(delivered or 0), int(new or 0)

    def batch_count(self, worker: str) -> int:
        b = self.batches.c
        with self.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(self.batches).where(b.worker == worker)
                ).scalar_one()
            )

    def reached(self, worker: str, name: str) -> bool:
        m = self.milestones.c
        with self.db.read() as conn:
            found = conn.execute(
                select(m.id).where(m.worker == worker, m.name == name).limit(1)
            ).first()
        return found is not None
