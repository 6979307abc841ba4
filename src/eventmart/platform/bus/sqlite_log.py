"""The embedded bus: a partitioned, replayable log in one SQLite file (WAL mode).

Hand-written because it is the product: no library offers a Kafka-shaped log on SQLite.
It talks to `sqlite3` directly rather than through SQLAlchemy because it is SQLite-only
by nature (the distributed profile uses Kafka) and sits on the hottest path.

How it stays correct across several OS processes:
- Offsets are assigned inside a `BEGIN IMMEDIATE` transaction that holds SQLite's single
  write lock, so two producers never hand out the same offset, and a partition's records
  are committed in offset order.
- A consumer group's members heartbeat into `members`; a member owns a partition while it
  holds an unexpired row in `leases`. Every member computes the same assignment (the
  group's live members, sorted, dealt partitions round-robin), takes free or expired
  partitions that are its share, and gives up those that are no longer its share.
- Commits are fenced: an offset is written only while the committing member still holds
  the partition's lease, so a member that stalled past its session timeout cannot move
  the offset of a partition someone else now owns.

What a poll costs: `PRAGMA data_version` says whether anything was committed to the log
since the last empty look (nothing: no query at all); if so, one read of the heads of
the group's topics says which owned partitions have records past the consumer's
position, and only those are read.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from eventmart.platform.bus import (
    Bus,
    Consumer,
    OutgoingRecord,
    PartitionLag,
    Producer,
    Record,
    TopicPartition,
    partition_for,
)
from eventmart.platform.db import enable_wal
from eventmart.platform.messages import Headers, now_ms
from eventmart.platform.sqlite_gate import WriteGate, write_gate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS heads (
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT NOT NULL,
    headers BLOB NOT NULL,
    value BLOB NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL,
    member_id TEXT NOT NULL,
    topics TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY (grp, topic_id, partition)
) WITHOUT ROWID;
"""

_headers_encoder = msgspec.msgpack.Encoder()
_headers_decoder = msgspec.msgpack.Decoder(Headers)


class _Connection(sqlite3.Connection):
    """A connection to the log that knows the log's write gate."""

    gate: WriteGate


