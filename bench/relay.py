"""Outbox relay: rows in a service database's outbox, published to the embedded bus.

Workload: `n` outbox rows (200-byte values, CloudEvents headers, 2,000 keys) committed by
`Outbox.add` in units of work of 10 rows, as a service's API calls and consumer batches
write them (not timed). Then the relay drains the backlog, and the clock runs from its
start until every row is on the bus and deleted from the outbox.

- eventmart: `OutboxRelay.run()` on its own thread, as the service runtime runs it (lease
  renewal per batch, batches of 1000, SELECT in id order, `Producer.send`, DELETE of
  exactly the rows sent).
- raw sqlite3: the same loop with two bare connections: SELECT 1000 rows in id order,
  INSERT them into the bus' `records` table and move its heads in one transaction (the
  msgpack headers passed through as they are), DELETE them from the outbox.

The ratio is eventmart / raw.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import MetaData

from bench.bus import KEYS, PARTITIONS, SIZE, records
from bench.common import BenchResult, Context, Figure, Floor, Measure, Timer, alternate
from eventmart.platform.bus import partition_for
from eventmart.platform.bus.sqlite_log import SqliteLog
from eventmart.platform.db import Database
from eventmart.platform.messages import Headers
from eventmart.platform.store.outbox import Outbox, OutboxRelay

NAME = "relay"
TITLE = "outbox relay"
ROWS_PER_TX = 10
BATCH = 1000
FLOOR = 20_000.0
TOPIC = "bench.events"

EM = "eventmart OutboxRelay"
RAW = "raw sqlite3"


def _sizes(quick: bool) -> tuple[int, int]:
    """(rows, rounds)."""
    return (30_000, 1) if quick else (100_000, 3)


def _outbox(url: str, n: int, per_tx: int) -> tuple[Database, Outbox]:
    """An outbox holding `n` rows, written `per_tx` to a transaction."""
    db = Database(url)
    metadata = MetaData()
    outbox = Outbox(metadata)
    metadata.create_all(db.engine)
    rows = records(TOPIC, n)
    for i in range(0, n, per_tx):
        with db.transaction() as conn:
            outbox.add(conn, rows[i : i + per_tx])
    return db, outbox


def _fill(folder: Path, n: int) -> tuple[Database, Outbox, SqliteLog]:
    db, outbox = _outbox(f"sqlite:///{folder / 'service.db'}", n, ROWS_PER_TX)
    bus = SqliteLog(folder / "bus.db", default_partitions=PARTITIONS)
    bus.ensure_topic(TOPIC, PARTITIONS)
    return db, outbox, bus


def _relay_all(relay: OutboxRelay, n: int, timeout_s: float = 600.0) -> tuple[float, float]:
    """Run `relay` in a thread until it has published `n` records; (wall, CPU) taken."""
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), name="bench-relay", daemon=True)
    try:
        with Timer() as took:
            thread.start()
            deadline = time.monotonic() + timeout_s
            while relay.published < n:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError(
                        f"relay published {relay.published} of {n} in {timeout_s:.0f} s"
                    )
                time.sleep(0.002)
        return took.rates(n)
    finally:
        stop.set()
        thread.join(10)


def _eventmart(folder: Path, n: int) -> tuple[float, float]:
    db, outbox, bus = _fill(folder, n)
    producer = bus.producer()
    try:
        rates = _relay_all(OutboxRelay(db, outbox, producer, batch_size=BATCH), n)
        assert sum(bus.end_offsets(TOPIC).values()) == n
    finally:
        producer.close()
        bus.close()
        db.dispose()
    return rates


def _raw(folder: Path, n: int) -> tuple[float, float]:
    db, _, bus = _fill(folder, n)
    topic_id, _ = bus.topic(TOPIC)
    bus.close()
    db.dispose()
    source = sqlite3.connect(folder / "service.db", isolation_level=None)
    target = sqlite3.connect(folder / "bus.db", isolation_level=None)
    for conn in (source, target):
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    heads = [0] * PARTITIONS
    published = 0
    try:
        with Timer() as took:
            while True:
                rows = source.execute(
                    "SELECT id, topic, key, headers, value FROM outbox ORDER BY id LIMIT ?",
                    (BATCH,),
                ).fetchall()
                if not rows:
                    break
                now = time.time_ns() // 1_000_000
                out = []
                for _, _, key, headers, value in rows:
                    p = partition_for(key, PARTITIONS)
                    out.append((topic_id, p, heads[p], key, headers, value, now))
                    heads[p] += 1
                target.execute("BEGIN IMMEDIATE")
                target.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", out)
                target.executemany(
                    "UPDATE heads SET next_offset = ? WHERE topic_id = ? AND partition = ?",
                    [(heads[p], topic_id, p) for p in range(PARTITIONS)],
                )
                target.execute("COMMIT")
                source.execute("BEGIN IMMEDIATE")
                source.executemany("DELETE FROM outbox WHERE id = ?", [(r[0],) for r in rows])
                source.execute("COMMIT")
                published += len(rows)
        rates = took.rates(n)
    finally:
        source.close()
        target.close()
    assert published == n
    return rates


def run(ctx: Context) -> BenchResult:
    n, rounds = _sizes(ctx.quick)
    samples = {EM: Measure(EM), RAW: Measure(RAW)}
    ctx.steps(rounds * 2)
    for round_ in range(rounds):
        contenders: list[tuple[str, Callable[[], tuple[float, float]]]] = [
            (EM, partial(_eventmart, ctx.dir(f"relay-em-{round_}"), n)),
            (RAW, partial(_raw, ctx.dir(f"relay-raw-{round_}"), n)),
        ]
        for who, fn in alternate(round_, contenders):
            ctx.step(f"round {round_ + 1}/{rounds}: {who}")
            samples[who].add(fn())
    result = BenchResult(NAME, TITLE)
    result.figures.append(
        Figure(
            NAME,
            "drain outbox -> bus",
            "msgs/s",
            samples[EM],
            [samples[RAW]],
            floor=Floor("min", FLOOR),
        )
    )
    result.notes.append(
        f"{n:,} outbox rows of {SIZE} bytes ({KEYS:,} keys) written {ROWS_PER_TX} per unit of "
        f"work beforehand, relayed in batches of {BATCH} to {PARTITIONS} partitions; "
        f"{rounds} round(s)."
    )
    return result


# -- distributed: PostgreSQL outbox -> Kafka --------------------------------------------------

PG_EM = "eventmart OutboxRelay"
PG_RAW = "raw psycopg + confluent-kafka"
PG_FLOOR = 10_000.0
PG_ROWS_PER_TX = ROWS_PER_TX * 10  # bigger units: PostgreSQL commits are slower


def _pg_eventmart(url: str, bootstrap: str, n: int) -> tuple[float, float]:
    from eventmart.platform.bus.kafka import KafkaBus
    from eventmart.platform.settings import Settings

    db, outbox = _outbox(url, n, PG_ROWS_PER_TX)
    bus = KafkaBus(Settings(kafka_bootstrap_servers=bootstrap, partitions=PARTITIONS))  # type: ignore[call-arg]
    bus.ensure_topic(TOPIC, PARTITIONS)
    producer = bus.producer()
    try:
        return _relay_all(OutboxRelay(db, outbox, producer, batch_size=BATCH), n)
    finally:
        producer.close()
        bus.close()
        db.dispose()


def _pg_raw(url: str, bootstrap: str, n: int) -> tuple[float, float]:
    import msgspec
    import psycopg
    from confluent_kafka import Producer as RawProducer
    from sqlalchemy.engine import make_url

    from bench.kafka_bus import raw_producer_config

    db, _ = _outbox(url, n, PG_ROWS_PER_TX)
    db.dispose()
    decode = msgspec.msgpack.Decoder(Headers).decode
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    producer = RawProducer(raw_producer_config(bootstrap))
    producer.produce(TOPIC, b"warm-up", b"warm-up")
    producer.flush()
    published = 0
    with psycopg.connect(conninfo) as conn, Timer() as took:
        while True:
            with conn.transaction():
                rows = conn.execute(
                    "SELECT id, topic, key, headers, value FROM outbox ORDER BY id LIMIT %s "
                    "FOR UPDATE SKIP LOCKED",
                    (BATCH,),
                ).fetchall()
                if not rows:
                    break
                for _, topic, key, headers, value in rows:
                    while True:  # inline: this loop is the baseline being timed
                        try:
                            producer.produce(
                                topic, value, key.encode(), headers=list(decode(headers))
                            )
                            break
                        except BufferError:
                            producer.poll(0.01)
                if producer.flush(30) != 0:
                    raise RuntimeError("raw producer could not flush")
                conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r[0] for r in rows],))
            published += len(rows)
    assert published == n
    return took.rates(n)


def run_distributed(ctx: Context, addresses: dict[str, str]) -> BenchResult:
    """The relay on the distributed profile: a PostgreSQL outbox published to Kafka."""
    import uuid

    from eventmart.stack import settings_environment

    result = BenchResult("relay_postgres_kafka", "outbox relay PG -> Kafka")
    env = settings_environment(addresses)
    base = env["EVENTMART_POSTGRES_URL"].rstrip("/")
    bootstrap = addresses["kafka"]
    n = 10_000 if ctx.quick else 50_000
    rounds = 1 if ctx.quick else 2
    samples = {PG_EM: Measure(PG_EM), PG_RAW: Measure(PG_RAW)}
    ctx.steps(rounds * 2)
    for round_ in range(rounds):
        contenders: list[tuple[str, Callable[[], tuple[float, float]]]] = [
            (
                PG_EM,
                partial(_pg_eventmart, f"{base}/bench_relay_{uuid.uuid4().hex[:8]}", bootstrap, n),
            ),
            (PG_RAW, partial(_pg_raw, f"{base}/bench_relay_{uuid.uuid4().hex[:8]}", bootstrap, n)),
        ]
        for who, fn in alternate(round_, contenders):
            ctx.step(f"round {round_ + 1}/{rounds}: {who}")
            samples[who].add(fn())
    result.figures.append(
        Figure(
            "relay_postgres_kafka",
            "drain outbox -> Kafka",
            "msgs/s",
            samples[PG_EM],
            [samples[PG_RAW]],
            floor=Floor("min", PG_FLOOR),
        )
    )
    result.notes.append(
        f"{n:,} outbox rows of {SIZE} bytes in PostgreSQL, relayed in batches of {BATCH} to a "
        f"Kafka topic of {PARTITIONS} partitions (idempotent producer, acks=all); the raw "
        "side claims rows FOR UPDATE SKIP LOCKED, produces, flushes and deletes per batch; "
        f"{rounds} round(s). The CPU figures leave out the brokers' and the server's CPU."
    )
    return result
