"""Embedded bus: SqliteLog produce and consume throughput against raw sqlite3.

Workload: `n` records with 200-byte values, keys spread like aggregate ids (2,000 keys)
and the CloudEvents headers eventmart puts on every message, on one topic of 8 partitions.

- produce: eventmart `Producer.send(batch)` with batches of 1000 (one transaction each:
  route by key, read the partition heads, insert, move the heads). Baseline: raw sqlite3,
  one transaction per 1000 with `executemany` INSERT into the same `records` table and an
  UPDATE of `heads`; the partition (CRC32) and the msgpack-encoded headers are computed
  the same way, offsets are kept in memory (a lone writer needs no lookup).
- consume: one member of a consumer group, `poll(1000)` then `commit()` of the batch's
  offsets (a write transaction, fenced by the partition leases) until all `n` are read.
  Baseline: raw sqlite3 SELECTs over the same partitions, 1000 per batch shared out as the
  adapter does, headers decoded, and one UPSERT transaction of the offsets per batch.

The ratio is eventmart / raw: the cost of the bus' semantics (routing, heads, leases,
fenced commits, Record objects) over the bare inserts and selects.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import msgspec

from bench.common import BenchResult, Context, Figure, Floor, Measure, Timer, alternate
from eventmart.platform.bus import OutgoingRecord, TopicPartition, partition_for
from eventmart.platform.bus.sqlite_log import SqliteLog

Rates = tuple[float, float]  # (per second, per CPU-second)

NAME = "bus"
TITLE = "embedded bus"
PARTITIONS = 8
BATCH = 1000
SIZE = 200
KEYS = 2000
FLOOR = 50_000.0

EM = "eventmart SqliteLog"
RAW = "raw sqlite3"

_encode_headers = msgspec.msgpack.Encoder().encode
_decode_headers = msgspec.msgpack.Decoder(tuple[tuple[str, bytes], ...]).decode


def _sizes(quick: bool) -> tuple[int, int]:
    """(records, rounds)."""
    return (50_000, 1) if quick else (200_000, 3)


def headers(i: int) -> tuple[tuple[str, bytes], ...]:
    """What eventmart's MessageWriter puts on a record (CloudEvents + correlation)."""
    return (
        ("ce_id", str(uuid.UUID(int=i)).encode()),
        ("ce_type", b"eventmart.ordering.OrderPlaced"),
        ("ce_source", b"ordering"),
        ("ce_specversion", b"1.0"),
        ("ce_time", b"1767225600000"),
        ("content-type", b"application/vnd.eventmart.avro"),
        ("ce_correlationid", b"0190d6a4-8f7e-7c3a-9b1d-2f4e6a8c0b1d"),
    )


def records(topic: str, n: int, size: int = SIZE) -> list[OutgoingRecord]:
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)
    return [OutgoingRecord(topic, f"order-{i % KEYS:05d}", value, headers(i)) for i in range(n)]


# -- eventmart ----------------------------------------------------------------------------


def _eventmart(folder: Path, n: int) -> dict[str, Rates]:
    log = SqliteLog(folder / "bus.db", default_partitions=PARTITIONS)
    topic = "bench.events"
    log.ensure_topic(topic, PARTITIONS)
    batch = records(topic, n)
    producer = log.producer()
    try:
        with Timer() as took:
            for i in range(0, n, BATCH):
                producer.send(batch[i : i + BATCH])
        produce = took.rates(n)
    finally:
        producer.close()
    consumer = log.consumer("bench-group", [topic], member_id="bench-member")
    try:
        seen = 0
        with Timer() as took:
            while seen < n:
                polled = consumer.poll(BATCH, 1.0)
                if not polled:
                    continue
                ends: dict[TopicPartition, int] = {}
                for r in polled:
                    ends[r.tp] = r.offset + 1
                consumer.commit(ends)
                seen += len(polled)
        consume = took.rates(n)
    finally:
        consumer.close()
        log.close()
    return {"produce": produce, "consume": consume}


# -- raw sqlite3 --------------------------------------------------------------------------


def _raw(folder: Path, n: int) -> dict[str, Rates]:
    path = folder / "raw-bus.db"
    log = SqliteLog(path, default_partitions=PARTITIONS)  # the same schema
    topic = "bench.events"
    log.ensure_topic(topic, PARTITIONS)
    topic_id, _ = log.topic(topic)
    log.close()
    batch = records(topic, n)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        heads = [0] * PARTITIONS
        with Timer() as took:
            for i in range(0, n, BATCH):
                now = time.time_ns() // 1_000_000
                rows = []
                for r in batch[i : i + BATCH]:
                    p = partition_for(r.key, PARTITIONS)
                    rows.append(
                        (topic_id, p, heads[p], r.key, _encode_headers(r.headers), r.value, now)
                    )
                    heads[p] += 1
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.executemany(
                    "UPDATE heads SET next_offset = ? WHERE topic_id = ? AND partition = ?",
                    [(heads[p], topic_id, p) for p in range(PARTITIONS)],
                )
                conn.execute("COMMIT")
        produce = took.rates(n)
        positions = [0] * PARTITIONS
        seen = 0
        select = (
            "SELECT offset, key, headers, value, ts FROM records WHERE topic_id = ? "
            "AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?"
        )
        upsert = (
            "INSERT INTO offsets (grp, topic_id, partition, committed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grp, topic_id, partition) DO UPDATE SET committed = excluded.committed"
        )
        with Timer() as took:
            while seen < n:
                got: list[tuple[int, int, str, tuple[tuple[str, bytes], ...], bytes, int]] = []
                for i, p in enumerate(range(PARTITIONS)):
                    limit = max(1, (BATCH - len(got)) // (PARTITIONS - i))
                    for offset, key, hdrs, value, ts in conn.execute(
                        select, (topic_id, p, positions[p], limit)
                    ):
                        got.append((p, offset, key, _decode_headers(hdrs), value, ts))
                    if got and got[-1][0] == p:
                        positions[p] = got[-1][1] + 1
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    upsert, [("raw", topic_id, p, positions[p]) for p in range(PARTITIONS)]
                )
                conn.execute("COMMIT")
                seen += len(got)
        consume = took.rates(n)
    finally:
        conn.close()
    return {"produce": produce, "consume": consume}


# -- the benchmark ------------------------------------------------------------------------


def run(ctx: Context) -> BenchResult:
    n, rounds = _sizes(ctx.quick)
    samples: dict[str, dict[str, Measure]] = {
        who: {m: Measure(who) for m in ("produce", "consume")} for who in (EM, RAW)
    }
    ctx.steps(rounds * 2)
    for round_ in range(rounds):
        folder = ctx.dir(f"bus-{round_}")
        contenders: list[tuple[str, Callable[[], dict[str, Rates]]]] = [
            (EM, partial(_eventmart, folder, n)),
            (RAW, partial(_raw, folder, n)),
        ]
        for who, fn in alternate(round_, contenders):
            ctx.step(f"round {round_ + 1}/{rounds}: {who}")
            for metric, value in fn().items():
                samples[who][metric].add(value)
    result = BenchResult(NAME, TITLE)
    for metric, label in (("produce", f"produce, {BATCH}/send"), ("consume", "consume + commit")):
        result.figures.append(
            Figure(
                NAME,
                label,
                "msgs/s",
                samples[EM][metric],
                [samples[RAW][metric]],
                floor=Floor("min", FLOOR),
            )
        )
    result.notes.append(
        f"{n:,} records of {SIZE} bytes with CloudEvents headers, {KEYS:,} keys, "
        f"{PARTITIONS} partitions, batches of {BATCH}; {rounds} round(s)."
    )
    return result