def _connect(path: Path) -> _Connection:
    conn = sqlite3.connect(
        path, timeout=60, isolation_level=None, check_same_thread=False, factory=_Connection
    )
    # Every process appends, commits offsets and heartbeats here: writers queue on the gate.
    conn.gate = write_gate(path, across_processes=True)
    conn.execute("PRAGMA busy_timeout=60000")
    enable_wal(conn.cursor())
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class _Write:
    """`with _Write(conn):` runs a BEGIN IMMEDIATE ... COMMIT transaction, holding the
    log's write gate (see eventmart.platform.sqlite_gate) for its length."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def __enter__(self) -> _Connection:
        self.conn.gate.__enter__()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.conn.gate.__exit__(None, None, None)
            raise
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")
        finally:
            self.conn.gate.__exit__(None, None, None)


class SqliteLog(Bus):
    """The embedded partitioned log. Safe to share between threads and OS processes."""

    def __init__(
        self,
        path: Path | str,
        *,
        default_partitions: int = 8,
        session_timeout_s: float = 6.0,
        heartbeat_interval_s: float = 1.0,
        poll_interval_s: float = 0.02,
        max_poll_interval_s: float = 300.0,
    ) -> None:
        self.path = Path(path)
        self.max_poll_interval_s = max_poll_interval_s
        self.default_partitions = default_partitions
        self.session_timeout_ms = int(session_timeout_s * 1000)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.poll_interval_s = poll_interval_s
        self._topics: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._init_lock = threading.Lock()
        self._conn: _Connection | None = None
        # Wakes consumers in this process as soon as a producer here commits.
        self.new_data = threading.Condition()

    # -- plumbing -------------------------------------------------------------------
    def connect(self) -> _Connection:
        """A new connection to the log with the schema in place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path)
        if self._conn is None:
            with self._init_lock:
                if self._conn is None:
                    conn.executescript(_SCHEMA)
                    self._conn = _connect(self.path)
        return conn

    def _admin(self) -> _Connection:
        if self._conn is None:
            self.connect().close()
        assert self._conn is not None
        return self._conn

    def topic(self, name: str) -> tuple[int, int]:
        """(topic id, partition count), creating the topic on first use as Kafka's
        auto-creation does."""
        found = self._topics.get(name)
        if found is not None:
            return found
        self.ensure_topic(name)
        return self._topics[name]

    def notify(self) -> None:
        with self.new_data:
            self.new_data.notify_all()

    # -- Bus ------------------------------------------------------------------------
    def ensure_topic(self, name: str, partitions: int | None = None) -> None:
        with self._lock:
            conn = self._admin()
            row = conn.execute(
                "SELECT id, partitions FROM topics WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                count = partitions or self.default_partitions
                with _Write(conn):
                    conn.execute(
                        "INSERT OR IGNORE INTO topics (name, partitions) VALUES (?, ?)",
                        (name, count),
                    )
                    row = conn.execute(
                        "SELECT id, partitions FROM topics WHERE name = ?", (name,)
                    ).fetchone()
                    conn.executemany(
                        "INSERT OR IGNORE INTO heads (topic_id, partition, next_offset) "
                        "VALUES (?, ?, 0)",
                        [(row[0], p) for p in range(row[1])],
                    )
            self._topics[name] = (int(row[0]), int(row[1]))

    def topics(self) -> dict[str, int]:
        with self._lock:
            rows = self._admin().execute("SELECT name, partitions FROM topics").fetchall()
        return {name: count for name, count in rows}

    def producer(self) -> Producer:
        return SqliteProducer(self)

    def consumer(self, group: str, topics: Sequence[str], member_id: str | None = None) -> Consumer:
        return SqliteConsumer(self, group, list(topics), member_id)

    def end_offsets(self, topic: str) -> dict[int, int]:
        topic_id, _ = self.topic(topic)
        with self._lock:
            rows = (
                self._admin()
                .execute("SELECT partition, next_offset FROM heads WHERE topic_id = ?", (topic_id,))
                .fetchall()
            )
        return {p: o for p, o in rows}

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        topic_id, _ = self.topic(topic)
        with self._lock:
            rows = (
                self._admin()
                .execute(
                    "SELECT offset, key, headers, value, ts FROM records WHERE topic_id = ? "
                    "AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                    (topic_id, partition, offset, limit),
                )
                .fetchall()
            )
        return [_record(topic, partition, row) for row in rows]

    def groups(self) -> list[str]:
        with self._lock:
            rows = (
                self._admin()
                .execute("SELECT grp FROM offsets UNION SELECT grp FROM members ORDER BY 1")
                .fetchall()
            )
        return [r[0] for r in rows]

    def lag(self, group: str | None = None) -> list[PartitionLag]:
        now = now_ms()
        with self._lock:
            conn = self._admin()
            names = {tid: name for tid, name in conn.execute("SELECT id, name FROM topics")}
            heads = {(t, p): o for t, p, o in conn.execute("SELECT * FROM heads")}
            committed: dict[tuple[str, int, int], int] = {}
            for grp, t, p, c in conn.execute(
                "SELECT grp, topic_id, partition, committed FROM offsets"
            ):
                committed[(grp, t, p)] = c
            owners: dict[tuple[str, int, int], str] = {}
            for grp, t, p, m, exp in conn.execute("SELECT * FROM leases"):
                if exp >= now:
                    owners[(grp, t, p)] = m
            members = conn.execute("SELECT grp, topics FROM members").fetchall()
        subscribed: set[tuple[str, int]] = {(g, t) for g, t, _ in committed}
        by_name = {name: tid for tid, name in names.items()}
        for grp, topics in members:
            for name in topics.split(","):
                if name in by_name:
                    subscribed.add((grp, by_name[name]))
        out: list[PartitionLag] = []
        for grp, tid in sorted(subscribed, key=lambda gt: (gt[0], names.get(gt[1], ""))):
            if group is not None and grp != group:
                continue
            partitions = sorted(p for (t, p) in heads if t == tid)
            for p in partitions:
                out.append(
                    PartitionLag(
                        group=grp,
                        topic=names[tid],
                        partition=p,
                        committed=committed.get((grp, tid, p), 0),
                        end_offset=heads[(tid, p)],
                        owner=owners.get((grp, tid, p)),
                    )
                )
        return out

    def reset_group(self, group: str, topics: Sequence[str]) -> None:
        ids = [self.topic(t)[0] for t in topics]
        with self._lock:
            conn = self._admin()
            with _Write(conn):
                # Back to the start, kept as rows so lag shows the whole log (as on Kafka).
                for topic_id in ids:
                    partitions = conn.execute(
                        "SELECT partition FROM heads WHERE topic_id = ?", (topic_id,)
                    ).fetchall()
                    conn.executemany(
                        "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?, 0)",
                        [(group, topic_id, p) for (p,) in partitions],
                    )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _record(topic: str, partition: int, row: tuple[Any, ...]) -> Record:
    offset, key, headers, value, ts = row
    return Record(topic, partition, offset, key, value, _headers_decoder.decode(headers), ts)


class SqliteProducer(Producer):
    """Appends batches; one transaction per `send`, so a batch is all-or-nothing."""

    def __init__(self, log: SqliteLog) -> None:
        self._log = log
        self._conn = log.connect()
        self._lock = threading.Lock()

    def send(self, records: Sequence[OutgoingRecord]) -> None:
        if not records:
            return
        now = now_ms()
        routed: dict[tuple[int, int], list[OutgoingRecord]] = {}
        for r in records:
            topic_id, partitions = self._log.topic(r.topic)
            routed.setdefault((topic_id, partition_for(r.key, partitions)), []).append(r)
        with self._lock, _Write(self._conn) as conn:
            rows: list[tuple[int, int, int, str, bytes, bytes, int]] = []
            heads: list[tuple[int, int, int]] = []
            for (topic_id, partition), batch in routed.items():
                (start,) = conn.execute(
                    "SELECT next_offset FROM heads WHERE topic_id = ? AND partition = ?",
                    (topic_id, partition),
                ).fetchone()
                for i, r in enumerate(batch):
                    rows.append(
                        (
                            topic_id,
                            partition,
                            start + i,
                            r.key,
                            _headers_encoder.encode(r.headers),
                            r.value,
                            now,
                        )
                    )
                heads.append((start + len(batch), topic_id, partition))
            conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany(
                "UPDATE heads SET next_offset = ? WHERE topic_id = ? AND partition = ?", heads
            )
        self._log.notify()

    def close(self) -> None:
        self._conn.close()


class SqliteConsumer(Consumer):
    """A consumer group member on the embedded log (see the module docstring)."""

    REBALANCE_CHECK_S = 0.25

    def __init__(
        self, log: SqliteLog, group: str, topics: list[str], member_id: str | None
    ) -> None:
        self._log = log
        self.group = group
        self.topics = sorted(set(topics))
        self.member_id = member_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._conn = log.connect()
        self._topic_ids = {t: log.topic(t) for t in self.topics}
        self._names = {tid: name for name, (tid, _) in self._topic_ids.items()}
        ids = sorted(tid for tid, _ in self._topic_ids.values())
        self._heads_sql = (
            "SELECT topic_id, partition, next_offset FROM heads "
            f"WHERE topic_id IN ({', '.join(map(str, ids))})"
        )
        self._lock = threading.RLock()
        self._owned: dict[TopicPartition, int] = {}  # partition -> next offset to fetch
        self._paused: set[TopicPartition] = set()
        self._last_check = 0.0
        self._data_version = -1
        self._idle = False
        self._rotation = 0
        self._last_poll = time.monotonic()
        self._closed = False
        self._heartbeat_error: BaseException | None = None
        self._join()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name=f"heartbeat-{group}", daemon=True
        )
        self._heartbeat.start()

    # -- membership -----------------------------------------------------------------
    def _join(self) -> None:
        with self._lock, _Write(self._conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO members (grp, member_id, topics, heartbeat_ms) "
                "VALUES (?, ?, ?, ?)",
                (self.group, self.member_id, ",".join(self.topics), now_ms()),
            )

    def _heartbeat_loop(self) -> None:
        conn = self._log.connect()
        try:
            while not self._stop.wait(self._log.heartbeat_interval_s):
                if time.monotonic() - self._last_poll > self._log.max_poll_interval_s:
                    # Alive but not consuming (stuck in a handler?): let the leases lapse so
                    # the group's other members take the partitions, as Kafka does.
                    continue
                now = now_ms()
                with _Write(conn):
                    cur = conn.execute(
                        "UPDATE members SET heartbeat_ms = ? WHERE grp = ? AND member_id = ?",
                        (now, self.group, self.member_id),
                    )
                    if cur.rowcount == 0:
                        # Evicted while stalled: come back as a member; leases are gone.
                        conn.execute(
                            "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?)",
                            (self.group, self.member_id, ",".join(self.topics), now),
                        )
                    conn.execute(
                        "UPDATE leases SET expires_ms = ? WHERE grp = ? AND member_id = ?",
                        (now + self._log.session_timeout_ms, self.group, self.member_id),
                    )
        except BaseException as e:  # pragma: no cover - surfaced at the next poll
            self._heartbeat_error = e
        finally:
            conn.close()

    def _rebalance(self) -> None:
        """Settle this member's share of the partitions (see the module docstring).

        Reads first and writes only when something has to change, so an idle, settled
        group costs a couple of reads per check rather than a write transaction.
        """
        now = now_ms()
        session = self._log.session_timeout_ms
        conn = self._conn
        members = self._alive_members(conn, now - session)
        leases = self._leases(conn)
        wanted, owned_now = self._plan(members, leases, now)
        release = owned_now - wanted
        takeable = [tp for tp in wanted - owned_now if self._free(leases, tp, now)]
        acquired: list[TopicPartition] = []
        if release or takeable:  # (the heartbeat keeps this member's own row)
            with _Write(conn):
                conn.execute(
                    "DELETE FROM members WHERE grp = ? AND heartbeat_ms < ?",
                    (self.group, now - session),
                )
                conn.execute(
                    "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?)",
                    (self.group, self.member_id, ",".join(self.topics), now),
                )
                conn.executemany(
                    "DELETE FROM leases WHERE grp = ? AND topic_id = ? AND partition = ? "
                    "AND member_id = ?",
                    [
                        (self.group, self._topic_ids[tp.topic][0], tp.partition, self.member_id)
                        for tp in release
                    ],
                )
                leases = self._leases(conn)  # again, inside the write lock
                for tp in takeable:
                    if self._free(leases, tp, now):
                        conn.execute(
                            "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)",
                            (
                                self.group,
                                self._topic_ids[tp.topic][0],
                                tp.partition,
                                self.member_id,
                                now + session,
                            ),
                        )
                        acquired.append(tp)
        keep = (owned_now - release) | set(acquired)
        for tp in list(self._owned):
            if tp not in keep:
                del self._owned[tp]
                self._paused.discard(tp)
        if acquired:
            committed = {
                (t, p): c
                for t, p, c in conn.execute(
                    "SELECT topic_id, partition, committed FROM offsets WHERE grp = ?",
                    (self.group,),
                )
            }
            for tp in acquired:
                # A partition taken (back) starts from the group's committed offset: another
                # member may have moved it since this member last read it.
                self._owned[tp] = committed.get((self._topic_ids[tp.topic][0], tp.partition), 0)
                self._paused.discard(tp)
            self._data_version = -1

    def _alive_members(self, conn: sqlite3.Connection, since_ms: int) -> list[tuple[str, str]]:
        rows = conn.execute(
            "SELECT member_id, topics FROM members WHERE grp = ? AND heartbeat_ms >= ?",
            (self.group, since_ms),
        ).fetchall()
        if self.member_id not in {m for m, _ in rows}:
            rows.append((self.member_id, ",".join(self.topics)))
        return sorted(rows)

    def _leases(self, conn: sqlite3.Connection) -> dict[tuple[int, int], tuple[str, int]]:
        return {
            (t, p): (m, exp)
            for t, p, m, exp in conn.execute(
                "SELECT topic_id, partition, member_id, expires_ms FROM leases WHERE grp = ?",
                (self.group,),
            )
        }

    def _plan(
        self,
        members: list[tuple[str, str]],
        leases: dict[tuple[int, int], tuple[str, int]],
        now: int,
    ) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """(this member's share, the partitions it holds a live lease on now)."""
        wanted: set[TopicPartition] = set()
        for name, (_tid, partitions) in self._topic_ids.items():
            subscribers = [m for m, ts in members if name in ts.split(",")]
            mine = subscribers.index(self.member_id)
            wanted.update(
                TopicPartition(name, p) for p in range(partitions) if p % len(subscribers) == mine
            )
        owned: set[TopicPartition] = set()
        for (tid, p), (m, exp) in leases.items():
            if m == self.member_id and exp >= now and tid in self._names:
                owned.add(TopicPartition(self._names[tid], p))
        return wanted, owned

    def _free(
        self, leases: dict[tuple[int, int], tuple[str, int]], tp: TopicPartition, now: int
    ) -> bool:
        holder = leases.get((self._topic_ids[tp.topic][0], tp.partition))
        return holder is None or holder[1] < now or holder[0] == self.member_id

    # -- Consumer -------------------------------------------------------------------
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._heartbeat_error is not None:
            raise RuntimeError("consumer heartbeat failed") from self._heartbeat_error
        deadline = time.monotonic() + timeout_s
        self._last_poll = time.monotonic()
        while True:
            with self._lock:
                if time.monotonic() - self._last_check >= self.REBALANCE_CHECK_S:
                    self._rebalance()
                    self._last_check = time.monotonic()
                records = self._fetch(max_records)
            if records or time.monotonic() >= deadline or self._closed:
                return records
            with self._log.new_data:
                self._log.new_data.wait(
                    min(self._log.poll_interval_s, max(0.0, deadline - time.monotonic()))
                )

    def _fetch(self, max_records: int) -> list[Record]:
        active = sorted(
            (tp for tp in self._owned if tp not in self._paused),
            key=lambda t: (t.topic, t.partition),
        )
        if not active:
            return []
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version and self._idle:
            return []  # nothing committed since the last empty look
        self._data_version = version
        # The log moved, but mostly elsewhere: one look at the heads of this consumer's
        # topics finds the partitions with records past its position, and only those
        # are read (a group owns tens of partitions; a SELECT each cost more than the
        # records a small batch brings).
        heads = {
            (tid, partition): head
            for tid, partition, head in self._conn.execute(self._heads_sql).fetchall()
        }
        active = [
            tp
            for tp in active
            if heads.get((self._topic_ids[tp.topic][0], tp.partition), 0) > self._owned[tp]
        ]
        if not active:
            self._idle = True
            return []
        # Start at a different partition each time, and hand what an empty partition
        # leaves unused to the next one: fair, and never more than max_records.
        self._rotation = (self._rotation + 1) % len(active)
        order = active[self._rotation :] + active[: self._rotation]
        out: list[Record] = []
        for i, tp in enumerate(order):
            remaining = max_records - len(out)
            if remaining <= 0:
                break
            limit = max(1, remaining // (len(order) - i))
            tid = self._topic_ids[tp.topic][0]
            rows = self._conn.execute(
                "SELECT offset, key, headers, value, ts FROM records WHERE topic_id = ? "
                "AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                (tid, tp.partition, self._owned[tp], limit),
            ).fetchall()
            if rows:
                out.extend(_record(tp.topic, tp.partition, row) for row in rows)
                self._owned[tp] = rows[-1][0] + 1
        self._idle = not out
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        now = now_ms()
        lost: list[TopicPartition] = []
        with self._lock, _Write(self._conn) as conn:
            for tp, offset in offsets.items():
                tid = self._topic_ids[tp.topic][0]
                cur = conn.execute(
                    "UPDATE leases SET expires_ms = ? WHERE grp = ? AND topic_id = ? "
                    "AND partition = ? AND member_id = ?",
                    (
                        now + self._log.session_timeout_ms,
                        self.group,
                        tid,
                        tp.partition,
                        self.member_id,
                    ),
                )
                if cur.rowcount == 0:
                    lost.append(tp)
                    continue
                conn.execute(
                    "INSERT INTO offsets (grp, topic_id, partition, committed) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic_id, partition) "
                    "DO UPDATE SET committed = excluded.committed",
                    (self.group, tid, tp.partition, offset),
                )
            for tp in lost:
                self._owned.pop(tp, None)
                self._paused.discard(tp)

    def assignment(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._owned)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._paused.update(tp for tp in partitions if tp in self._owned)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._paused.difference_update(partitions)
            self._idle = False

    def paused(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._paused)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        with self._lock:
            if partition in self._owned:
                self._owned[partition] = offset
                self._idle = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._heartbeat.join(timeout=5)
        with self._lock, _Write(self._conn) as conn:
            conn.execute(
                "DELETE FROM leases WHERE grp = ? AND member_id = ?", (self.group, self.member_id)
            )
            conn.execute(
                "DELETE FROM members WHERE grp = ? AND member_id = ?", (self.group, self.member_id)
            )
            self._owned.clear()
        self._conn.close()
